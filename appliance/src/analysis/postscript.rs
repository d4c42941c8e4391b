//! PostScript page count from Document Structuring Conventions comments
//! (Adobe DSC 3.0): `%%Pages: N` in the header or, with `(atend)`, the
//! trailer; failing that, the `%%Page:` comments are counted as an estimate.
//! Documents embedded between `%%BeginDocument` and `%%EndDocument` carry
//! their own comments, which are not this document's pages.

use memchr::memchr2;

use super::{Analysis, DocumentColor};

/// Longest line prefix kept: enough for every comment read here.
const LINE_PREFIX: usize = 40;

/// One-pass DSC reader.
#[derive(Debug, Default)]
pub(super) struct DscScanner {
    line: Vec<u8>,
    declared: Option<u32>,
    page_comments: u32,
    embedded_depth: u32,
}

impl DscScanner {
    /// Takes the next bytes of the document.
    pub(super) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let end = memchr2(b'\n', b'\r', data);
            let part = &data[..end.unwrap_or(data.len())];
            let room = LINE_PREFIX.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            match end {
                Some(i) => {
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => break,
            }
        }
    }

    fn end_line(&mut self) {
        let line = self.line.as_slice();
        if line.starts_with(b"%%BeginDocument") {
            self.embedded_depth += 1;
        } else if line.starts_with(b"%%EndDocument") {
            self.embedded_depth = self.embedded_depth.saturating_sub(1);
        } else if self.embedded_depth == 0 {
            if let Some(value) = line.strip_prefix(b"%%Pages:") {
                // "(atend)" defers the value to the trailer, which comes later.
                if let Some(n) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                {
                    self.declared = Some(n);
                }
            } else if line.starts_with(b"%%Page:") {
                self.page_comments = self.page_comments.saturating_add(1);
            }
        }
        self.line.clear();
    }

    /// The page count, once the whole document was fed.
    pub(super) fn finish(mut self) -> Analysis {
        if !self.line.is_empty() {
            self.end_line();
        }
        match (self.declared, self.page_comments) {
            (Some(pages), _) => Analysis::exact(pages, DocumentColor::Unknown),
            (None, 0) => Analysis::UNKNOWN,
            (None, counted) => Analysis {
                pages: Some(counted),
                pages_exact: false,
                color: DocumentColor::Unknown,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::analyse_in_chunks;

    fn pages(doc: &str) -> (Option<u32>, bool) {
        let whole = analyse_in_chunks("application/postscript", doc.as_bytes(), usize::MAX);
        for chunk in [1, 3, 9] {
            let got = analyse_in_chunks("application/postscript", doc.as_bytes(), chunk);
            assert_eq!(got, whole, "chunks of {chunk}");
        }
        (whole.pages, whole.pages_exact)
    }

    #[test]
    fn atend_takes_the_trailer_value() {
        let doc = "%!PS-Adobe-3.0\r\n%%Pages: (atend)\r\n%%Page: 1 1\r\nshowpage\r\n\
                   %%Page: 2 2\r\nshowpage\r\n%%Trailer\r\n%%Pages: 2\r\n%%EOF\r\n";
        assert_eq!(pages(doc), (Some(2), true));
    }

    #[test]
    fn embedded_documents_do_not_count() {
        let doc = "%!PS-Adobe-3.0\n%%Pages: 1\n%%Page: 1 1\n%%BeginDocument: fig.eps\n\
                   %!PS-Adobe-3.0 EPSF-3.0\n%%Pages: 7\n%%EndDocument\nshowpage\n%%EOF";
        assert_eq!(pages(doc), (Some(1), true));
    }

    #[test]
    fn page_comments_are_an_estimate_and_no_comments_unknown() {
        let doc = "%!PS\n%%Page: a 1\nshowpage\n%%Page: b 2\nshowpage\n%%Page: c 3";
        assert_eq!(pages(doc), (Some(3), false));
        assert_eq!(
            pages("%!PS\n/Helvetica findfont\nshowpage\n"),
            (None, false)
        );
    }
}
