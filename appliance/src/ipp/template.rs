//! Job template attributes: which ones a queue accepts, and checking a
//! request's values against them. The accepted ones are stored with the
//! job by [`crate::ipp_wire::stored_template`].

use ipp::prelude::*;

use crate::ipp_wire::stored_template;
use crate::ipp_wire::values::as_str;

/// Media a queue advertises, as PWG self-describing names (office sizes).
pub const MEDIA_SUPPORTED: &[(&str, i32, i32)] = &[
    ("iso_a4_210x297mm", 21000, 29700),
    ("na_letter_8.5x11in", 21590, 27940),
    ("na_legal_8.5x14in", 21590, 35560),
    ("iso_a5_148x210mm", 14800, 21000),
    ("iso_a3_297x420mm", 29700, 42000),
    ("na_ledger_11x17in", 27940, 43180),
];
/// `sides-supported`.
pub const SIDES: &[&str] = &["one-sided", "two-sided-long-edge", "two-sided-short-edge"];
/// `print-color-mode-supported`.
pub const COLOR_MODES: &[&str] = &["auto", "color", "monochrome"];
/// `print-scaling-supported`.
pub const SCALING: &[&str] = &["auto", "auto-fit", "fill", "fit", "none"];
/// `job-hold-until-supported`.
pub const HOLD_UNTIL: &[&str] = &["no-hold", "indefinite"];
/// `multiple-document-handling-supported`.
pub const DOCUMENT_HANDLING: &[&str] = &[
    "separate-documents-uncollated-copies",
    "separate-documents-collated-copies",
];
/// `output-bin-supported`.
pub const OUTPUT_BINS: &[&str] = &["face-down"];
/// `printer-resolution-supported` (dpi).
pub const RESOLUTIONS: &[i32] = &[300, 600];
/// `print-content-optimize-supported`: passed to the printer as sent.
pub const CONTENT_OPTIMIZE: &[&str] = &["auto", "graphic", "photo", "text", "text-and-graphic"];
/// `print-rendering-intent-supported`: passed to the printer as sent.
pub const RENDERING_INTENTS: &[&str] = &[
    "auto",
    "perceptual",
    "relative",
    "relative-bpc",
    "saturation",
];
/// `overrides-supported` (PWG 5100.6): what an override may name besides
/// its `pages` (and `document-numbers`): how those pages are printed, never
/// how many pages or sheets print or in which colour, so accounting and
/// rules stay exact; and simple values only, so what is stored with a job
/// stays two levels deep.
pub const OVERRIDE_MEMBERS: &[&str] = &[
    "document-numbers",
    "media",
    "orientation-requested",
    "pages",
];
/// Largest `copies` accepted.
pub const MAX_COPIES: i32 = 999;

/// Job template attributes accepted in Print-Job, Create-Job and Validate-Job
/// (`job-creation-attributes-supported`).
pub const ACCEPTED: &[&str] = &[
    "copies",
    "finishings",
    "job-hold-until",
    "job-priority",
    "job-sheets",
    "media",
    "media-col",
    "multiple-document-handling",
    "number-up",
    "orientation-requested",
    "output-bin",
    "overrides",
    "page-ranges",
    "print-color-mode",
    "print-content-optimize",
    "print-quality",
    "print-rendering-intent",
    "print-scaling",
    "printer-resolution",
    "sides",
];

/// The outcome of checking a request's job template attributes.
#[derive(Debug, Default)]
pub struct TemplateCheck {
    /// Attributes accepted, to store with the job.
    pub accepted: Vec<IppAttribute>,
    /// Attributes (or values) not supported, echoed back in the
    /// unsupported-attributes group.
    pub unsupported: Vec<IppAttribute>,
}

/// Checks job template attributes against what the queue supports.
pub fn check(attributes: &[IppAttribute]) -> TemplateCheck {
    let mut out = TemplateCheck::default();
    for a in attributes {
        let name = a.name().as_str();
        let ok = ACCEPTED.contains(&name)
            && !out.accepted.iter().any(|b| b.name() == a.name())
            && value_supported(name, a.value());
        if ok {
            out.accepted.push(a.clone());
        } else {
            out.unsupported.push(a.clone());
        }
    }
    out
}

fn value_supported(name: &str, value: &IppValue) -> bool {
    let keyword_in = |list: &[&str]| {
        matches!(value, IppValue::Keyword(_)) && as_str(value).is_some_and(|v| list.contains(&v))
    };
    match name {
        "copies" => matches!(value, IppValue::Integer(n) if (1..=MAX_COPIES).contains(n)),
        "finishings" => match value {
            IppValue::Enum(3) => true,
            IppValue::Array(values) => values.iter().all(|v| *v == IppValue::Enum(3)),
            _ => false,
        },
        "job-hold-until" => keyword_in(HOLD_UNTIL),
        "job-priority" => matches!(value, IppValue::Integer(n) if (1..=100).contains(n)),
        "job-sheets" => as_str(value) == Some("none"),
        "media" => {
            matches!(
                value,
                IppValue::Keyword(_) | IppValue::NameWithoutLanguage(_)
            ) && as_str(value).is_some_and(|m| MEDIA_SUPPORTED.iter().any(|(n, _, _)| *n == m))
        }
        "media-col" => media_col_supported(value),
        "multiple-document-handling" => keyword_in(DOCUMENT_HANDLING),
        "number-up" => *value == IppValue::Integer(1),
        "orientation-requested" => matches!(value, IppValue::Enum(3..=6)),
        "output-bin" => keyword_in(OUTPUT_BINS),
        "overrides" => match value {
            IppValue::Array(values) => !values.is_empty() && values.iter().all(override_supported),
            single => override_supported(single),
        },
        "page-ranges" => stored_template::page_ranges(value).is_some(),
        "print-color-mode" => keyword_in(COLOR_MODES),
        "print-content-optimize" => keyword_in(CONTENT_OPTIMIZE),
        "print-quality" => matches!(value, IppValue::Enum(3..=5)),
        "print-rendering-intent" => keyword_in(RENDERING_INTENTS),
        "print-scaling" => keyword_in(SCALING),
        "printer-resolution" => matches!(
            value,
            IppValue::Resolution { cross_feed, feed, units: 3 }
                if cross_feed == feed && RESOLUTIONS.contains(cross_feed)
        ),
        "sides" => keyword_in(SIDES),
        _ => false,
    }
}

/// `media-col` members (PWG 5100.7) other than `media-size`, which takes
/// simple values only.
const MEDIA_COL_MEMBERS: &[&str] = &[
    "media-back-coating",
    "media-bottom-margin",
    "media-color",
    "media-front-coating",
    "media-grain",
    "media-hole-count",
    "media-info",
    "media-key",
    "media-left-margin",
    "media-order-count",
    "media-pre-printed",
    "media-recycled",
    "media-right-margin",
    "media-size-name",
    "media-source",
    "media-thickness",
    "media-tooth",
    "media-top-margin",
    "media-type",
    "media-weight-metric",
];

/// A `media-col` of known members, with `media-size` its only collection
/// and that one holding integer dimensions: what is stored with a job is
/// at most two levels deep, whatever a client sent.
fn media_col_supported(value: &IppValue) -> bool {
    let IppValue::Collection(members) = value else {
        return false;
    };
    members.iter().all(|(name, member)| match name.as_str() {
        "media-size" => match member {
            IppValue::Collection(size) => size.iter().all(|(n, v)| {
                matches!(n.as_str(), "x-dimension" | "y-dimension")
                    && matches!(v, IppValue::Integer(_) | IppValue::RangeOfInteger { .. })
            }),
            _ => false,
        },
        other => {
            MEDIA_COL_MEMBERS.contains(&other)
                && !matches!(member, IppValue::Collection(_) | IppValue::Array(_))
        }
    })
}

/// One `overrides` collection: the pages it is for, and members of
/// [`OVERRIDE_MEMBERS`] with supported values.
fn override_supported(value: &IppValue) -> bool {
    let IppValue::Collection(members) = value else {
        return false;
    };
    members.iter().any(|(name, _)| name.as_str() == "pages")
        && members.iter().all(|(name, member)| match name.as_str() {
            "pages" | "document-numbers" => stored_template::page_ranges(member).is_some(),
            "media" | "orientation-requested" => value_supported(name.as_str(), member),
            _ => false,
        })
}

/// The `job-hold-until` keyword among accepted attributes, if any.
pub fn hold_until(accepted: &[IppAttribute]) -> Option<String> {
    accepted
        .iter()
        .find(|a| a.name().as_str() == "job-hold-until")
        .and_then(|a| as_str(a.value()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipp_wire::values::{attr, dpi, keyword};
    use std::collections::BTreeMap;

    fn names(attrs: &[IppAttribute]) -> Vec<&str> {
        attrs.iter().map(|a| a.name().as_str()).collect()
    }

    #[test]
    fn supported_values_are_accepted() {
        let checked = check(&[
            attr("copies", IppValue::Integer(2)),
            attr("sides", keyword("two-sided-long-edge")),
            attr("media", keyword("iso_a4_210x297mm")),
            attr("printer-resolution", dpi(600, 600)),
            attr("print-color-mode", keyword("monochrome")),
        ]);
        assert_eq!(
            names(&checked.accepted),
            [
                "copies",
                "sides",
                "media",
                "printer-resolution",
                "print-color-mode"
            ]
        );
        assert!(checked.unsupported.is_empty());
    }

    #[test]
    fn unknown_attributes_and_bad_values_are_reported() {
        let checked = check(&[
            attr("copies", IppValue::Integer(0)),
            attr("sides", keyword("three-sided")),
            attr("x-vendor-thing", IppValue::Integer(1)),
            attr("media", keyword("a-bedsheet")),
            attr("printer-resolution", dpi(600, 300)),
        ]);
        assert!(checked.accepted.is_empty());
        assert_eq!(checked.unsupported.len(), 5);
    }

    #[test]
    fn overrides_change_how_pages_print_never_how_many() {
        let name = |n: &str| ipp::value::IppName::new(n).unwrap();
        let pages = IppValue::RangeOfInteger { min: 2, max: 2 };
        let over = |extra: (&str, IppValue)| {
            IppValue::Collection(BTreeMap::from([
                (name("pages"), pages.clone()),
                (name(extra.0), extra.1),
            ]))
        };
        let landscape = over(("orientation-requested", IppValue::Enum(4)));
        let letter = over(("media", keyword("na_letter_8.5x11in")));
        let checked = check(&[attr("overrides", IppValue::Array(vec![landscape, letter]))]);
        assert_eq!(names(&checked.accepted), ["overrides"]);
        for refused in [
            over(("copies", IppValue::Integer(5))),
            over(("print-color-mode", keyword("monochrome"))),
            over(("media", keyword("a-bedsheet"))),
            IppValue::Collection(BTreeMap::from([(
                name("media"),
                keyword("iso_a4_210x297mm"),
            )])),
        ] {
            let checked = check(&[attr("overrides", refused.clone())]);
            assert!(checked.accepted.is_empty(), "{refused:?}");
        }
    }

    #[test]
    fn a_repeated_attribute_is_taken_once() {
        let checked = check(&[
            attr("copies", IppValue::Integer(2)),
            attr("copies", IppValue::Integer(3)),
        ]);
        assert_eq!(checked.accepted.len(), 1);
        assert_eq!(checked.unsupported.len(), 1);
    }

    #[test]
    fn media_col_is_accepted_with_known_members_only() {
        let name = |n: &str| ipp::value::IppName::new(n).unwrap();
        let size = |extra: Option<(&str, IppValue)>| {
            let mut size = BTreeMap::from([
                (name("x-dimension"), IppValue::Integer(21000)),
                (name("y-dimension"), IppValue::Integer(29700)),
            ]);
            if let Some((n, v)) = extra {
                size.insert(name(n), v);
            }
            IppValue::Collection(size)
        };
        let col = |members: Vec<(&str, IppValue)>| {
            attr(
                "media-col",
                IppValue::Collection(members.into_iter().map(|(n, v)| (name(n), v)).collect()),
            )
        };
        let good = col(vec![
            ("media-size", size(None)),
            ("media-type", keyword("stationery")),
        ]);
        assert_eq!(check(&[good]).accepted.len(), 1);
        for bad in [
            col(vec![("media-size", size(Some(("media-size", size(None)))))]),
            col(vec![("media-type", size(None))]),
            col(vec![("x-vendor", keyword("x"))]),
            col(vec![("media-size", keyword("a4"))]),
        ] {
            assert_eq!(check(&[bad]).unsupported.len(), 1);
        }
    }
}
