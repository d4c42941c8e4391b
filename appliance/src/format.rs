//! Document formats: which ones the appliance accepts, and a cheap check of a
//! document's first bytes against the format the client declared.
//!
//! The check looks at a bounded prefix only (never the whole document) and
//! decides in a pure function, so intake can reject a mislabelled upload
//! before it fills the spool.

/// Formats accepted on every queue, in the order advertised. A print server
/// stores and forwards documents as they are, so these are the page
/// description languages office MFDs take, plus `application/octet-stream`
/// for clients that let the server detect the format.
pub const SUPPORTED: &[&str] = &[
    "application/pdf",
    "application/PCLm",
    "application/postscript",
    "application/vnd.hp-pcl",
    "image/pwg-raster",
    "image/urf",
    "image/jpeg",
    "application/octet-stream",
];

/// The format assumed when the client names none.
pub const DEFAULT: &str = "application/octet-stream";

/// How many leading bytes [`check_prefix`] wants to see before it decides.
pub const PREFIX_LEN: usize = 1024;

/// Whether the appliance accepts documents declared as `format`.
pub fn is_supported(format: &str) -> bool {
    SUPPORTED.iter().any(|f| f.eq_ignore_ascii_case(format))
}

/// Why a document's content does not match its declared format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document does not look like {declared}{}", detected.map(|d| format!(" (it looks like {d})")).unwrap_or_default())]
pub struct FormatMismatch {
    /// What the client said.
    pub declared: String,
    /// What the bytes look like, when recognisable.
    pub detected: Option<&'static str>,
}

/// Recognises a format from the start of a document, skipping a PJL job
/// header (`ESC%-12345X@PJL ...`) the way printers do.
pub fn detect(prefix: &[u8]) -> Option<&'static str> {
    let body = skip_pjl_header(prefix);
    if body.starts_with(b"%PDF-") || find(prefix, b"%PDF-").is_some() {
        // PCLm (Wi-Fi Direct Print) is a PDF subset that says so in a comment.
        if find(prefix, b"%PCLm").is_some() {
            Some("application/PCLm")
        } else {
            Some("application/pdf")
        }
    } else if body.starts_with(b"%!") || body.starts_with(b"\x04%!") {
        Some("application/postscript")
    } else if body.starts_with(b"RaS2") {
        Some("image/pwg-raster")
    } else if body.starts_with(b"UNIRAST\0") {
        Some("image/urf")
    } else if body.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if body.starts_with(b"\x1bE") || prefix.starts_with(b"\x1b%-12345X") {
        Some("application/vnd.hp-pcl")
    } else {
        None
    }
}

/// Checks a document's first bytes (`prefix`, at most [`PREFIX_LEN`], all of
/// the document if it is shorter) against its declared format and returns
/// the format to store: the declared one, or the detected one for
/// `application/octet-stream`.
///
/// PCL has no reliable signature, so a document declared as PCL is taken as
/// it is; for the others a recognisable signature is required.
pub fn check_prefix(declared: &str, prefix: &[u8]) -> Result<String, FormatMismatch> {
    let declared = SUPPORTED
        .iter()
        .find(|f| f.eq_ignore_ascii_case(declared))
        .map_or_else(|| declared.to_ascii_lowercase(), |f| (*f).to_owned());
    let detected = detect(prefix);
    match (declared.as_str(), detected) {
        ("application/octet-stream", _) => Ok(detected.unwrap_or(DEFAULT).to_owned()),
        ("application/vnd.hp-pcl", _) => Ok(declared),
        // Every PCLm document is a PDF too.
        ("application/pdf", Some("application/PCLm")) => Ok(declared),
        (_, Some(d)) if d == declared => Ok(declared),
        _ => Err(FormatMismatch { declared, detected }),
    }
}

fn skip_pjl_header(data: &[u8]) -> &[u8] {
    const UEL: &[u8] = b"\x1b%-12345X";
    if !data.starts_with(UEL) {
        return data;
    }
    // PJL lines end with LF; the language starts after the last @PJL line.
    let mut rest = &data[UEL.len()..];
    while rest.starts_with(b"@PJL") {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => rest = &rest[end + 1..],
            None => return &[],
        }
    }
    rest
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_common_page_description_languages() {
        assert_eq!(detect(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(detect(b"%!PS-Adobe-3.0\n"), Some("application/postscript"));
        assert_eq!(detect(b"RaS2PwgRaster"), Some("image/pwg-raster"));
        assert_eq!(detect(b"UNIRAST\0\0\0\0\x01"), Some("image/urf"));
        assert_eq!(detect(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(detect(b"\x1bE\x1b&l0O"), Some("application/vnd.hp-pcl"));
        assert_eq!(detect(b"hello"), None);
    }

    #[test]
    fn pjl_wrapped_documents_are_seen_through() {
        let doc = b"\x1b%-12345X@PJL JOB NAME=\"x\"\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\n%!PS\n";
        assert_eq!(detect(doc), Some("application/postscript"));
        let pcl = b"\x1b%-12345X@PJL ENTER LANGUAGE=PCL\n\x1bE";
        assert_eq!(detect(pcl), Some("application/vnd.hp-pcl"));
    }

    #[test]
    fn declared_format_must_match_content() {
        assert_eq!(
            check_prefix("application/pdf", b"%PDF-1.4").unwrap(),
            "application/pdf"
        );
        assert_eq!(
            check_prefix("Application/PDF", b"%PDF-1.4").unwrap(),
            "application/pdf"
        );
        let err = check_prefix("application/pdf", b"%!PS-Adobe").unwrap_err();
        assert_eq!(err.detected, Some("application/postscript"));
        assert!(check_prefix("image/jpeg", b"").is_err());
    }

    #[test]
    fn octet_stream_takes_the_detected_format() {
        assert_eq!(
            check_prefix("application/octet-stream", b"%PDF-1.4").unwrap(),
            "application/pdf"
        );
        assert_eq!(
            check_prefix("application/octet-stream", b"???").unwrap(),
            "application/octet-stream"
        );
    }

    #[test]
    fn pclm_is_a_pdf_that_says_so() {
        let pclm = b"%PDF-1.3\n%PCLm 1.0\n";
        assert_eq!(detect(pclm), Some("application/PCLm"));
        assert_eq!(
            check_prefix("application/pclm", pclm).unwrap(),
            "application/PCLm"
        );
        assert_eq!(
            check_prefix("application/pdf", pclm).unwrap(),
            "application/pdf"
        );
        assert!(check_prefix("application/PCLm", b"%PDF-1.4\n").is_err());
    }

    #[test]
    fn pcl_is_taken_as_declared() {
        assert!(check_prefix("application/vnd.hp-pcl", b"anything").is_ok());
    }

    #[test]
    fn supported_list_is_case_insensitive() {
        assert!(is_supported("APPLICATION/PDF"));
        assert!(!is_supported("text/html"));
    }
}
