//! Fills a data directory with held jobs through the store's own API, fast,
//! for `tests/bench store` (the appliance's costs with 1k, 100k and 1M
//! stored jobs). Every job is a real one: a document taken by the spool
//! writer (hashed, kept in the database as a small document is) and the
//! job row committed by the store's writer in group commits.
//!
//! `fill_store DATA_DIR COUNT USERS DOCUMENT`: COUNT held jobs on queue
//! `secure`, owned round-robin by `user0` .. `user{USERS-1}`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use appliance::analysis::Analysis;
use appliance::job::{DocumentRecord, DocumentStorage, JobRecord, JobState, JobUuid, now_ms};
use appliance::metrics::Metrics;
use appliance::store::{JobStore, StoreOptions};

/// Inserts in flight at once: enough for the writer's batches to fill.
const IN_FLIGHT: usize = 256;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, count, users, document] = args.as_slice() else {
        bail!("usage: fill_store DATA_DIR COUNT USERS DOCUMENT");
    };
    let count: usize = count.parse().context("COUNT")?;
    let users: usize = users.parse().context("USERS")?;
    let document = Arc::new(std::fs::read(document).context("DOCUMENT")?);
    let options = StoreOptions {
        compression_level: 1,
        inline_max: 256 * 1024,
        site: "bench".into(),
        keep_printed_ms: 0,
        reserve_bytes: 0,
        fleet_key: None,
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let (store, _) = JobStore::open(&dir, options, Arc::new(Metrics::new()))?;
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..IN_FLIGHT {
        let (store, document) = (store.clone(), document.clone());
        tasks.spawn(async move {
            let mut n = lane;
            while n < count {
                insert(&store, &document, &format!("user{}", n % users)).await?;
                n += IN_FLIGHT;
            }
            anyhow::Ok(())
        });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        result??;
        done += 1;
        if done % 64 == 0 {
            eprint!(".");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!();
    println!(
        "{count} jobs stored in {secs:.1} s ({:.0} jobs/s)",
        count as f64 / secs
    );
    Ok(())
}

async fn insert(store: &JobStore, document: &[u8], owner: &str) -> Result<()> {
    let uuid = JobUuid::new();
    let mut writer = store.spool().create(uuid)?;
    writer.write_all(document)?;
    let spooled = writer.finish()?;
    let job = JobRecord {
        uuid,
        queue: "secure".into(),
        ipp_job_id: 0,
        owner: owner.into(),
        name: "filled.pdf".into(),
        state: JobState::PendingHeld,
        state_reasons: "job-hold-until-specified".into(),
        state_message: "Waiting for you to release it at a printer".into(),
        hold_until: Some("indefinite".into()),
        template: Vec::new(),
        document: Some(DocumentRecord {
            format: "application/pdf".into(),
            name: None,
            size: spooled.size,
            spool_size: spooled.spool_size,
            sha256: spooled.sha256.clone(),
            analysis: Analysis::UNKNOWN,
            storage: DocumentStorage::LEGACY,
        }),
        documents_complete: true,
        created_ms: now_ms(),
        processing_ms: None,
        completed_ms: None,
        printer: None,
        device_job_id: None,
        attempts: 0,
        next_attempt_ms: None,
        kept_until_ms: None,
        claim: None,
        origin: None,
    };
    store.insert(job, Some(spooled)).await?;
    Ok(())
}
