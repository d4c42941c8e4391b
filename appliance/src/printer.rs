//! A printer as the rest of the appliance knows it: how it is reached
//! ([`DeviceUri`]), what its last contact showed ([`PrinterHealth`]), and
//! how its forwarder is told there is work ([`OutputWake`]). Low in the
//! layering: configuration checks printer URIs with it, and the IPP
//! server, the release API and the output stage share it, without any of
//! them reaching into another.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// An IPP printer: its URI, and for `ipps://` the certificates to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IppPrinter {
    /// `ipp://` or `ipps://` URI.
    pub uri: String,
    /// PEM certificates trusted for this printer (its CA, or its own
    /// self-signed certificate), besides none by default.
    pub trusted_pem: Option<Arc<Vec<u8>>>,
}

/// How a printer is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUri {
    /// IPP or IPPS: `ipp://host[:port]/path`.
    Ipp(IppPrinter),
    /// Raw TCP (AppSocket/JetDirect), usually port 9100.
    Socket {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// LPD (RFC 1179): `lpd://host[:port]/queue`, port 515 by default.
    Lpd {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// The server's queue name.
        queue: String,
    },
}

impl DeviceUri {
    /// How a printer at `uri` is reached, trusting for `ipps://` the
    /// certificates in the `tls_ca` file, if one is given (read here).
    pub fn with_trust(uri: &str, tls_ca: Option<&Path>) -> Result<DeviceUri, String> {
        let mut device = DeviceUri::parse(uri)?;
        if let (Some(path), DeviceUri::Ipp(ipp)) = (tls_ca, &mut device) {
            let pem = std::fs::read(path).map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
            ipp.trusted_pem = Some(Arc::new(pem));
        }
        Ok(device)
    }

    /// Parses a printer URI from the config; the error says what is accepted.
    pub fn parse(text: &str) -> Result<DeviceUri, String> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            format!("{text:?} is not a URI; use ipp://, ipps://, socket:// or lpd://")
        })?;
        match scheme {
            "ipp" | "ipps" => {
                let uri: http::Uri = text
                    .parse()
                    .map_err(|e| format!("{text:?} is not a valid URI: {e}"))?;
                if uri.host().is_none_or(str::is_empty) {
                    return Err(format!("{text:?} has no host"));
                }
                Ok(DeviceUri::Ipp(IppPrinter {
                    uri: text.to_owned(),
                    trusted_pem: None,
                }))
            }
            "socket" => {
                let (host, port) = host_port(rest.trim_end_matches('/'), 9100, text)?;
                if host.contains('/') {
                    return Err(format!("{text:?} must be socket://host[:port]"));
                }
                Ok(DeviceUri::Socket { host, port })
            }
            "lpd" => {
                let (authority, queue) = rest.split_once('/').unwrap_or((rest, ""));
                let queue = queue.trim_end_matches('/');
                if queue.is_empty() || queue.contains('/') {
                    return Err(format!("{text:?} must be lpd://host[:port]/queue"));
                }
                let (host, port) = host_port(authority, 515, text)?;
                Ok(DeviceUri::Lpd {
                    host,
                    port,
                    queue: queue.to_owned(),
                })
            }
            other => Err(format!(
                "scheme {other:?} is not supported; use ipp://, ipps://, socket://host:9100 or \
                 lpd://host/queue"
            )),
        }
    }
}

/// `host[:port]`, with a default port.
fn host_port(authority: &str, default_port: u16, uri: &str) -> Result<(String, u16), String> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("{uri:?} has an invalid port"))?,
        ),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return Err(format!("{uri:?} has no host"));
    }
    Ok((host.to_owned(), port))
}

/// Printer conditions shown to IPP clients as `printer-state-message`,
/// and their supply levels.
#[derive(Debug, Default, Clone)]
pub struct PrinterHealth {
    inner: Arc<Mutex<HashMap<String, HealthEntry>>>,
    supplies: Arc<Mutex<HashMap<String, Supplies>>>,
}

/// A printer's consumables as it last reported them (`printer-supply`,
/// PWG 5100.13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Supplies {
    /// `printer-supply` values (`index=1;class=supplyThatIsConsumed;...`).
    pub levels: Vec<Vec<u8>>,
    /// `printer-supply-description`, one per level.
    pub descriptions: Vec<String>,
    /// `printer-supply-info-uri`: where to order more.
    pub info_uri: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct HealthEntry {
    problem: Option<String>,
    busy: bool,
    /// When `busy` or `problem` last changed (ms since the epoch).
    since_ms: i64,
}

impl PrinterHealth {
    /// Records what the last contact with printer `id` showed.
    pub fn set(&self, id: &str, busy: bool, problem: Option<String>) {
        self.record(id, busy, problem, crate::job::now_ms());
    }

    fn record(&self, id: &str, busy: bool, problem: Option<String>, now_ms: i64) {
        if let Ok(mut map) = self.inner.lock() {
            let since_ms = match map.get(id) {
                Some(e) if e.busy == busy && e.problem == problem => e.since_ms,
                _ => now_ms,
            };
            map.insert(
                id.to_owned(),
                HealthEntry {
                    problem,
                    busy,
                    since_ms,
                },
            );
        }
    }

    /// When printer `id`'s condition last changed, if anything was ever
    /// recorded for it.
    pub fn changed_ms(&self, id: &str) -> Option<i64> {
        self.inner
            .lock()
            .ok()
            .and_then(|map| map.get(id).map(|e| e.since_ms))
    }

    /// Records printer `id`'s supply levels.
    pub fn set_supplies(&self, id: &str, supplies: Supplies) {
        if let Ok(mut map) = self.supplies.lock() {
            map.insert(id.to_owned(), supplies);
        }
    }

    /// Printer `id`'s supply levels, when it reported any.
    pub fn supplies(&self, id: &str) -> Option<Supplies> {
        self.supplies
            .lock()
            .ok()
            .and_then(|map| map.get(id).cloned())
            .filter(|s| !s.levels.is_empty())
    }

    /// `(busy, problem)` for printer `id`.
    pub fn get(&self, id: &str) -> (bool, Option<String>) {
        self.inner
            .lock()
            .ok()
            .and_then(|map| map.get(id).cloned())
            .map_or((false, None), |e| (e.busy, e.problem))
    }
}

/// Wakes forwarders when a job becomes due (submitted, released, canceled).
#[derive(Debug, Clone, Default)]
pub struct OutputWake {
    by_printer: Arc<HashMap<String, Arc<Notify>>>,
    /// Pool id → its members' printer ids.
    pools: Arc<HashMap<String, Vec<String>>>,
}

impl OutputWake {
    /// One wake-up handle per printer of `config`; a pool's id wakes all
    /// its members.
    pub fn new(config: &crate::config::Config) -> OutputWake {
        OutputWake {
            by_printer: Arc::new(
                config
                    .printers
                    .iter()
                    .map(|p| (p.id.clone(), Arc::new(Notify::new())))
                    .collect(),
            ),
            pools: Arc::new(
                config
                    .pools
                    .iter()
                    .map(|p| (p.id.clone(), p.printers.clone()))
                    .collect(),
            ),
        }
    }

    /// Tells the forwarder of printer `id` (or of every member of pool
    /// `id`) to look for work.
    pub fn wake(&self, id: &str) {
        if let Some(notify) = self.by_printer.get(id) {
            notify.notify_one();
        }
        for member in self.pools.get(id).into_iter().flatten() {
            if let Some(notify) = self.by_printer.get(member) {
                notify.notify_one();
            }
        }
    }

    /// Printer `id`'s wake-up, for its forwarder to wait on.
    pub fn handle(&self, id: &str) -> Arc<Notify> {
        self.by_printer.get(id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_dates_from_when_it_began() {
        let health = PrinterHealth::default();
        assert_eq!(health.changed_ms("lobby"), None);
        health.record("lobby", true, None, 1_000);
        health.record("lobby", true, None, 2_000);
        assert_eq!(health.changed_ms("lobby"), Some(1_000));
        health.record("lobby", false, Some("out of paper".into()), 3_000);
        assert_eq!(health.changed_ms("lobby"), Some(3_000));
        health.record("lobby", false, Some("out of paper".into()), 4_000);
        assert_eq!(health.changed_ms("lobby"), Some(3_000));
    }

    #[test]
    fn device_uris() {
        assert_eq!(
            DeviceUri::parse("ipp://127.0.0.1:8632/ipp/print"),
            Ok(DeviceUri::Ipp(IppPrinter {
                uri: "ipp://127.0.0.1:8632/ipp/print".into(),
                trusted_pem: None
            }))
        );
        assert!(DeviceUri::parse("ipps://printer.example/ipp/print").is_ok());
        assert_eq!(
            DeviceUri::parse("socket://10.0.0.5"),
            Ok(DeviceUri::Socket {
                host: "10.0.0.5".into(),
                port: 9100
            })
        );
        assert_eq!(
            DeviceUri::parse("socket://p:9101/"),
            Ok(DeviceUri::Socket {
                host: "p".into(),
                port: 9101
            })
        );
        assert_eq!(
            DeviceUri::parse("lpd://p/raw"),
            Ok(DeviceUri::Lpd {
                host: "p".into(),
                port: 515,
                queue: "raw".into()
            })
        );
        assert!(
            DeviceUri::parse("lpd://p:5515/").is_err(),
            "a queue is required"
        );
        assert!(DeviceUri::parse("http://p/").is_err());
        assert!(DeviceUri::parse("socket://p:x").is_err());
        assert!(DeviceUri::parse("ipp://").is_err());
        assert!(DeviceUri::parse("printer").is_err());
    }
}
