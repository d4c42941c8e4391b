//! Test harness for end-to-end tests: starts the real `appliance` and
//! `central` binaries, real IPP printers (`ippeveprinter`, via
//! `peers/ipp-printer.sh`), a fault-injecting UDP proxy between sites and
//! central, a headless Chromium for the web app (`browser.rs`), a private
//! PostgreSQL for central's shared storage (`postgres.rs`), and runs
//! real IPP clients (`ipptool`, `lp`). Every wait has a deadline; every
//! process started here is stopped when its handle drops.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

mod api_client;
mod browser;
mod central;
mod ipp_client;
mod limit;
mod peers;
mod postgres;
mod process;
mod stats;
mod udp_proxy;

pub use api_client::*;
pub use browser::*;
pub use central::*;
pub use ipp_client::*;
pub use limit::*;
pub use peers::*;
pub use postgres::*;
pub use process::*;
pub use stats::*;
pub use udp_proxy::*;
