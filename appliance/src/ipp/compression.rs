//! The `compression` of a submitted document (RFC 8011 §4.2.1.1 and
//! 5.4.32): which values this appliance takes, and decompressing a body as
//! it streams in. Documents are stored decompressed, so their hash, page
//! count and size are those of the bytes a printer will get.

use std::io::{self, Read};

use flate2::read::{DeflateDecoder, MultiGzDecoder};

use super::error::IppError;

/// The `compression` values this appliance takes, as `compression-supported`
/// lists them.
pub const SUPPORTED: [&str; 3] = ["none", "deflate", "gzip"];

/// How a document's bytes are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// As is.
    None,
    /// RFC 1951 DEFLATE, no wrapper.
    Deflate,
    /// RFC 1952 gzip (several members in a row are one document).
    Gzip,
}

impl Compression {
    /// Its keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Deflate => "deflate",
            Compression::Gzip => "gzip",
        }
    }

    /// The request's `compression` (absent means `none`); a value this
    /// appliance does not take is `client-error-compression-not-supported`.
    pub fn from_request(value: Option<&str>) -> Result<Self, IppError> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => Ok(Compression::None),
            Some("deflate") => Ok(Compression::Deflate),
            Some("gzip") => Ok(Compression::Gzip),
            Some(other) => Err(IppError::CompressionNotSupported(other.to_owned())),
        }
    }
}

/// A reader of the decompressed bytes of a compressed stream.
pub enum Decompressor<R: Read> {
    /// Not compressed: the bytes as they are.
    Identity(R),
    /// DEFLATE.
    Deflate(DeflateDecoder<R>),
    /// gzip.
    Gzip(MultiGzDecoder<R>),
}

impl<R: Read> Decompressor<R> {
    /// Decompresses `compressed` as `compression` says.
    pub fn new(compression: Compression, compressed: R) -> Self {
        match compression {
            Compression::None => Decompressor::Identity(compressed),
            Compression::Deflate => Decompressor::Deflate(DeflateDecoder::new(compressed)),
            Compression::Gzip => Decompressor::Gzip(MultiGzDecoder::new(compressed)),
        }
    }

    /// The compressed stream underneath.
    pub fn get_mut(&mut self) -> &mut R {
        match self {
            Decompressor::Identity(r) => r,
            Decompressor::Deflate(d) => d.get_mut(),
            Decompressor::Gzip(d) => d.get_mut(),
        }
    }
}

impl<R: Read> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressor::Identity(r) => r.read(buf),
            Decompressor::Deflate(d) => d.read(buf),
            Decompressor::Gzip(d) => d.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn takes_none_deflate_and_gzip_only() {
        assert_eq!(Compression::from_request(None).unwrap(), Compression::None);
        assert_eq!(
            Compression::from_request(Some("GZIP")).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_request(Some("deflate")).unwrap(),
            Compression::Deflate
        );
        assert!(matches!(
            Compression::from_request(Some("compress")),
            Err(IppError::CompressionNotSupported(v)) if v == "compress"
        ));
    }

    #[test]
    fn gzip_members_in_a_row_are_one_document() {
        let mut wire = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            wire.extend(gz.finish().unwrap());
        }
        let mut out = String::new();
        Decompressor::new(Compression::Gzip, &wire[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second");
    }
}
