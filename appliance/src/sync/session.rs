//! One sync session at the site: the I/O shell around
//! `sync_protocol::site::SiteSession`. It reads the journal and the job
//! outbox as the machine asks, applies policy as it arrives, and wakes
//! whenever the store commits something new. Intake, login and release
//! never wait on it: it only reads what they committed.

use std::time::Instant;

use sync_protocol::message::{
    JobAnnouncement, JobBatch, JournalBatch, JournalRecord, Message, Refusal,
};
use sync_protocol::revision::ROAMING_REVISION;
use sync_protocol::site::{SiteAction, SiteSession, SiteSettings};
use sync_protocol::transport::{self, MessageSender};
use sync_protocol::upload::Load;
use tokio::sync::{mpsc, watch};

use super::SyncContext;
use crate::accounting::JournalEntry;
use crate::job::JobRecord;
use crate::policy::Policy;
use crate::roaming::Roaming;
use crate::store::StoreError;

/// How a session ended.
pub(super) enum SessionEnd {
    /// The connection failed or closed.
    Lost(String),
    /// Central refused (revoked, unknown, out of order, ...).
    Refused(Refusal),
    /// The daemon is stopping.
    Stopped,
    /// The preferred endpoint answered a probe: continue there.
    Switch(quinn::Connection),
}

/// Runs a session on `connection` until it ends. `probe` is polled for a
/// connection to the preferred endpoint while this one is a fallback.
pub(super) async fn run(
    ctx: &mut SyncContext,
    connection: &quinn::Connection,
    settings: SiteSettings,
    shutdown: &mut watch::Receiver<bool>,
    probe: &mut super::Probe<'_>,
) -> SessionEnd {
    let (mut tx, mut rx) = match transport::open_session(connection, ctx.codec).await {
        Ok(halves) => halves,
        Err(e) => return SessionEnd::Lost(e.to_string()),
    };
    let marks = match ctx.store.sync_marks().await {
        Ok(marks) => marks,
        Err(e) => return SessionEnd::Lost(format!("cannot read the store: {e}")),
    };
    let policy_version = ctx.policy.current().version;
    let mut machine = SiteSession::new(
        settings,
        policy_version,
        marks.journal_latest,
        marks.outbox_latest,
        Instant::now(),
    );
    ctx.status.marks(&marks);
    let mut commits = ctx.store.commits();
    // Roaming messages to central, queued by the roaming service while
    // the session speaks roaming (see `crate::roaming`).
    let (roaming_tx, mut roaming_rx) = mpsc::channel::<Message>(ROAMING_QUEUE);
    let mut roaming_link: Option<RoamingLink> = None;
    // The status file follows changes within a second.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some(action) = machine.poll_action() {
            if let Err(end) = act(ctx, &mut machine, &mut tx, action).await {
                return end;
            }
        }
        let deadline = machine.poll_timeout();
        tokio::select! {
            message = rx.recv() => match message {
                Ok(message) => {
                    ctx.status.update(|s| s.last_contact_ms = Some(crate::job::now_ms()));
                    if let Message::Welcome(w) = &message {
                        let site = w.site.clone();
                        ctx.status.update(|s| s.site = Some(site));
                    }
                    machine.handle(message);
                    if roaming_link.is_none()
                        && let Some((site, revision)) = machine.running()
                        && revision >= ROAMING_REVISION
                    {
                        ctx.roaming.linked(site, roaming_tx.clone(), connection.clone());
                        roaming_link = Some(RoamingLink(ctx.roaming.clone()));
                    }
                }
                Err(e) => return SessionEnd::Lost(e.to_string()),
            },
            Some(message) = roaming_rx.recv() => {
                if let Err(e) = tx.send(&message).await {
                    return SessionEnd::Lost(e.to_string());
                }
            }
            stream = connection.accept_uni(), if roaming_link.is_some() => match stream {
                Ok(stream) => ctx.roaming.block_stream(stream),
                Err(e) => return SessionEnd::Lost(e.to_string()),
            },
            Ok(()) = commits.changed() => {
                commits.borrow_and_update();
                match ctx.store.sync_marks().await {
                    Ok(marks) => {
                        machine.journal_available(marks.journal_latest);
                        machine.jobs_available(marks.outbox_latest);
                        ctx.status.marks(&marks);
                    }
                    Err(e) => return SessionEnd::Lost(format!("cannot read the store: {e}")),
                }
            }
            switched = probe.next() => {
                if let Some(preferred) = switched {
                    let _ = tx.finish().await;
                    return SessionEnd::Switch(preferred);
                }
            }
            () = transport::sleep_until(deadline) => machine.handle_timeout(Instant::now()),
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                let _ = tx.finish().await;
                return SessionEnd::Stopped;
            }
        }
        ctx.status.roaming();
        ctx.status.flush(false);
    }
}

/// Roaming messages queued for central before the roaming service waits.
const ROAMING_QUEUE: usize = 64;

/// The roaming service's use of this session, given up when it ends.
struct RoamingLink(Roaming);

impl Drop for RoamingLink {
    fn drop(&mut self) {
        self.0.unlinked("the session with central ended");
    }
}

/// Carries out one action; `Err` ends the session.
async fn act(
    ctx: &mut SyncContext,
    machine: &mut SiteSession,
    tx: &mut MessageSender,
    action: SiteAction,
) -> Result<(), SessionEnd> {
    let lost = |e: &dyn std::fmt::Display| SessionEnd::Lost(e.to_string());
    let store_failed = |e: StoreError| SessionEnd::Lost(format!("the store failed: {e}"));
    match action {
        SiteAction::Send(message) => tx.send(&message).await.map_err(|e| lost(&e))?,
        SiteAction::LoadJournal(Load { after, limit }) => {
            let entries = ctx
                .store
                .journal_after(after, limit)
                .await
                .map_err(store_failed)?;
            machine.journal_loaded(JournalBatch {
                epoch: ctx.epoch.clone(),
                after,
                records: entries.into_iter().map(journal_record).collect(),
            });
        }
        SiteAction::LoadJobs(Load { after, limit }) => {
            let rows = ctx
                .store
                .outbox_after(after, limit)
                .await
                .map_err(store_failed)?;
            machine.jobs_loaded(JobBatch {
                epoch: ctx.epoch.clone(),
                after,
                jobs: rows
                    .into_iter()
                    .map(|(seq, uuid, job)| announcement(seq, uuid, job.as_ref()))
                    .collect(),
            });
        }
        SiteAction::JournalAcknowledged(through) => {
            ctx.store
                .journal_acknowledged(through)
                .await
                .map_err(store_failed)?;
            refresh(ctx).await;
        }
        SiteAction::JobsAcknowledged(through) => {
            ctx.store
                .outbox_acknowledged(through)
                .await
                .map_err(store_failed)?;
            refresh(ctx).await;
        }
        SiteAction::BeginSnapshot { version, users } => {
            tracing::info!(version, users, "sync: receiving a policy snapshot");
            ctx.store.policy_stage_begin().await.map_err(store_failed)?;
        }
        SiteAction::StageUsers(users) => {
            ctx.store.policy_stage(users).await.map_err(store_failed)?;
        }
        SiteAction::CommitSnapshot { version, rules } => {
            ctx.store
                .policy_commit_snapshot(version, rules.clone())
                .await
                .map_err(store_failed)?;
            applied(ctx, machine, version, rules);
        }
        SiteAction::ApplyChanges(changes) => {
            let version = changes.to;
            let rules = changes
                .rules
                .clone()
                .unwrap_or_else(|| ctx.policy.current().rules.clone());
            ctx.store
                .policy_apply_changes(changes)
                .await
                .map_err(store_failed)?;
            applied(ctx, machine, version, rules);
        }
        SiteAction::Roaming(message) => ctx.roaming.handle(message),
        SiteAction::Close(refusal) => return Err(SessionEnd::Refused(refusal)),
    }
    Ok(())
}

/// A policy version is committed: it is in force from now on.
fn applied(
    ctx: &mut SyncContext,
    machine: &mut SiteSession,
    version: u64,
    rules: crate::rules::Rules,
) {
    let unknown = rules.unknown_keys();
    if !unknown.is_empty() {
        tracing::warn!(
            version,
            ?unknown,
            "policy has rules this site does not know and cannot enforce"
        );
    }
    ctx.policy.publish(Policy { version, rules });
    ctx.status.update(|s| s.policy_version = version);
    tracing::info!(version, "policy in force");
    machine.policy_applied(version, unknown);
}

async fn refresh(ctx: &mut SyncContext) {
    if let Ok(marks) = ctx.store.sync_marks().await {
        ctx.status.marks(&marks);
    }
}

fn journal_record(e: JournalEntry) -> JournalRecord {
    JournalRecord {
        seq: e.seq.max(0) as u64,
        job: e.job,
        queue: e.queue,
        job_id: e.job_id,
        user: e.user,
        device: e.device,
        pages: e.pages,
        pages_exact: e.pages_exact,
        sheets: e.sheets,
        copies: e.copies,
        color: e.color.to_owned(),
        sides: e.sides,
        media: e.media,
        time_ms: e.time_ms,
        outcome: e.outcome.to_owned(),
        origin_site: e.origin_site,
    }
}

fn announcement(seq: u64, uuid: String, job: Option<&JobRecord>) -> JobAnnouncement {
    match job {
        Some(job) => JobAnnouncement {
            seq,
            uuid,
            owner: job.owner.clone(),
            name: job.name.clone(),
            pages: job.document.as_ref().and_then(|d| d.analysis.pages),
            size: job.document.as_ref().map(|d| d.size),
            submitted_ms: job.created_ms,
            state: job.state.keyword().to_owned(),
            // A finished job whose document is gone can never print again.
            deleted: job.state.is_terminal() && job.kept_until_ms.is_none(),
        },
        None => JobAnnouncement {
            seq,
            uuid,
            owner: String::new(),
            name: String::new(),
            pages: None,
            size: None,
            submitted_ms: 0,
            state: "deleted".into(),
            deleted: true,
        },
    }
}
