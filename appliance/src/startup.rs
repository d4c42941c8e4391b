//! What an administrator should hear as the appliance starts: each IPP
//! printer that does not answer (its jobs will wait), and a site where
//! nobody can log in (no job could ever be released). Run beside the
//! daemon, never in the way of serving: a printer that is off must not
//! delay the start. Raw-socket and LPD printers are not asked: they have no
//! question to answer, and a bare connection to one can start a job (a
//! blank page, or an error sheet).

use std::time::Duration;

use crate::config::{Config, PrinterConfig};
use crate::output;
use crate::printer::DeviceUri;
use crate::store::JobStore;

/// How long a printer has to answer the start-up probe.
const PROBE: Duration = Duration::from_secs(5);

/// Probes every printer at once and looks for users; logs a warning for
/// each problem found.
pub async fn check(config: &Config, store: &JobStore) {
    let probes = config.printers.iter().map(|printer| async move {
        if let Err(why) = answers(printer).await {
            tracing::warn!(
                printer = %printer.id,
                uri = %printer.uri,
                "printer does not answer ({why}); its jobs wait until it does"
            );
        }
    });
    futures_util::future::join_all(probes).await;
    match store.enabled_users().await {
        Ok(0) if config.central.enabled() => tracing::info!(
            "no user yet: logins at printers start working when central's policy arrives"
        ),
        Ok(0) => tracing::warn!(
            "no user exists: nobody can log in at a printer, so no held job can be released; \
             add users with `appliance users add` or `appliance users import`"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot count users"),
    }
}

/// Whether an IPP printer answers Get-Printer-Attributes (others are not
/// asked).
async fn answers(printer: &PrinterConfig) -> Result<(), String> {
    match DeviceUri::with_trust(&printer.uri, printer.tls_ca.as_deref())? {
        DeviceUri::Ipp(ipp) => output::ipp::capabilities(&ipp, PROBE)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        DeviceUri::Socket { .. } | DeviceUri::Lpd { .. } => Ok(()),
    }
}
