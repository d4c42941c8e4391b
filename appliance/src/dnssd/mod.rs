//! DNS-SD: each queue advertised as an IPP Everywhere printer
//! (`_ipp._tcp` or `_ipps._tcp`, with the `_print` and `_universal`
//! subtypes and the TXT keys of [`records`]), so macOS, iOS, Windows,
//! Android and CUPS desktops list it by themselves. Published through the
//! host's avahi-daemon ([`avahi`]) rather than a responder of our own: one
//! multicast DNS responder per host is what RFC 6762 expects, and avahi
//! already probes, defends names, follows interfaces and is what the
//! image and every Debian desktop runs. Without avahi the appliance serves
//! as before, says so once, and advertises as soon as avahi appears.

pub mod avahi;
pub mod records;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::config::Config;
use crate::queue::{Queue, Queues};
use avahi::{Avahi, EVERY_INTERFACE, GroupState};
use records::{Listener, Service};

/// How long to wait before trying avahi again when it cannot be reached.
const RETRY: Duration = Duration::from_secs(30);

/// What the appliance advertises, and where.
#[derive(Debug, Clone)]
pub struct Advertiser {
    queues: Vec<Queue>,
    site: String,
    template: String,
    ipp: SocketAddr,
    tls: bool,
    basic: bool,
    /// The release app's listener, and whether it speaks TLS.
    api: Option<(SocketAddr, bool)>,
}

impl Advertiser {
    /// The queues of `config` as served by the IPP listener bound at
    /// `ipp` (and the release app at `api`).
    pub fn new(
        config: &Config,
        queues: &Queues,
        ipp: SocketAddr,
        api: Option<SocketAddr>,
    ) -> Advertiser {
        Advertiser {
            queues: queues.all().to_vec(),
            site: config.site.clone(),
            template: config.dnssd.name.clone(),
            ipp,
            tls: config.ipp.tls_certificate.is_some(),
            basic: config.ipp.authentication == crate::config::IppAuthentication::Basic,
            api: api.map(|addr| (addr, config.api.tls_certificate.is_some())),
        }
    }

    /// The services to publish, with `host` (avahi's name for this host)
    /// in the release app's address.
    pub fn services(&self, host: &str) -> Vec<Service> {
        let admin_url = self.api.map(|(addr, tls)| {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{host}:{}/", addr.port())
        });
        let listener = Listener {
            port: self.ipp.port(),
            tls: self.tls,
            basic: self.basic,
            admin_url,
        };
        self.queues
            .iter()
            .map(|queue| records::service(queue, &self.site, &self.template, &listener))
            .collect()
    }

    /// Where to announce: a listener on loopback only on the loopback
    /// interface (announcing it to the network would list a printer
    /// nobody there can reach), any other on every interface.
    fn interface(&self) -> i32 {
        if !self.ipp.ip().is_loopback() {
            return EVERY_INTERFACE;
        }
        // SAFETY: if_nametoindex reads a NUL-terminated string and nothing else.
        let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        i32::try_from(index)
            .ok()
            .filter(|&i| i > 0)
            .unwrap_or(EVERY_INTERFACE)
    }

    /// Keeps the queues advertised until `shutdown` turns true, through
    /// avahi restarts and name collisions.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut warned = false;
        loop {
            let outcome = tokio::select! {
                outcome = self.advertise() => outcome,
                _ = shutdown.changed() => return,
            };
            let pause = match outcome {
                Ok(()) => {
                    tracing::info!(
                        "avahi-daemon left the bus; the queues are advertised again once it is back"
                    );
                    Duration::from_secs(1)
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "DNS-SD: avahi-daemon cannot be reached on the system D-Bus, so workstations do not find the queues by themselves (install and start avahi-daemon, or set [dnssd] enabled = false); trying again every 30 s");
                    RETRY
                }
                Err(e) => {
                    tracing::debug!(error = %e, "avahi-daemon still not reachable");
                    RETRY
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Advertises every queue until avahi goes away (`Ok`) or fails.
    async fn advertise(&self) -> zbus::Result<()> {
        let avahi = Avahi::connect().await?;
        let mut owner_changes = avahi.owner_changes().await?;
        let host = avahi.host_name().await?;
        let interface = self.interface();
        let mut kept: FuturesUnordered<_> = self
            .services(&host)
            .into_iter()
            .map(|service| keep(&avahi, service, interface))
            .collect();
        tokio::select! {
            _ = owner_changes.next() => Ok(()),
            Some(outcome) = kept.next() => outcome,
        }
    }
}

/// Keeps one service published, renaming it when its name collides;
/// returns when avahi is gone.
async fn keep(avahi: &Avahi, mut service: Service, interface: i32) -> zbus::Result<()> {
    loop {
        let mut group = match avahi.publish(&service, interface).await {
            Ok(group) => group,
            // Another service on this host has the name already.
            Err(e) if avahi::is_collision(&e) => {
                service.name = renamed(avahi, &service.name).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            match group.next_state().await {
                None => return Ok(()),
                Some(GroupState::Registering) => {}
                Some(GroupState::Established) => {
                    tracing::info!(name = %service.name, service_type = service.service_type, port = service.port, "queue advertised over DNS-SD");
                }
                Some(GroupState::Collision) => {
                    service.name = renamed(avahi, &service.name).await?;
                    group.free().await;
                    break;
                }
                Some(GroupState::Failure(error)) => {
                    return Err(zbus::Error::Failure(format!(
                        "avahi could not advertise {:?}: {error}",
                        service.name
                    )));
                }
            }
        }
    }
}

async fn renamed(avahi: &Avahi, name: &str) -> zbus::Result<String> {
    let renamed = avahi.alternative_name(name).await?;
    tracing::warn!(name, renamed = %renamed, "another service on the network has this queue's name; advertised under another");
    Ok(renamed)
}
