//! Infallible constructors for IPP values and attributes.
//!
//! The `ipp` crate checks string lengths on every construction; the values
//! this appliance emits come from its own config and store, so here they are
//! truncated to the IPP maximum instead of failing (a too-long job name is
//! shortened, never a reason to drop a response).

use ipp::prelude::*;
use ipp::value::{BoundedString, IppTextValue};

/// An attribute with a (truncated if needed) name.
pub fn attr(name: &str, value: IppValue) -> IppAttribute {
    IppAttribute::new(bounded::<255>(name), value)
}

/// A bounded string, cut at a character boundary (the crate's own
/// truncation cuts bytes and would panic inside a multi-byte character).
fn bounded<const MAX: usize>(s: &str) -> BoundedString<MAX> {
    BoundedString::new_truncated(truncate_utf8(s, MAX))
}

/// `keyword`.
pub fn keyword(s: &str) -> IppValue {
    IppValue::Keyword(bounded(s))
}

/// `1setOf keyword`.
pub fn keywords(values: &[&str]) -> IppValue {
    set(values.iter().map(|v| keyword(v)).collect())
}

/// `nameWithoutLanguage`.
pub fn name(s: &str) -> IppValue {
    IppValue::NameWithoutLanguage(bounded(s))
}

/// `textWithoutLanguage`.
pub fn text(s: &str) -> IppValue {
    IppValue::TextWithoutLanguage(IppTextValue::Long(bounded(s)).shrink())
}

/// `uri`.
pub fn uri(s: &str) -> IppValue {
    IppValue::Uri(bounded(s))
}

/// `mimeMediaType`.
pub fn mime(s: &str) -> IppValue {
    IppValue::MimeMediaType(bounded(s))
}

/// `1setOf mimeMediaType`.
pub fn mimes(values: &[&str]) -> IppValue {
    set(values.iter().map(|v| mime(v)).collect())
}

/// `charset`.
pub fn charset(s: &str) -> IppValue {
    IppValue::Charset(bounded(s))
}

/// `naturalLanguage`.
pub fn language(s: &str) -> IppValue {
    IppValue::NaturalLanguage(bounded(s))
}

/// `enum`.
pub fn enumeration(v: i32) -> IppValue {
    IppValue::Enum(v)
}

/// `1setOf enum`.
pub fn enums(values: &[i32]) -> IppValue {
    set(values.iter().map(|&v| IppValue::Enum(v)).collect())
}

/// `rangeOfInteger`.
pub fn range(min: i32, max: i32) -> IppValue {
    IppValue::RangeOfInteger { min, max }
}

/// `resolution` in dots per inch.
pub fn dpi(x: i32, y: i32) -> IppValue {
    IppValue::Resolution {
        cross_feed: x,
        feed: y,
        units: 3,
    }
}

/// A single value stays single; several become a `1setOf`. Callers never
/// pass an empty list (an empty set has no wire encoding).
pub fn set(mut values: Vec<IppValue>) -> IppValue {
    if values.len() == 1 {
        values.remove(0)
    } else {
        IppValue::Array(values)
    }
}

/// `dateTime` (UTC) for milliseconds since the epoch.
pub fn date_time(ms: i64) -> IppValue {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    IppValue::DateTime(ipp::value::IppDateTime {
        year: u16::try_from(dt.year()).unwrap_or(1970),
        month: dt.month() as u8,
        day: dt.day() as u8,
        hour: dt.hour() as u8,
        minutes: dt.minute() as u8,
        seconds: dt.second() as u8,
        deci_seconds: (dt.subsec_nanosecond() / 100_000_000) as u8,
        utc_dir: '+',
        utc_hours: 0,
        utc_mins: 0,
    })
}

/// The string content of a keyword, name, text, URI or MIME value.
pub fn as_str(value: &IppValue) -> Option<&str> {
    match value {
        IppValue::Keyword(s) | IppValue::NameWithoutLanguage(s) | IppValue::MimeMediaType(s) => {
            Some(s.as_str())
        }
        IppValue::Charset(s) | IppValue::NaturalLanguage(s) => Some(s.as_str()),
        IppValue::Uri(s) | IppValue::UriScheme(s) => Some(s.as_str()),
        IppValue::NameWithLanguage { name, .. } => Some(name.as_str()),
        IppValue::TextWithoutLanguage(t) => Some(t.as_ref()),
        IppValue::TextWithLanguage { text, .. } => Some(text.as_ref()),
        _ => None,
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let v = text(&long);
        let s = as_str(&v).unwrap();
        assert!(s.len() <= 1023);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn multibyte_names_do_not_panic() {
        let long = "ж".repeat(200);
        assert!(as_str(&name(&long)).unwrap().len() <= 255);
        assert!(as_str(&keyword(&long)).unwrap().len() <= 255);
        assert!(attr(&long, keyword("x")).name().len() <= 255);
    }

    #[test]
    fn single_values_are_not_sets() {
        assert_eq!(keywords(&["a"]), keyword("a"));
        assert!(matches!(keywords(&["a", "b"]), IppValue::Array(v) if v.len() == 2));
    }

    #[test]
    fn date_time_is_utc() {
        match date_time(86_400_000 + 1_500) {
            IppValue::DateTime(dt) => {
                assert_eq!((dt.year, dt.month, dt.day), (1970, 1, 2));
                assert_eq!((dt.seconds, dt.deci_seconds), (1, 5));
            }
            other => panic!("{other:?}"),
        }
    }
}
