//! The print rules as policy carries them: plain data, the same shape in a
//! site's `[rules]`, in central's `rules.toml` and on the wire. What the
//! rules *decide* is the appliance's business (`appliance::rules::decide`).
//!
//! Fields a reader does not know are kept in [`Rules::unknown`] rather than
//! refused or dropped silently: a file reader (config, `rules.toml`)
//! rejects them naming the key, so a typo never passes; a site receiving
//! them from a newer central enforces the rules it knows and reports the
//! others back in `policy_applied`, so an admin sees which sites cannot
//! enforce a new rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The rules of a site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Rules {
    /// Members of these groups always print in monochrome.
    pub force_mono_groups: Vec<String>,
    /// Jobs of more pages than this print two-sided (0: never forced).
    pub force_duplex_above_pages: u32,
    /// Largest job in impressions, pages times copies (0: no limit).
    pub max_pages_per_job: u32,
    /// A page quota per user, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Keys this revision does not know, with their values (written back
    /// as they came, so nothing is lost in passing).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl Rules {
    /// The names of the keys this revision does not know, sorted.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.unknown.keys().cloned().collect()
    }
}

/// A per-user page quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Quota {
    /// Impressions a user may print per period.
    pub pages: u32,
    /// The period, starting at midnight UTC (Monday for weeks, the 1st for months).
    pub period: Period,
}

/// A quota period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Calendar day.
    Day,
    /// Calendar week from Monday.
    Week,
    /// Calendar month.
    Month,
}

impl Period {
    /// Start of the period containing `now_ms` (UTC), in ms since the epoch.
    pub fn start_ms(self, now_ms: i64) -> i64 {
        let Ok(now) = jiff::Timestamp::from_millisecond(now_ms) else {
            return now_ms;
        };
        let date = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        let start = match self {
            Period::Day => Ok(date),
            Period::Week => date.checked_sub(
                jiff::Span::new().days(i64::from(date.weekday().to_monday_zero_offset())),
            ),
            Period::Month => Ok(date.first_of_month()),
        };
        start
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_kept_and_written_back() {
        let r: Rules = serde_json::from_str(
            r#"{"max_pages_per_job": 9, "max_colour_pages": 3, "quota": {"pages": 5, "period": "day"}}"#,
        )
        .unwrap();
        assert_eq!(r.max_pages_per_job, 9);
        assert_eq!(r.unknown_keys(), ["max_colour_pages"]);
        let sent = serde_json::to_value(&r).unwrap();
        assert_eq!(sent["max_colour_pages"], 3);
    }

    #[test]
    fn periods_start_at_utc_midnight() {
        // Wednesday 2026-11-18 15:30 UTC.
        let now = jiff::Timestamp::from_second(1_795_015_800)
            .unwrap()
            .as_millisecond();
        let at = |p: Period| {
            jiff::Timestamp::from_millisecond(p.start_ms(now))
                .unwrap()
                .to_string()
        };
        assert_eq!(at(Period::Day), "2026-11-18T00:00:00Z");
        assert_eq!(at(Period::Week), "2026-11-16T00:00:00Z");
        assert_eq!(at(Period::Month), "2026-11-01T00:00:00Z");
    }
}
