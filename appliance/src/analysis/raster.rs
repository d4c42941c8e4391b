//! Raster formats: PWG Raster (PWG 5102.4) and Apple raster (URF).
//!
//! PWG Raster has a 1796-byte header per page followed by compressed lines,
//! so counting pages means walking the compression to find each next header
//! (a few bytes of state, whatever the page size). URF declares its page
//! count in the file header.

use super::{Analysis, DocumentColor};

const PWG_SYNC: &[u8] = b"RaS2";
const PWG_HEADER: usize = 1796;
const URF_SYNC: &[u8] = b"UNIRAST\0";
/// URF file header (sync + page count) and the first page header's first bytes.
const URF_PREFIX: usize = 8 + 4 + 2;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PwgState {
    #[default]
    Sync,
    Header,
    /// Expecting a line's repeat count.
    LineStart,
    /// Expecting a run's control byte.
    Run,
    /// Skipping a run's pixel bytes.
    Skip(u64),
    /// Not PWG Raster as specified: stop reading.
    Broken,
}

/// Counts PWG Raster pages by walking the line compression.
#[derive(Debug, Default)]
pub(super) struct PwgScanner {
    state: PwgState,
    header: Vec<u8>,
    pages: u32,
    color: bool,
    /// Bytes per pixel unit of the compression (1 below 8 bits per pixel).
    unit: u64,
    units_per_line: u64,
    lines_left: u64,
    units_left: u64,
}

impl PwgScanner {
    /// Takes the next bytes of the document.
    pub(super) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                PwgState::Sync | PwgState::Header => {
                    let want = if self.state == PwgState::Sync {
                        PWG_SYNC.len()
                    } else {
                        PWG_HEADER
                    };
                    let take = (want - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == want {
                        self.state = if self.state == PwgState::Sync {
                            if self.header == PWG_SYNC {
                                PwgState::Header
                            } else {
                                PwgState::Broken
                            }
                        } else {
                            self.start_page()
                        };
                        self.header.clear();
                    }
                }
                PwgState::LineStart => {
                    let lines = u64::from(data[0]) + 1;
                    data = &data[1..];
                    self.lines_left = self.lines_left.saturating_sub(lines);
                    self.units_left = self.units_per_line;
                    self.state = PwgState::Run;
                }
                PwgState::Run => {
                    let control = data[0];
                    data = &data[1..];
                    // 0..=127: one unit repeated n+1 times; 128..=255: 257-n literal units.
                    let (units, bytes) = if control <= 127 {
                        (u64::from(control) + 1, self.unit)
                    } else {
                        let n = 257 - u64::from(control);
                        (n, n * self.unit)
                    };
                    if units > self.units_left {
                        self.state = PwgState::Broken;
                        continue;
                    }
                    self.units_left -= units;
                    self.state = PwgState::Skip(bytes);
                }
                PwgState::Skip(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if take < n {
                        PwgState::Skip(n - take)
                    } else {
                        self.after_run()
                    };
                }
                PwgState::Broken => return,
            }
        }
    }

    /// Reads a page header just collected; returns the state that follows.
    fn start_page(&mut self) -> PwgState {
        let h = &self.header;
        let height = u64::from(be_u32(h, 376));
        let bits_per_pixel = u64::from(be_u32(h, 388));
        let bytes_per_line = u64::from(be_u32(h, 392));
        let color_space = be_u32(h, 400);
        self.unit = (bits_per_pixel / 8).max(1);
        if bits_per_pixel == 0 || bytes_per_line == 0 || bytes_per_line % self.unit != 0 {
            return PwgState::Broken;
        }
        self.pages += 1;
        // W, K, sGray and one-channel device spaces are grey.
        self.color |= !matches!(color_space, 0 | 3 | 18 | 48);
        self.units_per_line = bytes_per_line / self.unit;
        self.lines_left = height;
        if height == 0 {
            PwgState::Header
        } else {
            PwgState::LineStart
        }
    }

    fn after_run(&self) -> PwgState {
        match (self.units_left, self.lines_left) {
            (0, 0) => PwgState::Header,
            (0, _) => PwgState::LineStart,
            _ => PwgState::Run,
        }
    }

    /// The page count, once the whole document was fed.
    pub(super) fn finish(self) -> Analysis {
        if self.pages == 0 {
            return Analysis::UNKNOWN;
        }
        let color = if self.color {
            DocumentColor::Color
        } else {
            DocumentColor::Monochrome
        };
        // Exact only if the data ended cleanly between pages.
        let clean = self.state == PwgState::Header && self.header.is_empty();
        Analysis {
            pages: Some(self.pages),
            pages_exact: clean,
            color,
        }
    }
}

/// Reads the page count and colour space from a URF file's headers.
#[derive(Debug, Default)]
pub(super) struct UrfScanner {
    prefix: Vec<u8>,
}

impl UrfScanner {
    /// Takes the next bytes of the document.
    pub(super) fn feed(&mut self, data: &[u8]) {
        let room = URF_PREFIX - self.prefix.len();
        self.prefix.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The page count, once the whole document was fed.
    pub(super) fn finish(self) -> Analysis {
        if self.prefix.len() < 12 || !self.prefix.starts_with(URF_SYNC) {
            return Analysis::UNKNOWN;
        }
        let pages = be_u32(&self.prefix, 8);
        // Colour space of the first page: 0 sGray and 4 DeviceGray are grey.
        let color = match self.prefix.get(13) {
            Some(0 | 4) => DocumentColor::Monochrome,
            Some(_) => DocumentColor::Color,
            None => DocumentColor::Unknown,
        };
        if pages == 0 {
            return Analysis {
                color,
                ..Analysis::UNKNOWN
            };
        }
        Analysis::exact(pages, color)
    }
}

#[cfg(test)]
mod tests {
    use super::super::analyse_in_chunks;
    use super::*;

    /// A PWG raster page: `height` lines of `width` 24-bit pixels, every
    /// line stored as one repeated-pixel run plus one literal run.
    fn pwg_page(width: u32, height: u32, color_space: u32) -> Vec<u8> {
        let mut header = vec![0u8; PWG_HEADER];
        header[372..376].copy_from_slice(&width.to_be_bytes());
        header[376..380].copy_from_slice(&height.to_be_bytes());
        header[388..392].copy_from_slice(&24u32.to_be_bytes());
        header[392..396].copy_from_slice(&(width * 3).to_be_bytes());
        header[400..404].copy_from_slice(&color_space.to_be_bytes());
        let mut page = header;
        let mut line_groups = height;
        while line_groups > 0 {
            // Repeat each line record twice where possible.
            let repeat = line_groups.min(2);
            page.push((repeat - 1) as u8);
            page.extend_from_slice(&[(width - 3) as u8, 0x0c, 0xff, 0xee]);
            page.push((257 - 2) as u8);
            page.extend_from_slice(&[0x0c; 6]);
            line_groups -= repeat;
        }
        page
    }

    #[test]
    fn pwg_pages_are_found_through_the_compression() {
        let mut doc = PWG_SYNC.to_vec();
        doc.extend(pwg_page(100, 5, 18));
        doc.extend(pwg_page(100, 4, 19));
        doc.extend(pwg_page(100, 1, 18));
        for chunk in [1, 5, 333, usize::MAX] {
            let got = analyse_in_chunks("image/pwg-raster", &doc, chunk);
            assert_eq!(
                got,
                Analysis::exact(3, DocumentColor::Color),
                "chunks of {chunk}"
            );
        }
        let mut gray = PWG_SYNC.to_vec();
        gray.extend(pwg_page(50, 3, 18));
        assert_eq!(
            analyse_in_chunks("image/pwg-raster", &gray, 7).color,
            DocumentColor::Monochrome
        );
    }

    #[test]
    fn truncated_or_inconsistent_pwg_is_an_estimate() {
        let mut doc = PWG_SYNC.to_vec();
        doc.extend(pwg_page(100, 5, 18));
        doc.truncate(doc.len() - 3);
        let got = analyse_in_chunks("image/pwg-raster", &doc, 64);
        assert_eq!((got.pages, got.pages_exact), (Some(1), false));
        // A run longer than the line is not PWG Raster.
        let mut bad = PWG_SYNC.to_vec();
        let mut page = pwg_page(10, 1, 18);
        page[PWG_HEADER + 1] = 100;
        bad.extend(page);
        assert!(!analyse_in_chunks("image/pwg-raster", &bad, 64).pages_exact);
        assert_eq!(
            analyse_in_chunks("image/pwg-raster", b"RaS3....", 64),
            Analysis::UNKNOWN
        );
    }

    #[test]
    fn urf_declares_its_pages() {
        let mut doc = URF_SYNC.to_vec();
        doc.extend_from_slice(&7u32.to_be_bytes());
        doc.extend_from_slice(&[24, 1, 0, 0]);
        assert_eq!(
            analyse_in_chunks("image/urf", &doc, 3),
            Analysis::exact(7, DocumentColor::Color)
        );
        doc[13] = 0;
        assert_eq!(
            analyse_in_chunks("image/urf", &doc, 100).color,
            DocumentColor::Monochrome
        );
        assert_eq!(
            analyse_in_chunks("image/urf", b"UNIRAST", 100),
            Analysis::UNKNOWN
        );
    }
}
