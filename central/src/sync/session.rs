//! One site's sync session: the I/O shell around
//! `sync_protocol::central::CentralSession`. Batches are stored in order
//! by a worker of the session while the next ones arrive; policy goes out
//! when the site connects and whenever it changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sync_protocol::central::{CentralAction, CentralSession};
use sync_protocol::frame::{FrameCodec, MAX_FRAME};
use sync_protocol::message::{
    JobBatch, JournalBatch, Message, PolicySnapshotBegin, PolicySnapshotEnd, PolicyUsers, Refusal,
};
use sync_protocol::revision::ROAMING_REVISION;
use sync_protocol::transport::{self, CLOSE_DONE, MessageSender};
use tokio::sync::mpsc;

use super::registry::Link;
use super::relay::Hop;
use super::{Shared, refuse, relay};
use crate::store::{CentralStore, PolicyDelta, SnapshotPart, StoreError};

/// Batches queued for the store worker: with the window of the site, this
/// bounds what a session holds in memory.
const STORE_QUEUE: usize = 4;
/// Batches a session's store worker stores in one transaction at most:
/// half a site's window of four, so that while they commit and are
/// acknowledged the site sends the next ones (merging the whole window
/// would leave the site waiting on every commit).
const MERGED: usize = 2;
/// Roaming messages waiting to go to this session's site: beyond this the
/// site is not keeping up, and a message for it is refused at once (its
/// sender asks again) rather than queued without bound.
const ROAMING_INBOX: usize = 256;

enum Stored {
    Journal(Result<u64, StoreError>),
    Jobs(Result<u64, StoreError>),
}

enum Batch {
    Journal(JournalBatch),
    Jobs(JobBatch),
}

impl Batch {
    /// Appends `next` if it is of the same log and continues this batch.
    fn absorb(&mut self, next: Batch) -> Result<(), Batch> {
        match (self, next) {
            (Batch::Journal(batch), Batch::Journal(next)) => {
                batch.absorb(next).map_err(Batch::Journal)
            }
            (Batch::Jobs(batch), Batch::Jobs(next)) => batch.absorb(next).map_err(Batch::Jobs),
            (_, next) => Err(next),
        }
    }
}

pub(super) async fn run<S: CentralStore>(
    shared: &Arc<Shared<S>>,
    connection: quinn::Connection,
    site: String,
) {
    let remote = connection.remote_address();
    let hello = Duration::from_secs(shared.config.sync.hello_timeout_secs);
    let codec = FrameCodec::new(MAX_FRAME, shared.config.sync.compress);
    let Ok(Ok((mut tx, mut rx))) =
        tokio::time::timeout(hello, transport::accept_session(&connection, codec)).await
    else {
        return;
    };
    let (end_tx, mut end_rx) = mpsc::channel::<Refusal>(1);
    let registration = shared.registry.register(&site, end_tx);
    // Other nodes find the site here from now on.
    if let Err(e) = shared
        .store
        .session_opened(site.clone(), shared.nodes.address.clone())
        .await
    {
        tracing::warn!(%site, error = %e, "sync: cannot record the session for other nodes");
    }
    // Roaming messages other sites send this one, queued for its stream.
    let (inbox_tx, mut inbox) = mpsc::channel::<Message>(ROAMING_INBOX);
    let mut policy = shared.policy.subscribe();
    let mut machine = CentralSession::new(site.clone(), hello, Instant::now());

    // The store worker: one transaction at a time, in arrival order.
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(STORE_QUEUE);
    let (stored_tx, mut stored_rx) = mpsc::channel::<Stored>(STORE_QUEUE);
    let store = shared.store.clone();
    let worker_site = site.clone();
    let worker = tokio::spawn(async move {
        let mut held = None;
        loop {
            let mut batch = match held.take() {
                Some(batch) => batch,
                None => match batch_rx.recv().await {
                    Some(batch) => batch,
                    None => break,
                },
            };
            // What else waits and continues this batch is stored with it,
            // in one transaction, up to MERGED batches.
            for _ in 1..MERGED {
                let Ok(next) = batch_rx.try_recv() else { break };
                if let Err(next) = batch.absorb(next) {
                    held = Some(next);
                    break;
                }
            }
            let done = match batch {
                Batch::Journal(b) => {
                    Stored::Journal(store.store_journal(worker_site.clone(), b).await)
                }
                Batch::Jobs(b) => Stored::Jobs(store.store_jobs(worker_site.clone(), b).await),
            };
            if stored_tx.send(done).await.is_err() {
                break;
            }
        }
    });
    tracing::info!(%site, %remote, "sync: session open");

    let ended = 'session: loop {
        while let Some(action) = machine.poll_action() {
            match action {
                CentralAction::Send(message) => {
                    if let Err(e) = tx.send(&message).await {
                        break 'session Some(format!("cannot send: {e}"));
                    }
                }
                CentralAction::LoadSite { epoch } => {
                    match shared.store.begin_session(site.clone(), epoch).await {
                        Ok((journal, jobs)) => {
                            machine.site_loaded(journal, jobs);
                            if machine.revision() >= Some(ROAMING_REVISION) {
                                registration.link(Link {
                                    inbox: inbox_tx.clone(),
                                    connection: connection.clone(),
                                });
                            }
                        }
                        Err(e) => {
                            machine.site_unavailable(&format!("central cannot serve now: {e}"))
                        }
                    }
                }
                CentralAction::StoreJournal(batch) => {
                    let _ = batch_tx.send(Batch::Journal(batch)).await;
                }
                CentralAction::StoreJobs(batch) => {
                    let _ = batch_tx.send(Batch::Jobs(batch)).await;
                }
                CentralAction::SendPolicy { since } => {
                    match send_policy(shared, &mut tx, since).await {
                        Ok(version) => machine.policy_sent(version),
                        Err(e) => machine.store_failed(&format!("policy could not be sent: {e}")),
                    }
                }
                CentralAction::SiteApplied(applied) => {
                    if !applied.unknown_rules.is_empty() {
                        tracing::warn!(%site, version = applied.version, unknown = ?applied.unknown_rules,
                            "site cannot enforce rules it does not know");
                    }
                    if let Err(e) = shared
                        .store
                        .site_applied(site.clone(), applied.version, applied.unknown_rules)
                        .await
                    {
                        tracing::error!(%site, error = %e, "sync: cannot record the site's policy version");
                    }
                }
                CentralAction::Roaming(message) => {
                    if let Some(answer) = relay::from_site(shared, &site, message).await
                        && let Err(e) = tx.send(&answer).await
                    {
                        break 'session Some(format!("cannot send: {e}"));
                    }
                }
                CentralAction::Close(_) => break,
            }
        }
        if machine.is_closed() {
            break None;
        }
        let deadline = machine.poll_timeout();
        tokio::select! {
            message = rx.recv() => match message {
                Ok(message) => machine.handle(message),
                Err(e) => break Some(e.to_string()),
            },
            Some(stored) = stored_rx.recv() => match stored {
                Stored::Journal(Ok(through)) => machine.journal_stored(through),
                Stored::Jobs(Ok(through)) => machine.jobs_stored(through),
                Stored::Journal(Err(e)) | Stored::Jobs(Err(e)) => {
                    tracing::error!(%site, error = %e, "sync: a batch could not be stored");
                    machine.store_failed("central could not store a batch; send it again later");
                }
            },
            Some(message) = inbox.recv() => {
                if let Err(e) = tx.send(&message).await {
                    break Some(format!("cannot send: {e}"));
                }
            }
            stream = connection.accept_uni(), if machine.revision() >= Some(ROAMING_REVISION) => {
                match stream {
                    Ok(stream) => {
                        tokio::spawn(relay::block(
                            shared.clone(),
                            Hop::Site(site.clone()),
                            stream,
                        ));
                    }
                    Err(e) => break Some(e.to_string()),
                }
            }
            Ok(()) = policy.changed() => {
                let version = *policy.borrow_and_update();
                machine.policy_changed(version);
            }
            Some(refusal) = end_rx.recv() => {
                refuse(&connection, &mut tx, refusal).await;
                break Some("ended by central".into());
            }
            () = transport::sleep_until(deadline) => machine.handle_timeout(Instant::now()),
        }
    };
    drop(batch_tx);
    drop(registration);
    if !shared.registry.connected_now(&site)
        && let Err(e) = shared
            .store
            .session_closed(site.clone(), shared.nodes.address.clone())
            .await
    {
        tracing::warn!(%site, error = %e, "sync: cannot record the session's end for other nodes");
    }
    let _ = worker.await;
    match ended {
        Some(why) => tracing::info!(%site, %remote, "sync: session over: {why}"),
        None => {
            let _ = tx.finish().await;
            let _ = tokio::time::timeout(super::LINGER, connection.closed()).await;
            connection.close(CLOSE_DONE.into(), b"session over");
            tracing::info!(%site, %remote, "sync: session closed");
        }
    }
}

/// Sends a site at policy `since` what it lacks; the version it will have.
async fn send_policy<S: CentralStore>(
    shared: &Shared<S>,
    tx: &mut MessageSender,
    since: u64,
) -> Result<u64, String> {
    let store = &shared.store;
    let current = *shared.policy.borrow();
    let delta = shared.deltas.since(store, since, current).await;
    match delta.map_err(|e| e.to_string())? {
        PolicyDelta::Current => Ok(since),
        PolicyDelta::Changes(changes) => {
            let to = changes.to;
            tx.send(&Message::PolicyChanges(changes))
                .await
                .map_err(|e| e.to_string())?;
            Ok(to)
        }
        PolicyDelta::Snapshot { .. } => {
            let (parts_tx, mut parts) = mpsc::channel(2);
            let reader = {
                let store = store.clone();
                tokio::spawn(async move { store.snapshot(parts_tx).await })
            };
            let mut head = None;
            while let Some(part) = parts.recv().await {
                let message = match part {
                    SnapshotPart::Head(h) => {
                        let begin = Message::PolicySnapshotBegin(PolicySnapshotBegin {
                            version: h.version,
                            users: h.users,
                        });
                        head = Some(h);
                        begin
                    }
                    SnapshotPart::Users(users) => Message::PolicyUsers(PolicyUsers {
                        version: head.as_ref().map_or(0, |h| h.version),
                        users,
                    }),
                };
                tx.feed(&message).await.map_err(|e| e.to_string())?;
            }
            reader
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let head = head.ok_or("the snapshot had no head")?;
            tx.send(&Message::PolicySnapshotEnd(PolicySnapshotEnd {
                version: head.version,
                rules: head.rules,
            }))
            .await
            .map_err(|e| e.to_string())?;
            Ok(head.version)
        }
    }
}
