//! `appliance jobs list` and `appliance spool check`: the stored jobs and
//! their documents, read beside a running daemon.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use appliance::job::{JobRecord, JobState};
use appliance::store::{JobQuery, StoreReader, spool};

use super::{Failure, utc};

pub(crate) fn list_jobs(
    dir: &Path,
    queue: Option<String>,
    user: Option<String>,
    all: bool,
    json: bool,
) -> Result<(), Failure> {
    let reader = StoreReader::open(dir).context("cannot open the job store")?;
    let mut states = vec![
        JobState::Pending,
        JobState::PendingHeld,
        JobState::Processing,
        JobState::ProcessingStopped,
    ];
    if all {
        states.extend([JobState::Canceled, JobState::Aborted, JobState::Completed]);
    }
    let jobs = reader
        .list(&JobQuery {
            queue,
            states,
            owner: user,
            limit: u32::MAX,
        })
        .context("cannot read jobs")?;
    let mut out = std::io::stdout().lock();
    if json {
        for job in &jobs {
            writeln!(out, "{}", job_json(job)).context("cannot write to stdout")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<14}  {:>5}  {:<12}  {:<10}  {:>10}  {:>6}  {:<20}  NAME",
        "UUID", "QUEUE", "ID", "OWNER", "STATE", "BYTES", "PAGES", "SUBMITTED (UTC)"
    )
    .context("cannot write to stdout")?;
    for job in &jobs {
        writeln!(
            out,
            "{:<36}  {:<14}  {:>5}  {:<12}  {:<10}  {:>10}  {:>6}  {:<20}  {}",
            job.uuid,
            job.queue,
            job.ipp_job_id,
            job.owner,
            job.state.keyword(),
            job.document.as_ref().map_or(0, |d| d.size),
            job.document
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| d.analysis.pages_label()),
            utc(job.created_ms),
            job.name
        )
        .context("cannot write to stdout")?;
    }
    if jobs.is_empty() {
        writeln!(
            out,
            "(no jobs{})",
            if all {
                ""
            } else {
                "; --all shows finished ones"
            }
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}

pub(crate) fn job_json(job: &JobRecord) -> serde_json::Value {
    serde_json::json!({
        "uuid": job.uuid.to_string(),
        "queue": job.queue,
        "job_id": job.ipp_job_id,
        "owner": job.owner,
        "name": job.name,
        "state": job.state.keyword(),
        "state_reasons": job.state_reasons,
        "state_message": job.state_message,
        "format": job.document.as_ref().map(|d| &d.format),
        "size": job.document.as_ref().map(|d| d.size),
        "sha256": job.document.as_ref().map(|d| &d.sha256),
        "stored_in": job.document.as_ref().map(|d| d.storage.place.keyword()),
        "encoding": job.document.as_ref().map(|d| d.storage.encoding.keyword()),
        "pages": job.document.as_ref().and_then(|d| d.analysis.pages),
        "pages_exact": job.document.as_ref().is_some_and(|d| d.analysis.pages_exact),
        "color": job.document.as_ref().map(|d| d.analysis.color.keyword()),
        "created": utc(job.created_ms),
        "printer": job.printer,
    })
}

pub(crate) fn check_spool(dir: &Path) -> Result<(), Failure> {
    let reader = StoreReader::open(dir).context("cannot open the job store")?;
    let mut bad = 0usize;
    let mut checked = 0usize;
    let mut after = None;
    loop {
        let jobs = reader
            .documents_after(after, 500)
            .context("cannot read jobs")?;
        let Some(last) = jobs.last() else { break };
        after = Some(last.uuid);
        for job in &jobs {
            let Some(doc) = &job.document else { continue };
            checked += 1;
            let verdict = reader
                .documents()
                .open(job.uuid, doc)
                .and_then(spool::hash_document);
            match verdict {
                Ok((size, sha)) if size == doc.size && sha == doc.sha256 => {}
                Ok((size, sha)) => {
                    bad += 1;
                    eprintln!(
                        "job {} ({}/{}): stored {size} bytes sha256 {sha}, expected {} bytes sha256 {}",
                        job.uuid, job.queue, job.ipp_job_id, doc.size, doc.sha256
                    );
                }
                Err(e) => {
                    bad += 1;
                    eprintln!("job {} ({}/{}): {e}", job.uuid, job.queue, job.ipp_job_id);
                }
            }
        }
    }
    println!("{checked} documents checked, {bad} damaged or missing");
    if bad > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{bad} stored documents failed the check; their jobs cannot print"
        )));
    }
    Ok(())
}
