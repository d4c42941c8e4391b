//! The branch print appliance: accepts print jobs over IPP, stores them
//! durably, and holds them for release (pull queues) or forwards them to a
//! printer (direct queues).
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration and its defaults (pure).
//! - [`credentials`]: PIN, password and card hashing (pure).
//! - [`job`]: the job record and its IPP state machine (pure).
//! - [`format`](mod@format): accepted document formats and content sniffing (pure).
//! - [`analysis`]: page count and colour read from documents at intake.
//! - [`queue`]: queues and the URIs they answer at (pure).
//! - [`users`]: users, their groups and logins; CSV import (pure).
//! - [`rules`]: print rules applied at release (pure).
//! - [`policy`]: the rules in force, swapped atomically at run time.
//! - [`accounting`]: the journal record of a finished print, and reports (pure).
//! - [`store`]: the only door to SQLite and the spool files; group commit.
//! - [`http_server`]: the HTTP/1.1 connection shell (optional TLS).
//! - [`ipp_wire`]: IPP values, the attribute guard and a job's stored
//!   template, shared by server, client, accounting and API (pure).
//! - [`ipp`]: the IPP server and its operations.
//! - [`api`]: the release API for printer panels and terminals.
//! - [`legacy`]: LPD and raw socket intake for older systems.
//! - [`hot_folder`]: watched directories whose files become jobs.
//! - [`dnssd`]: the queues advertised through avahi.
//! - [`printer`]: how a printer is reached, its health, and the wake-up of
//!   its forwarder (shared low-level types).
//! - [`output`]: sending jobs to printers (IPP, IPPS, raw socket, LPD).
//! - [`metrics`]: Prometheus metrics.
//! - [`housekeeping`]: jobs ended by time (document timeout, held-job and
//!   reprint expiry).
//! - [`sync`]: enrollment with central and the sync task (policy down,
//!   accounting and job announcements up).
//! - [`terminal`]: the console release station, an API client.
//! - [`uploads`]: the jobs whose document is arriving now.
//! - [`daemon`]: wires the above together.
//!
//! # The invariant everything serves
//!
//! A job is acknowledged (`successful-ok`) only after its document is
//! fsynced in the spool and its row is committed; a visible job always has
//! its complete document. See `ARCHITECTURE.md`.

#![warn(missing_docs, unreachable_pub)]

pub mod accounting;
pub mod analysis;
pub mod api;
pub mod authn;
pub mod config;
pub mod daemon;
pub mod dnssd;
pub mod format;
pub mod hot_folder;
pub mod housekeeping;
pub mod http_server;
pub mod ipp;
pub mod ipp_wire;
pub mod job;
pub mod legacy;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod printer;
pub mod queue;
pub mod roaming;
pub mod rules;
pub mod startup;
pub mod store;
pub mod sync;
pub mod terminal;
pub mod uploads;

/// Users' credential hashes (shared with central: `sync_protocol::policy`).
pub use sync_protocol::policy::credentials;
/// Users, their groups and the CSV import format (shared with central).
pub use sync_protocol::policy::users;
