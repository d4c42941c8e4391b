//! `appliance enroll`: the site makes its key pair, sends central a signing
//! request with its one-time token, and keeps what central answers. The
//! private key never leaves the site.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sync_protocol::message::{EnrollRequest, Message, Refusal};
use sync_protocol::pki::{self, CENTRAL_NAME, EnrollmentToken};
use sync_protocol::transport::{self, CLOSE_DONE, Timing};

use super::identity::{self, IdentityError};

/// How long each step may take.
const STEP: Duration = Duration::from_secs(15);

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token is not one (a usage error).
    #[error("this is not an enrollment token; copy the last line `central site add` printed")]
    BadToken,
    /// The endpoint is not `host:port` (a usage error).
    #[error("{0:?} is not host:port")]
    BadEndpoint(String),
    /// Central could not be reached or the connection failed.
    #[error("cannot reach central at {endpoint}: {why}")]
    Unreachable {
        /// Where.
        endpoint: String,
        /// What happened.
        why: String,
    },
    /// Central refused.
    #[error("central refused the enrollment: {0}")]
    Refused(Refusal),
    /// The answer could not be kept.
    #[error("{0}")]
    Identity(#[from] IdentityError),
}

/// Resolves `host:port` to its first address.
pub async fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    let (host, port) = crate::config::split_endpoint(endpoint)
        .ok_or_else(|| format!("{endpoint:?} is not host:port"))?;
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// A client endpoint on an ephemeral UDP port of `peer`'s address family.
pub fn client_endpoint(peer: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let local: SocketAddr = if peer.is_ipv6() {
        "[::]:0".parse().map_err(std::io::Error::other)?
    } else {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    };
    let socket = std::net::UdpSocket::bind(local)?;
    transport::site_endpoint(socket).map_err(std::io::Error::other)
}

/// Enrolls the site whose data directory is `data_dir` at `endpoint`;
/// returns the site's name at central.
pub async fn enroll(data_dir: &Path, endpoint: &str, token: &str) -> Result<String, EnrollError> {
    let parsed = EnrollmentToken::parse(token).ok_or(EnrollError::BadToken)?;
    if crate::config::split_endpoint(endpoint).is_none() {
        return Err(EnrollError::BadEndpoint(endpoint.to_owned()));
    }
    let unreachable = |why: String| EnrollError::Unreachable {
        endpoint: endpoint.to_owned(),
        why,
    };
    let (key_pem, csr_pem) = pki::site_request().map_err(|e| unreachable(e.to_string()))?;
    let addr = resolve(endpoint).await.map_err(unreachable)?;
    let client = client_endpoint(addr).map_err(|e| unreachable(e.to_string()))?;
    let config = transport::enroll_client_config(parsed.ca_fingerprint, Timing::default())
        .map_err(|e| unreachable(e.to_string()))?;
    let step = |what: &'static str| {
        move |_| unreachable(format!("{what} took longer than {} s", STEP.as_secs()))
    };
    let connecting = client
        .connect_with(config, addr, CENTRAL_NAME)
        .map_err(|e| unreachable(e.to_string()))?;
    let connection = tokio::time::timeout(STEP, connecting)
        .await
        .map_err(step("connecting"))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut tx, mut rx) = transport::open_session(&connection, Default::default())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let request = Message::EnrollRequest(EnrollRequest {
        token: token.trim().to_owned(),
        csr_pem,
        software: format!("appliance {}", env!("CARGO_PKG_VERSION")),
    });
    tx.send(&request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    // Kinds this revision does not know (a newer central's) are skipped.
    let answer = loop {
        let message = tokio::time::timeout(STEP, rx.recv())
            .await
            .map_err(step("central's answer"))?
            .map_err(|e| unreachable(e.to_string()))?;
        if message != Message::Unknown {
            break message;
        }
    };
    let result = match answer {
        Message::Enrolled(enrolled) => {
            identity::save(data_dir, &enrolled, &key_pem)?;
            Ok(enrolled.site)
        }
        Message::Refused(refusal) => Err(EnrollError::Refused(refusal)),
        other => Err(unreachable(format!("central answered {}", other.kind()))),
    };
    connection.close(CLOSE_DONE.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(2), client.wait_idle()).await;
    result
}
