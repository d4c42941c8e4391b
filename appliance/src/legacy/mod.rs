//! The ways older systems print: LPD (RFC 1179, `lpr`) and the raw socket
//! ("port 9100", JetDirect), both off unless `[lpd] listen` / `[raw]
//! listen` are set. Their jobs go through the IPP service's own intake
//! ([`IppService::submit`]): the same spool, format detection, analysis,
//! limits, budget and accounting as a Print-Job's. Neither protocol
//! authenticates: the owner is what the sending host says (LPD's control
//! file, a PJL header) or what `[raw] hosts` maps its address to.

pub mod lpd;
mod lpd_session;
pub mod pjl;
mod raw;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::RawConfig;
use crate::ipp::service::IppService;

/// Connections served at once per listener; more wait in the kernel's
/// backlog (these are a few hosts, not a building's workstations).
const MAX_CONNECTIONS: usize = 32;

/// Which protocol a listener speaks.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// RFC 1179.
    Lpd,
    /// A connection's bytes are one job.
    Raw(Arc<RawConfig>),
}

impl Protocol {
    fn name(&self) -> &'static str {
        match self {
            Protocol::Lpd => "lpd",
            Protocol::Raw(_) => "raw",
        }
    }
}

/// Serves `listener` until `shutdown` turns true, then gives connections
/// in flight `drain` to finish (a job half sent is then dropped; both
/// protocols' senders send it again).
pub async fn serve(
    listener: TcpListener,
    protocol: Protocol,
    service: Arc<IppService>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, protocol = protocol.name(), "listening");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, protocol = protocol.name(), "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (protocol, service) = (protocol.clone(), service.clone());
        connections.spawn(async move {
            connection(stream, peer, protocol, service).await;
            drop(permit);
        });
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    service: Arc<IppService>,
) {
    match protocol {
        Protocol::Lpd => lpd_session::serve(stream, peer, &service).await,
        Protocol::Raw(config) => raw::serve(stream, peer, &service, &config).await,
    }
}
