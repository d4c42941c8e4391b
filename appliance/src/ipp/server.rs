//! The HTTP shell around the IPP service: accepts connections on a bound
//! listener, bounds them (count, header size and time, idle body reads,
//! attribute bytes), parses IPP with the `ipp` crate leaving the document
//! as a stream, and writes the encoded response. Also serves `/metrics`
//! and a one-line status page per queue (`printer-more-info`).

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Method, StatusCode as HttpStatus, header};
use http_body_util::Full;
use hyper::body::Incoming;
use ipp::model::IppVersion;
use ipp::parser::AsyncIppParser;
use ipp::reader::AsyncIppReader;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::body::BodyReader;
use super::error::IppError;
use super::request::{self, operation_name};
use super::service::{IppService, Reply};
use crate::http_server::{self, Response};
use crate::queue::Target;

/// Unread request body read and discarded before an early answer, so the
/// client finishes sending and sees the answer instead of a reset.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// Longest time spent draining: a client trickling its body is answered
/// (and its connection closed) instead of holding the connection.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves IPP on `listener` (over TLS when `tls` is given: `ipps://`)
/// until `shutdown` turns true, then waits (up to `drain`) for requests in
/// flight to finish.
pub async fn serve(
    listener: TcpListener,
    service: Arc<IppService>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let max = service.limits.max_connections;
    let scheme = if tls.is_some() { "ipps" } else { "ipp" };
    let handler = move |req, conn: http_server::Conn| {
        let service = service.clone();
        async move { route(req, &service, scheme, conn).await }
    };
    http_server::serve(listener, max, tls, handler, shutdown, drain).await;
}

async fn route(
    req: http::Request<Incoming>,
    service: &IppService,
    scheme: &str,
    conn: http_server::Conn,
) -> Response {
    let host = request_host(&req, conn.local);
    let base = format!("{scheme}://{host}");
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") if service.limits.metrics => {
            refresh_gauges(service).await;
            plain(
                HttpStatus::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                service.metrics.render(),
            )
        }
        (&Method::POST, _) => {
            let is_ipp = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/ipp"));
            if !is_ipp {
                return plain(
                    HttpStatus::UNSUPPORTED_MEDIA_TYPE,
                    "text/plain; charset=utf-8",
                    "POST requests must carry Content-Type: application/ipp\n".into(),
                );
            }
            let authorization = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let call = Call {
                base: &base,
                authorization: authorization.as_deref(),
                client: conn.peer,
            };
            let (status, body) = ipp_response(req.into_body(), service, call).await;
            let mut response = http::Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/ipp");
            if status == HttpStatus::UNAUTHORIZED {
                response = response.header(header::WWW_AUTHENTICATE, service.auth.challenge());
            }
            response
                .body(Full::new(body))
                .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
        }
        (&Method::GET, path) if path.starts_with("/icons/") => {
            match super::printer_attrs::icon(path) {
                Some(png) => http::Response::builder()
                    .status(HttpStatus::OK)
                    .header(header::CONTENT_TYPE, "image/png")
                    .header(header::CACHE_CONTROL, "max-age=86400")
                    .body(Full::new(Bytes::from_static(png)))
                    .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new()))),
                None => plain(
                    HttpStatus::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "not found\n".into(),
                ),
            }
        }
        (&Method::GET, path) => match service.queues.route(path) {
            Some(Target::Queue(queue)) => plain(
                HttpStatus::OK,
                "text/plain; charset=utf-8",
                format!(
                    "{}\n{}\nPrint to {base}{}\n",
                    queue.name,
                    queue.info,
                    queue.path()
                ),
            ),
            _ => plain(
                HttpStatus::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n".into(),
            ),
        },
        _ => plain(
            HttpStatus::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use POST with application/ipp\n".into(),
        ),
    }
}

/// What an IPP request came with besides its body.
struct Call<'a> {
    /// The URI prefix the client used (`ipps://host:port`).
    base: &'a str,
    /// The `Authorization` header, if any.
    authorization: Option<&'a str>,
    /// The client's address.
    client: SocketAddr,
}

/// The HTTP status an IPP answer travels with: `401` asks the client for
/// credentials, `403` refuses them for now; every other answer, failures
/// included, is `200` with the IPP status inside.
fn http_status(outcome: &Result<Reply, IppError>) -> HttpStatus {
    match outcome {
        Err(IppError::NotAuthenticated(_)) => HttpStatus::UNAUTHORIZED,
        Err(IppError::Forbidden(_)) => HttpStatus::FORBIDDEN,
        _ => HttpStatus::OK,
    }
}

/// Parses the IPP message, establishes who sends it, and runs it; every
/// failure becomes an IPP status.
async fn ipp_response(body: Incoming, service: &IppService, call: Call<'_>) -> (HttpStatus, Bytes) {
    let client = call.client;
    let limits = &service.limits;
    let reader = BodyReader::new(
        body,
        limits.idle_timeout(),
        Some(limits.max_attribute_bytes),
        limits.rate_floor(),
    );
    let mut parser = AsyncIppParser::new(AsyncIppReader::new(reader.compat()));

    // The header first, so even a broken attribute section gets an answer
    // that echoes the request-id.
    let header = match guarded(limits.idle_timeout(), parser.get_or_parse_header()).await {
        Ok(header) => header,
        Err(e) => {
            return (
                HttpStatus::OK,
                service.respond(IppVersion::v1_1(), 0, "malformed", Err(e)),
            );
        }
    };
    let operation = operation_name(header.operation_or_status);
    let parts = match guarded(limits.idle_timeout(), parser.parse_parts()).await {
        Ok(parts) => parts,
        Err(e) => {
            return (
                HttpStatus::OK,
                service.respond(header.version, header.request_id, operation, Err(e)),
            );
        }
    };
    let (header, attributes, reader) = parts;
    let mut document = reader.into_inner().into_inner();
    document.set_limit(None);
    let checked = match request::check(&header, &attributes) {
        Ok(req) => {
            let user = service
                .auth
                .user(req.operation, &req.user, call.authorization, client.ip())
                .await;
            user.map(|user| request::Request {
                client: Some(client.ip()),
                user,
                ..req
            })
        }
        Err(e) => Err(e),
    };
    let req = match checked {
        Ok(req) => req,
        Err(e) => {
            drain(&mut document).await;
            let outcome = Err(e);
            let status = http_status(&outcome);
            let body = service.respond(header.version, header.request_id, operation, outcome);
            return (status, body);
        }
    };
    let outcome = AssertUnwindSafe(service.dispatch(&req, call.base, &mut document))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(IppError::Internal("the request handler failed".into())));
    drain(&mut document).await;
    let status = http_status(&outcome);
    let body = service.respond(req.version, req.request_id, req.operation_name(), outcome);
    (status, body)
}

/// Reads and discards what is left of a request body, up to [`DRAIN_LIMIT`]
/// and [`DRAIN_TIME`] (and within the idle timeout and rate floor the
/// reader enforces).
async fn drain(body: &mut BodyReader) {
    use tokio::io::AsyncReadExt;
    let mut sink = vec![0u8; 64 * 1024];
    let start = body.consumed();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while body.consumed() - start < DRAIN_LIMIT {
            match body.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Runs a parsing step with an overall deadline, turning I/O failures,
/// parse errors and panics inside the parser into IPP errors.
async fn guarded<T, E>(
    deadline: Duration,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, IppError>
where
    E: std::fmt::Display + AsIoError,
{
    match tokio::time::timeout(deadline, AssertUnwindSafe(step).catch_unwind()).await {
        Err(_) => Err(IppError::Timeout(deadline.as_secs())),
        // The ipp crate can panic on some malformed values; a panic here is
        // a malformed request, not a reason to drop the connection.
        Ok(Err(_)) => Err(IppError::BadRequest("malformed IPP request".into())),
        Ok(Ok(Err(e))) => Err(match e.io_kind() {
            Some(std::io::ErrorKind::TimedOut) => IppError::Timeout(deadline.as_secs()),
            Some(std::io::ErrorKind::FileTooLarge) => IppError::TooLarge(e.to_string()),
            Some(std::io::ErrorKind::UnexpectedEof) => {
                IppError::BadRequest("the IPP request ended early (truncated)".into())
            }
            _ => IppError::BadRequest(format!("malformed IPP request: {e}")),
        }),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// Access to the I/O error kind behind a parser error.
trait AsIoError {
    fn io_kind(&self) -> Option<std::io::ErrorKind>;
}

impl AsIoError for std::io::Error {
    fn io_kind(&self) -> Option<std::io::ErrorKind> {
        Some(self.kind())
    }
}

impl AsIoError for ipp::parser::IppParseError {
    fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ipp::parser::IppParseError::IoError(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// `host[:port]` for URIs in responses: the client's Host header when it is
/// plausible, else the address the connection arrived on.
fn request_host(req: &http::Request<Incoming>, local: Option<SocketAddr>) -> String {
    let from_header = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        });
    match (from_header, local) {
        (Some(h), _) => h.to_owned(),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => "localhost".to_owned(),
    }
}

async fn refresh_gauges(service: &IppService) {
    if let Ok(counts) = service.store.count_by_state(None).await {
        let count = |pick: &dyn Fn(crate::job::JobState) -> bool| -> i64 {
            counts
                .iter()
                .filter(|(s, _)| pick(*s))
                .map(|(_, n)| *n as i64)
                .sum()
        };
        use crate::job::JobState::*;
        service.metrics.jobs_held.set(count(&|s| s == PendingHeld));
        service
            .metrics
            .jobs_queued
            .set(count(&|s| matches!(s, Pending | Processing)));
    } else {
        service.metrics.store_errors.inc();
    }
    if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(crate::metrics::resident_bytes)
    {
        service.metrics.resident_memory_bytes.set(bytes);
    }
}

fn plain(status: HttpStatus, content_type: &str, body: String) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}
