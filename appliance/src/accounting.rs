//! The accounting journal: one record per attempt to print a job that
//! ended, and the reports drawn from it. An attempt ends when the printer
//! finished the job (or gave up on it, or it was canceled while printing),
//! or when the appliance cannot tell whether it printed (the connection
//! broke after the whole document was sent, or a restart found it mid-way
//! to a printer that keeps no job list): that attempt is journaled as
//! `uncertain` and the job held for its owner, so every sheet a printer may
//! have produced is in the journal once, and reports count the uncertain
//! ones apart.
//!
//! [`entry_for`] decides, from a job's state change alone, whether the
//! change ends a print and what the record says; the store calls it inside
//! the transaction that writes the change, so a job's terminal state and
//! its journal record are committed together or not at all, and a record
//! is never written twice for one print. Records are numbered by a
//! site-local sequence that never repeats (SQLite `AUTOINCREMENT`).

use serde::Serialize;

use crate::analysis::DocumentColor;
use crate::ipp_wire::stored_template;
use crate::job::{JobRecord, JobState};

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// Site-local sequence number (0 until the store assigns it).
    pub seq: i64,
    /// The job.
    pub job: String,
    /// Queue and IPP job-id, as users know the job.
    pub queue: String,
    /// IPP job-id in `queue`.
    pub job_id: i32,
    /// Owner.
    pub user: String,
    /// Printer id.
    pub device: String,
    /// This site.
    pub site: String,
    /// Impressions, all copies (`None` when the document's pages are unknown).
    pub pages: Option<u32>,
    /// Whether `pages` rests on an exact page count.
    pub pages_exact: bool,
    /// Physical sheets, all copies.
    pub sheets: Option<u32>,
    /// Copies.
    pub copies: u32,
    /// `color` or `monochrome`.
    pub color: &'static str,
    /// `sides` keyword.
    pub sides: String,
    /// Media name, when the job named one.
    pub media: Option<String>,
    /// When the job finished, ms since the Unix epoch.
    pub time_ms: i64,
    /// `completed`, `aborted`, `canceled` or `uncertain`.
    pub outcome: &'static str,
    /// For a job fetched from another site: that site.
    pub origin_site: Option<String>,
}

/// The journal record a state change produces, if it produces one: when a
/// job being sent to a printer (`processing`) reaches a final state, or is
/// held while still on record at that printer (it may have printed). A job
/// put back on hold because it certainly did not print has no printer on
/// record any more, and gets no record.
pub fn entry_for(before: JobState, job: &JobRecord, site: &str) -> Option<JournalEntry> {
    let ended = job.state.is_terminal() || job.state == JobState::PendingHeld;
    if before != JobState::Processing || !ended {
        return None;
    }
    let device = job.printer.clone()?;
    let settings = stored_template::settings(&job.template);
    let analysis = job.document.as_ref().map(|d| d.analysis);
    let doc_pages = analysis
        .and_then(|a| a.pages)
        .map(|p| settings.pages_printed(p));
    let per_copy_sheets = doc_pages.map(|p| {
        if settings.two_sided() {
            p.div_ceil(2)
        } else {
            p
        }
    });
    let mono = settings.color_mode.as_deref() == Some("monochrome")
        || analysis.is_some_and(|a| a.color == DocumentColor::Monochrome);
    Some(JournalEntry {
        seq: 0,
        job: job.uuid.to_string(),
        queue: job.queue.clone(),
        job_id: job.ipp_job_id,
        user: job.owner.clone(),
        device,
        site: site.to_owned(),
        pages: doc_pages.map(|p| p.saturating_mul(settings.copies)),
        pages_exact: analysis.is_some_and(|a| a.pages_exact),
        sheets: per_copy_sheets.map(|s| s.saturating_mul(settings.copies)),
        copies: settings.copies,
        color: if mono { "monochrome" } else { "color" },
        sides: settings.sides,
        media: settings.media,
        time_ms: job.completed_ms.unwrap_or(job.created_ms),
        outcome: match job.state {
            JobState::Completed => "completed",
            JobState::Canceled => "canceled",
            JobState::PendingHeld => "uncertain",
            _ => "aborted",
        },
        origin_site: job.origin.as_ref().map(|o| o.site.clone()),
    })
}

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Per user.
    User,
    /// Per printer.
    Device,
    /// Per calendar day (UTC).
    Day,
}

/// One line of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// User, device or `YYYY-MM-DD`.
    pub key: String,
    /// Jobs printed.
    pub jobs: u64,
    /// Impressions printed.
    pub pages: u64,
    /// Of which in colour.
    pub color_pages: u64,
    /// Sheets used.
    pub sheets: u64,
    /// Printed jobs whose page count is unknown (not in `pages`).
    pub jobs_pages_unknown: u64,
    /// Jobs the printer aborted or that were canceled while printing.
    pub failed: u64,
    /// Attempts that may or may not have printed (not in `jobs`).
    pub uncertain: u64,
}

/// Sums journal entries into report rows, sorted by key.
pub fn report<'a>(
    entries: impl IntoIterator<Item = &'a JournalEntry>,
    by: GroupBy,
) -> Vec<ReportRow> {
    let mut rows: std::collections::BTreeMap<String, ReportRow> = Default::default();
    for e in entries {
        let key = match by {
            GroupBy::User => e.user.clone(),
            GroupBy::Device => e.device.clone(),
            GroupBy::Day => day(e.time_ms),
        };
        let row = rows.entry(key.clone()).or_insert_with(|| ReportRow {
            key,
            ..ReportRow::default()
        });
        match e.outcome {
            "completed" => {}
            "uncertain" => {
                row.uncertain += 1;
                continue;
            }
            _ => {
                row.failed += 1;
                continue;
            }
        }
        row.jobs += 1;
        match e.pages {
            Some(pages) => {
                row.pages += u64::from(pages);
                row.sheets += u64::from(e.sheets.unwrap_or(pages));
                if e.color == "color" {
                    row.color_pages += u64::from(pages);
                }
            }
            None => row.jobs_pages_unknown += 1,
        }
    }
    rows.into_values().collect()
}

/// `YYYY-MM-DD` (UTC) of a time in ms since the epoch.
fn day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "invalid-date".to_owned())
}

/// Parses `--since`: a date (`2026-11-01`, midnight UTC) or an RFC 3339
/// timestamp. Returns ms since the epoch.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        format!("`{text}` is not a date (YYYY-MM-DD) or an RFC 3339 time (2026-11-01T08:00:00Z)")
    })?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Analysis;
    use crate::ipp_wire::values::{attr, keyword};
    use ipp::prelude::IppValue;

    fn printed(template: Vec<u8>, pages: Option<u32>) -> JobRecord {
        let mut job = JobRecord::sample();
        job.state = JobState::Completed;
        job.processing_ms = Some(job.created_ms + 1000);
        job.completed_ms = Some(job.created_ms + 2000);
        job.printer = Some("lobby".into());
        job.template = template;
        if let Some(doc) = &mut job.document {
            doc.analysis = Analysis {
                pages,
                pages_exact: pages.is_some(),
                color: DocumentColor::Unknown,
            };
        }
        job
    }

    #[test]
    fn a_finished_print_gives_one_record() {
        let job = printed(Vec::new(), Some(3));
        let e = entry_for(JobState::Processing, &job, "branch-7").unwrap();
        assert_eq!(
            (e.pages, e.sheets, e.copies, e.color, e.outcome),
            (Some(3), Some(3), 1, "color", "completed")
        );
        assert_eq!((e.device.as_str(), e.site.as_str()), ("lobby", "branch-7"));
        // Already finished before: no second record.
        assert!(entry_for(JobState::Completed, &job, "branch-7").is_none());
    }

    #[test]
    fn jobs_that_never_reached_a_printer_are_not_recorded() {
        let mut job = printed(Vec::new(), Some(3));
        job.processing_ms = None;
        job.state = JobState::Canceled;
        assert!(entry_for(JobState::PendingHeld, &job, "s").is_none());
        let mut waiting = printed(Vec::new(), Some(3));
        waiting.state = JobState::Pending;
        assert!(entry_for(JobState::Processing, &waiting, "s").is_none());
        // Back on hold because it certainly did not print: no printer on record.
        let mut returned = printed(Vec::new(), Some(3));
        returned.state = JobState::PendingHeld;
        returned.clear_output();
        assert!(entry_for(JobState::Processing, &returned, "s").is_none());
    }

    #[test]
    fn an_attempt_that_may_have_printed_is_recorded_once_as_uncertain() {
        let mut held = printed(Vec::new(), Some(3));
        held.state = JobState::PendingHeld;
        let e = entry_for(JobState::Processing, &held, "s").unwrap();
        assert_eq!((e.outcome, e.device.as_str()), ("uncertain", "lobby"));
        // Its later end (deleted, expired) is no second record.
        held.state = JobState::Canceled;
        assert!(entry_for(JobState::PendingHeld, &held, "s").is_none());
        let rows = report(&[e], GroupBy::User);
        assert_eq!((rows[0].jobs, rows[0].failed, rows[0].uncertain), (0, 0, 1));
    }

    #[test]
    fn copies_duplex_and_mono_shape_the_record() {
        let template = stored_template::encode(&[
            attr("copies", IppValue::Integer(2)),
            attr("sides", keyword("two-sided-long-edge")),
            attr("print-color-mode", keyword("monochrome")),
        ]);
        let e = entry_for(JobState::Processing, &printed(template, Some(5)), "s").unwrap();
        assert_eq!(
            (e.pages, e.sheets, e.copies, e.color),
            (Some(10), Some(6), 2, "monochrome")
        );
        // Only the pages inside page-ranges print (ranges past the end do not).
        let ranged = stored_template::encode(&[
            attr("copies", IppValue::Integer(3)),
            attr(
                "page-ranges",
                IppValue::Array(vec![
                    IppValue::RangeOfInteger { min: 2, max: 3 },
                    IppValue::RangeOfInteger { min: 5, max: 9 },
                ]),
            ),
        ]);
        let e = entry_for(JobState::Processing, &printed(ranged, Some(5)), "s").unwrap();
        assert_eq!((e.pages, e.sheets), (Some(9), Some(9)));
        let unknown = entry_for(JobState::Processing, &printed(Vec::new(), None), "s").unwrap();
        assert_eq!((unknown.pages, unknown.sheets), (None, None));
    }

    #[test]
    fn reports_sum_printed_jobs_and_count_failures() {
        let mut entries = Vec::new();
        for (user, pages, outcome, color) in [
            ("alice", Some(3), "completed", "color"),
            ("alice", Some(2), "completed", "monochrome"),
            ("alice", Some(9), "aborted", "color"),
            ("bob", None, "completed", "color"),
        ] {
            let mut e =
                entry_for(JobState::Processing, &printed(Vec::new(), Some(1)), "s").unwrap();
            e.user = user.into();
            e.pages = pages;
            e.sheets = pages;
            e.outcome = outcome;
            e.color = color;
            entries.push(e);
        }
        let rows = report(&entries, GroupBy::User);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].jobs,
                rows[0].pages,
                rows[0].color_pages,
                rows[0].failed
            ),
            (2, 5, 3, 1)
        );
        assert_eq!((rows[1].jobs, rows[1].jobs_pages_unknown), (1, 1));
        let days = report(&entries, GroupBy::Day);
        assert_eq!(days[0].key, "2023-11-14");
    }

    #[test]
    fn since_takes_dates_and_times() {
        assert_eq!(parse_since("1970-01-02"), Ok(86_400_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1000));
        assert!(parse_since("yesterday").unwrap_err().contains("YYYY-MM-DD"));
    }
}
