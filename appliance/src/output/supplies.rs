//! Supply levels (toner, ink, waste) of the IPP printers, read at start and
//! every five minutes, so a direct queue reports its printer's as
//! `printer-supply` without asking the printer while a client waits. A
//! printer that does not answer keeps what it said last.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::PrinterConfig;
use crate::printer::{DeviceUri, PrinterHealth};

/// How often the levels are read again.
const EVERY: Duration = Duration::from_secs(300);
/// How long one printer may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the supply levels of every IPP printer in `printers` into
/// `health`, until `shutdown` turns true.
pub async fn follow(
    printers: Vec<PrinterConfig>,
    health: PrinterHealth,
    mut shutdown: watch::Receiver<bool>,
) {
    let ipp: Vec<_> = printers
        .iter()
        .filter_map(
            |p| match DeviceUri::with_trust(&p.uri, p.tls_ca.as_deref()) {
                Ok(DeviceUri::Ipp(device)) => Some((p.id.clone(), device)),
                _ => None,
            },
        )
        .collect();
    if ipp.is_empty() {
        return;
    }
    loop {
        for (id, device) in &ipp {
            match super::ipp::supplies(device, TIMEOUT).await {
                Ok(supplies) => health.set_supplies(id, supplies),
                Err(e) => tracing::debug!(printer = %id, error = %e, "supply levels not read"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
