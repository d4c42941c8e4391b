//! PCL 5: an estimated page count from form feeds.
//!
//! PCL has no page table; drivers end each page with a form feed. Escape
//! sequences that carry binary data (raster rows, fonts, macros) are
//! skipped by their declared length so their bytes are not mistaken for
//! form feeds. PCL XL (PCL 6) is a binary protocol this does not read: its
//! pages stay unknown.

use memchr::{memchr2, memmem};

use super::{Analysis, DocumentColor};

const ESC: u8 = 0x1b;
const FORM_FEED: u8 = 0x0c;
/// Bytes searched for the PJL switch to PCL XL.
const PJL_WINDOW: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Text,
    Escape,
    /// After a parameterised character: expecting the group character.
    Group(u8),
    /// Reading a value field: its integer part so far.
    Value {
        group: (u8, u8),
        value: u64,
        integer: bool,
    },
    /// Binary data that follows a command.
    Skip(u64),
}

/// Counts form feeds outside binary data.
#[derive(Debug, Default)]
pub(super) struct PclScanner {
    state: State,
    form_feeds: u32,
    printable: bool,
    head: Vec<u8>,
}

impl PclScanner {
    /// Takes the next bytes of the document.
    pub(super) fn feed(&mut self, mut data: &[u8]) {
        if self.head.len() < PJL_WINDOW {
            let room = PJL_WINDOW - self.head.len();
            self.head.extend_from_slice(&data[..data.len().min(room)]);
        }
        while !data.is_empty() {
            match self.state {
                State::Text => match memchr2(ESC, FORM_FEED, data) {
                    Some(i) => {
                        self.printable |= data[..i].iter().any(|b| b.is_ascii_graphic());
                        if data[i] == FORM_FEED {
                            self.form_feeds = self.form_feeds.saturating_add(1);
                        } else {
                            self.state = State::Escape;
                        }
                        data = &data[i + 1..];
                    }
                    None => {
                        self.printable |= data.iter().any(|b| b.is_ascii_graphic());
                        return;
                    }
                },
                State::Skip(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if take < n {
                        State::Skip(n - take)
                    } else {
                        State::Text
                    };
                }
                _ => {
                    self.state = self.step(data[0]);
                    data = &data[1..];
                }
            }
        }
    }

    /// One byte of an escape sequence (PCL 5 Technical Reference, chapter 2).
    fn step(&mut self, b: u8) -> State {
        match self.state {
            // `ESC %` (language switches) has no group character.
            State::Escape if b == b'%' => State::Value {
                group: (b, 0),
                value: 0,
                integer: true,
            },
            State::Escape if (0x21..=0x2f).contains(&b) => State::Group(b),
            // Two-character sequences such as `ESC E` (reset) print nothing.
            State::Escape => State::Text,
            State::Group(parameterised) => State::Value {
                group: (parameterised, b),
                value: 0,
                integer: true,
            },
            State::Value {
                group,
                value,
                integer,
            } => match b {
                b'0'..=b'9' if integer => State::Value {
                    group,
                    value: value.saturating_mul(10).saturating_add(u64::from(b - b'0')),
                    integer,
                },
                b'0'..=b'9' | b'+' | b'-' => State::Value {
                    group,
                    value,
                    integer,
                },
                b'.' => State::Value {
                    group,
                    value,
                    integer: false,
                },
                // Lower case: another parameter of the same group follows.
                b'a'..=b'z' | b'`' => match data_follows(group, b.to_ascii_uppercase()) {
                    true if value > 0 => State::Skip(value),
                    _ => State::Value {
                        group,
                        value: 0,
                        integer: true,
                    },
                },
                b'@'..=b'^' => match data_follows(group, b) {
                    true if value > 0 => State::Skip(value),
                    _ => State::Text,
                },
                _ => State::Text,
            },
            other => other,
        }
    }

    /// The estimate, once the whole document was fed.
    pub(super) fn finish(self) -> Analysis {
        let pcl_xl = memmem::find(&self.head, b"LANGUAGE=PCLXL").is_some()
            || memmem::find(&self.head, b") HP-PCL XL").is_some();
        if pcl_xl {
            return Analysis::UNKNOWN;
        }
        // A last page without its form feed still prints.
        let pages = self.form_feeds + u32::from(self.form_feeds == 0 && self.printable);
        if pages == 0 {
            return Analysis::UNKNOWN;
        }
        Analysis {
            pages: Some(pages),
            pages_exact: false,
            color: DocumentColor::Unknown,
        }
    }
}

/// Whether a command is followed by `value` bytes of data: `...W` commands
/// (raster rows, font and character data, palettes) and transparent print
/// data `ESC &p#X`.
fn data_follows(group: (u8, u8), terminator: u8) -> bool {
    terminator == b'W' || (group == (b'&', b'p') && terminator == b'X')
}

#[cfg(test)]
mod tests {
    use super::super::analyse_in_chunks;

    fn pages(doc: &[u8]) -> Option<u32> {
        let whole = analyse_in_chunks("application/vnd.hp-pcl", doc, usize::MAX);
        for chunk in [1, 2, 5] {
            assert_eq!(
                analyse_in_chunks("application/vnd.hp-pcl", doc, chunk),
                whole
            );
        }
        assert!(!whole.pages_exact);
        whole.pages
    }

    #[test]
    fn form_feeds_inside_raster_data_are_not_pages() {
        let mut doc = b"\x1b%-12345X@PJL ENTER LANGUAGE=PCL\r\n\x1bE".to_vec();
        for _ in 0..3 {
            doc.extend_from_slice(
                b"\x1b*r1A\x1b*b4W\x0c\x0c\x0c\x0c\x1b*b2m3W\x0c\x0c\x0chello\x0c",
            );
        }
        doc.extend_from_slice(b"\x1bE\x1b%-12345X");
        assert_eq!(pages(&doc), Some(3));
    }

    #[test]
    fn text_without_form_feed_is_one_page_and_pcl_xl_unknown() {
        assert_eq!(pages(b"\x1bEHello, world"), Some(1));
        assert_eq!(pages(b"\x1bE"), None);
        assert_eq!(
            pages(b"\x1b%-12345X@PJL ENTER LANGUAGE=PCLXL\r\n) HP-PCL XL;2;0\r\n\x0c\x0c"),
            None
        );
    }
}
