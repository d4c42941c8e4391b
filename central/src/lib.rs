//! The central service of the print fleet: enrolls sites, holds the fleet's
//! policy and pushes it to every site, and collects every site's
//! accounting and job announcements over QUIC with mutual TLS.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration (pure).
//! - [`store`]: storage behind the `CentralStore` interface; the embedded
//!   SQLite backend.

#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod store;
