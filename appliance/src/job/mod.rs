//! The job model: identity, IPP state machine and the record the store keeps.
//!
//! Pure data and pure transitions; nothing here does I/O. The store persists
//! these types, the IPP layer renders them, the forwarder drives their states.

use std::fmt;

use uuid::Uuid;

use crate::analysis::Analysis;

mod transition;
pub use transition::Transition;

/// A job's globally unique identity (UUIDv7: time-ordered, so sorting by id
/// sorts by submission), stable across sites for roaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobUuid(pub Uuid);

impl JobUuid {
    /// A fresh identity for a new job.
    pub fn new() -> JobUuid {
        JobUuid(Uuid::now_v7())
    }

    /// Parses the hyphenated text form.
    pub fn parse(text: &str) -> Option<JobUuid> {
        Uuid::parse_str(text).ok().map(JobUuid)
    }

    /// `urn:uuid:...`, the form IPP's `job-uuid` attribute uses.
    pub fn urn(&self) -> String {
        self.0.urn().to_string()
    }
}

impl Default for JobUuid {
    fn default() -> Self {
        JobUuid::new()
    }
}

impl fmt::Display for JobUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// IPP `job-state` (RFC 8011 section 5.3.7), with the numeric values of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to be sent to its printer.
    Pending = 3,
    /// Held: waiting for a release (pull queues) or a `job-hold-until`.
    PendingHeld = 4,
    /// Being sent to, or printed by, a printer.
    Processing = 5,
    /// Stopped while processing (not used by this appliance yet; parsed for completeness).
    ProcessingStopped = 6,
    /// Canceled by its owner.
    Canceled = 7,
    /// Given up by the system.
    Aborted = 8,
    /// Printed.
    Completed = 9,
}

impl JobState {
    /// The state for a wire or database value.
    pub fn from_i64(value: i64) -> Option<JobState> {
        Some(match value {
            3 => JobState::Pending,
            4 => JobState::PendingHeld,
            5 => JobState::Processing,
            6 => JobState::ProcessingStopped,
            7 => JobState::Canceled,
            8 => JobState::Aborted,
            9 => JobState::Completed,
            _ => return None,
        })
    }

    /// Completed, canceled and aborted jobs never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Canceled | JobState::Aborted | JobState::Completed
        )
    }

    /// The keyword used in logs and the CLI.
    pub fn keyword(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::PendingHeld => "held",
            JobState::Processing => "processing",
            JobState::ProcessingStopped => "stopped",
            JobState::Canceled => "canceled",
            JobState::Aborted => "aborted",
            JobState::Completed => "completed",
        }
    }
}

/// Why a requested state change cannot happen: the IPP layer answers
/// `client-error-not-possible` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotPossible(pub String);

/// The one document a job carries (multiple-document jobs are not supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    /// MIME type as stored (declared, or detected for octet-stream).
    pub format: String,
    /// `document-name` as supplied by the client, if any.
    pub name: Option<String>,
    /// Bytes as the client sent them.
    pub size: u64,
    /// Bytes stored (after compression, when it is compressed).
    pub spool_size: u64,
    /// Hex SHA-256 of the bytes as the client sent them.
    pub sha256: String,
    /// Page count and colour read from the document at intake.
    pub analysis: Analysis,
    /// Where the bytes are kept and how they are encoded there.
    pub storage: DocumentStorage,
}

/// Where a stored document's bytes are and how they are encoded: small
/// documents live in the database, committed with their job; the rest in
/// spool files. Either is zstd-compressed only when that paid at intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentStorage {
    /// Database row or spool file.
    pub place: StoredIn,
    /// zstd, or the bytes as sent.
    pub encoding: Encoding,
}

impl DocumentStorage {
    /// The only layout before documents could live in the database: a
    /// zstd spool file. Rows written then read as this.
    pub const LEGACY: DocumentStorage = DocumentStorage {
        place: StoredIn::SpoolFile,
        encoding: Encoding::Zstd,
    };
}

/// Where a stored document's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredIn {
    /// A file in the spool directory, named by the job.
    SpoolFile,
    /// A row of the `documents` table, written in the job's transaction.
    Database,
}

impl StoredIn {
    /// The keyword kept in the database.
    pub fn keyword(self) -> &'static str {
        match self {
            StoredIn::SpoolFile => "file",
            StoredIn::Database => "database",
        }
    }

    /// The value of a stored keyword.
    pub fn from_keyword(keyword: &str) -> Option<StoredIn> {
        match keyword {
            "file" => Some(StoredIn::SpoolFile),
            "database" => Some(StoredIn::Database),
            _ => None,
        }
    }
}

/// How a stored document's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A zstd frame: the document compressed.
    Zstd,
    /// The bytes as sent (they did not compress enough to be worth it).
    Identity,
}

impl Encoding {
    /// The keyword kept in the database.
    pub fn keyword(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Identity => "identity",
        }
    }

    /// The value of a stored keyword.
    pub fn from_keyword(keyword: &str) -> Option<Encoding> {
        match keyword {
            "zstd" => Some(Encoding::Zstd),
            "identity" => Some(Encoding::Identity),
            _ => None,
        }
    }
}

/// Another site's claim to print this held job (job roaming): while it
/// holds, the job is that site's to print and nobody else's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The site printing it.
    pub site: String,
    /// The claim's id, which its completion must name.
    pub id: String,
    /// When the claim lapses if it is not completed (ms since the epoch).
    pub until_ms: i64,
}

/// Where a job fetched from another site (job roaming) came from: it is
/// printed here under that site's claim, which its end is reported to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The site that holds the original.
    pub site: String,
    /// The job's UUID there.
    pub uuid: String,
    /// The claim it is printed under.
    pub claim: String,
    /// While the document is on its way: what it must be, and until when.
    pub fetching: Option<Fetching>,
}

/// A document on its way from another site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fetching {
    /// Its size and hashes, as the origin described it.
    pub manifest: sync_protocol::transfer::Manifest,
    /// When the claim lapses at the origin (ms since the epoch): the fetch
    /// gives up then, since the job may be another site's by that time.
    pub until_ms: i64,
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Global identity.
    pub uuid: JobUuid,
    /// Queue the job was submitted to.
    pub queue: String,
    /// IPP `job-id`, unique within the queue.
    pub ipp_job_id: i32,
    /// `job-originating-user-name`.
    pub owner: String,
    /// `job-name`.
    pub name: String,
    /// Current `job-state`.
    pub state: JobState,
    /// Current `job-state-reasons` keyword.
    pub state_reasons: String,
    /// Human-readable `job-state-message` (why it waits, what failed).
    pub state_message: String,
    /// `job-hold-until` keyword, when the job is held by time or indefinitely.
    pub hold_until: Option<String>,
    /// Job template attributes as supplied, IPP-encoded (see [`crate::ipp_wire::stored_template`]).
    pub template: Vec<u8>,
    /// The document, once received.
    pub document: Option<DocumentRecord>,
    /// Whether the client said `last-document` (or used Print-Job).
    pub documents_complete: bool,
    /// Submission time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When processing started, if it has.
    pub processing_ms: Option<i64>,
    /// When the job reached a terminal state, if it has.
    pub completed_ms: Option<i64>,
    /// Printer (device id) the job is being or was sent to.
    pub printer: Option<String>,
    /// The printer's own job-id for it, once the printer accepted it.
    pub device_job_id: Option<i32>,
    /// Send attempts so far.
    pub attempts: u32,
    /// Earliest time of the next send attempt (ms since epoch), after a failure.
    pub next_attempt_ms: Option<i64>,
    /// A printed job whose document is kept for reprint: until when.
    pub kept_until_ms: Option<i64>,
    /// Another site's claim to print it (while it holds; after the job
    /// printed there, where it printed).
    pub claim: Option<Claim>,
    /// For a job fetched from another site: where from, and under which claim.
    pub origin: Option<Origin>,
}

impl JobRecord {
    /// The claim that holds at `now_ms`: a lapsed one counts for nothing.
    pub fn live_claim(&self, now_ms: i64) -> Option<&Claim> {
        self.claim.as_ref().filter(|c| c.until_ms > now_ms)
    }

    /// Whether `user` may see this job's private attributes and act on it.
    pub fn is_owned_by(&self, user: &str) -> bool {
        self.owner == user
    }

    /// Cancel-Job: allowed until the job is finished.
    pub fn check_cancel(&self) -> Result<(), NotPossible> {
        if self.state.is_terminal() {
            return Err(NotPossible(format!(
                "job {} is already {}",
                self.ipp_job_id,
                self.state.keyword()
            )));
        }
        Ok(())
    }

    /// Whether the job printed and its document is still kept for reprint.
    pub fn is_reprintable(&self, now_ms: i64) -> bool {
        self.state == JobState::Completed
            && self.document.is_some()
            && self.kept_until_ms.is_some_and(|until| until > now_ms)
    }

    /// Holds the job until a person releases it, saying why in `message`.
    pub fn hold_indefinitely(&mut self, message: String) {
        self.state = JobState::PendingHeld;
        self.state_reasons = "job-hold-until-specified".into();
        self.hold_until = Some("indefinite".into());
        self.state_message = message;
    }

    /// Forgets any hand-over to a printer (which printer, when, its job-id,
    /// the attempts), as for a job that never left the appliance.
    pub fn clear_output(&mut self) {
        self.printer = None;
        self.processing_ms = None;
        self.device_job_id = None;
        self.attempts = 0;
        self.next_attempt_ms = None;
    }

    /// Hold-Job: only a job that has not started printing can be held.
    pub fn check_hold(&self) -> Result<(), NotPossible> {
        match self.state {
            JobState::Pending | JobState::PendingHeld => Ok(()),
            other => Err(NotPossible(format!(
                "job {} is {} and can no longer be held",
                self.ipp_job_id,
                other.keyword()
            ))),
        }
    }

    /// Release-Job (direct queues): only a held job can be released.
    pub fn check_release(&self) -> Result<(), NotPossible> {
        if self.state != JobState::PendingHeld {
            return Err(NotPossible(format!(
                "job {} is {}, not held",
                self.ipp_job_id,
                self.state.keyword()
            )));
        }
        Ok(())
    }

    /// Send-Document: the job must still be waiting for its document.
    pub fn check_send_document(&self) -> Result<(), SendDocumentRefusal> {
        if self.state.is_terminal() {
            return Err(SendDocumentRefusal::Finished(self.state));
        }
        if self.documents_complete {
            return Err(SendDocumentRefusal::AlreadyComplete);
        }
        Ok(())
    }
}

/// Why a Send-Document cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDocumentRefusal {
    /// The job was canceled, aborted or completed meanwhile.
    Finished(JobState),
    /// The job already has its last document.
    AlreadyComplete,
}

#[cfg(test)]
impl JobRecord {
    /// A held job of alice's with a small PDF, for tests across the crate
    /// (each overrides what it is about).
    pub(crate) fn sample() -> JobRecord {
        JobRecord {
            uuid: JobUuid::new(),
            queue: "secure".into(),
            ipp_job_id: 7,
            owner: "alice".into(),
            name: "report.pdf".into(),
            state: JobState::PendingHeld,
            state_reasons: "job-hold-until-specified".into(),
            state_message: String::new(),
            hold_until: Some("indefinite".into()),
            template: Vec::new(),
            document: Some(DocumentRecord {
                format: "application/pdf".into(),
                name: Some("report.pdf".into()),
                size: 2049,
                spool_size: 1000,
                sha256: "00".into(),
                analysis: Analysis::UNKNOWN,
                storage: DocumentStorage::LEGACY,
            }),
            documents_complete: true,
            created_ms: 1_700_000_000_000,
            processing_ms: None,
            completed_ms: None,
            printer: None,
            device_job_id: None,
            attempts: 0,
            next_attempt_ms: None,
            kept_until_ms: None,
            claim: None,
            origin: None,
        }
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState) -> JobRecord {
        JobRecord {
            state,
            documents_complete: false,
            ..JobRecord::sample()
        }
    }

    #[test]
    fn uuids_sort_by_creation() {
        let a = JobUuid::new();
        let b = JobUuid::new();
        assert!(a < b);
        assert_eq!(JobUuid::parse(&a.to_string()), Some(a));
        assert!(a.urn().starts_with("urn:uuid:"));
    }

    #[test]
    fn terminal_jobs_refuse_every_change() {
        for state in [JobState::Canceled, JobState::Aborted, JobState::Completed] {
            let j = job(state);
            assert!(j.check_cancel().is_err());
            assert!(j.check_hold().is_err());
            assert!(j.check_release().is_err());
            assert_eq!(
                j.check_send_document(),
                Err(SendDocumentRefusal::Finished(state))
            );
        }
    }

    #[test]
    fn hold_and_release_follow_rfc_8011() {
        assert!(job(JobState::Pending).check_hold().is_ok());
        assert!(job(JobState::Processing).check_hold().is_err());
        assert!(job(JobState::PendingHeld).check_release().is_ok());
        assert!(job(JobState::Pending).check_release().is_err());
        assert!(job(JobState::Processing).check_cancel().is_ok());
    }

    #[test]
    fn second_document_is_refused() {
        let mut j = job(JobState::Pending);
        assert!(j.check_send_document().is_ok());
        j.documents_complete = true;
        assert_eq!(
            j.check_send_document(),
            Err(SendDocumentRefusal::AlreadyComplete)
        );
    }

    #[test]
    fn state_round_trips_through_its_number() {
        for n in 3..=9 {
            assert_eq!(JobState::from_i64(n).map(|s| s as i64), Some(n));
        }
        assert_eq!(JobState::from_i64(2), None);
    }
}
