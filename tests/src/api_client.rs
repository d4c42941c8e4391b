//! A release API client that checks every answer against the OpenAPI
//! document, raw HTTP for bad-input tests, requests held back for races,
//! and connections from chosen loopback addresses.

use super::*;

/// An answer from the release API.
#[derive(Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`null` when empty).
    pub json: serde_json::Value,
}

impl ApiResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A release API client that checks every answer against the OpenAPI
/// document the appliance serves: the status must be one the document
/// lists for that operation, and errors must have the documented shape.
pub struct ApiClient {
    port: u16,
    doc: serde_json::Value,
}

impl ApiClient {
    /// Connects to the API on `port` and fetches its OpenAPI document.
    pub fn new(port: u16) -> Result<ApiClient> {
        let answer = http_call(port, "GET", "/api/v1/openapi.json", None, None)?;
        if answer.status != 200 {
            bail!("GET /api/v1/openapi.json answered {}", answer.status);
        }
        Ok(ApiClient {
            port,
            doc: serde_json::from_slice(&answer.body)?,
        })
    }

    /// The OpenAPI document.
    pub fn openapi(&self) -> &serde_json::Value {
        &self.doc
    }

    /// Calls `METHOD path` with an optional bearer token and JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse> {
        let body = body.map(|b| b.to_string());
        let RawAnswer {
            status,
            headers,
            body: raw,
        } = http_call(self.port, method, path, token, body.as_deref())?;
        let json = if raw.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&raw)
                .with_context(|| format!("{method} {path}: body is not JSON: {raw:?}"))?
        };
        let template = self.doc["paths"]
            .as_object()
            .and_then(|paths| {
                paths
                    .keys()
                    .filter(|t| path_matches(t, path))
                    .min_by_key(|t| t.matches('{').count())
            })
            .with_context(|| format!("{path} is not in the OpenAPI document"))?;
        let documented = &self.doc["paths"][template][method.to_ascii_lowercase()]["responses"];
        if documented.get(status.to_string()).is_none() {
            bail!(
                "{method} {path} answered {status}, which the OpenAPI document does not list: {json}"
            );
        }
        if status >= 400
            && !(json["error"]["code"].is_string() && json["error"]["message"].is_string())
        {
            bail!("{method} {path}: error {status} without {{error: {{code, message}}}}: {json}");
        }
        Ok(ApiResponse {
            status,
            headers,
            json,
        })
    }

    /// Sends anything (for bad-input tests): no check against the document
    /// except that errors are JSON `{error: {code, message}}`.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<ApiResponse> {
        let answer = http_exchange(self.port, method, path, token, content_type, body)?;
        error_shaped(method, path, answer)
    }

    /// Calls `METHOD path` with extra request headers (`Cookie`, `Origin`)
    /// and an optional JSON body; the answer with its headers, not checked
    /// against the OpenAPI document beyond the error shape.
    pub fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let content_type = (!body.is_empty()).then_some("application/json");
        let answer = http_exchange_with(
            self.port,
            method,
            path,
            None,
            content_type,
            headers,
            body.as_bytes(),
        )?;
        error_shaped(method, path, answer)
    }

    /// Releases every held job of the session's user (`{"jobs": "all"}`);
    /// the answer, which must be 202.
    pub fn release_all(&self, token: &str) -> Result<serde_json::Value> {
        let r = self.call(
            "POST",
            "/api/v1/jobs/release",
            Some(token),
            Some(&serde_json::json!({"jobs": "all"})),
        )?;
        if r.status != 202 {
            bail!("release of all jobs answered {}: {}", r.status, r.json);
        }
        Ok(r.json)
    }

    /// Logs in with a PIN; returns the token.
    pub fn login_pin(&self, device: &str, user: &str, pin: &str) -> Result<String> {
        let r = self.call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(&serde_json::json!({"device": device, "method": "pin", "user": user, "secret": pin})),
        )?;
        if r.status != 201 {
            bail!(
                "login of {user} at {device} answered {}: {}",
                r.status,
                r.json
            );
        }
        r.json["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in the login answer")
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| a == b || (a.starts_with('{') && !b.is_empty()))
}

/// An HTTP answer as received.
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One HTTP/1.1 request with a JSON body (if any) on a fresh connection.
fn http_call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<RawAnswer> {
    let body = body.unwrap_or("");
    let content_type = (!body.is_empty() || method == "POST").then_some("application/json");
    http_exchange(port, method, path, token, content_type, body.as_bytes())
}

/// An answer as JSON, refused unless an error is `{error: {code, message}}`.
fn error_shaped(method: &str, path: &str, answer: RawAnswer) -> Result<ApiResponse> {
    let json: serde_json::Value = if answer.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&answer.body)?
    };
    if answer.status >= 400
        && !(json["error"]["code"].is_string() && json["error"]["message"].is_string())
    {
        bail!(
            "{method} {path}: error {} without {{error: {{code, message}}}}: {json}",
            answer.status
        );
    }
    Ok(ApiResponse {
        status: answer.status,
        headers: answer.headers,
        json,
    })
}

/// One HTTP/1.1 request on a fresh connection, body sent as given.
fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<RawAnswer> {
    http_exchange_with(port, method, path, token, content_type, &[], body)
}

/// [`http_exchange`] with more request headers.
fn http_exchange_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Result<RawAnswer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = http_request(method, path, token, content_type, body);
    // The extra headers go at the end of the head, before its blank line.
    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
        let lines: String = extra.iter().map(|(n, v)| format!("\r\n{n}: {v}")).collect();
        request.splice(end..end, lines.into_bytes());
    }
    stream.write_all(&request)?;
    read_answer(stream)
}

/// The bytes of one HTTP/1.1 request that closes its connection.
fn http_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// Reads an HTTP/1.1 answer: its head, then `Content-Length` bytes, or a
/// chunked body to its last chunk, or else to the end of the connection
/// (a server that keeps the connection open is not waited for).
fn read_answer(mut stream: TcpStream) -> Result<RawAnswer> {
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("the connection ended before the end of the HTTP head");
        }
        response.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    loop {
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete || status == 204 || status == 304 {
            break;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if let Some(length) = length {
        body.truncate(length);
    }
    if chunked {
        body = dechunk(&body).context("bad chunked body")?;
    }
    Ok(RawAnswer {
        status,
        headers,
        body,
    })
}

/// A JSON request to the release API sent but for its last byte, so that
/// many can be completed at the same moment (races).
pub struct HeldRequest {
    stream: TcpStream,
    last: u8,
}

impl HeldRequest {
    /// Connects to the API on `port` and sends `POST path` with `body`,
    /// all but the last byte.
    pub fn post(port: u16, path: &str, body: &serde_json::Value) -> Result<HeldRequest> {
        let mut request = http_request(
            "POST",
            path,
            None,
            Some("application/json"),
            body.to_string().as_bytes(),
        );
        let last = request.pop().context("empty request")?;
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(&request)?;
        Ok(HeldRequest { stream, last })
    }

    /// Sends the last byte; the request is complete from now on.
    pub fn complete(&mut self) -> Result<()> {
        self.stream.write_all(&[self.last])?;
        Ok(())
    }

    /// Reads the answer: its status and JSON body.
    pub fn answer(self) -> Result<ApiResponse> {
        let answer = read_answer(self.stream)?;
        Ok(ApiResponse {
            status: answer.status,
            headers: answer.headers,
            json: serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null),
        })
    }
}

/// A TCP connection to `127.0.0.1:port` from the loopback address
/// `source` (any of 127.0.0.0/8), so one machine plays many clients.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns, with
    // sockaddr_in values of the size passed; the descriptor is handed to
    // TcpStream (which closes it) or closed here on failure.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let from = sockaddr(source, 0);
        let to = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
        if libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(anyhow!("connect from {source}: {e}"));
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

/// `METHOD path` on `127.0.0.1:port` with an optional JSON body, for
/// JSON services other than the appliance (chromedriver's WebDriver); the
/// status and the JSON answer (`null` when empty).
pub fn json_exchange(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let content_type = (method == "POST").then_some("application/json; charset=utf-8");
    let answer = http_exchange(port, method, path, None, content_type, body.as_bytes())?;
    let json = if answer.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&answer.body)
            .with_context(|| format!("{method} {path}: not JSON: {:?}", answer.body))?
    };
    Ok((answer.status, json))
}
