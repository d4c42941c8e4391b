//! The site's end of one sync session, as a pure state machine.
//!
//! The shell (the appliance's sync task) feeds it what arrives and what
//! its store reports, and carries out the [`SiteAction`]s it queues: send
//! a message, read a batch from the journal or the job outbox, stage or
//! apply policy, record an acknowledgement. Time comes in as arguments; the
//! only timer is the deadline for central's [`Welcome`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::{
    Hello, JobBatch, JournalBatch, Message, PolicyApplied, PolicyChanges, PolicyUser, Refusal,
    RefusalCode, Welcome,
};
use crate::revision::{REVISION, ROAMING_REVISION, Revisions};
use crate::rules::Rules;
use crate::upload::{Load, Upload};

/// How a site session behaves.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// The site's software, sent in [`Hello`].
    pub software: String,
    /// The site's journal epoch.
    pub epoch: String,
    /// Batches in flight per log.
    pub window: usize,
    /// Records per batch.
    pub batch: usize,
    /// How long to wait for [`Welcome`].
    pub hello_timeout: Duration,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum SiteAction {
    /// Send a message to central.
    Send(Message),
    /// Read journal records (`seq > after`, at most `limit`) and hand them
    /// to [`SiteSession::journal_loaded`].
    LoadJournal(Load),
    /// Read job announcements from the outbox and hand them to
    /// [`SiteSession::jobs_loaded`].
    LoadJobs(Load),
    /// Central holds the journal through this sequence.
    JournalAcknowledged(u64),
    /// Central holds the job outbox through this sequence: it may be trimmed.
    JobsAcknowledged(u64),
    /// A full policy begins: clear the staging area.
    BeginSnapshot {
        /// Its version.
        version: u64,
        /// Users to expect.
        users: u64,
    },
    /// Stage these users of the snapshot being received.
    StageUsers(Vec<PolicyUser>),
    /// The snapshot is complete: replace the users with the staged ones and
    /// the rules with these, in one transaction, then call
    /// [`SiteSession::policy_applied`].
    CommitSnapshot {
        /// Its version.
        version: u64,
        /// Its rules.
        rules: Rules,
    },
    /// Apply these changes in one transaction, then call
    /// [`SiteSession::policy_applied`].
    ApplyChanges(PolicyChanges),
    /// A job roaming message from central (revision 2): hand it to the
    /// roaming service (see [`crate::roaming`]).
    Roaming(Message),
    /// The session is over; close the connection with this reason.
    Close(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    AwaitingWelcome { deadline: Instant },
    Running { revision: u32, site: String },
    Closed,
}

/// A snapshot being received.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    version: u64,
}

/// The site's end of one session.
#[derive(Debug)]
pub struct SiteSession {
    settings: SiteSettings,
    phase: Phase,
    policy_version: u64,
    snapshot: Option<Snapshot>,
    journal: Upload,
    jobs: Upload,
    actions: VecDeque<SiteAction>,
}

impl SiteSession {
    /// A session of a site enforcing `policy_version`, whose journal holds
    /// records through `journal_latest` and outbox through `jobs_latest`;
    /// queues the [`Hello`].
    pub fn new(
        settings: SiteSettings,
        policy_version: u64,
        journal_latest: u64,
        jobs_latest: u64,
        now: Instant,
    ) -> SiteSession {
        let mut journal = Upload::new(settings.window, settings.batch);
        journal.available(journal_latest);
        let mut jobs = Upload::new(settings.window, settings.batch);
        jobs.available(jobs_latest);
        let hello = Message::Hello(Hello {
            revision: REVISION,
            min_revision: Revisions::OURS.min,
            software: settings.software.clone(),
            policy_version,
            journal_epoch: settings.epoch.clone(),
        });
        SiteSession {
            phase: Phase::AwaitingWelcome {
                deadline: now + settings.hello_timeout,
            },
            settings,
            policy_version,
            snapshot: None,
            journal,
            jobs,
            actions: VecDeque::from([SiteAction::Send(hello)]),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<SiteAction> {
        self.actions.pop_front()
    }

    /// When [`SiteSession::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingWelcome { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Time passed: a missing [`Welcome`] ends the session.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::AwaitingWelcome { deadline } = self.phase
            && now >= deadline
        {
            self.close(Refusal::new(
                RefusalCode::UnexpectedMessage,
                format!(
                    "central did not answer hello within {} s",
                    self.settings.hello_timeout.as_secs()
                ),
            ));
        }
    }

    /// The session's site name and revision, once central welcomed it.
    pub fn running(&self) -> Option<(&str, u32)> {
        match &self.phase {
            Phase::Running { revision, site } => Some((site, *revision)),
            _ => None,
        }
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The policy version the site enforces.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// Journal records not yet acknowledged (an upper bound).
    pub fn journal_backlog(&self) -> u64 {
        self.journal.backlog()
    }

    /// Job announcements not yet acknowledged (an upper bound).
    pub fn jobs_backlog(&self) -> u64 {
        self.jobs.backlog()
    }

    /// A message from central.
    pub fn handle(&mut self, message: Message) {
        if self.is_closed() {
            return;
        }
        if let Err(refusal) = self.dispatch(message) {
            self.actions
                .push_back(SiteAction::Send(Message::Refused(refusal.clone())));
            self.close(refusal);
        }
    }

    fn dispatch(&mut self, message: Message) -> Result<(), Refusal> {
        let running = matches!(self.phase, Phase::Running { .. });
        match message {
            Message::Welcome(welcome) if !running => self.welcomed(welcome),
            Message::Refused(refusal) => {
                // Central said why; nothing to answer.
                self.close(refusal);
                Ok(())
            }
            Message::JournalAck(ack) if running => {
                if ack.epoch == self.settings.epoch
                    && let Some(through) = self.journal.acked(ack.through)?
                {
                    self.actions
                        .push_back(SiteAction::JournalAcknowledged(through));
                }
                self.pump();
                Ok(())
            }
            Message::JobsAck(ack) if running => {
                if ack.epoch == self.settings.epoch
                    && let Some(through) = self.jobs.acked(ack.through)?
                {
                    self.actions
                        .push_back(SiteAction::JobsAcknowledged(through));
                }
                self.pump();
                Ok(())
            }
            Message::PolicySnapshotBegin(begin) if running => {
                self.snapshot = Some(Snapshot {
                    version: begin.version,
                });
                self.actions.push_back(SiteAction::BeginSnapshot {
                    version: begin.version,
                    users: begin.users,
                });
                Ok(())
            }
            Message::PolicyUsers(chunk) if running => match self.snapshot {
                Some(s) if s.version == chunk.version => {
                    self.actions.push_back(SiteAction::StageUsers(chunk.users));
                    Ok(())
                }
                _ => Err(unexpected("policy_users outside its snapshot")),
            },
            Message::PolicySnapshotEnd(end) if running => match self.snapshot.take() {
                Some(s) if s.version == end.version => {
                    self.actions.push_back(SiteAction::CommitSnapshot {
                        version: end.version,
                        rules: end.rules,
                    });
                    Ok(())
                }
                _ => Err(unexpected("policy_snapshot_end without its beginning")),
            },
            Message::PolicyChanges(changes) if running => {
                if changes.from != self.policy_version || self.snapshot.is_some() {
                    return Err(Refusal::new(
                        RefusalCode::OutOfOrder,
                        format!(
                            "policy changes from version {} do not apply to version {}",
                            changes.from, self.policy_version
                        ),
                    ));
                }
                self.actions.push_back(SiteAction::ApplyChanges(changes));
                Ok(())
            }
            message
                if message.is_roaming()
                    && self.running().is_some_and(|(_, r)| r >= ROAMING_REVISION) =>
            {
                self.actions.push_back(SiteAction::Roaming(message));
                Ok(())
            }
            // A newer central's message this site does not know.
            Message::Unknown => Ok(()),
            other => Err(unexpected(&format!(
                "{} is not expected {}",
                other.kind(),
                if running {
                    "during the session"
                } else {
                    "before welcome"
                }
            ))),
        }
    }

    fn welcomed(&mut self, welcome: Welcome) -> Result<(), Refusal> {
        let revision = Revisions::OURS.negotiate(Revisions {
            min: welcome.revision,
            max: welcome.revision,
        })?;
        self.phase = Phase::Running {
            revision,
            site: welcome.site,
        };
        self.journal.start(welcome.journal_acked);
        self.jobs.start(welcome.jobs_acked);
        self.pump();
        Ok(())
    }

    /// The shell applied policy `version` (a snapshot or changes).
    pub fn policy_applied(&mut self, version: u64, unknown_rules: Vec<String>) {
        self.policy_version = version;
        if matches!(self.phase, Phase::Running { .. }) {
            self.actions
                .push_back(SiteAction::Send(Message::PolicyApplied(PolicyApplied {
                    version,
                    unknown_rules,
                })));
        }
    }

    /// The journal now holds records through `latest`.
    pub fn journal_available(&mut self, latest: u64) {
        self.journal.available(latest);
        self.pump();
    }

    /// The outbox now holds announcements through `latest`.
    pub fn jobs_available(&mut self, latest: u64) {
        self.jobs.available(latest);
        self.pump();
    }

    /// The read asked for by [`SiteAction::LoadJournal`] returned `batch`.
    pub fn journal_loaded(&mut self, batch: JournalBatch) {
        let last = batch.records.last().map(|r| r.seq);
        self.journal.loaded(batch.after, last);
        if last.is_some() && self.running().is_some() {
            self.actions
                .push_back(SiteAction::Send(Message::Journal(batch)));
        }
        self.pump();
    }

    /// The read asked for by [`SiteAction::LoadJobs`] returned `batch`.
    pub fn jobs_loaded(&mut self, batch: JobBatch) {
        let last = batch.jobs.last().map(|j| j.seq);
        self.jobs.loaded(batch.after, last);
        if last.is_some() && self.running().is_some() {
            self.actions
                .push_back(SiteAction::Send(Message::Jobs(batch)));
        }
        self.pump();
    }

    fn pump(&mut self) {
        if self.running().is_none() {
            return;
        }
        if let Some(load) = self.journal.next_load() {
            self.actions.push_back(SiteAction::LoadJournal(load));
        }
        if let Some(load) = self.jobs.next_load() {
            self.actions.push_back(SiteAction::LoadJobs(load));
        }
    }

    fn close(&mut self, refusal: Refusal) {
        self.phase = Phase::Closed;
        self.actions.push_back(SiteAction::Close(refusal));
    }
}

fn unexpected(what: &str) -> Refusal {
    Refusal::new(RefusalCode::UnexpectedMessage, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        JobsAck, JournalAck, JournalRecord, PolicySnapshotBegin, PolicySnapshotEnd, PolicyUsers,
    };

    fn settings() -> SiteSettings {
        SiteSettings {
            software: "appliance test".into(),
            epoch: "e1".into(),
            window: 2,
            batch: 10,
            hello_timeout: Duration::from_secs(10),
        }
    }

    fn drain(s: &mut SiteSession) -> Vec<SiteAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn welcome(journal_acked: u64, jobs_acked: u64) -> Message {
        Message::Welcome(Welcome {
            revision: 1,
            site: "branch-1".into(),
            journal_acked,
            jobs_acked,
        })
    }

    fn records(after: u64, n: u64) -> JournalBatch {
        JournalBatch {
            epoch: "e1".into(),
            after,
            records: (after + 1..=after + n)
                .map(|seq| JournalRecord {
                    seq,
                    job: "j".into(),
                    queue: "q".into(),
                    job_id: 1,
                    user: "u".into(),
                    device: "d".into(),
                    pages: Some(1),
                    pages_exact: true,
                    sheets: Some(1),
                    copies: 1,
                    color: "color".into(),
                    sides: "one-sided".into(),
                    media: None,
                    time_ms: 0,
                    outcome: "completed".into(),
                    origin_site: None,
                })
                .collect(),
        }
    }

    #[test]
    fn hello_then_upload_from_what_central_holds() {
        let now = Instant::now();
        let mut s = SiteSession::new(settings(), 4, 25, 0, now);
        let actions = drain(&mut s);
        assert!(matches!(&actions[..], [SiteAction::Send(Message::Hello(h))]
            if h.policy_version == 4 && h.journal_epoch == "e1"));
        s.handle(welcome(12, 0));
        assert_eq!(
            drain(&mut s),
            [SiteAction::LoadJournal(Load {
                after: 12,
                limit: 10
            })]
        );
        s.journal_loaded(records(12, 10));
        let actions = drain(&mut s);
        assert!(matches!(&actions[0], SiteAction::Send(Message::Journal(b)) if b.after == 12));
        assert_eq!(
            actions[1],
            SiteAction::LoadJournal(Load {
                after: 22,
                limit: 10
            })
        );
        s.journal_loaded(records(22, 3));
        // Two batches in flight: no more reads until an ack.
        assert!(matches!(
            &drain(&mut s)[..],
            [SiteAction::Send(Message::Journal(_))]
        ));
        s.handle(Message::JournalAck(JournalAck {
            epoch: "e1".into(),
            through: 22,
        }));
        assert_eq!(drain(&mut s), [SiteAction::JournalAcknowledged(22)]);
        assert_eq!(s.journal_backlog(), 3);
        // Another epoch's ack (from before the database was recreated) is ignored.
        s.handle(Message::JournalAck(JournalAck {
            epoch: "e0".into(),
            through: 25,
        }));
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn nothing_is_read_or_sent_before_welcome() {
        let mut s = SiteSession::new(settings(), 0, 100, 100, Instant::now());
        drain(&mut s);
        s.journal_available(200);
        assert_eq!(drain(&mut s), []);
        s.handle(Message::JobsAck(JobsAck {
            epoch: "e1".into(),
            through: 1,
        }));
        let actions = drain(&mut s);
        assert!(
            matches!(&actions[..], [SiteAction::Send(Message::Refused(r)), SiteAction::Close(_)]
            if r.code == RefusalCode::UnexpectedMessage),
            "{actions:?}"
        );
        assert!(s.is_closed());
    }

    #[test]
    fn a_silent_central_ends_the_session_at_the_deadline() {
        let now = Instant::now();
        let mut s = SiteSession::new(settings(), 0, 0, 0, now);
        drain(&mut s);
        let deadline = s.poll_timeout().unwrap();
        s.handle_timeout(deadline - Duration::from_millis(1));
        assert!(!s.is_closed());
        s.handle_timeout(deadline);
        assert!(matches!(&drain(&mut s)[..], [SiteAction::Close(r)] if r.message.contains("10 s")));
    }

    #[test]
    fn a_snapshot_is_staged_then_committed_and_acknowledged() {
        let mut s = SiteSession::new(settings(), 0, 0, 0, Instant::now());
        s.handle(welcome(0, 0));
        drain(&mut s);
        s.handle(Message::PolicySnapshotBegin(PolicySnapshotBegin {
            version: 9,
            users: 1,
        }));
        let carol = PolicyUser {
            id: "carol".into(),
            name: "Carol".into(),
            email: None,
            groups: vec![],
            disabled: false,
            password: None,
            pin: Some("ab".into()),
            pin_only: None,
            cards: vec![],
        };
        s.handle(Message::PolicyUsers(PolicyUsers {
            version: 9,
            users: vec![carol.clone()],
        }));
        s.handle(Message::PolicySnapshotEnd(PolicySnapshotEnd {
            version: 9,
            rules: Rules::default(),
        }));
        assert_eq!(
            drain(&mut s),
            [
                SiteAction::BeginSnapshot {
                    version: 9,
                    users: 1
                },
                SiteAction::StageUsers(vec![carol]),
                SiteAction::CommitSnapshot {
                    version: 9,
                    rules: Rules::default()
                },
            ]
        );
        s.policy_applied(9, vec![]);
        assert_eq!(s.policy_version(), 9);
        assert!(matches!(&drain(&mut s)[..],
            [SiteAction::Send(Message::PolicyApplied(a))] if a.version == 9));
    }

    #[test]
    fn changes_that_do_not_apply_to_our_version_end_the_session() {
        let mut s = SiteSession::new(settings(), 3, 0, 0, Instant::now());
        s.handle(welcome(0, 0));
        drain(&mut s);
        let changes = |from| {
            Message::PolicyChanges(PolicyChanges {
                from,
                to: from + 1,
                upsert: vec![],
                remove: vec!["bob".into()],
                rules: None,
            })
        };
        s.handle(changes(3));
        assert!(matches!(&drain(&mut s)[..], [SiteAction::ApplyChanges(c)] if c.to == 4));
        s.policy_applied(4, vec![]);
        drain(&mut s);
        s.handle(changes(7));
        assert!(
            matches!(&drain(&mut s)[..], [SiteAction::Send(Message::Refused(r)), SiteAction::Close(_)]
            if r.code == RefusalCode::OutOfOrder)
        );
    }

    #[test]
    fn unknown_kinds_from_a_newer_central_are_skipped() {
        let mut s = SiteSession::new(settings(), 0, 0, 0, Instant::now());
        s.handle(welcome(0, 0));
        drain(&mut s);
        s.handle(Message::Unknown);
        assert_eq!(drain(&mut s), []);
        assert!(!s.is_closed());
    }

    #[test]
    fn central_refusing_closes_without_an_answer() {
        let mut s = SiteSession::new(settings(), 0, 0, 0, Instant::now());
        drain(&mut s);
        s.handle(Message::Refused(Refusal::new(
            RefusalCode::Revoked,
            "site revoked",
        )));
        assert!(
            matches!(&drain(&mut s)[..], [SiteAction::Close(r)] if r.code == RefusalCode::Revoked)
        );
    }
}
