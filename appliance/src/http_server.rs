//! The HTTP/1.1 connection shell shared by the IPP and release API
//! listeners: accepts on a bound listener, bounds the number of
//! connections and the time and size of request heads, optionally speaks
//! TLS, hands each request to a handler, and on shutdown waits (bounded)
//! for requests in flight.
//!
//! When every connection slot is taken, the connections are asked to close
//! once their current request is answered (hyper's graceful shutdown), so
//! clients idling on keep-alive connections free their slots at once
//! instead of after the idle timeout: 64 idle connections once stalled a
//! new client of the release API for 9.5 s.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// Longest time a client may take to send its request headers (and, with
/// TLS, to finish the handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (line and headers) accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A complete response.
pub type Response = http::Response<Full<Bytes>>;

/// The two ends of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// The local address it arrived at (which listener, which interface).
    pub local: Option<SocketAddr>,
    /// The client's address.
    pub peer: SocketAddr,
}

/// Why a TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {message}")]
    File {
        /// The certificate or key file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the pair.
    #[error("certificate and key do not make a TLS identity: {0}")]
    Identity(#[from] rustls::Error),
}

/// A TLS acceptor for the PEM certificate chain and private key given.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(cert, &e))?;
    if chain.is_empty() {
        return Err(file_error(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves HTTP/1.1 on `listener` until `shutdown` turns true, at most
/// `max_connections` at once, calling `handler` with each request and the
/// connection it arrived on.
pub async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    tls: Option<TlsAcceptor>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) where
    H: Fn(http::Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections));
    // Bumped to ask every connection to close after its current request.
    let (shed, _) = watch::channel(0u64);
    let mut accept_errors = 0u32;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => {
                accept_errors = 0;
                conn
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                accept_errors = (accept_errors + 1).min(6);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10 << accept_errors)).await;
                continue;
            }
        };
        // A client is waiting and every slot is taken: ask the connections
        // to close after their current request, then take the first free slot.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::debug!("all connection slots taken: closing idle keep-alive connections");
                shed.send_modify(|n| *n = n.wrapping_add(1));
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            local: stream.local_addr().ok(),
            peer,
        };
        let handler = handler.clone();
        let tls = tls.clone();
        let shed = shed.subscribe();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, handler, conn, shed, permit).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, handler, conn, shed, permit).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    // Wait for requests in flight, bounded.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
}

/// Serves one connection, holding its slot until it ends; asked to shed,
/// it closes after the request in progress (at once when idle).
async fn serve_connection<IO, H, F>(
    io: IO,
    handler: H,
    conn: Conn,
    mut shed: watch::Receiver<u64>,
    _slot: OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let svc = service_fn(move |req| {
        let answer = handler(req, conn);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .serve_connection(TokioIo::new(io), svc);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        Ok(()) = shed.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
    }
}
