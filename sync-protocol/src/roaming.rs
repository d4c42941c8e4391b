//! Job roaming on the wire (revision 2): the messages a site releasing
//! another site's job exchanges with that job's origin through central,
//! and the route prefix of the streams that carry document blocks.
//!
//! Central relays without keeping state: a message from the site that
//! wants a job (the *claimant*) names the `origin`, and central sends it
//! on with `claimant` set to the sender's authenticated name (whatever
//! the sender put there); an answer from the origin names the `claimant`,
//! and central sends it on with `origin` set to the sender's name. A
//! block travels on a unidirectional stream of its own: the origin writes
//! a [`Route`] naming the claimant and then the block
//! ([`crate::transfer::BlockHeader`] and payload); central opens a stream
//! to the claimant and copies the block across through a fixed buffer.
//! Nothing here is trusted for more than routing: the origin checks the
//! claim against its job, and the claimant checks every block against the
//! manifest the origin sent with the claim.

use serde::{Deserialize, Serialize};

use crate::transfer::Manifest;

/// Site → central: `user`'s jobs held at other sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteJobsRequest {
    /// Chosen by the asking site; the answer carries it.
    pub request: u64,
    /// The user logged in at the asking site.
    pub user: String,
}

/// Central → site: the answer to [`RemoteJobsRequest`]: the user's jobs
/// central's index knows at other sites, held or not (a job asked for by
/// id that is no longer held is claimed anyway, so that its origin can say
/// where it went).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteJobs {
    /// The request answered.
    pub request: u64,
    /// The user's jobs at other sites, oldest first.
    pub jobs: Vec<RemoteJob>,
    /// Set when central could not look: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// A job held at another site, as central's index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteJob {
    /// The job's UUID at its origin.
    pub uuid: String,
    /// The site holding it.
    pub site: String,
    /// Job name.
    pub name: String,
    /// Pages of one copy, when known.
    #[serde(default)]
    pub pages: Option<u32>,
    /// Document size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// When it was submitted, ms since the Unix epoch.
    pub submitted_ms: i64,
    /// Its state as last announced (`held`, `completed`, ...).
    #[serde(default = "held")]
    pub state: String,
    /// Whether it can be fetched now (its site is connected to central).
    pub available: bool,
    /// Why not, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn held() -> String {
    "held".into()
}

/// Claimant → central → origin: hold this job for the claimant to print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Chosen by the claimant; the result carries it.
    pub request: u64,
    /// The site holding the job.
    pub origin: String,
    /// Set by central: the site asking (whatever the claimant sent).
    #[serde(default)]
    pub claimant: String,
    /// The job's UUID at its origin.
    pub job: String,
    /// The user releasing it: the origin refuses unless they own it.
    pub user: String,
    /// The claim's id, chosen by the claimant (128 random bits, hex); its
    /// fetches and its report name it.
    pub claim: String,
    /// Only to read ahead (prefetch): the origin describes the job and
    /// serves its blocks under this id for a while, but the job stays
    /// held there and anyone may still claim it. Nothing may print from a
    /// prefetch; printing needs a real claim.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefetch: bool,
}

/// Origin → central → claimant: what became of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResult {
    /// The request answered.
    pub request: u64,
    /// The site that asked.
    pub claimant: String,
    /// Set by central: the site answering.
    #[serde(default)]
    pub origin: String,
    /// The outcome.
    pub outcome: ClaimOutcome,
    /// For people: why not, or where the job went.
    #[serde(default)]
    pub message: String,
    /// The site that has the job, for [`ClaimOutcome::PrintedElsewhere`]
    /// and [`ClaimOutcome::ClaimedElsewhere`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The job, for [`ClaimOutcome::Claimed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<ClaimedJob>>,
}

/// What became of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// The job is the claimant's to print until the claim lapses.
    Claimed,
    /// It printed at `site` already.
    PrintedElsewhere,
    /// Another site's claim holds it now.
    ClaimedElsewhere,
    /// It is not held (printing, canceled, expired...): `message` says.
    NotHeld,
    /// No such job of this user at the origin.
    NotFound,
    /// The origin cannot be reached or cannot serve now.
    Unavailable,
    /// An outcome this revision does not know.
    #[serde(other)]
    Other,
}

/// A claimed job: what the claimant needs to print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedJob {
    /// The job's UUID at its origin.
    pub uuid: String,
    /// Owner.
    pub owner: String,
    /// Job name.
    pub name: String,
    /// Queue it was submitted to at the origin.
    pub queue: String,
    /// Document format (MIME type).
    pub format: String,
    /// `document-name` as supplied.
    #[serde(default)]
    pub document_name: Option<String>,
    /// The job template attributes as submitted, IPP-encoded, hex.
    pub template: String,
    /// Pages of one copy, when known.
    #[serde(default)]
    pub pages: Option<u32>,
    /// Whether `pages` is exact.
    #[serde(default)]
    pub pages_exact: bool,
    /// `color`, `monochrome` or `unknown`, as read at intake.
    pub color: String,
    /// When it was submitted at the origin, ms since the Unix epoch.
    pub submitted_ms: i64,
    /// When the claim lapses unless reported, ms since the Unix epoch.
    pub until_ms: i64,
    /// The document's size, hash and block hashes.
    pub manifest: Manifest,
}

/// Claimant → central → origin: send block `block` of a claimed job's
/// document on a stream of transfer `transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// Chosen by the claimant; the block's header carries it.
    pub transfer: u64,
    /// The site holding the job.
    pub origin: String,
    /// Set by central: the site asking.
    #[serde(default)]
    pub claimant: String,
    /// The job's UUID at its origin.
    pub job: String,
    /// The claim the fetch is made under.
    pub claim: String,
    /// The blocks wanted, in the order to send them.
    pub blocks: Vec<u32>,
}

/// Origin → central → claimant: a fetch cannot be served (the claim is
/// gone, the document is unreadable); the transfer should stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchFailed {
    /// The transfer.
    pub transfer: u64,
    /// The site that asked.
    pub claimant: String,
    /// Set by central: the site answering.
    #[serde(default)]
    pub origin: String,
    /// Why, for people.
    pub message: String,
}

/// Claimant → central → origin: how a claim ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimReport {
    /// The site holding the job.
    pub origin: String,
    /// Set by central: the site reporting.
    #[serde(default)]
    pub claimant: String,
    /// The job's UUID at its origin.
    pub job: String,
    /// The claim.
    pub claim: String,
    /// Printed at the claimant (or may have: the printer could not tell);
    /// false: given back, the job is held at its origin again.
    pub printed: bool,
}

/// Origin → central → claimant: a [`ClaimReport`] is applied (or was
/// already); the claimant may forget it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimReportAck {
    /// The site that reported.
    pub claimant: String,
    /// Set by central: the site answering.
    #[serde(default)]
    pub origin: String,
    /// The claim.
    pub claim: String,
}

/// What precedes a relayed block on its stream from the origin: the site
/// central should pass the block to. One byte of length, then the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The claimant's site name.
    pub claimant: String,
}

impl Route {
    /// Longest site name a route carries.
    pub const MAX_NAME: usize = 255;

    /// The route's bytes, or `None` for a name too long to route.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let name = self.claimant.as_bytes();
        let len = u8::try_from(name.len()).ok()?;
        let mut out = Vec::with_capacity(1 + name.len());
        out.push(len);
        out.extend_from_slice(name);
        Some(out)
    }

    /// The route whose name is `name` (read after its length byte).
    pub fn decode(name: &[u8]) -> Option<Route> {
        let claimant = std::str::from_utf8(name).ok()?;
        (!claimant.is_empty()).then(|| Route {
            claimant: claimant.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_a_length_and_a_name() {
        let route = Route {
            claimant: "branch-2".into(),
        };
        let bytes = route.encode().unwrap();
        assert_eq!(bytes[0] as usize, bytes.len() - 1);
        assert_eq!(Route::decode(&bytes[1..]), Some(route));
        assert_eq!(Route::decode(b""), None);
        assert_eq!(Route::decode(&[0xff, 0xfe]), None);
        let long = Route {
            claimant: "x".repeat(256),
        };
        assert_eq!(long.encode(), None);
    }

    #[test]
    fn an_outcome_this_revision_does_not_know_reads_as_other() {
        let json = r#"{"request":1,"claimant":"b","outcome":"queued_at_origin"}"#;
        let result: ClaimResult = serde_json::from_str(json).unwrap();
        assert_eq!(result.outcome, ClaimOutcome::Other);
    }
}
