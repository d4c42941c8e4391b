//! The thin glue to QUIC (quinn) and TLS (rustls): endpoint and TLS
//! configurations for each end, and a framed message stream over one
//! bidirectional QUIC stream.
//!
//! Endpoints are built on a UDP socket the caller binds and passes in, so a
//! test can put a fault-injecting proxy between the ends. Everything here
//! is I/O; what the messages mean is decided by [`crate::site`] and
//! [`crate::central`].

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::frame::{FrameCodec, FrameError};
use crate::message::Message;
use crate::pki::{Identity, der_fingerprint};
use crate::revision::{ALPN_ENROLL, ALPN_NODE, ALPN_SYNC};

/// Why a connection could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key is unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The UDP socket or endpoint failed.
    #[error("endpoint: {0}")]
    Io(#[from] std::io::Error),
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A frame could not be read or written.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The peer closed its stream.
    #[error("the peer closed the stream")]
    Closed,
}

/// Application close code: the session ended normally.
pub const CLOSE_DONE: u32 = 0;
/// Application close code: the closing end refused (the reason says why).
pub const CLOSE_REFUSED: u32 = 1;
/// Application close code: the closing end is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 2;

/// QUIC timing shared by both ends.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A connection with nothing received for this long is dead.
    pub idle_timeout: Duration,
    /// Keep-alive interval (well under the idle timeout).
    pub keep_alive: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            idle_timeout: Duration::from_secs(15),
            keep_alive: Duration::from_secs(4),
        }
    }
}

/// Unidirectional streams (document blocks) a peer may have open at once.
pub const MAX_BLOCK_STREAMS: u32 = 32;
/// Bytes a peer may have in flight on one connection, all streams together.
const CONNECTION_WINDOW: u32 = 24 << 20;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config(timing: Timing) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut config = quinn::TransportConfig::default();
    config
        .max_idle_timeout(Some(
            timing
                .idle_timeout
                .try_into()
                .map_err(|_| TransportError::Tls("idle timeout out of range".into()))?,
        ))
        .keep_alive_interval(Some(timing.keep_alive))
        // Document blocks (job roaming) travel one per unidirectional
        // stream: a window of them in flight, each up to a block, bounded
        // per connection so a peer cannot make this end buffer more.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_BLOCK_STREAMS))
        .stream_receive_window(quinn::VarInt::from_u32(2 << 20))
        .receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        // Branch links lose packets for reasons other than congestion
        // (radio, overloaded CPE): a loss-based controller (Cubic) falls
        // to a fraction of such a link at 0.5 % loss; BBR paces to the
        // measured bottleneck instead.
        .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    Ok(Arc::new(config))
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::Tls(format!("certificate PEM: {e}")))
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TransportError::Tls(format!("private key PEM: {e}")))
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| TransportError::Tls(format!("CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Keys derived from a secret that outlives restarts, so that after central
/// restarts it recognises the connection IDs it issued before and answers
/// their packets with a valid stateless reset: sites learn at once that
/// their connection is gone instead of waiting out the idle timeout.
fn restart_proof_config(secret: &[u8; 32]) -> quinn::EndpointConfig {
    use sha2::{Digest, Sha256};
    let derive = |label: &[u8]| -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(label);
        hash.update(secret);
        hash.finalize().into()
    };
    let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &derive(b"printfleet quic reset\0"));
    let cid = derive(b"printfleet quic cid\0");
    let cid_key = u64::from_le_bytes([
        cid[0], cid[1], cid[2], cid[3], cid[4], cid[5], cid[6], cid[7],
    ]);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// Central's endpoint on `socket`: its server identity (sent with the CA
/// certificate, so an enrolling site can check it against its token),
/// client certificates checked against the CA when presented. A sync
/// session must present one (the caller checks, by ALPN); an enrollment
/// has none yet; a node link presents the other node's server certificate.
/// `restart_secret` must be the same across restarts (see
/// `restart_proof_config`).
pub fn central_endpoint(
    socket: UdpSocket,
    server: &Identity,
    ca_pem: &str,
    timing: Timing,
    restart_secret: &[u8; 32],
) -> Result<quinn::Endpoint, TransportError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut chain = certificates(&server.certificate_pem)?;
    chain.extend(certificates(ca_pem)?);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key(&server.key_pem)?)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN_SYNC.to_vec(), ALPN_ENROLL.to_vec(), ALPN_NODE.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(timing)?);
    Ok(quinn::Endpoint::new(
        restart_proof_config(restart_secret),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// A site's endpoint on `socket` (client only).
pub fn site_endpoint(socket: UdpSocket) -> Result<quinn::Endpoint, TransportError> {
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// A site's client configuration for sync: it trusts only central's CA
/// and proves itself with its own certificate.
pub fn sync_client_config(
    site: &Identity,
    ca_pem: &str,
    timing: Timing,
) -> Result<quinn::ClientConfig, TransportError> {
    mutual_client_config(site, ca_pem, timing, ALPN_SYNC)
}

/// A central node's client configuration for its links to the other
/// nodes: it trusts only the fleet's CA and proves itself with its own
/// server certificate, which the other node looks up among the nodes the
/// shared database lists.
pub fn node_client_config(
    node: &Identity,
    ca_pem: &str,
    timing: Timing,
) -> Result<quinn::ClientConfig, TransportError> {
    mutual_client_config(node, ca_pem, timing, ALPN_NODE)
}

fn mutual_client_config(
    identity: &Identity,
    ca_pem: &str,
    timing: Timing,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(
            certificates(&identity.certificate_pem)?,
            private_key(&identity.key_pem)?,
        )
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    client_config(tls, timing)
}

/// A site's client configuration for enrollment: it has no CA yet, so it
/// trusts the server chain whose CA certificate has the SHA-256 its token
/// carries, and presents no certificate.
pub fn enroll_client_config(
    ca_fingerprint: [u8; 32],
    timing: Timing,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            fingerprint: ca_fingerprint,
            provider: provider(),
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    client_config(tls, timing)
}

fn client_config(
    tls: rustls::ClientConfig,
    timing: Timing,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(timing)?);
    Ok(config)
}

/// Trusts a server chain that includes the CA certificate with a given
/// SHA-256, verified as usual (signature, validity, name) against it.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| der_fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "central's CA is not the one the enrollment token names".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the TLS handshake established about the peer of an accepted
/// connection.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// The ALPN the peer chose.
    pub alpn: Vec<u8>,
    /// SHA-256 of the peer's certificate, if it presented one (verified
    /// against central's CA).
    pub certificate: Option<[u8; 32]>,
}

/// The ALPN and client certificate of an established connection.
pub fn peer_identity(connection: &quinn::Connection) -> PeerIdentity {
    let alpn = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .unwrap_or_default();
    let certificate = connection
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(|c| der_fingerprint(c)));
    PeerIdentity { alpn, certificate }
}

/// Resolves at a state machine's deadline (`poll_timeout`), or never when
/// it has none: the timer branch of a session shell's `select!`.
pub async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The sending half of the session stream.
pub struct MessageSender {
    framed: FramedWrite<quinn::SendStream, FrameCodec>,
}

/// The receiving half of the session stream.
pub struct MessageReceiver {
    framed: FramedRead<quinn::RecvStream, FrameCodec>,
}

/// Opens the session stream (the dialing end). QUIC tells the peer of a
/// new stream only when data arrives on it, so the dialer speaks first.
pub async fn open_session(
    connection: &quinn::Connection,
    codec: FrameCodec,
) -> Result<(MessageSender, MessageReceiver), TransportError> {
    let (send, recv) = connection.open_bi().await?;
    Ok(halves(send, recv, codec))
}

/// Accepts the session stream (the accepting end).
pub async fn accept_session(
    connection: &quinn::Connection,
    codec: FrameCodec,
) -> Result<(MessageSender, MessageReceiver), TransportError> {
    let (send, recv) = connection.accept_bi().await?;
    Ok(halves(send, recv, codec))
}

fn halves(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    codec: FrameCodec,
) -> (MessageSender, MessageReceiver) {
    (
        MessageSender {
            framed: FramedWrite::new(send, codec),
        },
        MessageReceiver {
            framed: FramedRead::new(recv, codec),
        },
    )
}

impl MessageSender {
    /// Sends one message (flow control applies: this waits while the peer
    /// does not read).
    pub async fn send(&mut self, message: &Message) -> Result<(), TransportError> {
        self.framed.send(message).await?;
        Ok(())
    }

    /// Queues a message without flushing; [`MessageSender::flush`] sends
    /// what is queued.
    pub async fn feed(&mut self, message: &Message) -> Result<(), TransportError> {
        self.framed.feed(message).await?;
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        self.framed.flush().await?;
        Ok(())
    }

    /// Ends the stream after what was sent.
    pub async fn finish(&mut self) -> Result<(), TransportError> {
        self.framed.flush().await?;
        // A stream already reset by the peer has nothing left to finish.
        let _ = self.framed.get_mut().finish();
        Ok(())
    }
}

impl MessageReceiver {
    /// The next message; [`TransportError::Closed`] when the peer finished
    /// its stream. Cancel-safe: a message is never half taken.
    pub async fn recv(&mut self) -> Result<Message, TransportError> {
        match self.framed.next().await {
            Some(message) => Ok(message?),
            None => Err(TransportError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, CENTRAL_NAME, site_request};

    fn loopback() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("loopback")
    }

    #[tokio::test]
    async fn an_expired_site_certificate_is_refused_in_the_handshake() {
        let (ca, _) = Authority::create("test").unwrap();
        let server = ca.server_identity(30).unwrap();
        let central = central_endpoint(
            loopback(),
            &server,
            ca.certificate_pem(),
            Timing::default(),
            &[3; 32],
        )
        .unwrap();
        let addr = central.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            let incoming = central.accept().await.expect("a connection attempt");
            incoming.await.map(drop).map_err(|e| e.to_string())
        });
        let (key_pem, csr) = site_request().unwrap();
        let expired = Identity {
            certificate_pem: ca.sign_site_expired(&csr, "branch-1").unwrap(),
            key_pem,
        };
        let site = site_endpoint(loopback()).unwrap();
        let config = sync_client_config(&expired, ca.certificate_pem(), Timing::default()).unwrap();
        let attempt = async {
            let connection = site.connect_with(config, addr, CENTRAL_NAME)?.await?;
            // TLS 1.3: the client hears of the refusal when it next reads.
            let (_tx, mut rx) = open_session(&connection, FrameCodec::default())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let _ = rx.recv().await;
            connection.closed().await;
            Ok::<_, Box<dyn std::error::Error>>(connection.close_reason())
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await;
        let refused = tokio::time::timeout(std::time::Duration::from_secs(10), accepting)
            .await
            .expect("central decides in time")
            .expect("no panic")
            .expect_err("central must refuse an expired certificate");
        assert!(refused.to_lowercase().contains("expired"), "{refused}");
    }
}
