//! JPEG: one page; grey or colour from the frame header's component count.

use super::{Analysis, DocumentColor};

/// Bytes searched for the frame header (it precedes the image data, after
/// the tables and any metadata segments).
const PREFIX: usize = 64 * 1024;

/// Reads a JPEG's frame header.
#[derive(Debug, Default)]
pub(super) struct JpegScanner {
    prefix: Vec<u8>,
}

impl JpegScanner {
    /// Takes the next bytes of the document.
    pub(super) fn feed(&mut self, data: &[u8]) {
        let room = PREFIX - self.prefix.len();
        self.prefix.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// One page, with its colour when the frame header was found.
    pub(super) fn finish(self) -> Analysis {
        if !self.prefix.starts_with(b"\xff\xd8") {
            return Analysis::UNKNOWN;
        }
        let color = match frame_components(&self.prefix) {
            Some(1) => DocumentColor::Monochrome,
            Some(_) => DocumentColor::Color,
            None => DocumentColor::Unknown,
        };
        Analysis::exact(1, color)
    }
}

/// The component count of the first start-of-frame segment (ITU T.81 B.2).
fn frame_components(jpeg: &[u8]) -> Option<u8> {
    let mut at = 2;
    loop {
        if *jpeg.get(at)? != 0xff {
            return None;
        }
        let marker = *jpeg.get(at + 1)?;
        match marker {
            // Fill bytes before a marker.
            0xff => at += 1,
            0x01 | 0xd0..=0xd7 => at += 2,
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                return jpeg.get(at + 9).copied();
            }
            _ => {
                let length = u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]);
                at += 2 + usize::from(length);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::analyse_in_chunks;
    use super::*;

    #[test]
    fn not_a_jpeg_or_cut_before_the_frame() {
        assert_eq!(
            analyse_in_chunks("image/jpeg", b"GIF89a", 2),
            Analysis::UNKNOWN
        );
        let cut = b"\xff\xd8\xff\xe0\x00\x10JFIF";
        assert_eq!(
            analyse_in_chunks("image/jpeg", cut, 2),
            Analysis::exact(1, DocumentColor::Unknown)
        );
    }
}
