//! PDF (and PCLm, a PDF subset) page count from the page tree, in one pass.
//!
//! A PDF's page count is the `/Count` of the root `/Pages` node the catalog
//! points at. Reading it properly would mean seeking to the cross-reference
//! table; the spool is a compressed stream, so instead this lexes the file
//! front to back, skips stream contents, inflates object streams (where
//! PDF 1.5+ writers put the catalog and page tree) and notes the few
//! dictionaries that matter. Later definitions of an object replace earlier
//! ones, as incremental updates require. Memory is bounded by the object
//! stream cap and the set of page objects, never by the document.

use std::collections::{HashMap, HashSet};

use memchr::{memchr, memchr2, memchr3, memmem};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

use super::{Analysis, DocumentColor};

/// Largest decompressed object stream read; bigger ones are skipped.
const MAX_OBJECT_STREAM: usize = 4 << 20;
/// Page objects remembered for the fallback count.
const MAX_LEAF_PAGES: usize = 100_000;
/// Longest name, number or keyword kept; longer ones are not interesting.
const MAX_TOKEN: usize = 64;
const END_STREAM: &[u8] = b"endstream";

/// The PDF names and keywords this scanner acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Type,
    Count,
    Parent,
    Pages,
    Page,
    Catalog,
    Filter,
    FlateDecode,
    ObjStm,
    First,
    Obj,
    EndObj,
    Stream,
    Other,
}

fn word(bytes: &[u8]) -> Word {
    match bytes {
        b"Type" => Word::Type,
        b"Count" => Word::Count,
        b"Parent" => Word::Parent,
        b"Pages" => Word::Pages,
        b"Page" => Word::Page,
        b"Catalog" => Word::Catalog,
        b"Filter" => Word::Filter,
        b"FlateDecode" => Word::FlateDecode,
        b"ObjStm" => Word::ObjStm,
        b"First" => Word::First,
        b"obj" => Word::Obj,
        b"endobj" => Word::EndObj,
        b"stream" => Word::Stream,
        _ => Word::Other,
    }
}

/// A lexical token outside stream data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Int(i64),
    Name(Word),
    Keyword(Word),
    DictOpen,
    DictClose,
    ArrayOpen,
    ArrayClose,
    /// Strings, reals, procedures: values nobody here needs.
    Other,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LexState {
    #[default]
    Space,
    Comment,
    Regular,
    Name,
    LiteralString,
    HexString,
    AngleOpen,
    AngleClose,
}

/// PDF lexer (ISO 32000-1 section 7.2) that survives chunk boundaries.
#[derive(Debug, Default)]
struct Lexer {
    state: LexState,
    buf: Vec<u8>,
    /// Too long to be interesting: ends as [`Word::Other`].
    overlong: bool,
    string_depth: u32,
    escaped: bool,
}

/// Bytes that end a name, number or keyword: white space and delimiters.
static ENDS_TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_whitespace(b as u8) || is_delimiter(b as u8);
        b += 1;
    }
    table
};

const fn is_whitespace(b: u8) -> bool {
    matches!(b, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

const fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

impl Lexer {
    /// The next token from `data[*pos..]`, advancing `pos`; `None` when the
    /// data ran out mid-token or between tokens (the state carries over).
    fn next(&mut self, data: &[u8], pos: &mut usize) -> Option<Token> {
        while let Some(&b) = data.get(*pos) {
            match self.state {
                LexState::Space => {
                    *pos += 1;
                    match b {
                        b'%' => self.state = LexState::Comment,
                        b'/' => self.start(LexState::Name),
                        b'(' => {
                            self.state = LexState::LiteralString;
                            self.string_depth = 1;
                            self.escaped = false;
                        }
                        b'<' => self.state = LexState::AngleOpen,
                        b'>' => self.state = LexState::AngleClose,
                        b'[' => return Some(Token::ArrayOpen),
                        b']' => return Some(Token::ArrayClose),
                        b'{' | b'}' | b')' => return Some(Token::Other),
                        _ if is_whitespace(b) => {}
                        _ => {
                            self.start(LexState::Regular);
                            self.buf.push(b);
                        }
                    }
                }
                LexState::Comment => match memchr2(b'\r', b'\n', &data[*pos..]) {
                    Some(i) => {
                        *pos += i + 1;
                        self.state = LexState::Space;
                    }
                    None => *pos = data.len(),
                },
                LexState::Regular | LexState::Name => {
                    let rest = &data[*pos..];
                    let end = rest
                        .iter()
                        .position(|&b| ENDS_TOKEN[usize::from(b)])
                        .unwrap_or(rest.len());
                    let room = MAX_TOKEN - self.buf.len();
                    self.buf.extend_from_slice(&rest[..end.min(room)]);
                    self.overlong |= end > room;
                    *pos += end;
                    if end < rest.len() {
                        // The delimiter is left for the next token.
                        return Some(self.end_word());
                    }
                }
                LexState::LiteralString => {
                    if self.escaped {
                        // The byte after a backslash is literal.
                        self.escaped = false;
                        *pos += 1;
                        continue;
                    }
                    let rest = &data[*pos..];
                    let Some(i) = memchr3(b'(', b')', b'\\', rest) else {
                        *pos = data.len();
                        continue;
                    };
                    *pos += i + 1;
                    match rest[i] {
                        b'\\' => self.escaped = true,
                        b'(' => self.string_depth += 1,
                        _ => {
                            self.string_depth -= 1;
                            if self.string_depth == 0 {
                                self.state = LexState::Space;
                                return Some(Token::Other);
                            }
                        }
                    }
                }
                LexState::AngleOpen => {
                    if b == b'<' {
                        *pos += 1;
                        self.state = LexState::Space;
                        return Some(Token::DictOpen);
                    }
                    self.state = LexState::HexString;
                }
                LexState::HexString => match memchr(b'>', &data[*pos..]) {
                    Some(i) => {
                        *pos += i + 1;
                        self.state = LexState::Space;
                        return Some(Token::Other);
                    }
                    None => *pos = data.len(),
                },
                LexState::AngleClose => {
                    self.state = LexState::Space;
                    if b == b'>' {
                        *pos += 1;
                        return Some(Token::DictClose);
                    }
                    return Some(Token::Other);
                }
            }
        }
        None
    }

    /// Ends a token that runs to the end of the input.
    fn flush(&mut self) -> Option<Token> {
        match self.state {
            LexState::Regular | LexState::Name => Some(self.end_word()),
            _ => None,
        }
    }

    fn start(&mut self, state: LexState) {
        self.state = state;
        self.buf.clear();
        self.overlong = false;
    }

    fn end_word(&mut self) -> Token {
        let name = self.state == LexState::Name;
        self.state = LexState::Space;
        let w = if self.overlong {
            Word::Other
        } else {
            word(&self.buf)
        };
        if name {
            return Token::Name(w);
        }
        if let Some(n) = std::str::from_utf8(&self.buf)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            return Token::Int(n);
        }
        let first = self.buf.first().copied().unwrap_or(b'0');
        if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.') {
            Token::Other
        } else {
            Token::Keyword(w)
        }
    }
}

/// The top-level entries of one object's dictionary that matter here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Dict {
    kind: Option<Word>,
    count: Option<i64>,
    has_parent: bool,
    pages: Option<i64>,
    filters: Vec<Word>,
    first: Option<i64>,
}

/// Collects [`Dict`] from an object's tokens.
#[derive(Debug, Default)]
struct ObjectParser {
    depth: u32,
    key: Option<Word>,
    in_filter_array: bool,
    dict: Dict,
}

impl ObjectParser {
    fn token(&mut self, token: Token) {
        let top = self.depth == 1;
        match token {
            Token::DictOpen | Token::ArrayOpen => {
                if top && let Some(key) = self.key.take() {
                    self.dict.has_parent |= key == Word::Parent;
                    self.in_filter_array = key == Word::Filter && token == Token::ArrayOpen;
                }
                self.depth += 1;
            }
            Token::DictClose | Token::ArrayClose => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth <= 1 {
                    self.in_filter_array = false;
                }
            }
            Token::Name(name) if top => match self.key.take() {
                None => self.key = Some(name),
                Some(Word::Type) => self.dict.kind = Some(name),
                Some(Word::Filter) => self.dict.filters = vec![name],
                Some(Word::Parent) => self.dict.has_parent = true,
                Some(_) => {}
            },
            Token::Name(name) if self.depth == 2 && self.in_filter_array => {
                self.dict.filters.push(name);
            }
            Token::Int(n) if top => match self.key.take() {
                Some(Word::Count) => self.dict.count = Some(n),
                Some(Word::Pages) => self.dict.pages = Some(n),
                Some(Word::First) => self.dict.first = Some(n),
                Some(Word::Parent) => self.dict.has_parent = true,
                _ => {}
            },
            // `null`, `true`, a string: a value nobody here needs.
            Token::Keyword(_) | Token::Other if top => self.key = None,
            _ => {}
        }
    }
}

/// What the page-tree nodes seen so far say.
#[derive(Debug, Default)]
struct PageTree {
    /// Object number of the root `/Pages` node, from the latest catalog.
    root: Option<u32>,
    /// `/Count` of every `/Pages` node without a parent, by object number.
    roots: HashMap<u32, u32>,
    /// Object numbers of `/Type /Page` leaves.
    leaves: HashSet<u32>,
}

impl PageTree {
    fn record(&mut self, number: u32, dict: &Dict) {
        match dict.kind {
            Some(Word::Catalog) => self.root = dict.pages.and_then(|n| u32::try_from(n).ok()),
            Some(Word::Pages) if !dict.has_parent => {
                if let Some(count) = dict.count.and_then(|n| u32::try_from(n).ok()) {
                    self.roots.insert(number, count);
                }
            }
            Some(Word::Page) if self.leaves.len() < MAX_LEAF_PAGES => {
                self.leaves.insert(number);
            }
            _ => {}
        }
    }

    fn result(&self) -> Analysis {
        let from_root = self.root.and_then(|root| self.roots.get(&root));
        let only_root = (self.roots.len() == 1)
            .then(|| self.roots.values().next())
            .flatten();
        match from_root.or(only_root) {
            Some(&pages) => Analysis::exact(pages, DocumentColor::Unknown),
            None if !self.leaves.is_empty() => Analysis {
                pages: u32::try_from(self.leaves.len()).ok(),
                pages_exact: false,
                color: DocumentColor::Unknown,
            },
            None => Analysis::UNKNOWN,
        }
    }
}

/// An object stream being inflated.
struct ObjectStream {
    inflater: Box<InflateState>,
    out: Vec<u8>,
    first: usize,
}

enum Mode {
    Tokens,
    /// Just after the `stream` keyword: skipping its end-of-line.
    StreamStart {
        seen_cr: bool,
        then: Box<Mode>,
    },
    /// In stream data, looking for `endstream`; keeps the last bytes of
    /// the previous chunk in case the keyword straddles two.
    SkipStream {
        tail: Vec<u8>,
    },
    Inflate(Box<ObjectStream>),
}

/// One-pass PDF page counter.
pub(super) struct PdfScanner {
    mode: Mode,
    lexer: Lexer,
    /// The last two integers between objects, for `N G obj`.
    ints: [Option<i64>; 2],
    object: Option<(u32, ObjectParser)>,
    tree: PageTree,
}

impl Default for PdfScanner {
    fn default() -> Self {
        PdfScanner {
            mode: Mode::Tokens,
            lexer: Lexer::default(),
            ints: [None, None],
            object: None,
            tree: PageTree::default(),
        }
    }
}

impl PdfScanner {
    /// Takes the next bytes of the document.
    pub(super) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let mode = std::mem::replace(&mut self.mode, Mode::Tokens);
            let (mode, rest) = self.step(mode, data);
            self.mode = mode;
            data = rest;
        }
    }

    /// Processes some of `data` in `mode`; returns the next mode and what
    /// is left.
    fn step<'d>(&mut self, mode: Mode, data: &'d [u8]) -> (Mode, &'d [u8]) {
        match mode {
            Mode::Tokens => {
                let mut pos = 0;
                while let Some(token) = self.lexer.next(data, &mut pos) {
                    if let Some(stream) = self.token(token) {
                        let start = Mode::StreamStart {
                            seen_cr: false,
                            then: Box::new(stream),
                        };
                        return (start, &data[pos..]);
                    }
                }
                (Mode::Tokens, &[])
            }
            Mode::StreamStart { seen_cr, then } => match data[0] {
                b'\r' if !seen_cr => (
                    Mode::StreamStart {
                        seen_cr: true,
                        then,
                    },
                    &data[1..],
                ),
                b'\n' => (*then, &data[1..]),
                _ => (*then, data),
            },
            Mode::SkipStream { mut tail } => {
                const KEEP: usize = END_STREAM.len() - 1;
                // First a keyword straddling the previous chunk and this one.
                let before = tail.len();
                tail.extend_from_slice(&data[..data.len().min(KEEP)]);
                if let Some(i) = memmem::find(&tail, END_STREAM) {
                    return (Mode::Tokens, &data[i + END_STREAM.len() - before..]);
                }
                if let Some(i) = memmem::find(data, END_STREAM) {
                    return (Mode::Tokens, &data[i + END_STREAM.len()..]);
                }
                let tail = if data.len() >= KEEP {
                    data[data.len() - KEEP..].to_vec()
                } else {
                    tail[tail.len().saturating_sub(KEEP)..].to_vec()
                };
                (Mode::SkipStream { tail }, &[])
            }
            Mode::Inflate(mut stream) => {
                let mut buf = [0u8; 16 * 1024];
                let mut input = data;
                loop {
                    let result = inflate(&mut stream.inflater, input, &mut buf, MZFlush::None);
                    input = &input[result.bytes_consumed..];
                    stream.out.extend_from_slice(&buf[..result.bytes_written]);
                    let skip = Mode::SkipStream { tail: Vec::new() };
                    if stream.out.len() > MAX_OBJECT_STREAM {
                        return (skip, input);
                    }
                    match result.status {
                        Ok(MZStatus::StreamEnd) => {
                            self.read_object_stream(&stream);
                            return (skip, input);
                        }
                        Ok(_) if input.is_empty() && result.bytes_written < buf.len() => {
                            return (Mode::Inflate(stream), input);
                        }
                        Ok(_) => {}
                        // Corrupt or encrypted: its objects stay unknown.
                        Err(_) => return (skip, input),
                    }
                }
            }
        }
    }

    /// Acts on one token; returns how to read a stream that starts here.
    fn token(&mut self, token: Token) -> Option<Mode> {
        match token {
            Token::Keyword(Word::Obj) => {
                self.end_object();
                if let [Some(number), Some(_)] = self.ints
                    && let Ok(number) = u32::try_from(number)
                {
                    self.object = Some((number, ObjectParser::default()));
                }
                self.ints = [None, None];
            }
            Token::Keyword(Word::EndObj) => {
                self.end_object();
            }
            Token::Keyword(Word::Stream) => {
                let dict = self.end_object();
                return Some(match dict {
                    Some(d) if d.kind == Some(Word::ObjStm) && d.filters == [Word::FlateDecode] => {
                        match d.first.and_then(|f| usize::try_from(f).ok()) {
                            Some(first) => Mode::Inflate(Box::new(ObjectStream {
                                inflater: InflateState::new_boxed(DataFormat::Zlib),
                                out: Vec::new(),
                                first,
                            })),
                            None => Mode::SkipStream { tail: Vec::new() },
                        }
                    }
                    _ => Mode::SkipStream { tail: Vec::new() },
                });
            }
            Token::Int(n) => {
                self.ints = [self.ints[1], Some(n)];
                if let Some((_, parser)) = &mut self.object {
                    parser.token(token);
                }
            }
            other => {
                self.ints = [None, None];
                if let Some((_, parser)) = &mut self.object {
                    parser.token(other);
                }
            }
        }
        None
    }

    fn end_object(&mut self) -> Option<Dict> {
        let (number, parser) = self.object.take()?;
        self.tree.record(number, &parser.dict);
        Some(parser.dict)
    }

    /// Reads the objects of an inflated object stream (ISO 32000-1 7.5.7):
    /// pairs of object number and offset, then the objects from `/First`.
    fn read_object_stream(&mut self, stream: &ObjectStream) {
        let Some(header) = stream.out.get(..stream.first) else {
            return;
        };
        let numbers: Vec<u64> = header
            .split(|b| is_whitespace(*b))
            .filter(|s| !s.is_empty())
            .map_while(|s| std::str::from_utf8(s).ok()?.parse().ok())
            .collect();
        let entries: Vec<(u64, u64)> = numbers.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        for (i, &(number, offset)) in entries.iter().enumerate() {
            let start = stream.first.saturating_add(offset as usize);
            let end = entries.get(i + 1).map_or(stream.out.len(), |next| {
                stream.first.saturating_add(next.1 as usize)
            });
            let (Some(body), Ok(number)) = (stream.out.get(start..end), u32::try_from(number))
            else {
                continue;
            };
            let mut lexer = Lexer::default();
            let mut parser = ObjectParser::default();
            let mut pos = 0;
            while let Some(token) = lexer.next(body, &mut pos) {
                parser.token(token);
            }
            if let Some(token) = lexer.flush() {
                parser.token(token);
            }
            self.tree.record(number, &parser.dict);
        }
    }

    /// The page count, once the whole document was fed.
    pub(super) fn finish(mut self) -> Analysis {
        if let Some(token) = self.lexer.flush() {
            self.token(token);
        }
        self.end_object();
        self.tree.result()
    }
}

#[cfg(test)]
mod tests {
    use super::super::analyse_in_chunks;
    use super::*;

    fn pages(data: &[u8]) -> Analysis {
        let whole = analyse_in_chunks("application/pdf", data, usize::MAX);
        for chunk in [1, 2, 3, 5, 8, 9, 10, 64] {
            assert_eq!(
                analyse_in_chunks("application/pdf", data, chunk),
                whole,
                "chunks of {chunk}"
            );
        }
        whole
    }

    /// A PDF whose catalog and page tree live in a compressed object stream.
    fn with_object_stream(page_count: usize, extra_stream_noise: &[u8]) -> Vec<u8> {
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            format!(
                "<< /Type /Pages /Kids [{}] /Count {page_count} >>",
                (0..page_count)
                    .map(|i| format!("{} 0 R", 10 + i))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ];
        for _ in 0..page_count {
            objects.push("<< /Type /Page /Parent 2 0 R /Contents 5 0 R >>".into());
        }
        let numbers: Vec<usize> = [1, 2].into_iter().chain(10..10 + page_count).collect();
        let mut header = String::new();
        let mut body = String::new();
        for (n, o) in numbers.iter().zip(&objects) {
            header += &format!("{n} {} ", body.len());
            body += o;
            body += "\n";
        }
        let plain = format!("{header}{body}");
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(plain.as_bytes(), 6);
        let mut pdf = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n".to_vec();
        pdf.extend_from_slice(b"5 0 obj\n<< /Length 7 0 R >>\nstream\r\n");
        pdf.extend_from_slice(extra_stream_noise);
        pdf.extend_from_slice(b"\nendstream\nendobj\n");
        pdf.extend_from_slice(
            format!(
                "3 0 obj\n<< /Type /ObjStm /N {} /First {} /Filter /FlateDecode /Length {} >>\nstream\n",
                objects.len(),
                header.len(),
                packed.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&packed);
        pdf.extend_from_slice(b"\nendstream\nendobj\nstartxref\n0\n%%EOF\n");
        pdf
    }

    #[test]
    fn counts_from_the_root_in_an_object_stream() {
        let got = pages(&with_object_stream(5, b"(no endstream here) obj 1 0 obj"));
        assert_eq!((got.pages, got.pages_exact), (Some(5), true));
    }

    #[test]
    fn an_incremental_update_replaces_the_page_tree() {
        let mut pdf = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/three-pages.pdf"),
        )
        .unwrap();
        pdf.extend_from_slice(
            b"2 0 obj\n<< /Type /Pages /Kids [4 0 R 6 0 R] /Count 2 >>\nendobj\n\
              xref\n0 1\ntrailer\n<< /Root 1 0 R /Prev 850 >>\n%%EOF\n",
        );
        assert_eq!(pages(&pdf).pages, Some(2));
    }

    #[test]
    fn the_catalog_chooses_between_page_trees() {
        let pdf = b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 9 0 R>> endobj\n\
            2 0 obj <</Type/Pages/Count 7/Kids[]>> endobj\n\
            9 0 obj <</Type /Pages /Count 4 /Kids [] /Resources <</Font <</Type /Pages /Count 1>>>> >> endobj\n";
        let got = pages(pdf);
        assert_eq!((got.pages, got.pages_exact), (Some(4), true));
    }

    #[test]
    fn without_a_tree_leaves_are_counted_as_an_estimate() {
        let pdf = b"%PDF-1.4\n4 0 obj << /Type /Page /Parent 2 0 R >> endobj\n\
            5 0 obj << /Type /Page /Parent 2 0 R /Annots [(a string with /Type /Page)] >> endobj\n\
            5 0 obj << /Type /Page /Parent 2 0 R >> endobj\n";
        let got = pages(pdf);
        assert_eq!((got.pages, got.pages_exact), (Some(2), false));
    }

    #[test]
    fn nested_dictionaries_and_strings_do_not_confuse_the_top_level() {
        let pdf = b"1 0 obj << /Info (unbalanced \\) paren /Type /Pages) /Count 2 \
            /Sub << /Count 9 /Parent 3 0 R >> /Type /Pages >> endobj";
        let got = pages(pdf);
        assert_eq!(got.pages, Some(2));
    }

    #[test]
    fn garbage_and_corrupt_object_streams_give_unknown() {
        assert_eq!(pages(b"%PDF-1.7\n\x00\xff garbage << >> ]] )").pages, None);
        let mut pdf = with_object_stream(3, b"");
        let at = memmem::find(&pdf, b"/ObjStm").unwrap();
        // Corrupt the zlib header of the object stream.
        let data_at = memmem::find(&pdf[at..], b">>\nstream\n").unwrap() + at + 10;
        pdf[data_at] ^= 0xff;
        assert_eq!(pages(&pdf), Analysis::UNKNOWN);
    }
}
