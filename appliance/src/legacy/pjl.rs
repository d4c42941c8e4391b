//! The PJL job header a Windows driver writes before the document
//! (`ESC%-12345X@PJL SET USERNAME="alice"` ...), read for the job's owner
//! and name. Pure: it looks at a prefix the caller has read and never
//! changes the document, which is stored and printed as it came.

/// The Universal Exit Language sequence that opens a PJL header.
const UEL: &[u8] = b"\x1b%-12345X";

/// How much of a raw job is read, at most, looking for the end of its PJL
/// header; drivers write a few hundred bytes.
pub const HEADER_LIMIT: usize = 16 * 1024;

/// Longest owner or job name kept from a header.
const MAX_VALUE: usize = 255;

/// What a PJL header says about its job.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PjlHeader {
    /// `@PJL SET USERNAME` (or `SET USER`).
    pub user: Option<String>,
    /// `@PJL SET JOBNAME`, or the `NAME` of `@PJL JOB`.
    pub job_name: Option<String>,
}

/// Reads the header at the start of `data`. `None` means the bytes so far
/// do not decide it and more should be read; `finished` says no more will
/// come (end of stream, or [`HEADER_LIMIT`] reached), and then what was
/// seen is the answer. A document without a PJL header has an empty one.
pub fn scan(data: &[u8], finished: bool) -> Option<PjlHeader> {
    let undecided = |header: PjlHeader| (finished).then_some(header);
    if data.len() < UEL.len() && UEL.starts_with(data) {
        return undecided(PjlHeader::default());
    }
    let Some(mut rest) = data.strip_prefix(UEL) else {
        return Some(PjlHeader::default());
    };
    let mut header = PjlHeader::default();
    loop {
        rest = trim_line_ends(rest);
        if rest.len() < 4 && b"@PJL".starts_with(rest) {
            return undecided(header);
        }
        if !rest.starts_with(b"@PJL") {
            return Some(header);
        }
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return undecided(header);
        };
        let line = String::from_utf8_lossy(&rest[4..end]);
        if header.apply(&line) == Line::EnterLanguage {
            return Some(header);
        }
        rest = &rest[end + 1..];
    }
}

#[derive(PartialEq)]
enum Line {
    EnterLanguage,
    Other,
}

impl PjlHeader {
    fn apply(&mut self, line: &str) -> Line {
        let words = line.trim();
        let upper = words.to_ascii_uppercase();
        if upper.starts_with("ENTER") {
            return Line::EnterLanguage;
        }
        for (key, user) in [
            ("SET USERNAME", true),
            ("SET USER", true),
            ("SET JOBNAME", false),
            ("JOB NAME", false),
        ] {
            if let Some(value) = value_of(words, &upper, key) {
                let slot = if user {
                    &mut self.user
                } else {
                    &mut self.job_name
                };
                if slot.is_none() && !value.is_empty() {
                    *slot = Some(value);
                }
            }
        }
        Line::Other
    }
}

/// The value of `KEY = value` (quoted or one word) at the start of a line;
/// `upper` is `line` in upper case, for matching the key.
fn value_of(line: &str, upper: &str, key: &str) -> Option<String> {
    let after_key = upper.strip_prefix(key)?;
    let after_eq = after_key.trim_start().strip_prefix('=')?;
    let start = line.len() - after_eq.len();
    let raw = line[start..].trim_start();
    let value = match raw.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default(),
        None => raw.split_whitespace().next().unwrap_or_default(),
    };
    Some(
        value
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_VALUE)
            .collect::<String>()
            .trim()
            .to_owned(),
    )
}

fn trim_line_ends(mut data: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = data {
        data = rest;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: &[u8] = b"\x1b%-12345X@PJL JOB NAME = \"Quarterly report.docx\"\r\n\
@PJL SET USERNAME = \"alice\"\r\n@PJL SET JOBNAME = \"Quarterly report\"\r\n\
@PJL ENTER LANGUAGE = PCL\r\n\x1bE";

    #[test]
    fn owner_and_name_from_a_driver_header() {
        let header = scan(WINDOWS, false).unwrap();
        assert_eq!(header.user.as_deref(), Some("alice"));
        // The first name given wins: JOB NAME comes before SET JOBNAME.
        assert_eq!(header.job_name.as_deref(), Some("Quarterly report.docx"));
    }

    #[test]
    fn undecided_until_the_header_ends() {
        let cut = WINDOWS.iter().position(|&b| b == b'a').unwrap();
        assert_eq!(scan(&WINDOWS[..cut], false), None);
        assert_eq!(scan(&WINDOWS[..5], false), None);
        // At the end of the stream, what was seen is the answer.
        let partial = scan(&WINDOWS[..cut], true).unwrap();
        assert_eq!(partial.user, None);
    }

    #[test]
    fn documents_without_pjl_have_no_owner() {
        assert_eq!(scan(b"%PDF-1.7\n", false), Some(PjlHeader::default()));
        assert_eq!(scan(b"", true), Some(PjlHeader::default()));
        assert_eq!(scan(b"\x1b%-12345X%!PS", false), Some(PjlHeader::default()));
    }

    #[test]
    fn unquoted_values_and_lower_case_keys() {
        let header = scan(
            b"\x1b%-12345X@PJL\n@PJL set username=bob other\n@PJL ENTER LANGUAGE=POSTSCRIPT\n%!",
            false,
        )
        .unwrap();
        assert_eq!(header.user.as_deref(), Some("bob"));
    }

    #[test]
    fn control_characters_and_long_values_are_cut() {
        let mut data = b"\x1b%-12345X@PJL SET USERNAME=\"ev\x07e".to_vec();
        data.extend(std::iter::repeat_n(b'x', 1000));
        data.extend(b"\"\n@PJL ENTER LANGUAGE=PCL\n");
        let user = scan(&data, false).unwrap().user.unwrap();
        assert!(user.starts_with("eve"));
        assert_eq!(user.chars().count(), MAX_VALUE);
    }

    #[test]
    fn a_username_key_is_not_taken_for_user() {
        let header = scan(b"\x1b%-12345X@PJL SET USERNAMES=x\n%!", false).unwrap();
        assert_eq!(header.user, None);
    }
}
