//! A streaming check of the IPP attribute section's framing, run on the
//! bytes before the `ipp` crate parses them.
//!
//! The crate decodes `textWithLanguage` / `nameWithLanguage` values by
//! slicing with their inner lengths unchecked, so a value whose inner
//! lengths overrun it panics inside the parser. This guard walks the
//! tag-length-value framing (RFC 8010 section 3.1) and rejects such values
//! first; it decodes nothing else. It stops at `end-of-attributes-tag`:
//! the document that follows is never looked at.
//!
//! It also bounds the shape of the section. The crate copies a collection
//! into each enclosing one as it closes, so parsing costs the nesting depth
//! times the bytes: 4,000 levels in 64 KiB took most of a second. IPP needs
//! a few levels (`media-col` holds `media-size`; presets hold a `media-col`),
//! so deeper nesting is refused, as are more values than any request needs;
//! with both bounded, the cost of parsing a request is linear in its bytes.

/// Deepest collection nesting accepted (IPP's own attributes use three).
pub const MAX_COLLECTION_DEPTH: u32 = 8;
/// Most values in one attribute section.
pub const MAX_VALUES: u32 = 4096;

/// Walks the attribute section; see the module documentation.
#[derive(Debug)]
pub struct AttributeGuard {
    state: State,
    /// Bytes of the current length field.
    length: [u8; 2],
    /// The value being collected, for the two value tags that need checking.
    value: Vec<u8>,
    value_tag: u8,
    /// Collections open around the current value.
    depth: u32,
    /// Values seen so far.
    values: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header(usize),
    Tag,
    NameLength(usize),
    Name(usize),
    ValueLength(usize),
    Value(usize),
    Done,
}

const TEXT_WITH_LANGUAGE: u8 = 0x35;
const NAME_WITH_LANGUAGE: u8 = 0x36;
const END_OF_ATTRIBUTES: u8 = 0x03;
const BEGIN_COLLECTION: u8 = 0x34;
const END_COLLECTION: u8 = 0x37;

impl Default for AttributeGuard {
    fn default() -> Self {
        AttributeGuard {
            state: State::Header(8),
            length: [0; 2],
            value: Vec::new(),
            value_tag: 0,
            depth: 0,
            values: 0,
        }
    }
}

impl AttributeGuard {
    /// Whether the end of the attribute section has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Checks the next bytes of the message. Bytes after the end of the
    /// attribute section are ignored.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                State::Done => return Ok(()),
                State::Header(1) => State::Tag,
                State::Header(left) => State::Header(left - 1),
                State::Tag if b == END_OF_ATTRIBUTES && self.depth > 0 => {
                    return Err("a collection is not closed".into());
                }
                State::Tag if b == END_OF_ATTRIBUTES => State::Done,
                State::Tag if b < 0x10 => State::Tag,
                State::Tag => {
                    self.value_tag = b;
                    State::NameLength(0)
                }
                State::NameLength(0) => {
                    self.length[0] = b;
                    State::NameLength(1)
                }
                State::NameLength(_) => {
                    self.length[1] = b;
                    match u16::from_be_bytes(self.length) {
                        0 => State::ValueLength(0),
                        n => State::Name(usize::from(n)),
                    }
                }
                State::Name(1) => State::ValueLength(0),
                State::Name(left) => State::Name(left - 1),
                State::ValueLength(0) => {
                    self.length[0] = b;
                    State::ValueLength(1)
                }
                State::ValueLength(_) => {
                    self.length[1] = b;
                    self.value.clear();
                    match u16::from_be_bytes(self.length) {
                        0 => self.value_done()?,
                        n => State::Value(usize::from(n)),
                    }
                }
                State::Value(left) => {
                    if self.checks_value() {
                        self.value.push(b);
                    }
                    if left == 1 {
                        self.value_done()?
                    } else {
                        State::Value(left - 1)
                    }
                }
            };
            i += 1;
        }
        Ok(())
    }

    fn checks_value(&self) -> bool {
        matches!(self.value_tag, TEXT_WITH_LANGUAGE | NAME_WITH_LANGUAGE)
    }

    /// A value is complete: count it, follow collections, and check it if
    /// it carries inner lengths.
    fn value_done(&mut self) -> Result<State, String> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(format!(
                "more than {MAX_VALUES} attribute values in one request"
            ));
        }
        match self.value_tag {
            BEGIN_COLLECTION if self.depth >= MAX_COLLECTION_DEPTH => {
                return Err(format!(
                    "collections nested deeper than {MAX_COLLECTION_DEPTH} levels"
                ));
            }
            BEGIN_COLLECTION => self.depth += 1,
            END_COLLECTION if self.depth == 0 => {
                return Err("a collection ends that never began".into());
            }
            END_COLLECTION => self.depth -= 1,
            _ if self.checks_value() => check_with_language(&self.value)?,
            _ => {}
        }
        Ok(State::Tag)
    }
}

/// `language-length, language, text-length, text` must fill the value exactly.
fn check_with_language(value: &[u8]) -> Result<(), String> {
    let field = |at: usize| -> Option<usize> {
        value
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let bad = || Err("a text or name with language has inconsistent lengths".to_owned());
    let Some(language) = field(0) else {
        return bad();
    };
    let Some(text) = field(2 + language) else {
        return bad();
    };
    if 2 + language + 2 + text != value.len() {
        return bad();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attrs: &[(u8, &str, &[u8])], tail: &[u8]) -> Vec<u8> {
        let mut out = vec![1, 1, 0, 2, 0, 0, 0, 1, 0x01];
        for (tag, name, value) in attrs {
            out.push(*tag);
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.push(END_OF_ATTRIBUTES);
        out.extend_from_slice(tail);
        out
    }

    fn check_in_pieces(data: &[u8], piece: usize) -> Result<bool, String> {
        let mut guard = AttributeGuard::default();
        for chunk in data.chunks(piece) {
            guard.feed(chunk)?;
        }
        Ok(guard.is_done())
    }

    #[test]
    fn well_formed_messages_pass_in_any_chunking() {
        let good_text = [0, 2, b'e', b'n', 0, 3, b'a', b'b', b'c'];
        let data = message(
            &[
                (0x47, "attributes-charset", b"utf-8"),
                (0x35, "job-name", &good_text),
                (0x44, "", b"second-value"),
                (0x13, "empty", b""),
            ],
            b"%PDF-\x35\x00\xff document bytes are never checked",
        );
        for piece in [1, 2, 3, 7, 64, data.len()] {
            assert_eq!(check_in_pieces(&data, piece), Ok(true), "piece {piece}");
        }
    }

    #[test]
    fn overrunning_inner_lengths_are_refused() {
        for bad in [
            &[0, 2, b'e', b'n', 0x7f, 0xff, b'x'][..],
            &[0, 9, b'e', b'n'][..],
            &[0][..],
            &[0, 0, 0, 1][..],
            &[0, 0, 0, 0, b'x'][..],
        ] {
            let data = message(&[(0x36, "requesting-user-name", bad)], b"");
            assert!(check_in_pieces(&data, 3).is_err(), "{bad:?}");
        }
    }

    /// `name` = a collection nested `depth` deep.
    fn nested(name: &str, depth: usize) -> Vec<(u8, &str, &'static [u8])> {
        let mut attrs = vec![(BEGIN_COLLECTION, name, &b""[..])];
        for _ in 1..depth {
            attrs.push((0x4a, "", b"media-size"));
            attrs.push((BEGIN_COLLECTION, "", b""));
        }
        attrs.push((0x4a, "", b"x-dimension"));
        attrs.push((0x21, "", &[0, 0, 0x52, 0x08]));
        for _ in 0..depth {
            attrs.push((END_COLLECTION, "", b""));
        }
        attrs
    }

    #[test]
    fn collections_nest_only_as_deep_as_ipp_needs() {
        let ok = message(&nested("media-col", MAX_COLLECTION_DEPTH as usize), b"");
        assert_eq!(check_in_pieces(&ok, 5), Ok(true));
        let deep = message(&nested("media-col", MAX_COLLECTION_DEPTH as usize + 1), b"");
        let refused = check_in_pieces(&deep, 5).unwrap_err();
        assert!(refused.contains("nested deeper"), "{refused}");
        // Unbalanced either way.
        let mut open = nested("media-col", 2);
        open.pop();
        assert!(check_in_pieces(&message(&open, b""), 64).is_err());
        let mut closed_twice = nested("media-col", 2);
        closed_twice.push((END_COLLECTION, "", b""));
        assert!(check_in_pieces(&message(&closed_twice, b""), 64).is_err());
    }

    #[test]
    fn a_flood_of_values_is_refused() {
        let many: Vec<_> = (0..=MAX_VALUES)
            .map(|_| (0x44, "", &b"k"[..]))
            .chain(std::iter::once((0x44, "requested-attributes", &b"all"[..])))
            .rev()
            .collect();
        let refused = check_in_pieces(&message(&many, b""), 4096).unwrap_err();
        assert!(refused.contains("values"), "{refused}");
    }

    #[test]
    fn incomplete_messages_are_not_done() {
        let data = message(&[(0x44, "a", b"b")], b"");
        assert_eq!(check_in_pieces(&data[..data.len() - 1], 4), Ok(false));
    }
}
