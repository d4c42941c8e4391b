//! Hot folders (`[[hot_folder]]`): every file a scanner, an ERP system or
//! a person drops into a watched directory becomes one job, owned by the
//! user its name or its directory names. The folder is watched with
//! `notify` and also rescanned every 30 s (inotify misses events when its
//! queue overflows). A file is taken once it has stopped changing
//! ([`settle`]), through `.taking/` ([`folder`]) so a crash never loses or
//! duplicates it, and its document goes through the IPP service's own
//! intake ([`IppService::submit`]): same spool, limits, analysis and
//! accounting as a Print-Job's. Files that cannot become jobs move to
//! `rejected/` with the reason beside them.

pub mod folder;
pub mod naming;
pub mod settle;

use std::collections::{HashSet, VecDeque};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::HotFolderConfig;
use crate::format;
use crate::ipp::error::IppError;
use crate::ipp::service::{ForeignJob, IppService};
use folder::{Folder, Taken};
use naming::OwnerRule;
use settle::Settling;

/// Files turned into jobs at once per folder (each holds a spool writer).
const INGESTING: usize = 4;
/// Rescan this often even without events, and retry what failed for a
/// passing reason (a full disk, a busy appliance) this long after.
const RESCAN: Duration = Duration::from_secs(30);
/// Least time between two scans, so a burst of events costs one.
const SCAN_GAP: Duration = Duration::from_millis(100);

/// What became of one taken file.
enum Outcome {
    /// Its job is stored (or the file vanished); the file is gone or in `done/`.
    Finished,
    /// It is in `rejected/`.
    Rejected,
    /// It stays in `.taking/` for another try.
    Retry(Taken),
}

/// One folder's settings, shared by its ingesting tasks.
struct Plan {
    folder: Folder,
    rule: OwnerRule,
    queue: String,
    keep_done: bool,
    service: Arc<IppService>,
}

/// Watches one hot folder until `shutdown` turns true. A file half taken
/// at shutdown stays in `.taking/` and is finished at the next start.
pub async fn watch(
    config: HotFolderConfig,
    service: Arc<IppService>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rule = OwnerRule::of(&config);
    let plan = Arc::new(Plan {
        folder: Folder::new(config.path.clone(), rule.depth()),
        rule,
        queue: config.queue.clone(),
        keep_done: config.keep_done,
        service,
    });
    let root = config.path.display().to_string();
    // A folder on a share that is not mounted yet: keep trying.
    loop {
        let prepared = blocking(plan.clone(), |p| {
            p.folder.prepare(p.keep_done)?;
            p.folder.left_taking()
        })
        .await;
        match prepared {
            Ok(left) => {
                if !left.is_empty() {
                    tracing::info!(folder = %root, files = left.len(), "hot folder finishing files taken before a stop");
                }
                return run(plan, config.settle(), left, shutdown).await;
            }
            Err(e) => {
                tracing::error!(folder = %root, error = %e, "hot folder cannot be used; trying again in 30 s (create it, or let the appliance write in it)");
                tokio::select! {
                    _ = tokio::time::sleep(RESCAN) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

async fn run(
    plan: Arc<Plan>,
    settle: Duration,
    left: Vec<Taken>,
    mut shutdown: watch::Receiver<bool>,
) {
    let root = plan.folder.root().display().to_string();
    let (events, mut changed) = mpsc::channel::<()>(1);
    let mut watcher = Changes::watch(plan.folder.root(), events);
    tracing::info!(folder = %root, queue = %plan.queue, "hot folder watched");
    let mut settling = Settling::default();
    let mut queued: VecDeque<Taken> = left.into();
    let mut retrying: Vec<(Instant, Taken)> = Vec::new();
    let mut ingesting = JoinSet::new();
    let mut scan_at = Instant::now();
    let mut last_scan = scan_at;
    loop {
        let now = Instant::now();
        if now >= scan_at {
            last_scan = now;
            let dropped = blocking(plan.clone(), |p| p.folder.dropped()).await;
            let settled = match dropped {
                Ok(dropped) => {
                    watcher.follow(&dropped.directories);
                    let (settled, due) = settling.observe(now.into_std(), dropped.files, settle);
                    scan_at =
                        due.map_or(now + RESCAN, |due| Instant::from_std(due).min(now + RESCAN));
                    settled
                }
                Err(e) => {
                    tracing::warn!(folder = %root, error = %e, "hot folder cannot be listed");
                    scan_at = now + RESCAN;
                    Vec::new()
                }
            };
            if !settled.is_empty() {
                match blocking(plan.clone(), move |p| p.folder.take(settled)).await {
                    Ok(taken) => queued.extend(taken),
                    Err(e) => {
                        tracing::warn!(folder = %root, error = %e, "hot folder cannot take its files")
                    }
                }
            }
        }
        let (due, waiting): (Vec<_>, Vec<_>) = retrying.drain(..).partition(|(at, _)| *at <= now);
        retrying = waiting;
        queued.extend(due.into_iter().map(|(_, taken)| taken));
        while ingesting.len() < INGESTING {
            let Some(taken) = queued.pop_front() else {
                break;
            };
            ingesting.spawn(ingest(plan.clone(), taken));
        }
        let retry_at = retrying.iter().map(|(at, _)| *at).min();
        let wake = retry_at.map_or(scan_at, |at| at.min(scan_at));
        tokio::select! {
            Some(()) = changed.recv() => {
                scan_at = scan_at.min(last_scan + SCAN_GAP);
            }
            Some(finished) = ingesting.join_next() => {
                if let Ok(Outcome::Retry(taken)) = finished {
                    retrying.push((Instant::now() + RESCAN, taken));
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Turns one taken file into a job, or rejects it.
async fn ingest(plan: Arc<Plan>, taken: Taken) -> Outcome {
    let path = plan.folder.path_of(&taken);
    let store = &plan.service.store;
    // Stored before a crash: only the file's move is left to do.
    let stored = match store.job(taken.uuid).await {
        Ok(stored) => stored.is_some(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "hot folder cannot look up the file's job; trying again later");
            return Outcome::Retry(taken);
        }
    };
    if !stored {
        match submit(&plan, &taken, &path).await {
            Ok(()) => {}
            Err(Refusal::Reject(reason)) => return reject(plan, taken, reason).await,
            Err(Refusal::Gone) => {
                tracing::warn!(file = %path.display(), "hot folder file vanished before it was read");
            }
            Err(Refusal::Retry(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "hot folder file not taken yet; trying again in 30 s");
                return Outcome::Retry(taken);
            }
        }
    }
    let moved = {
        let taken = taken.clone();
        blocking(plan, move |p| p.folder.finish(&taken, p.keep_done)).await
    };
    match moved {
        Ok(()) => Outcome::Finished,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "hot folder job stored, but its file cannot be moved away; trying again in 30 s");
            Outcome::Retry(taken)
        }
    }
}

/// Why a file did not become a job.
enum Refusal {
    /// For a reason in the file itself: it goes to `rejected/`.
    Reject(String),
    /// It is no longer there.
    Gone,
    /// For a passing reason: it is tried again.
    Retry(String),
}

async fn submit(plan: &Plan, taken: &Taken, path: &Path) -> Result<(), Refusal> {
    let naming = naming::name(&plan.rule, &taken.relative).map_err(Refusal::Reject)?;
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Refusal::Gone),
        Err(e) => {
            return Err(Refusal::Reject(format!(
                "the appliance cannot read it: {e}"
            )));
        }
    };
    let prefix = read_prefix(&mut file)
        .await
        .map_err(|e| Refusal::Reject(format!("the appliance cannot read it: {e}")))?;
    if prefix.is_empty() {
        return Err(Refusal::Reject("it is empty".to_owned()));
    }
    if format::detect(&prefix).is_none() {
        return Err(Refusal::Reject(
            "it is not in a format the printers take (PDF, PostScript, PCL, PWG raster, \
             Apple raster or JPEG); export or print it to PDF first"
                .to_owned(),
        ));
    }
    let job = ForeignJob {
        uuid: taken.uuid,
        queue: plan.queue.clone(),
        owner: naming.owner,
        name: naming.job_name.clone(),
        document_name: Some(naming.job_name),
        template: Vec::new(),
        client: None,
        by: "hot-folder",
    };
    let mut body = Cursor::new(prefix).chain(file);
    match plan.service.submit(job, &mut body).await {
        Ok(_) => Ok(()),
        Err(
            e @ (IppError::TooLarge(_)
            | IppError::FormatError(_)
            | IppError::FormatNotSupported(_)
            | IppError::BadRequest(_)),
        ) => Err(Refusal::Reject(e.to_string())),
        Err(e) => Err(Refusal::Retry(e.to_string())),
    }
}

async fn reject(plan: Arc<Plan>, taken: Taken, reason: String) -> Outcome {
    let file = plan.folder.path_of(&taken);
    let moved = {
        let (taken, reason) = (taken.clone(), reason.clone());
        blocking(plan, move |p| p.folder.reject(&taken, &reason)).await
    };
    match moved {
        Ok(to) => {
            tracing::warn!(file = %to.display(), %reason, "hot folder file rejected");
            Outcome::Rejected
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), %reason, error = %e, "hot folder file rejected, but it cannot be moved to rejected/; trying again in 30 s");
            Outcome::Retry(taken)
        }
    }
}

/// The document's first bytes, enough to recognise its format.
async fn read_prefix(file: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(format::PREFIX_LEN);
    while prefix.len() < format::PREFIX_LEN {
        let room = (format::PREFIX_LEN - prefix.len()) as u64;
        if (&mut *file).take(room).read_buf(&mut prefix).await? == 0 {
            break;
        }
    }
    Ok(prefix)
}

/// The folder's change events, coalesced into "look again". The folder
/// and each owner's directory are watched on their own (not recursively:
/// that would watch the appliance's own `.taking/` too).
struct Changes {
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

impl Changes {
    fn watch(root: &Path, events: mpsc::Sender<()>) -> Changes {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error (an overflowed queue): look again to be sure.
            if event.is_err() || event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = events.try_send(());
            }
        });
        let mut changes = Changes {
            watcher: watcher.ok(),
            watched: HashSet::new(),
        };
        changes.follow(&[root.to_owned()]);
        if changes.watched.is_empty() {
            tracing::warn!(folder = %root.display(), "hot folder cannot be watched for changes; it is scanned every 30 s instead");
        }
        changes
    }

    /// Watches `directories` too, and no longer those gone.
    fn follow(&mut self, directories: &[PathBuf]) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for dir in directories {
            if !self.watched.contains(dir)
                && watcher.watch(dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.insert(dir.clone());
            }
        }
        self.watched.retain(|dir| dir.is_dir());
    }
}

/// Runs a folder operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    plan: Arc<Plan>,
    work: impl FnOnce(&Plan) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(move || work(&plan))
        .await
        .map_err(io::Error::other)?
}
