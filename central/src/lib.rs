//! The central service of the print fleet: enrolls sites, holds the fleet's
//! policy and pushes it to every site, and collects every site's
//! accounting and job announcements over QUIC with mutual TLS.
//!
//! # Layout
//!
//! - [`admin`]: the admin socket, its requests and the CLI's client.
//! - [`config`]: the TOML configuration (pure).
//! - [`identity`]: the CA and the fleet key on disk.
//! - [`policy_files`]: `users.csv` and `rules.toml` in the policy directory.
//! - [`service`]: wiring and the run loop.
//! - [`sync`]: the QUIC listener, enrollment and sync sessions.
//! - [`submission`]: IPPS submission for users off the corporate network,
//!   the appliance's intake run in-process as one more site of the fleet.
//! - [`store`]: storage behind the `CentralStore` interface; the embedded
//!   SQLite backend.

#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod config;
pub mod identity;
pub mod policy_files;
pub mod service;
pub mod store;
pub mod submission;
pub mod sync;
