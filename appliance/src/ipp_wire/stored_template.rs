//! A job's template attributes as stored with it: IPP-encoded, exactly as
//! the client sent them (collections included), so Get-Job-Attributes
//! returns them and the output stage forwards them to the printer without
//! a lossy translation; and the few settings accounting and rules read.

use std::io::Cursor;

use ipp::model::{DelimiterTag, IppVersion};
use ipp::parser::IppParser;
use ipp::prelude::*;
use ipp::reader::IppReader;

use super::guard::AttributeGuard;
use super::values::{as_str, attr};

/// The settings of a stored template that accounting and rules read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintSettings {
    /// `copies` (1 when absent).
    pub copies: u32,
    /// `print-color-mode`, when given.
    pub color_mode: Option<String>,
    /// `sides` (`one-sided` when absent).
    pub sides: String,
    /// `media`, when given as a name.
    pub media: Option<String>,
    /// `page-ranges` (first and last page of each, ascending); empty for
    /// every page.
    pub page_ranges: Vec<(u32, u32)>,
}

impl PrintSettings {
    /// Whether the printer is asked to print on both sides.
    pub fn two_sided(&self) -> bool {
        self.sides.starts_with("two-sided")
    }

    /// How many of a document's `pages` the printer is asked to print
    /// (per copy): those inside the page ranges.
    pub fn pages_printed(&self, pages: u32) -> u32 {
        if self.page_ranges.is_empty() {
            return pages;
        }
        self.page_ranges
            .iter()
            .map(|&(first, last)| (last.min(pages) + 1).saturating_sub(first.max(1)))
            .sum()
    }
}

/// `page-ranges` as (first, last) pairs, if the value is ranges of pages
/// from 1, ascending and not overlapping (RFC 8011 §5.2.7).
pub fn page_ranges(value: &IppValue) -> Option<Vec<(u32, u32)>> {
    let range = |v: &IppValue| match v {
        IppValue::RangeOfInteger { min, max } if 1 <= *min && min <= max => {
            Some((u32::try_from(*min).ok()?, u32::try_from(*max).ok()?))
        }
        _ => None,
    };
    let ranges: Vec<(u32, u32)> = match value {
        IppValue::Array(values) if !values.is_empty() => {
            values.iter().map(range).collect::<Option<_>>()?
        }
        single => vec![range(single)?],
    };
    ranges
        .windows(2)
        .all(|pair| pair[0].1 < pair[1].0)
        .then_some(ranges)
}

/// Reads [`PrintSettings`] from a stored template.
pub fn settings(stored: &[u8]) -> PrintSettings {
    let attributes = decode(stored);
    let value = |name: &str| {
        attributes
            .iter()
            .find(|a| a.name().as_str() == name)
            .map(|a| a.value())
    };
    let copies = match value("copies") {
        Some(IppValue::Integer(n)) => u32::try_from(*n).unwrap_or(1).max(1),
        _ => 1,
    };
    PrintSettings {
        copies,
        color_mode: value("print-color-mode")
            .and_then(as_str)
            .map(str::to_owned),
        sides: value("sides")
            .and_then(as_str)
            .unwrap_or("one-sided")
            .to_owned(),
        media: value("media").and_then(as_str).map(str::to_owned),
        page_ranges: value("page-ranges")
            .and_then(page_ranges)
            .unwrap_or_default(),
    }
}

/// Encodes accepted attributes for storage (a minimal IPP message holding
/// one job-attributes group).
pub fn encode(accepted: &[IppAttribute]) -> Vec<u8> {
    let mut attributes = IppAttributes::new();
    for a in accepted {
        attributes.add(DelimiterTag::JobAttributes, a.clone());
    }
    let header = ipp::IppHeader::new(IppVersion::v1_1(), 0, 1);
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&attributes.to_bytes());
    bytes
}

/// Decodes what [`encode`] stored. Undecodable bytes (which only a damaged
/// database could hold) give no attributes rather than an error: a job
/// stays printable with the printer's defaults.
pub fn decode(stored: &[u8]) -> Vec<IppAttribute> {
    if stored.is_empty() {
        return Vec::new();
    }
    // Rows written before templates were bounded may hold anything a
    // client sent; the guard keeps their cost linear too.
    if let Err(e) = AttributeGuard::default().feed(stored) {
        tracing::warn!(error = %e, "stored job template attributes are refused; ignoring them");
        return Vec::new();
    }
    let parsed = IppParser::new(IppReader::new(Cursor::new(stored.to_vec()))).parse();
    match parsed {
        Ok(message) => message
            .attributes()
            .groups_of(DelimiterTag::JobAttributes)
            .flat_map(|g| g.attributes().iter().cloned())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "stored job template attributes are unreadable; ignoring them");
            Vec::new()
        }
    }
}

/// Replaces (or adds) one attribute in a template, e.g. `job-hold-until`
/// after a Hold-Job.
pub fn with_replaced(stored: &[u8], name: &str, value: Option<IppValue>) -> Vec<u8> {
    let mut attributes: Vec<IppAttribute> = decode(stored)
        .into_iter()
        .filter(|a| a.name().as_str() != name)
        .collect();
    if let Some(value) = value {
        attributes.push(attr(name, value));
    }
    encode(&attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipp_wire::values::keyword;
    use std::collections::BTreeMap;

    fn names(attrs: &[IppAttribute]) -> Vec<&str> {
        attrs.iter().map(|a| a.name().as_str()).collect()
    }

    #[test]
    fn page_ranges_must_ascend_without_overlap() {
        let r = |min, max| IppValue::RangeOfInteger { min, max };
        assert_eq!(page_ranges(&r(2, 4)), Some(vec![(2, 4)]));
        assert_eq!(
            page_ranges(&IppValue::Array(vec![r(1, 1), r(3, 8)])),
            Some(vec![(1, 1), (3, 8)])
        );
        for bad in [
            r(0, 3),
            r(4, 2),
            IppValue::Array(vec![r(3, 5), r(5, 6)]),
            IppValue::Array(vec![r(5, 6), r(1, 2)]),
            IppValue::Array(Vec::new()),
            IppValue::Integer(3),
        ] {
            assert_eq!(page_ranges(&bad), None, "{bad:?}");
        }
        let settings = PrintSettings {
            copies: 1,
            color_mode: None,
            sides: "one-sided".into(),
            media: None,
            page_ranges: vec![(2, 3), (5, 100)],
        };
        assert_eq!(settings.pages_printed(10), 8);
        assert_eq!(settings.pages_printed(4), 2);
        assert_eq!(settings.pages_printed(1), 0);
    }

    #[test]
    fn storage_round_trip_keeps_types_and_collections() {
        let mut size = BTreeMap::new();
        size.insert(
            ipp::value::IppName::new("x-dimension").unwrap(),
            IppValue::Integer(21000),
        );
        let mut col = BTreeMap::new();
        col.insert(
            ipp::value::IppName::new("media-size").unwrap(),
            IppValue::Collection(size),
        );
        let original = vec![
            attr("copies", IppValue::Integer(2)),
            attr("media-col", IppValue::Collection(col)),
            attr("job-hold-until", keyword("indefinite")),
        ];
        let back = decode(&encode(&original));
        assert_eq!(names(&back), names(&original));
        for (a, b) in back.iter().zip(&original) {
            assert_eq!(a.value(), b.value());
        }
        assert_eq!(back[2].value(), &keyword("indefinite"));
    }

    #[test]
    fn replacing_an_attribute_keeps_the_others() {
        let stored = encode(&[
            attr("copies", IppValue::Integer(2)),
            attr("job-hold-until", keyword("no-hold")),
        ]);
        let back = decode(&with_replaced(
            &stored,
            "job-hold-until",
            Some(keyword("indefinite")),
        ));
        assert_eq!(back[1].value(), &keyword("indefinite"));
        assert_eq!(back.len(), 2);
        assert_eq!(
            decode(&with_replaced(&stored, "job-hold-until", None)).len(),
            1
        );
    }

    #[test]
    fn damaged_storage_decodes_to_nothing() {
        assert!(decode(b"\x01\x01garbage").is_empty());
        assert!(decode(b"").is_empty());
    }
}
