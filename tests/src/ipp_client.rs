//! IPP from the client side: building requests, reading responses, running
//! `ipptool` with its conformance files, uploading generated documents.

use super::*;

/// The outcome of one ipptool test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `[PASS]`
    Pass,
    /// `[FAIL]`
    Fail,
    /// `[SKIP]`
    Skip,
}

/// One ipptool run, parsed.
#[derive(Debug)]
pub struct IpptoolRun {
    /// Test names (as ipptool prints them, possibly cut) and outcomes, in order.
    pub results: Vec<(String, Outcome)>,
    /// Everything ipptool printed.
    pub output: String,
}

impl IpptoolRun {
    /// `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.named(Outcome::Pass).len(),
            self.named(Outcome::Fail).len(),
            self.named(Outcome::Skip).len()
        )
    }

    /// Names of tests with this outcome.
    pub fn named(&self, outcome: Outcome) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, o)| *o == outcome)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Copies CUPS's `ipp-1.1.test`, `ipp-2.0.test` and `ipp-everywhere.test`
/// into `dir` together with the documents they print (`document-a4.pdf`
/// etc., which Debian does not ship, and the PWG raster samples, made by
/// `fixtures/generate.py`), so the suites run in full. With `wait_limit`,
/// the step that waits for a job to complete polls that many times
/// instead of 30 (for queues whose jobs are held and never complete).
/// Returns the `ipp-2.0.test` path.
pub fn conformance_suite(dir: &Path, wait_limit: Option<u32>) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let system = Path::new("/usr/share/cups/ipptool");
    let samples = run_with_timeout(
        Command::new("python3")
            .arg(workspace().join("fixtures/generate.py"))
            .arg("--pwg-raster-samples")
            .arg(dir),
        Duration::from_secs(120),
    )?;
    if !samples.status.success() {
        bail!(
            "the PWG raster samples were not made: {}",
            String::from_utf8_lossy(&samples.stderr)
        );
    }
    for name in ["ipp-1.1.test", "ipp-2.0.test", "ipp-everywhere.test"] {
        let mut text = fs::read_to_string(system.join(name))
            .with_context(|| format!("{name} not found: install cups-ipp-utils"))?;
        if let Some(limit) = wait_limit {
            text = text.replace(
                "REPEAT-NO-MATCH REPEAT-LIMIT 30",
                &format!("REPEAT-NO-MATCH REPEAT-LIMIT {limit}"),
            );
        }
        fs::write(dir.join(name), text)?;
    }
    for doc in SUITE_DOCUMENTS {
        fs::copy(fixture(doc), dir.join(doc))?;
    }
    Ok(dir.join("ipp-2.0.test"))
}

/// The documents CUPS's `ipp-1.1.test` prints besides the one given with `-f`.
pub const SUITE_DOCUMENTS: &[&str] = &[
    "document-a4.pdf",
    "document-letter.pdf",
    "document-a4.ps",
    "document-letter.ps",
    "color.jpg",
    "gray.jpg",
];

/// Config for an appliance with a pull queue `secure` (the default) and a
/// direct queue `lobby-direct` forwarding to printer `lobby` at
/// `printer_uri`, retrying and polling every second.
pub fn lobby_config(printer_uri: &str) -> String {
    format!(
        r#"
[[printer]]
id = "lobby"
uri = "{printer_uri}"
[[queue]]
name = "secure"
kind = "pull"
default = true
[[queue]]
name = "lobby-direct"
kind = "direct"
printer = "lobby"
[output]
retry_initial_secs = 1
retry_max_secs = 2
poll_interval_secs = 1
"#
    )
}

/// Runs `ipptool -I -t -f DOCUMENT URI TESTFILE` (continuing past failures).
pub fn ipptool(
    uri: &str,
    test_file: &Path,
    document: &Path,
    timeout: Duration,
) -> Result<IpptoolRun> {
    let out = run_with_timeout(
        Command::new("ipptool")
            .args(["-I", "-t", "-f"])
            .arg(document)
            .arg(uri)
            .arg(test_file),
        timeout,
    )?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results = output
        .lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let outcome = if line.ends_with("[PASS]") {
                Outcome::Pass
            } else if line.ends_with("[FAIL]") {
                Outcome::Fail
            } else if line.ends_with("[SKIP]") {
                Outcome::Skip
            } else {
                return None;
            };
            let name = line[..line.len() - 6].trim().to_owned();
            Some((name, outcome))
        })
        .collect();
    Ok(IpptoolRun { results, output })
}

/// Runs an ipptool test file given as text, with `-d NAME=VALUE` variables.
/// Returns whether every test in it ran and passed (ipptool exits 0 even
/// when it cannot parse a file, so the `[PASS]` lines are counted), and
/// ipptool's output.
pub fn ipptool_text(
    uri: &str,
    test: &str,
    document: Option<&Path>,
    vars: &[(&str, &str)],
) -> Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("inline.test");
    fs::write(&file, test)?;
    let mut cmd = Command::new("ipptool");
    cmd.arg("-t");
    if let Some(document) = document {
        cmd.arg("-f").arg(document);
    }
    for (k, v) in vars {
        cmd.arg("-d").arg(format!("{k}={v}"));
    }
    let out = run_with_timeout(cmd.arg(uri).arg(&file), Duration::from_secs(120))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tests = test
        .lines()
        .filter(|l| l.trim_start().starts_with("NAME "))
        .count();
    let passed = text
        .lines()
        .filter(|l| l.trim_end().ends_with("[PASS]"))
        .count();
    Ok((out.status.success() && tests > 0 && passed == tests, text))
}

/// Builds an IPP request by hand (for malformed-input tests): header,
/// operation attributes (tag, name, value) and an optional document.
pub fn ipp_request(
    version: u16,
    operation: u16,
    request_id: i32,
    attributes: &[(u8, &str, &[u8])],
    document: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&operation.to_be_bytes());
    out.extend_from_slice(&request_id.to_be_bytes());
    out.push(0x01);
    for (tag, name, value) in attributes {
        out.push(*tag);
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.push(0x03);
    out.extend_from_slice(document);
    out
}

/// An IPP response as the tests need it.
#[derive(Debug, Clone)]
pub struct IppResponse {
    /// HTTP status code.
    pub http_status: u16,
    /// IPP status code.
    pub status: u16,
    /// Attributes as (value tag, name, value bytes); additional values of a
    /// set carry the name of the first.
    pub attributes: Vec<(u8, String, Vec<u8>)>,
}

impl IppResponse {
    /// Parses a raw HTTP/1.1 response carrying an IPP message.
    pub fn parse(http_response: &[u8]) -> Result<IppResponse> {
        let split = http_response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of HTTP headers")?
            + 4;
        let head = String::from_utf8_lossy(&http_response[..split]).to_string();
        let http_status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&http_response[split..]).context("bad chunked body")?
        } else {
            http_response[split..].to_vec()
        };
        if body.len() < 9 {
            bail!(
                "IPP body too short ({} bytes); HTTP head: {head}",
                body.len()
            );
        }
        let status = u16::from_be_bytes([body[2], body[3]]);
        let mut attributes = Vec::new();
        let mut i = 8;
        let mut last_name = String::new();
        while i < body.len() {
            let tag = body[i];
            i += 1;
            if tag <= 0x0f {
                if tag == 0x03 {
                    break;
                }
                continue;
            }
            let take = |i: &mut usize, n: usize| -> Result<Vec<u8>> {
                let v = body
                    .get(*i..*i + n)
                    .context("truncated attribute")?
                    .to_vec();
                *i += n;
                Ok(v)
            };
            let name_len =
                u16::from_be_bytes(take(&mut i, 2)?.try_into().unwrap_or([0, 0])) as usize;
            let name = String::from_utf8_lossy(&take(&mut i, name_len)?).to_string();
            let value_len =
                u16::from_be_bytes(take(&mut i, 2)?.try_into().unwrap_or([0, 0])) as usize;
            let value = take(&mut i, value_len)?;
            if !name.is_empty() {
                last_name = name;
            }
            attributes.push((tag, last_name.clone(), value));
        }
        Ok(IppResponse {
            http_status,
            status,
            attributes,
        })
    }

    /// The first integer value of attribute `name`.
    pub fn integer(&self, name: &str) -> Option<i32> {
        self.attributes
            .iter()
            .find(|(_, n, v)| n == name && v.len() == 4)
            .map(|(_, _, v)| i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    /// The first value of attribute `name` as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, v)| String::from_utf8_lossy(v).to_string())
    }
}

pub(crate) fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A small, fast pseudo-random generator (xorshift64*), so tests are
/// reproducible from a printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// `len` incompressible bytes after a PDF header.
    pub fn pdf(&mut self, len: usize) -> Vec<u8> {
        let mut doc = b"%PDF-1.4\n".to_vec();
        while doc.len() < len {
            doc.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        doc.truncate(len.max(9));
        doc
    }
}

/// Sends Print-Job to the appliance queue `queue` over a fresh connection.
pub fn send_print_job(port: u16, queue: &str, user: &str, document: &[u8]) -> Result<IppResponse> {
    send_print_job_to(port, &format!("/ipp/print/{queue}"), user, document)
}

/// Sends Print-Job to the printer at `path` on `127.0.0.1:port` over a
/// fresh connection (works for the appliance and for cupsd alike).
pub fn send_print_job_to(
    port: u16,
    path: &str,
    user: &str,
    document: &[u8],
) -> Result<IppResponse> {
    let (response, _) = upload(port, path, user, document.len() as u64, |out| {
        out.write_all(document)
    })?;
    Ok(response)
}

/// Sends Print-Job with a `size`-byte document that `write_document` streams
/// into the connection (so neither side needs it in memory). Returns the
/// answer and the time from the first byte sent to the last byte received.
pub fn upload(
    port: u16,
    path: &str,
    user: &str,
    size: u64,
    write_document: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
) -> Result<(IppResponse, Duration)> {
    let uri = format!("ipp://127.0.0.1:{port}{path}");
    let mut attrs = standard_attributes(&uri, user);
    attrs.push((0x49, "document-format", b"application/pdf"));
    let ipp_head = ipp_request(0x0101, 0x0002, 1, &attrs, b"");
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(900)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/ipp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        ipp_head.len() as u64 + size
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&ipp_head)?;
    write_document(&mut stream)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let elapsed = started.elapsed();
    Ok((IppResponse::parse(&response)?, elapsed))
}

/// Streams `size` bytes of incompressible PDF-headed data, generated 1 MiB
/// at a time.
pub fn write_generated(out: &mut impl Write, size: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut chunk = rng.pdf(1 << 20);
    let mut sent = 0u64;
    while sent < size {
        let n = chunk.len().min((size - sent) as usize);
        out.write_all(&chunk[..n])?;
        sent += n as u64;
        for b in chunk.chunks_mut(8) {
            b.copy_from_slice(&rng.next_u64().to_le_bytes()[..b.len()]);
        }
    }
    Ok(())
}

/// Standard operation attributes for a request to `uri` as `user`.
pub fn standard_attributes<'a>(uri: &'a str, user: &'a str) -> Vec<(u8, &'a str, &'a [u8])> {
    vec![
        (0x47, "attributes-charset", b"utf-8"),
        (0x48, "attributes-natural-language", b"en"),
        (0x45, "printer-uri", uri.as_bytes()),
        (0x42, "requesting-user-name", user.as_bytes()),
    ]
}

/// Posts a one-page IPP Print-Job for alice to `url` with curl (`-u
/// credentials` when given; any certificate accepted); returns the HTTP
/// status line and headers, or curl's complaint.
pub fn curl_ipp_print(url: &str, credentials: Option<&str>) -> Result<String> {
    let printer = format!(
        "ipp://{}",
        url.split_once("://").map_or(url, |(_, rest)| rest)
    );
    let body = ipp_request(
        0x0200,
        0x0002,
        7,
        &standard_attributes(&printer, "alice"),
        b"%PDF-1.4\n%%EOF\n",
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("request.ipp");
    fs::write(&file, body)?;
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-k",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "--max-time",
        "10",
    ])
    .args(["-H", "Content-Type: application/ipp", "--data-binary"])
    .arg(format!("@{}", file.display()));
    if let Some(user) = credentials {
        cmd.args(["-u", user]);
    }
    let out = run_with_timeout(cmd.arg(url), Duration::from_secs(30))?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
