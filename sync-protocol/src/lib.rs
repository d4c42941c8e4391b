//! The protocol between a branch appliance (a *site*) and the central
//! service: what they say, how it is framed on QUIC streams, and the
//! session logic of each end as pure state machines.
//!
//! # Layout
//!
//! - [`message`]: every message, plain serde data that tolerates what a
//!   newer peer adds.
//! - [`frame`]: length-delimited frames on a stream, zstd only where it
//!   shrinks the payload; oversized frames refused.
//! - [`rules`]: the print rules as policy carries them.
//! - [`policy`]: users, credential hashes and the user CSV format.
//! - [`revision`]: ALPNs, revisions and their negotiation.
//! - [`upload`]: the sending side of an acknowledged log (journal, job
//!   outbox): window, resend from the last acknowledgement.
//! - [`site`]: the site's session state machine.
//! - [`central`]: central's session state machine.
//! - [`pki`]: central's CA, server and site certificates, enrollment tokens.
//! - [`private_file`]: keys and certificates on disk, 0600, atomic.
//! - [`transport`]: quinn and rustls set-up for each end, and the message
//!   stream; thin I/O.
//! - [`transfer`]: moving a document in verified blocks (manifest, the
//!   receiver's window and resume, block headers).
//! - [`roaming`]: the job roaming messages central relays between sites,
//!   and the route prefix of relayed block streams.
//! - [`dial`]: which central endpoint a site dials and when (order,
//!   backoff with jitter, probing the preferred one).
//!
//! `PROTOCOL.md` beside this crate specifies the exchanges.

#![warn(missing_docs, unreachable_pub)]

pub mod central;
pub mod dial;
pub mod frame;
pub mod message;
pub mod pki;
pub mod policy;
pub mod private_file;
pub mod revision;
pub mod roaming;
pub mod rules;
pub mod site;
pub mod transfer;
pub mod transport;
pub mod upload;
