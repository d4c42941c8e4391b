//! A small JSON client for the release API (HTTP/1.1 through hyper, HTTPS
//! with rustls against a given CA certificate), blocking from the caller's
//! point of view: the terminal is a line-by-line console program.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// Why a call failed before an HTTP answer came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API URL is not `http://host:port` or `https://host:port`.
    #[error("{0}")]
    Url(String),
    /// Connecting, TLS or HTTP failed.
    #[error("cannot reach the release API at {url}: {message}")]
    Transport {
        /// The API URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The CA file is unusable.
    #[error("--ca {path}: {message}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// An answer: status and JSON body (`null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub json: serde_json::Value,
}

impl Answer {
    /// The API's error message, or the status when there is none.
    pub fn error_message(&self) -> String {
        self.json["error"]["message"].as_str().map_or_else(
            || format!("the API answered {}", self.status),
            str::to_owned,
        )
    }
}

/// A client for one API base URL.
pub struct ApiClient {
    base: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    runtime: tokio::runtime::Runtime,
}

impl ApiClient {
    /// A client for `url` (`http://HOST:PORT` or `https://HOST:PORT`);
    /// HTTPS trusts the PEM certificates in `ca`.
    pub fn new(url: &str, ca: Option<&Path>) -> Result<ApiClient, ClientError> {
        let bad = || {
            ClientError::Url(format!(
                "--api {url:?}: give http://HOST:PORT or https://HOST:PORT"
            ))
        };
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
            None => (authority.to_owned(), if https { 443 } else { 80 }),
        };
        if host.is_empty() || authority.contains('/') {
            return Err(bad());
        }
        let tls = if https {
            let ca = ca.ok_or_else(|| {
                ClientError::Url(
                    "an https:// API needs --ca FILE (the PEM certificate to trust)".into(),
                )
            })?;
            Some(tls_connector(ca, &host)?)
        } else {
            None
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Url(format!("cannot start the client runtime: {e}")))?;
        Ok(ApiClient {
            base: format!("{}://{authority}", if https { "https" } else { "http" }),
            host,
            port,
            tls,
            runtime,
        })
    }

    /// `METHOD path` with an optional bearer token and JSON body.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let transport = |e: &dyn std::fmt::Display| ClientError::Transport {
            url: self.base.clone(),
            message: e.to_string(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{}:{}", self.host, self.port));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).map_err(|e| transport(&e))?;
        self.runtime.block_on(async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| transport(&e))?;
            let response = match &self.tls {
                None => send(TokioIo::new(tcp), request).await,
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| transport(&e))?;
                    send(TokioIo::new(stream), request).await
                }
            }
            .map_err(|e| transport(&e))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(&e))?
                .to_bytes();
            Ok(Answer {
                status,
                json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            })
        })
    }
}

async fn send<IO>(
    io: TokioIo<IO>,
    request: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    sender.send_request(request).await
}

fn tls_connector(
    ca: &Path,
    host: &str,
) -> Result<(TlsConnector, ServerName<'static>), ClientError> {
    let ca_error = |message: String| ClientError::Ca {
        path: ca.display().to_string(),
        message,
    };
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ca_error(e.to_string()))?;
    for cert in certs {
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ca_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Url(format!("{host}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}
