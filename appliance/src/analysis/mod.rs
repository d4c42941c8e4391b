//! Document analysis at intake: page count and colour, read from the bytes
//! as they stream into the spool.
//!
//! Each analyser is a state machine fed the document chunk by chunk, with
//! memory bounded by its own state (never by the document), so it runs in
//! the intake's writing thread at no extra I/O. What a format cannot tell
//! cheaply stays unknown rather than guessed; estimates say they are.
//! Accounting and rules use the result; the user sees it in job lists.

mod jpeg;
mod pcl;
mod pdf;
mod postscript;
mod raster;

/// What a document says about its own colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentColor {
    /// Only grey levels (a grey raster, a one-component JPEG).
    Monochrome,
    /// Colour content, or colour capable (an RGB raster).
    Color,
    /// Not cheap to tell (PDF, PostScript, PCL).
    Unknown,
}

impl DocumentColor {
    /// The keyword stored and shown.
    pub fn keyword(self) -> &'static str {
        match self {
            DocumentColor::Monochrome => "monochrome",
            DocumentColor::Color => "color",
            DocumentColor::Unknown => "unknown",
        }
    }

    /// The value for a stored keyword (unknown for anything else).
    pub fn from_keyword(keyword: &str) -> DocumentColor {
        match keyword {
            "monochrome" => DocumentColor::Monochrome,
            "color" => DocumentColor::Color,
            _ => DocumentColor::Unknown,
        }
    }
}

/// The result of analysing one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Analysis {
    /// Pages (impressions for one copy, one side each), when known.
    pub pages: Option<u32>,
    /// Whether `pages` was read from the document's own structure (PDF page
    /// tree, raster page headers, DSC `%%Pages:`) rather than estimated.
    pub pages_exact: bool,
    /// Colour as the document tells it.
    pub color: DocumentColor,
}

impl Analysis {
    /// Nothing known.
    pub const UNKNOWN: Analysis = Analysis {
        pages: None,
        pages_exact: false,
        color: DocumentColor::Unknown,
    };

    /// Pages for people: `3`, `~3` for an estimate, `?` when unknown.
    pub fn pages_label(&self) -> String {
        match (self.pages, self.pages_exact) {
            (Some(n), true) => n.to_string(),
            (Some(n), false) => format!("~{n}"),
            (None, _) => "?".to_owned(),
        }
    }

    fn exact(pages: u32, color: DocumentColor) -> Analysis {
        Analysis {
            pages: Some(pages),
            pages_exact: true,
            color,
        }
    }
}

/// Analyses one document of a known format, fed in order.
pub struct Analyzer {
    kind: Kind,
}

enum Kind {
    Pdf(Box<pdf::PdfScanner>),
    PostScript(postscript::DscScanner),
    PwgRaster(raster::PwgScanner),
    Urf(raster::UrfScanner),
    Jpeg(jpeg::JpegScanner),
    Pcl(pcl::PclScanner),
    Opaque,
}

impl Analyzer {
    /// An analyser for documents stored as `format` (a MIME type).
    pub fn new(format: &str) -> Analyzer {
        let kind = match format.to_ascii_lowercase().as_str() {
            "application/pdf" | "application/pclm" => Kind::Pdf(Box::default()),
            "application/postscript" => Kind::PostScript(Default::default()),
            "image/pwg-raster" => Kind::PwgRaster(Default::default()),
            "image/urf" => Kind::Urf(Default::default()),
            "image/jpeg" => Kind::Jpeg(Default::default()),
            "application/vnd.hp-pcl" => Kind::Pcl(Default::default()),
            _ => Kind::Opaque,
        };
        Analyzer { kind }
    }

    /// Takes the next bytes of the document.
    pub fn feed(&mut self, data: &[u8]) {
        match &mut self.kind {
            Kind::Pdf(s) => s.feed(data),
            Kind::PostScript(s) => s.feed(data),
            Kind::PwgRaster(s) => s.feed(data),
            Kind::Urf(s) => s.feed(data),
            Kind::Jpeg(s) => s.feed(data),
            Kind::Pcl(s) => s.feed(data),
            Kind::Opaque => {}
        }
    }

    /// The result, once the whole document was fed.
    pub fn finish(self) -> Analysis {
        match self.kind {
            Kind::Pdf(s) => s.finish(),
            Kind::PostScript(s) => s.finish(),
            Kind::PwgRaster(s) => s.finish(),
            Kind::Urf(s) => s.finish(),
            Kind::Jpeg(s) => s.finish(),
            Kind::Pcl(s) => s.finish(),
            Kind::Opaque => Analysis::UNKNOWN,
        }
    }
}

/// Analyses a whole document given in memory, in chunks of `chunk` bytes
/// (tests use small chunks to cross every boundary).
#[cfg(test)]
pub(crate) fn analyse_in_chunks(format: &str, data: &[u8], chunk: usize) -> Analysis {
    let mut analyzer = Analyzer::new(format);
    for piece in data.chunks(chunk.max(1)) {
        analyzer.feed(piece);
    }
    analyzer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_fixtures_are_analysed() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let cases = [
            (
                "three-pages.pdf",
                "application/pdf",
                Some(3),
                DocumentColor::Unknown,
            ),
            (
                "document-a4.pdf",
                "application/pdf",
                Some(1),
                DocumentColor::Unknown,
            ),
            (
                "document-a4.ps",
                "application/postscript",
                Some(1),
                DocumentColor::Unknown,
            ),
            ("color.jpg", "image/jpeg", Some(1), DocumentColor::Color),
            ("gray.jpg", "image/jpeg", Some(1), DocumentColor::Monochrome),
        ];
        for (file, format, pages, color) in cases {
            let data = std::fs::read(fixtures.join(file)).unwrap();
            for chunk in [1, 7, 4096, usize::MAX] {
                let got = analyse_in_chunks(format, &data, chunk);
                assert_eq!(
                    (got.pages, got.color),
                    (pages, color),
                    "{file} in chunks of {chunk}"
                );
                assert!(got.pages_exact, "{file}");
            }
        }
    }

    #[test]
    fn unknown_formats_tell_nothing() {
        assert_eq!(
            analyse_in_chunks("application/octet-stream", b"data", 10),
            Analysis::UNKNOWN
        );
    }
}
