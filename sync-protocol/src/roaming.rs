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

use crate::message::Message;
use crate::transfer::Manifest;

/// The site central passes a roaming message from `sender` on to, once it
/// has written the sender's name into it (as `claimant` going to an
/// origin, as `origin` coming back); `None` for a message central does not
/// pass on (it answers a [`RemoteJobsRequest`] itself).
pub fn address(message: &mut Message, sender: &str) -> Option<String> {
    let sender = sender.to_owned();
    match message {
        Message::Claim(m) => {
            m.claimant = sender;
            Some(m.origin.clone())
        }
        Message::Fetch(m) => {
            m.claimant = sender;
            Some(m.origin.clone())
        }
        Message::ClaimReport(m) => {
            m.claimant = sender;
            Some(m.origin.clone())
        }
        Message::ClaimResult(m) => {
            m.origin = sender;
            Some(m.claimant.clone())
        }
        Message::FetchFailed(m) => {
            m.origin = sender;
            Some(m.claimant.clone())
        }
        Message::ClaimReportAck(m) => {
            m.origin = sender;
            Some(m.claimant.clone())
        }
        _ => None,
    }
}

/// What central answers the sender of an addressed `message` that cannot
/// reach its site (`why` says why): a claim is `unavailable`, a fetch
/// failed as `unreachable` (its claimant asks again later); anything else
/// gets no answer, since its sender repeats it.
pub fn undeliverable(message: &Message, why: String) -> Option<Message> {
    match message {
        Message::Claim(claim) => Some(Message::ClaimResult(ClaimResult {
            request: claim.request,
            claimant: claim.claimant.clone(),
            origin: claim.origin.clone(),
            outcome: ClaimOutcome::Unavailable,
            message: why,
            site: None,
            job: None,
        })),
        Message::Fetch(fetch) => Some(Message::FetchFailed(FetchFailed {
            transfer: fetch.transfer,
            claimant: fetch.claimant.clone(),
            origin: fetch.origin.clone(),
            message: why,
            unreachable: true,
        })),
        _ => None,
    }
}

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
/// gone, the document is unreadable), and the transfer should stop; or,
/// from central, the origin cannot be reached now, and the transfer
/// should ask again later.
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
    /// Set by central when the fetch did not reach the origin (no session
    /// there, or its node gone): the claim may well still hold, so this
    /// is no reason to stop. Absent, the origin refused.
    #[serde(default, skip_serializing_if = "crate::message::is_false")]
    pub unreachable: bool,
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
    fn central_writes_in_the_sender_and_addresses_the_other_site() {
        let mut claim = Message::Claim(ClaimRequest {
            request: 7,
            origin: "branch-1".into(),
            claimant: "branch-9".into(),
            job: "j".into(),
            user: "alice".into(),
            claim: "c".into(),
            prefetch: false,
        });
        assert_eq!(address(&mut claim, "branch-2").as_deref(), Some("branch-1"));
        let Message::Claim(sent) = &claim else {
            unreachable!()
        };
        assert_eq!(sent.claimant, "branch-2", "a site cannot pose as another");
        let Some(Message::ClaimResult(refused)) = undeliverable(&claim, "away".into()) else {
            panic!("a claim is answered")
        };
        assert_eq!(
            (refused.request, refused.outcome, refused.claimant.as_str()),
            (7, ClaimOutcome::Unavailable, "branch-2")
        );

        let fetch = Message::Fetch(Fetch {
            transfer: 3,
            origin: "branch-1".into(),
            claimant: "branch-2".into(),
            job: "j".into(),
            claim: "c".into(),
            blocks: vec![0, 1],
        });
        let Some(Message::FetchFailed(failed)) = undeliverable(&fetch, "away".into()) else {
            panic!("a fetch is answered")
        };
        assert_eq!((failed.transfer, failed.claimant.as_str()), (3, "branch-2"));
        assert!(failed.unreachable, "the claim may hold: ask again later");

        let mut ack = Message::ClaimReportAck(ClaimReportAck {
            claimant: "branch-2".into(),
            origin: "branch-9".into(),
            claim: "c".into(),
        });
        assert_eq!(address(&mut ack, "branch-1").as_deref(), Some("branch-2"));
        assert!(matches!(&ack, Message::ClaimReportAck(a) if a.origin == "branch-1"));
        assert_eq!(
            undeliverable(&ack, "away".into()),
            None,
            "its sender repeats it"
        );

        let mut list = Message::RemoteJobsRequest(RemoteJobsRequest {
            request: 1,
            user: "alice".into(),
        });
        assert_eq!(address(&mut list, "branch-2"), None, "central answers it");
    }

    #[test]
    fn an_outcome_this_revision_does_not_know_reads_as_other() {
        let json = r#"{"request":1,"claimant":"b","outcome":"queued_at_origin"}"#;
        let result: ClaimResult = serde_json::from_str(json).unwrap();
        assert_eq!(result.outcome, ClaimOutcome::Other);
    }

    #[test]
    fn a_fetch_failure_without_the_unreachable_flag_is_an_origins_refusal() {
        // What an origin (or a central of the last revision) sends.
        let json = r#"{"transfer":1,"claimant":"b","message":"gone"}"#;
        let failed: FetchFailed = serde_json::from_str(json).unwrap();
        assert!(!failed.unreachable);
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"transfer":1,"claimant":"b","origin":"","message":"gone"}"#
        );
    }
}
