//! Every message a site and central exchange, as plain serde data.
//!
//! On the wire a message is a JSON object `{"kind": ..., "body": {...}}`
//! (see `PROTOCOL.md`). Evolution rules, which these types follow: a newer
//! revision only *adds* fields, each with a default, and message kinds; a
//! receiver ignores fields it does not know and decodes a kind it does not
//! know as [`Message::Unknown`], which it skips. So no type here denies
//! unknown fields, and every field added after revision 1 carries
//! `#[serde(default)]`.

use serde::{Deserialize, Serialize};

use crate::roaming::{
    ClaimReport, ClaimReportAck, ClaimRequest, ClaimResult, Fetch, FetchFailed, RemoteJobs,
    RemoteJobsRequest,
};
use crate::rules::Rules;

/// Declares [`Message`] and its wire names once: the enum, [`Message::kind`]
/// and the decoder that turns a kind it does not know into
/// [`Message::Unknown`] (serde's derive cannot skip an unknown kind that
/// carries a body).
macro_rules! messages {
    ($($(#[doc = $doc:literal])* $variant:ident($body:ty) = $kind:literal,)*) => {
        /// One protocol message.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "kind", content = "body", rename_all = "snake_case")]
        pub enum Message {
            $($(#[doc = $doc])* $variant($body),)*
            /// A kind this revision does not know (sent by a newer peer): skipped.
            Unknown,
        }

        impl Message {
            /// The message's kind as it appears on the wire, for logs.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Message::$variant(_) => $kind,)*
                    Message::Unknown => "unknown",
                }
            }

            /// The message a JSON envelope (`{"kind": ..., "body": ...}`) holds.
            pub fn from_json(json: &[u8]) -> Result<Message, serde_json::Error> {
                let envelope: Envelope<'_> = serde_json::from_slice(json)?;
                Ok(match envelope.kind.as_ref() {
                    $($kind => Message::$variant(serde_json::from_str(body(&envelope)?)?),)*
                    _ => Message::Unknown,
                })
            }
        }
    };
}

/// A message as read off the wire, before its body is decoded.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    body: Option<&'a serde_json::value::RawValue>,
}

fn body<'a>(envelope: &Envelope<'a>) -> Result<&'a str, serde_json::Error> {
    match envelope.body {
        Some(raw) => Ok(raw.get()),
        None => Err(serde::de::Error::missing_field("body")),
    }
}

messages! {
    /// Site → central, first on every sync connection.
    Hello(Hello) = "hello",
    /// Central → site: the answer to [`Hello`]; the session runs.
    Welcome(Welcome) = "welcome",
    /// Either way: the sender refuses and closes the connection.
    Refused(Refusal) = "refused",
    /// Central → site: a full policy follows in [`Message::PolicyUsers`]
    /// chunks and ends with [`Message::PolicySnapshotEnd`].
    PolicySnapshotBegin(PolicySnapshotBegin) = "policy_snapshot_begin",
    /// Central → site: a chunk of a snapshot's users.
    PolicyUsers(PolicyUsers) = "policy_users",
    /// Central → site: the snapshot is complete; apply it.
    PolicySnapshotEnd(PolicySnapshotEnd) = "policy_snapshot_end",
    /// Central → site: the changes from one policy version to another.
    PolicyChanges(PolicyChanges) = "policy_changes",
    /// Site → central: the site now enforces this policy version.
    PolicyApplied(PolicyApplied) = "policy_applied",
    /// Site → central: accounting journal records.
    Journal(JournalBatch) = "journal",
    /// Central → site: journal records stored, through a sequence.
    JournalAck(JournalAck) = "journal_ack",
    /// Site → central: job announcements for the global index.
    Jobs(JobBatch) = "jobs",
    /// Central → site: job announcements stored, through a sequence.
    JobsAck(JobsAck) = "jobs_ack",
    /// Site → central on an enrollment connection: join the fleet.
    EnrollRequest(EnrollRequest) = "enroll_request",
    /// Central → site: the site's identity.
    Enrolled(Enrolled) = "enrolled",
    /// Site → central (revision 2): a user's jobs held at other sites.
    RemoteJobsRequest(RemoteJobsRequest) = "remote_jobs_request",
    /// Central → site: the answer to [`Message::RemoteJobsRequest`].
    RemoteJobs(RemoteJobs) = "remote_jobs",
    /// Claimant → central → origin: hold a job for the claimant.
    Claim(ClaimRequest) = "claim",
    /// Origin → central → claimant: what became of a claim.
    ClaimResult(ClaimResult) = "claim_result",
    /// Claimant → central → origin: send blocks of a claimed document.
    Fetch(Fetch) = "fetch",
    /// Origin → central → claimant: a fetch cannot be served.
    FetchFailed(FetchFailed) = "fetch_failed",
    /// Claimant → central → origin: how a claim ended.
    ClaimReport(ClaimReport) = "claim_report",
    /// Origin → central → claimant: the report is applied.
    ClaimReportAck(ClaimReportAck) = "claim_report_ack",
}

impl Message {
    /// Whether the message carries bulk data worth compressing.
    pub fn is_bulk(&self) -> bool {
        matches!(
            self,
            Message::PolicyUsers(_)
                | Message::PolicyChanges(_)
                | Message::Journal(_)
                | Message::Jobs(_)
                | Message::RemoteJobs(_)
                | Message::ClaimResult(_)
        )
    }

    /// Whether the message belongs to job roaming (revision 2), which the
    /// session machines pass to their shells as it comes.
    pub fn is_roaming(&self) -> bool {
        matches!(
            self,
            Message::RemoteJobsRequest(_)
                | Message::RemoteJobs(_)
                | Message::Claim(_)
                | Message::ClaimResult(_)
                | Message::Fetch(_)
                | Message::FetchFailed(_)
                | Message::ClaimReport(_)
                | Message::ClaimReportAck(_)
        )
    }
}

/// The site's opening: what it speaks and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The newest protocol revision the site speaks.
    pub revision: u32,
    /// The oldest revision the site still speaks.
    pub min_revision: u32,
    /// The site's software, for central's logs (`appliance 0.1.0`).
    pub software: String,
    /// The policy version the site enforces (0: none from central yet).
    pub policy_version: u64,
    /// The site's journal epoch: a new one whenever its database was
    /// created anew, so sequence numbers restart without colliding.
    pub journal_epoch: String,
}

/// Central's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The revision both now speak.
    pub revision: u32,
    /// The site's name at central (from its certificate).
    pub site: String,
    /// Highest journal sequence of the site's epoch central has stored,
    /// contiguously (0: none).
    pub journal_acked: u64,
    /// Highest job announcement sequence central has stored (0: none).
    pub jobs_acked: u64,
}

/// Why a peer refuses; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// What kind of refusal, for programs.
    pub code: RefusalCode,
    /// What happened and what to do, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal of kind `code`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// No protocol revision in common.
    UnsupportedRevision,
    /// A message that does not belong at this point of the exchange.
    UnexpectedMessage,
    /// A batch that does not continue what the receiver has.
    OutOfOrder,
    /// The client certificate names no site central knows.
    UnknownSite,
    /// The site was revoked at central.
    Revoked,
    /// The enrollment token is not one central issued.
    BadToken,
    /// The enrollment token's time is over.
    TokenExpired,
    /// The enrollment token was used already.
    TokenUsed,
    /// The certificate signing request is unusable.
    BadRequest,
    /// The receiver could not store what it was sent; try again later.
    Unavailable,
    /// A code this revision does not know.
    #[serde(other)]
    Other,
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            RefusalCode::UnsupportedRevision => "unsupported_revision",
            RefusalCode::UnexpectedMessage => "unexpected_message",
            RefusalCode::OutOfOrder => "out_of_order",
            RefusalCode::UnknownSite => "unknown_site",
            RefusalCode::Revoked => "revoked",
            RefusalCode::BadToken => "bad_token",
            RefusalCode::TokenExpired => "token_expired",
            RefusalCode::TokenUsed => "token_used",
            RefusalCode::BadRequest => "bad_request",
            RefusalCode::Unavailable => "unavailable",
            RefusalCode::Other => "other",
        };
        f.write_str(name)
    }
}

/// A user as policy carries them: credentials only as stored hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUser {
    /// Login name.
    pub id: String,
    /// Name shown at the printer.
    pub name: String,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Groups, for rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Logins refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// argon2id PHC string of the password, bound to the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// HMAC-SHA256 (hex) of the PIN with the user id, under the fleet key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// HMAC-SHA256 (hex) of the PIN alone, under the fleet key, for
    /// PIN-only login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_only: Option<String>,
    /// HMAC-SHA256 (hex) of each card number, under the fleet key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<String>,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// The start of a full policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshotBegin {
    /// The policy version the snapshot is.
    pub version: u64,
    /// How many users the chunks carry, for progress.
    pub users: u64,
}

/// A chunk of a snapshot's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUsers {
    /// The snapshot's version.
    pub version: u64,
    /// Users.
    pub users: Vec<PolicyUser>,
}

/// The end of a full policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshotEnd {
    /// The snapshot's version.
    pub version: u64,
    /// The rules of this version.
    pub rules: Rules,
}

/// The changes that turn policy `from` into policy `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChanges {
    /// The version the changes apply to; a site at another version
    /// ignores them and asks again by reconnecting.
    pub from: u64,
    /// The version they make.
    pub to: u64,
    /// Users added or replaced whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upsert: Vec<PolicyUser>,
    /// Users removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// The new rules, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Rules>,
}

/// The site enforces a policy version now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyApplied {
    /// The version.
    pub version: u64,
    /// Rules of that version the site does not know and so cannot enforce.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_rules: Vec<String>,
}

/// A run of journal records, in the site's sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalBatch {
    /// The site's journal epoch.
    pub epoch: String,
    /// The sequence number of the site's record just before the first one
    /// here (0 at the start): the batch continues the receiver's data only
    /// if the receiver has everything through `after`.
    pub after: u64,
    /// The records, ascending by `seq`.
    pub records: Vec<JournalRecord>,
}

impl JournalBatch {
    /// Appends `next` when it continues this batch (same epoch, beginning
    /// right after this one's last record), so that batches waiting
    /// together are stored in one transaction; otherwise gives it back.
    pub fn absorb(&mut self, next: JournalBatch) -> Result<(), JournalBatch> {
        let last = self.records.last().map_or(self.after, |r| r.seq);
        if next.epoch != self.epoch || next.after != last {
            return Err(next);
        }
        self.records.extend(next.records);
        Ok(())
    }
}

/// One accounting record: a print that ended at a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Sequence number within the site's epoch.
    pub seq: u64,
    /// The job's UUID.
    pub job: String,
    /// Queue the job was submitted to.
    pub queue: String,
    /// IPP job-id in that queue.
    pub job_id: i32,
    /// Owner.
    pub user: String,
    /// Printer id.
    pub device: String,
    /// Impressions, all copies, when known.
    #[serde(default)]
    pub pages: Option<u32>,
    /// Whether `pages` rests on an exact page count.
    #[serde(default)]
    pub pages_exact: bool,
    /// Physical sheets, all copies, when known.
    #[serde(default)]
    pub sheets: Option<u32>,
    /// Copies.
    pub copies: u32,
    /// `color` or `monochrome`.
    pub color: String,
    /// `sides` keyword.
    pub sides: String,
    /// Media, when the job named one.
    #[serde(default)]
    pub media: Option<String>,
    /// When the print ended, ms since the Unix epoch.
    pub time_ms: i64,
    /// `completed`, `aborted`, `canceled` or `uncertain`.
    pub outcome: String,
    /// For a job fetched from another site (revision 2): the site it was
    /// submitted at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_site: Option<String>,
}

/// Central stored the journal through a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalAck {
    /// The epoch acknowledged.
    pub epoch: String,
    /// Every record of the epoch through this sequence is stored.
    pub through: u64,
}

/// A run of job announcements, in the site's outbox order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobBatch {
    /// The site's journal epoch (job outbox sequences share it).
    pub epoch: String,
    /// The outbox sequence just before the first announcement here.
    pub after: u64,
    /// Announcements, ascending by `seq`.
    pub jobs: Vec<JobAnnouncement>,
}

impl JobBatch {
    /// Appends `next` when it continues this batch, as
    /// [`JournalBatch::absorb`] does.
    pub fn absorb(&mut self, next: JobBatch) -> Result<(), JobBatch> {
        let last = self.jobs.last().map_or(self.after, |j| j.seq);
        if next.epoch != self.epoch || next.after != last {
            return Err(next);
        }
        self.jobs.extend(next.jobs);
        Ok(())
    }
}

/// What central's index keeps of one job at a site: its latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAnnouncement {
    /// Outbox sequence of this announcement.
    pub seq: u64,
    /// The job's UUID.
    pub uuid: String,
    /// Owner.
    pub owner: String,
    /// Job name.
    pub name: String,
    /// Pages of one copy, when known.
    #[serde(default)]
    pub pages: Option<u32>,
    /// Document size in bytes, once the document is in.
    #[serde(default)]
    pub size: Option<u64>,
    /// When the job was submitted, ms since the Unix epoch.
    pub submitted_ms: i64,
    /// The job's state (`held`, `pending`, `processing`, `completed`, ...).
    pub state: String,
    /// The job is gone from the site (its row or its document).
    #[serde(default)]
    pub deleted: bool,
}

/// Central stored job announcements through a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsAck {
    /// The epoch acknowledged.
    pub epoch: String,
    /// Every announcement through this sequence is stored.
    pub through: u64,
}

/// A site asks to join the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time token `central site add` printed.
    pub token: String,
    /// PKCS#10 certificate signing request, PEM; the key stays at the site.
    pub csr_pem: String,
    /// The site's software, for central's logs.
    pub software: String,
}

/// Central's answer to a good enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The site's name.
    pub site: String,
    /// The site's certificate, PEM, signed by central's CA.
    pub certificate_pem: String,
    /// Central's CA certificate, PEM: the only root the site trusts.
    pub ca_pem: String,
    /// The fleet key (hex, 32 bytes) under which PINs and cards are hashed.
    pub fleet_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_absorbs_only_the_one_that_continues_it() {
        let job = |seq: u64| JobAnnouncement {
            seq,
            uuid: format!("j{seq}"),
            owner: "alice".into(),
            name: "report".into(),
            pages: None,
            size: None,
            submitted_ms: 0,
            state: "held".into(),
            deleted: false,
        };
        let batch = |epoch: &str, after: u64, seqs: std::ops::RangeInclusive<u64>| JobBatch {
            epoch: epoch.into(),
            after,
            jobs: seqs.map(job).collect(),
        };
        let mut first = batch("e", 0, 1..=3);
        first.absorb(batch("e", 3, 4..=5)).unwrap();
        assert_eq!(first.jobs.len(), 5);
        // A gap, an overlap, another epoch: given back, nothing taken.
        for other in [
            batch("e", 6, 7..=8),
            batch("e", 4, 5..=6),
            batch("f", 5, 6..=6),
        ] {
            assert_eq!(first.absorb(other.clone()), Err(other));
        }
        assert_eq!(first, batch("e", 0, 1..=5));
        // An empty batch continues from its `after`.
        let mut empty = JobBatch {
            epoch: "e".into(),
            after: 9,
            jobs: Vec::new(),
        };
        empty.absorb(batch("e", 9, 10..=10)).unwrap();
        assert_eq!(empty, batch("e", 9, 10..=10));
    }

    #[test]
    fn the_wire_shape_is_kind_and_body() {
        let m = Message::PolicyApplied(PolicyApplied {
            version: 7,
            unknown_rules: vec![],
        });
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"kind":"policy_applied","body":{"version":7}}"#
        );
    }

    #[test]
    fn a_newer_peers_fields_and_kinds_are_ignored() {
        let newer = r#"{"kind":"journal_ack","body":{"epoch":"e","through":9,"lag_ms":3}}"#;
        assert_eq!(
            Message::from_json(newer.as_bytes()).unwrap(),
            Message::JournalAck(JournalAck {
                epoch: "e".into(),
                through: 9
            })
        );
        let unknown = r#"{"kind":"printer_pools","body":{"pools":[1,2]}}"#;
        assert_eq!(
            Message::from_json(unknown.as_bytes()).unwrap(),
            Message::Unknown
        );
        let code = r#"{"kind":"refused","body":{"code":"maintenance","message":"m"}}"#;
        assert!(matches!(
            Message::from_json(code.as_bytes()).unwrap(),
            Message::Refused(Refusal {
                code: RefusalCode::Other,
                ..
            })
        ));
    }

    #[test]
    fn every_kind_name_matches_the_wire() {
        let m = Message::Refused(Refusal::new(RefusalCode::Revoked, "gone"));
        let json: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(json["kind"], m.kind());
        assert_eq!(json["body"]["code"], RefusalCode::Revoked.to_string());
    }
}
