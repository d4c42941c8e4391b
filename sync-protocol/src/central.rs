//! Central's end of one sync session, as a pure state machine.
//!
//! The site's identity is already established (its certificate) when the
//! session starts. The shell carries out the [`CentralAction`]s: look up
//! what central holds of the site, store batches and report back what is
//! stored, send policy. The machine checks that every batch continues what
//! was received before (so a gap can never be acknowledged over) and
//! acknowledges only what the shell says is stored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::{
    JobBatch, JobsAck, JournalAck, JournalBatch, Message, PolicyApplied, Refusal, RefusalCode,
    Welcome,
};
use crate::revision::{ROAMING_REVISION, Revisions};

/// What central's shell must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum CentralAction {
    /// Send a message to the site.
    Send(Message),
    /// Look up what central holds of the site's epoch and call
    /// [`CentralSession::site_loaded`].
    LoadSite {
        /// The site's journal epoch.
        epoch: String,
    },
    /// Store these journal records (a record already stored is left as
    /// it is), then call [`CentralSession::journal_stored`].
    StoreJournal(JournalBatch),
    /// Store these job announcements (each replaces an older one of its
    /// job), then call [`CentralSession::jobs_stored`].
    StoreJobs(JobBatch),
    /// Send the site the policy from version `since` to the current one
    /// (changes, or a snapshot when they are no longer kept), then call
    /// [`CentralSession::policy_sent`].
    SendPolicy {
        /// The version the site has.
        since: u64,
    },
    /// The site enforces this policy version now.
    SiteApplied(PolicyApplied),
    /// A job roaming message from the site (revision 2): answer it or
    /// relay it (see [`crate::roaming`]).
    Roaming(Message),
    /// The session is over; close the connection with this reason.
    Close(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    AwaitingHello { deadline: Instant },
    Loading { revision: u32, policy_version: u64 },
    Running { revision: u32 },
    Closed,
}

/// What has arrived of one log and what is stored.
#[derive(Debug, Clone, Copy, Default)]
struct Receipt {
    /// Highest sequence received with nothing missing before it.
    received: u64,
    /// Highest sequence acknowledged to the site.
    acked: u64,
}

impl Receipt {
    fn accept(&mut self, after: u64, last: Option<u64>, what: &str) -> Result<(), Refusal> {
        if after > self.received {
            return Err(Refusal::new(
                RefusalCode::OutOfOrder,
                format!(
                    "{what} batch continues from {after}, but central has only through {}; \
                     reconnect and resend from there",
                    self.received
                ),
            ));
        }
        if let Some(last) = last {
            self.received = self.received.max(last);
        }
        Ok(())
    }

    fn stored(&mut self, through: u64) -> Option<u64> {
        (through > self.acked).then(|| {
            self.acked = through;
            through
        })
    }
}

/// Central's end of one session with an identified site.
#[derive(Debug)]
pub struct CentralSession {
    site: String,
    epoch: String,
    phase: Phase,
    journal: Receipt,
    jobs: Receipt,
    /// The policy version the site will have once what was sent arrives.
    policy_offered: u64,
    policy_sending: bool,
    actions: VecDeque<CentralAction>,
}

impl CentralSession {
    /// A session with `site`, which must say hello within `hello_timeout`.
    pub fn new(site: impl Into<String>, hello_timeout: Duration, now: Instant) -> CentralSession {
        CentralSession {
            site: site.into(),
            epoch: String::new(),
            phase: Phase::AwaitingHello {
                deadline: now + hello_timeout,
            },
            journal: Receipt::default(),
            jobs: Receipt::default(),
            policy_offered: 0,
            policy_sending: false,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<CentralAction> {
        self.actions.pop_front()
    }

    /// When [`CentralSession::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingHello { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Time passed: a site that never said hello is dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::AwaitingHello { deadline } = self.phase
            && now >= deadline
        {
            self.close(Refusal::new(
                RefusalCode::UnexpectedMessage,
                "no hello within the time allowed",
            ));
        }
    }

    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The site's journal epoch (empty before hello).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The revision agreed, once the session runs.
    pub fn revision(&self) -> Option<u32> {
        match self.phase {
            Phase::Running { revision } => Some(revision),
            _ => None,
        }
    }

    /// A message from the site.
    pub fn handle(&mut self, message: Message) {
        if self.is_closed() {
            return;
        }
        if let Err(refusal) = self.dispatch(message) {
            self.actions
                .push_back(CentralAction::Send(Message::Refused(refusal.clone())));
            self.close(refusal);
        }
    }

    fn dispatch(&mut self, message: Message) -> Result<(), Refusal> {
        let running = matches!(self.phase, Phase::Running { .. });
        match message {
            Message::Hello(hello) if matches!(self.phase, Phase::AwaitingHello { .. }) => {
                let revision = Revisions::OURS.negotiate(Revisions {
                    min: hello.min_revision,
                    max: hello.revision,
                })?;
                if hello.journal_epoch.is_empty() || hello.journal_epoch.len() > 64 {
                    return Err(Refusal::new(
                        RefusalCode::BadRequest,
                        "the journal epoch must be 1 to 64 characters",
                    ));
                }
                self.epoch = hello.journal_epoch.clone();
                self.phase = Phase::Loading {
                    revision,
                    policy_version: hello.policy_version,
                };
                self.actions.push_back(CentralAction::LoadSite {
                    epoch: hello.journal_epoch,
                });
                Ok(())
            }
            Message::Journal(batch) if running => {
                self.check_epoch(&batch.epoch)?;
                let last = batch.records.last().map(|r| r.seq);
                check_ascending(batch.after, batch.records.iter().map(|r| r.seq))?;
                self.journal.accept(batch.after, last, "journal")?;
                if last.is_some() {
                    self.actions.push_back(CentralAction::StoreJournal(batch));
                }
                Ok(())
            }
            Message::Jobs(batch) if running => {
                self.check_epoch(&batch.epoch)?;
                let last = batch.jobs.last().map(|j| j.seq);
                check_ascending(batch.after, batch.jobs.iter().map(|j| j.seq))?;
                self.jobs.accept(batch.after, last, "jobs")?;
                if last.is_some() {
                    self.actions.push_back(CentralAction::StoreJobs(batch));
                }
                Ok(())
            }
            Message::PolicyApplied(applied) if running => {
                self.actions.push_back(CentralAction::SiteApplied(applied));
                Ok(())
            }
            Message::Refused(refusal) => {
                self.close(refusal);
                Ok(())
            }
            message if message.is_roaming() && self.revision() >= Some(ROAMING_REVISION) => {
                self.actions.push_back(CentralAction::Roaming(message));
                Ok(())
            }
            Message::Unknown => Ok(()),
            other => Err(Refusal::new(
                RefusalCode::UnexpectedMessage,
                format!("{} is not expected here", other.kind()),
            )),
        }
    }

    fn check_epoch(&self, epoch: &str) -> Result<(), Refusal> {
        if epoch == self.epoch {
            Ok(())
        } else {
            Err(Refusal::new(
                RefusalCode::OutOfOrder,
                format!(
                    "batch of epoch {epoch} in a session of epoch {}",
                    self.epoch
                ),
            ))
        }
    }

    /// Central holds the site's epoch through these sequences.
    pub fn site_loaded(&mut self, journal_acked: u64, jobs_acked: u64) {
        let Phase::Loading {
            revision,
            policy_version,
        } = self.phase
        else {
            return;
        };
        self.journal = Receipt {
            received: journal_acked,
            acked: journal_acked,
        };
        self.jobs = Receipt {
            received: jobs_acked,
            acked: jobs_acked,
        };
        self.phase = Phase::Running { revision };
        self.actions
            .push_back(CentralAction::Send(Message::Welcome(Welcome {
                revision,
                site: self.site.clone(),
                journal_acked,
                jobs_acked,
            })));
        self.policy_offered = policy_version;
        self.policy_sending = true;
        self.actions.push_back(CentralAction::SendPolicy {
            since: policy_version,
        });
    }

    /// Central could not look the site up: the site should come back later.
    pub fn site_unavailable(&mut self, why: &str) {
        self.fail(why);
    }

    /// Journal records through `through` are stored.
    pub fn journal_stored(&mut self, through: u64) {
        if let Some(through) = self.journal.stored(through) {
            self.actions
                .push_back(CentralAction::Send(Message::JournalAck(JournalAck {
                    epoch: self.epoch.clone(),
                    through,
                })));
        }
    }

    /// Job announcements through `through` are stored.
    pub fn jobs_stored(&mut self, through: u64) {
        if let Some(through) = self.jobs.stored(through) {
            self.actions
                .push_back(CentralAction::Send(Message::JobsAck(JobsAck {
                    epoch: self.epoch.clone(),
                    through,
                })));
        }
    }

    /// A store failed: the session ends so the site resends later.
    pub fn store_failed(&mut self, why: &str) {
        self.fail(why);
    }

    /// The shell sent the site policy up to `version`.
    pub fn policy_sent(&mut self, version: u64) {
        self.policy_sending = false;
        self.policy_offered = self.policy_offered.max(version);
    }

    /// Central's policy is now at `version`: send the site what it lacks,
    /// unless a sending is under way (its end will catch up).
    pub fn policy_changed(&mut self, version: u64) {
        if matches!(self.phase, Phase::Running { .. })
            && !self.policy_sending
            && version > self.policy_offered
        {
            self.policy_sending = true;
            self.actions.push_back(CentralAction::SendPolicy {
                since: self.policy_offered,
            });
        }
    }

    fn fail(&mut self, why: &str) {
        if self.is_closed() {
            return;
        }
        let refusal = Refusal::new(RefusalCode::Unavailable, why);
        self.actions
            .push_back(CentralAction::Send(Message::Refused(refusal.clone())));
        self.close(refusal);
    }

    fn close(&mut self, refusal: Refusal) {
        self.phase = Phase::Closed;
        self.actions.push_back(CentralAction::Close(refusal));
    }
}

/// Sequences in a batch must rise, and start after `after`.
fn check_ascending(after: u64, seqs: impl Iterator<Item = u64>) -> Result<(), Refusal> {
    let mut last = after;
    for seq in seqs {
        if seq <= last {
            return Err(Refusal::new(
                RefusalCode::OutOfOrder,
                format!("sequence {seq} does not follow {last} in its batch"),
            ));
        }
        last = seq;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Hello, JournalRecord};
    use crate::revision::REVISION;

    fn hello(policy_version: u64) -> Message {
        Message::Hello(Hello {
            revision: 1,
            min_revision: 1,
            software: "t".into(),
            policy_version,
            journal_epoch: "e1".into(),
        })
    }

    fn drain(s: &mut CentralSession) -> Vec<CentralAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn batch(after: u64, seqs: &[u64]) -> Message {
        Message::Journal(JournalBatch {
            epoch: "e1".into(),
            after,
            records: seqs
                .iter()
                .map(|&seq| JournalRecord {
                    seq,
                    job: "j".into(),
                    queue: "q".into(),
                    job_id: 1,
                    user: "u".into(),
                    device: "d".into(),
                    pages: None,
                    pages_exact: false,
                    sheets: None,
                    copies: 1,
                    color: "color".into(),
                    sides: "one-sided".into(),
                    media: None,
                    time_ms: 0,
                    outcome: "completed".into(),
                    origin_site: None,
                })
                .collect(),
        })
    }

    fn running(journal_acked: u64) -> CentralSession {
        let mut s = CentralSession::new("branch-1", Duration::from_secs(10), Instant::now());
        s.handle(hello(2));
        s.site_loaded(journal_acked, 0);
        drain(&mut s);
        s
    }

    #[test]
    fn hello_loads_the_site_then_welcomes_and_sends_policy() {
        let mut s = CentralSession::new("branch-1", Duration::from_secs(10), Instant::now());
        s.handle(hello(5));
        assert_eq!(
            drain(&mut s),
            [CentralAction::LoadSite { epoch: "e1".into() }]
        );
        s.site_loaded(40, 7);
        let actions = drain(&mut s);
        assert!(
            matches!(&actions[0], CentralAction::Send(Message::Welcome(w))
            if w.journal_acked == 40 && w.jobs_acked == 7 && w.site == "branch-1")
        );
        assert_eq!(actions[1], CentralAction::SendPolicy { since: 5 });
    }

    #[test]
    fn batches_are_stored_and_acknowledged_only_once_stored() {
        let mut s = running(10);
        s.handle(batch(10, &[11, 12, 13]));
        assert!(matches!(&drain(&mut s)[..], [CentralAction::StoreJournal(b)] if b.after == 10));
        // The next batch may arrive before the first is stored.
        s.handle(batch(13, &[14, 16]));
        assert_eq!(drain(&mut s).len(), 1);
        s.journal_stored(13);
        assert!(matches!(&drain(&mut s)[..],
            [CentralAction::Send(Message::JournalAck(a))] if a.through == 13));
        // A resend overlapping what is stored is stored again (a no-op) and
        // not acknowledged twice.
        s.handle(batch(10, &[11, 12, 13]));
        drain(&mut s);
        s.journal_stored(13);
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn a_gap_is_never_acknowledged_over() {
        let mut s = running(10);
        s.handle(batch(20, &[21]));
        let actions = drain(&mut s);
        assert!(
            matches!(&actions[..],
            [CentralAction::Send(Message::Refused(r)), CentralAction::Close(_)]
            if r.code == RefusalCode::OutOfOrder && r.message.contains("through 10")),
            "{actions:?}"
        );
    }

    #[test]
    fn descending_sequences_and_foreign_epochs_are_refused() {
        let mut s = running(0);
        s.handle(batch(0, &[2, 1]));
        assert!(s.is_closed());
        let mut s = running(0);
        s.handle(Message::Journal(JournalBatch {
            epoch: "e0".into(),
            after: 0,
            records: vec![],
        }));
        assert!(s.is_closed());
    }

    #[test]
    fn a_policy_change_is_sent_once_until_the_sending_ends() {
        let mut s = running(0);
        s.policy_sent(2);
        s.policy_changed(3);
        assert_eq!(drain(&mut s), [CentralAction::SendPolicy { since: 2 }]);
        // Another change while sending: the sending's end covers it.
        s.policy_changed(4);
        assert_eq!(drain(&mut s), []);
        s.policy_sent(4);
        s.policy_changed(4);
        assert_eq!(drain(&mut s), []);
        s.policy_changed(5);
        assert_eq!(drain(&mut s), [CentralAction::SendPolicy { since: 4 }]);
    }

    #[test]
    fn a_revision_out_of_range_and_a_silent_site_are_refused() {
        let mut s = CentralSession::new("b", Duration::from_secs(10), Instant::now());
        s.handle(Message::Hello(Hello {
            revision: 9,
            min_revision: 8,
            software: "t".into(),
            policy_version: 0,
            journal_epoch: "e".into(),
        }));
        assert!(matches!(&drain(&mut s)[..],
            [CentralAction::Send(Message::Refused(r)), CentralAction::Close(_)]
            if r.code == RefusalCode::UnsupportedRevision));
        let now = Instant::now();
        let mut s = CentralSession::new("b", Duration::from_secs(10), now);
        s.handle_timeout(now + Duration::from_secs(10));
        assert!(s.is_closed());
    }

    #[test]
    fn a_newer_sites_hello_is_answered_in_our_revision() {
        let mut s = CentralSession::new("b", Duration::from_secs(10), Instant::now());
        s.handle(Message::Hello(Hello {
            revision: REVISION + 1,
            min_revision: 1,
            software: "t".into(),
            policy_version: 0,
            journal_epoch: "e".into(),
        }));
        s.site_loaded(0, 0);
        let actions = drain(&mut s);
        assert!(
            matches!(&actions[1], CentralAction::Send(Message::Welcome(w)) if w.revision == REVISION)
        );
        s.handle(Message::Unknown);
        assert!(!s.is_closed());
    }

    #[test]
    fn roaming_passes_to_the_shell_only_from_a_site_speaking_its_revision() {
        let request = Message::RemoteJobsRequest(crate::roaming::RemoteJobsRequest {
            request: 1,
            user: "alice".into(),
        });
        for (revision, relayed) in [(1, false), (ROAMING_REVISION, true)] {
            let mut s = CentralSession::new("b", Duration::from_secs(10), Instant::now());
            s.handle(Message::Hello(Hello {
                revision,
                min_revision: 1,
                software: "t".into(),
                policy_version: 0,
                journal_epoch: "e".into(),
            }));
            s.site_loaded(0, 0);
            drain(&mut s);
            s.handle(request.clone());
            let actions = drain(&mut s);
            assert_eq!(
                matches!(&actions[..], [CentralAction::Roaming(m)] if *m == request),
                relayed,
                "{actions:?}"
            );
            assert_eq!(s.is_closed(), !relayed);
        }
    }
}
