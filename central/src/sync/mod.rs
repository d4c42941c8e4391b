//! The QUIC listener: accepts connections, tells enrollments from sync
//! sessions by ALPN, and identifies a syncing site by its certificate.

mod deltas;
mod enroll;
pub mod nodes;
pub mod registry;
mod relay;
mod session;

use std::sync::Arc;
use std::time::Duration;

use sync_protocol::message::{Message, Refusal, RefusalCode};
use sync_protocol::revision::{ALPN_ENROLL, ALPN_NODE, ALPN_SYNC};
use sync_protocol::transport::{self, CLOSE_REFUSED, CLOSE_SHUTDOWN, MessageSender};
use tokio::sync::watch;

use crate::config::Config;
use crate::identity::FleetIdentity;
use crate::store::CentralStore;
pub use deltas::Deltas;
pub use nodes::Nodes;
pub use registry::Registry;

/// How long a peer has to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a refused peer has to read the refusal before the connection
/// is closed under it.
const LINGER: Duration = Duration::from_secs(2);

/// What every connection's task shares.
pub struct Shared<S> {
    /// Storage.
    pub store: S,
    /// CA, server certificate, fleet key.
    pub identity: FleetIdentity,
    /// Configuration.
    pub config: Config,
    /// The current policy version; sessions push changes when it moves.
    pub policy: watch::Sender<u64>,
    /// Open sessions.
    pub registry: Arc<Registry>,
    /// Permits for relaying document blocks (`sync.relay_streams`).
    pub relay: Arc<tokio::sync::Semaphore>,
    /// Links to the other nodes sharing the storage.
    pub nodes: Arc<Nodes>,
    /// Policy changes since each version, read once for every session.
    pub deltas: Deltas,
}

/// Accepts connections on `endpoint` until `shutdown` turns true.
pub async fn serve<S: CentralStore>(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared<S>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = crate::service::stopped(&mut shutdown) => None,
        };
        let Some(incoming) = incoming else { break };
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match tokio::time::timeout(HANDSHAKE, incoming).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    tracing::warn!(%remote, error = %e, "sync: handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%remote, "sync: handshake took too long");
                    return;
                }
            };
            handle(shared, connection).await;
        });
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"central is shutting down");
    endpoint.wait_idle().await;
}

async fn handle<S: CentralStore>(shared: Arc<Shared<S>>, connection: quinn::Connection) {
    let remote = connection.remote_address();
    let peer = transport::peer_identity(&connection);
    if peer.alpn == ALPN_ENROLL {
        enroll::run(&shared, connection).await;
        return;
    }
    if peer.alpn == ALPN_NODE {
        let node = match peer.certificate {
            Some(fingerprint) => shared.store.node_by_certificate(fingerprint).await,
            None => Ok(None),
        };
        match node {
            Ok(Some(node)) => nodes::serve(shared, connection, node).await,
            Ok(None) => {
                tracing::warn!(%remote, "sync: a node link from no live node of this database refused");
                connection.close(CLOSE_REFUSED.into(), b"not a live node of this database");
            }
            Err(e) => {
                tracing::error!(error = %e, "sync: cannot look a node up");
                connection.close(CLOSE_REFUSED.into(), b"central cannot serve now");
            }
        }
        return;
    }
    if peer.alpn != ALPN_SYNC {
        connection.close(CLOSE_REFUSED.into(), b"unknown protocol");
        return;
    }
    let refusal = match peer.certificate {
        None => Refusal::new(
            RefusalCode::UnknownSite,
            "a sync session needs the site's certificate; enroll the site first",
        ),
        Some(fingerprint) => match shared.store.site_by_certificate(fingerprint).await {
            Ok(Some(site)) if site.revoked_ms.is_none() => {
                session::run(&shared, connection, site.name).await;
                return;
            }
            Ok(Some(site)) => Refusal::new(
                RefusalCode::Revoked,
                format!("site {} was revoked at central; enroll it again", site.name),
            ),
            Ok(None) => Refusal::new(
                RefusalCode::UnknownSite,
                "this certificate belongs to no site central knows (re-enrolled or removed); \
                 enroll the site again",
            ),
            Err(e) => {
                tracing::error!(error = %e, "sync: cannot look a site up");
                Refusal::new(
                    RefusalCode::Unavailable,
                    "central cannot serve now; try later",
                )
            }
        },
    };
    tracing::warn!(%remote, code = %refusal.code, "sync: session refused: {}", refusal.message);
    if let Ok((mut tx, _rx)) = transport::accept_session(&connection, Default::default()).await {
        refuse(&connection, &mut tx, refusal).await;
    } else {
        connection.close(CLOSE_REFUSED.into(), refusal.message.as_bytes());
    }
}

/// Sends `refusal`, gives the peer a moment to read it, and closes.
async fn refuse(connection: &quinn::Connection, tx: &mut MessageSender, refusal: Refusal) {
    let reason = refusal.message.clone();
    let _ = tx.send(&Message::Refused(refusal)).await;
    let _ = tx.finish().await;
    let _ = tokio::time::timeout(LINGER, connection.closed()).await;
    connection.close(CLOSE_REFUSED.into(), reason.as_bytes());
}
