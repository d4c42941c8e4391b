//! `appliance report` and `appliance audit`: the accounting journal summed,
//! and the audit log.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use appliance::accounting::{self, GroupBy};
use appliance::store::StoreReader;

use super::args::ReportBy;
use super::{Failure, since_ms, utc};

pub(crate) fn audit(data_dir: &Path, since: Option<&str>, json: bool) -> Result<(), Failure> {
    let since_ms = since_ms(since)?;
    let reader = StoreReader::open(data_dir).context("cannot open the job store")?;
    let events = reader
        .audit_since(since_ms)
        .context("cannot read the audit log")?;
    let mut out = std::io::stdout().lock();
    for e in &events {
        if json {
            let line = serde_json::to_string(e).context("cannot encode an event")?;
            writeln!(out, "{line}")
        } else {
            writeln!(
                out,
                "{:>6}  {}  {:<13}  {:<12}  {:<12}  {:<36}  {}",
                e.seq,
                utc(e.time_ms),
                e.action,
                e.user.as_deref().unwrap_or("-"),
                e.device.as_deref().unwrap_or("-"),
                e.job.as_deref().unwrap_or("-"),
                e.detail
            )
        }
        .context("cannot write to stdout")?;
    }
    Ok(())
}

pub(crate) fn report(
    data_dir: &Path,
    by: ReportBy,
    since: Option<&str>,
    csv: bool,
) -> Result<(), Failure> {
    let since_ms = since_ms(since)?;
    let reader = StoreReader::open(data_dir).context("cannot open the job store")?;
    let entries = reader
        .journal_since(since_ms)
        .context("cannot read the accounting journal")?;
    let (by, label) = match by {
        ReportBy::User => (GroupBy::User, "USER"),
        ReportBy::Device => (GroupBy::Device, "PRINTER"),
        ReportBy::Day => (GroupBy::Day, "DAY (UTC)"),
    };
    let rows = accounting::report(&entries, by);
    let stdout = std::io::stdout();
    if csv {
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(stdout.lock());
        out.write_record([
            "key",
            "jobs",
            "pages",
            "color_pages",
            "sheets",
            "jobs_pages_unknown",
            "failed",
            "uncertain",
        ])
        .context("cannot write to stdout")?;
        for row in &rows {
            out.serialize(row).context("cannot write to stdout")?;
        }
        out.flush().context("cannot write to stdout")?;
        return Ok(());
    }
    let mut out = stdout.lock();
    writeln!(
        out,
        "{label:<24}  {:>6}  {:>8}  {:>8}  {:>8}  {:>13}  {:>6}  {:>9}",
        "JOBS", "PAGES", "COLOR", "SHEETS", "PAGES UNKNOWN", "FAILED", "UNCERTAIN"
    )
    .context("cannot write to stdout")?;
    for r in &rows {
        writeln!(
            out,
            "{:<24}  {:>6}  {:>8}  {:>8}  {:>8}  {:>13}  {:>6}  {:>9}",
            r.key,
            r.jobs,
            r.pages,
            r.color_pages,
            r.sheets,
            r.jobs_pages_unknown,
            r.failed,
            r.uncertain
        )
        .context("cannot write to stdout")?;
    }
    if rows.is_empty() {
        writeln!(
            out,
            "(nothing printed{})",
            if since.is_some() {
                " since then"
            } else {
                " yet"
            }
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}
