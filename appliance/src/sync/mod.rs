//! The site's link to central: enrollment (`enroll`), the identity it
//! keeps (`identity`), and the sync task, which dials central's endpoints
//! (the preferred first, backing off with jitter, probing the preferred one
//! while on another) and runs one session at a time (`session`). Nothing
//! else in the appliance waits on it: with central down the site takes,
//! releases and journals jobs under the last policy it had, and catches up
//! when central returns.

pub mod enroll;
pub mod identity;
mod session;
pub mod status;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sync_protocol::dial::{DialAction, DialSettings, Dialer};
use sync_protocol::frame::FrameCodec;
use sync_protocol::pki::CENTRAL_NAME;
use sync_protocol::site::SiteSettings;
use sync_protocol::transport::{self, CLOSE_DONE, Timing, sleep_until};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::policy::PolicySource;
use crate::roaming::Roaming;
use crate::store::JobStore;
use session::SessionEnd;
use status::StatusKeeper;

/// How long a dial may take.
const DIAL: Duration = Duration::from_secs(10);
/// Batches of each log in flight, and records per batch.
const WINDOW: usize = 4;
const BATCH: usize = 1000;

/// Why the sync task cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The site is not enrolled or its identity is damaged.
    #[error("{0}")]
    Identity(#[from] identity::IdentityError),
    /// TLS or QUIC set-up failed.
    #[error("{0}")]
    Transport(#[from] transport::TransportError),
    /// The store could not be read.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// What a session works with.
pub(crate) struct SyncContext {
    store: JobStore,
    roaming: Roaming,
    policy: PolicySource,
    status: StatusKeeper,
    epoch: String,
    codec: FrameCodec,
}

/// Dials central's endpoints.
struct Connector {
    endpoints: Vec<String>,
    config: quinn::ClientConfig,
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
}

impl Connector {
    /// A connection to endpoint `index`, or why not.
    fn connect(
        &mut self,
        index: usize,
    ) -> impl Future<Output = Result<quinn::Connection, String>> + Send + 'static {
        let name = self.endpoints.get(index).cloned().unwrap_or_default();
        let config = self.config.clone();
        let v4 = self.v4.clone();
        let v6 = self.v6.clone();
        async move {
            let addr = enroll::resolve(&name).await?;
            let endpoint = if addr.is_ipv6() { v6 } else { v4 }
                .ok_or_else(|| format!("no local socket for {addr}"))?;
            let connecting = endpoint
                .connect_with(config, addr, CENTRAL_NAME)
                .map_err(|e| format!("{name}: {e}"))?;
            match tokio::time::timeout(DIAL, connecting).await {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(e)) => Err(format!("{name}: {e}")),
                Err(_) => Err(format!("{name}: no answer within {} s", DIAL.as_secs())),
            }
        }
    }
}

fn local_endpoint(any: &str) -> Option<quinn::Endpoint> {
    let addr: SocketAddr = any.parse().ok()?;
    let socket = std::net::UdpSocket::bind(addr).ok()?;
    transport::site_endpoint(socket).ok()
}

/// Probes the preferred endpoint while a session runs on another; yields
/// a connection to it once it answers.
pub(crate) struct Probe<'a> {
    dialer: &'a mut Dialer,
    connector: &'a mut Connector,
    attempt: Option<JoinHandle<Result<quinn::Connection, String>>>,
}

impl Probe<'_> {
    /// The next connection to the preferred endpoint; pending until one
    /// answers. Cancel-safe: an attempt under way is kept for the next call.
    async fn next(&mut self) -> Option<quinn::Connection> {
        loop {
            if let Some(attempt) = &mut self.attempt {
                let result = attempt.await;
                self.attempt = None;
                match result {
                    Ok(Ok(connection)) => {
                        self.dialer.probed(true, Instant::now());
                        return Some(connection);
                    }
                    _ => self.dialer.probed(false, Instant::now()),
                }
                continue;
            }
            sleep_until(self.dialer.poll_timeout()).await;
            if self.dialer.poll(Instant::now()) == Some(DialAction::Probe) {
                self.attempt = Some(tokio::spawn(self.connector.connect(0)));
            }
        }
    }
}

/// Runs the site's sync with central until `shutdown` turns true.
pub async fn run(
    endpoints: Vec<String>,
    data_dir: &Path,
    store: JobStore,
    policy: PolicySource,
    roaming: Roaming,
    metrics: std::sync::Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let site = identity::load(data_dir)?;
    let timing = Timing::default();
    let config = transport::sync_client_config(&site.identity, &site.ca_pem, timing)?;
    let marks = store.sync_marks().await?;
    let mut ctx = SyncContext {
        status: StatusKeeper::new(data_dir, metrics),
        store,
        roaming,
        epoch: marks.epoch.clone(),
        codec: FrameCodec::default(),
        policy,
    };
    ctx.status.marks(&marks);
    let version = ctx.policy.current().version;
    ctx.status.update(|s| s.policy_version = version);
    ctx.status.flush(true);
    let mut connector = Connector {
        endpoints: endpoints.clone(),
        config,
        v4: local_endpoint("0.0.0.0:0"),
        v6: local_endpoint("[::]:0"),
    };
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut dialer = Dialer::new(
        endpoints.len(),
        DialSettings::default(),
        u64::from_le_bytes(seed),
        Instant::now(),
    );
    let settings = SiteSettings {
        software: format!("appliance {}", env!("CARGO_PKG_VERSION")),
        epoch: marks.epoch,
        window: WINDOW,
        batch: BATCH,
        hello_timeout: Duration::from_secs(10),
    };
    tracing::info!(endpoints = ?endpoints, "sync: starting");
    let mut switched: Option<quinn::Connection> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let connection = match switched.take() {
            Some(connection) => connection,
            None => match dialer.poll(Instant::now()) {
                Some(DialAction::Dial(index)) => match connector.connect(index).await {
                    Ok(connection) => {
                        dialer.connected(index, Instant::now());
                        connection
                    }
                    Err(why) => {
                        tracing::warn!("sync: cannot reach central at {why}");
                        ctx.status.update(|s| s.last_error = Some(why));
                        dialer.failed(index, Instant::now());
                        continue;
                    }
                },
                Some(DialAction::Probe) => continue,
                None => {
                    let at = dialer.poll_timeout();
                    tokio::select! {
                        () = sleep_until(at) => {}
                        changed = shutdown.changed() => if changed.is_err() { break },
                    }
                    continue;
                }
            },
        };
        let index = dialer.connected_to().unwrap_or(0);
        let name = endpoints.get(index).cloned().unwrap_or_default();
        tracing::info!(endpoint = %name, "sync: connected to central");
        ctx.status.update(|s| {
            s.connected_endpoint = Some(name.clone());
            s.last_error = None;
        });
        ctx.status.flush(true);
        let mut probe = Probe {
            dialer: &mut dialer,
            connector: &mut connector,
            attempt: None,
        };
        let end = session::run(
            &mut ctx,
            &connection,
            settings.clone(),
            &mut shutdown,
            &mut probe,
        )
        .await;
        if let Some(attempt) = probe.attempt.take() {
            attempt.abort();
        }
        let why = match end {
            SessionEnd::Stopped => {
                connection.close(CLOSE_DONE.into(), b"site stopping");
                break;
            }
            SessionEnd::Switch(preferred) => {
                tracing::info!(endpoint = %endpoints[0], "sync: the preferred endpoint answers again; moving back");
                connection.close(CLOSE_DONE.into(), b"moving to the preferred endpoint");
                switched = Some(preferred);
                None
            }
            SessionEnd::Lost(why) => Some(why),
            SessionEnd::Refused(refusal) => {
                tracing::error!(code = %refusal.code, "sync: central refused this site: {}", refusal.message);
                Some(format!("refused by central: {refusal}"))
            }
        };
        if let Some(why) = why {
            tracing::warn!(endpoint = %name, "sync: session ended: {why}");
            connection.close(CLOSE_DONE.into(), b"session over");
            dialer.disconnected(Instant::now());
            ctx.status.update(|s| {
                s.connected_endpoint = None;
                s.last_error = Some(why);
            });
            ctx.status.flush(true);
        }
    }
    ctx.status.update(|s| s.connected_endpoint = None);
    ctx.status.flush(true);
    for endpoint in [&connector.v4, &connector.v6].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    }
    tracing::info!("sync: stopped");
    Ok(())
}
