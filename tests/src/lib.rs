//! Test harness for end-to-end tests: starts the real `appliance` binary,
//! real IPP printers (`ippeveprinter`, via `peers/ipp-printer.sh`), and runs
//! real IPP clients (`ipptool`, `lp`). Every wait has a deadline; every
//! process started here is stopped when its handle drops.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A document from `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    workspace().join("fixtures").join(name)
}

/// SHA-256 of a byte slice, hex.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The `appliance` binary, built once per test process in the same profile
/// as the tests (so a test never runs a stale binary).
pub fn appliance_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = std::env::current_exe()
            .ok()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "release"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace()).args([
            "build",
            "--quiet",
            "-p",
            "appliance",
            "--bin",
            "appliance",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo must be runnable from tests");
        assert!(status.success(), "building the appliance binary failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target"));
        target
            .join(if release { "release" } else { "debug" })
            .join("appliance")
    })
    .clone()
}

/// A loopback port that was free a moment ago (for peers that cannot bind port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command with a deadline, killing it when the deadline passes.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_with_input(cmd.stdin(Stdio::null()), None, timeout)
}

/// Runs a command with `input` on its standard input and a deadline.
pub fn run_with_input(cmd: &mut Command, input: Option<&str>, timeout: Duration) -> Result<Output> {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if let Some(input) = input {
        // Written from a thread: a child that does not read cannot block us.
        let mut stdin = child.stdin.take().context("stdin")?;
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// A running appliance daemon in its own data directory.
pub struct Appliance {
    child: Option<Child>,
    /// Its IPP port on 127.0.0.1.
    pub port: u16,
    /// Its release API port on 127.0.0.1.
    pub api_port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
}

impl Appliance {
    /// Starts the appliance with `data_dir` under `dir` and `extra` TOML
    /// (printers, queues, limits). Without an `[ipp]` table in `extra` it
    /// listens on a free loopback port; with one, `extra` must say
    /// `listen = "127.0.0.1:0"` itself.
    pub fn start(dir: &Path, extra: &str) -> Result<Appliance> {
        fs::create_dir_all(dir)?;
        let data_dir = dir.join("data");
        let config_path = dir.join("appliance.toml");
        let mut config = format!("data_dir = {:?}\n{extra}\n", data_dir.display().to_string());
        if !extra.contains("[ipp]") {
            config.push_str("[ipp]\nlisten = \"127.0.0.1:0\"\n");
        }
        if !extra.contains("[api]") {
            config.push_str("[api]\nlisten = \"127.0.0.1:0\"\n");
        }
        fs::write(&config_path, config)?;
        let mut appliance = Appliance {
            child: None,
            port: 0,
            api_port: 0,
            data_dir,
            config_path,
            log_path: dir.join("appliance.log"),
        };
        appliance.restart()?;
        Ok(appliance)
    }

    /// Starts the daemon again on the same data directory (after a kill or
    /// stop); it gets a new port.
    pub fn restart(&mut self) -> Result<()> {
        let log = fs::File::create(&self.log_path)?;
        let child = Command::new(appliance_bin())
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the appliance")?;
        self.child = Some(child);
        let log_path = self.log_path.clone();
        let ports = wait_for(Duration::from_secs(20), "the appliance to listen", || {
            let log = fs::read_to_string(&log_path).ok()?;
            let port = |what: &str| {
                let line = log.lines().find(|l| l.contains(what))?;
                let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
                addr.rsplit(':').next()?.parse::<u16>().ok()
            };
            Some((port("IPP listening")?, port("API listening")?))
        });
        match ports {
            Ok((port, api_port)) => {
                self.port = port;
                self.api_port = api_port;
                Ok(())
            }
            Err(e) => {
                let log = self.log();
                self.kill();
                Err(e.context(format!("appliance log:\n{log}")))
            }
        }
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `ipp://127.0.0.1:PORT/ipp/print/QUEUE`.
    pub fn uri(&self, queue: &str) -> String {
        format!("ipp://127.0.0.1:{}/ipp/print/{queue}", self.port)
    }

    /// Kills the daemon with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits (up to 30 s) for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let exited = wait_for(Duration::from_secs(30), "the appliance to stop", || {
                child.try_wait().ok().flatten()
            });
            if exited.is_err() {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the appliance did not stop within 30 s of SIGTERM");
            }
        }
        Ok(())
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident memory of the daemon so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let pid = self.pid().context("the appliance is not running")?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .context("no VmHWM in /proc status")?;
        Ok(kb * 1024)
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every job in the store, via `appliance jobs list --all --json`.
    pub fn jobs(&self) -> Result<Vec<serde_json::Value>> {
        let out = run_with_timeout(
            Command::new(appliance_bin())
                .args(["jobs", "list", "--all", "--json", "--data-dir"])
                .arg(&self.data_dir),
            Duration::from_secs(30),
        )?;
        if !out.status.success() {
            bail!(
                "appliance jobs list failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| anyhow!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Runs `appliance ARGS --data-dir DIR` with `stdin` as input, bounded in time.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Result<Output> {
        run_with_input(
            Command::new(appliance_bin())
                .args(args)
                .arg("--data-dir")
                .arg(&self.data_dir),
            Some(stdin),
            Duration::from_secs(60),
        )
    }

    /// Adds a user with a PIN (and the given groups) through the CLI.
    pub fn add_user(&self, id: &str, pin: &str, groups: &[&str]) -> Result<()> {
        let mut args = vec!["users", "add", id, "--name", id, "--pin"];
        for g in groups {
            args.extend(["--group", g]);
        }
        let out = self.cli(&args, &format!("{pin}\n"))?;
        if !out.status.success() {
            bail!("users add {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// A client for the release API.
    pub fn api(&self) -> Result<ApiClient> {
        ApiClient::new(self.api_port)
    }

    /// `GET path` on the appliance's listener; the response body as text.
    pub fn get(&self, path: &str) -> Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let body = dechunk(body.as_bytes()).context("bad chunked body")?;
            return Ok(String::from_utf8_lossy(&body).to_string());
        }
        Ok(body.to_owned())
    }

    /// Sends raw bytes as an HTTP POST body to `path` and returns the raw response.
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/ipp\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small disk of its own (tmpfs), unmounted when dropped.
pub struct SmallDisk {
    /// Where it is mounted.
    pub dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as mount(8) takes it) at `parent/small-disk`.
    pub fn mount(parent: &Path, size: &str) -> SmallDisk {
        let dir = parent.join("small-disk");
        fs::create_dir_all(&dir).unwrap();
        let mounted = run_with_timeout(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&dir),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(
            mounted.status.success(),
            "this test needs root to mount a tmpfs: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk { dir }
    }

    /// Fills the disk to the last byte with a file of its own.
    pub fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = fs::File::create(&path).unwrap();
        let block = vec![0x5a; 64 * 1024];
        let mut size = block.len();
        while size > 0 {
            match file.write_all(&block[..size]) {
                Ok(()) => {}
                Err(_) => size /= 2,
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
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

/// A real IPP printer (`ippeveprinter -k`) that keeps what it receives.
pub struct Printer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it keeps received documents.
    pub dir: PathBuf,
}

impl Printer {
    /// Starts one keeping documents in `dir`.
    pub fn start(dir: &Path) -> Result<Printer> {
        Printer::start_on(dir, free_port())
    }

    /// Starts one on a given port (e.g. one the appliance already points at).
    pub fn start_on(dir: &Path, port: u16) -> Result<Printer> {
        Printer::launch(dir, port, None)
    }

    /// Starts one that also speaks IPPS with the identity in `keys`
    /// (`localhost.crt`, `localhost.key`; see [`tls_identity`]).
    pub fn start_tls(dir: &Path, keys: &Path) -> Result<Printer> {
        Printer::launch(dir, free_port(), Some(keys))
    }

    fn launch(dir: &Path, port: u16, keys: Option<&Path>) -> Result<Printer> {
        let mut cmd = Command::new(workspace().join("tests/peers/ipp-printer.sh"));
        cmd.arg("start").arg(port.to_string()).arg(dir);
        if let Some(keys) = keys {
            cmd.env("IPP_PRINTER_KEYS", keys);
        }
        let out = run_with_timeout(&mut cmd, Duration::from_secs(120))?;
        if !out.status.success() {
            bail!(
                "ippeveprinter did not start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Printer {
            port,
            dir: dir.to_owned(),
        })
    }

    /// The printer's URI.
    pub fn uri(&self) -> String {
        format!("ipp://127.0.0.1:{}/ipp/print", self.port)
    }

    /// Documents received so far (not the .prn files ippeveprinter writes beside them).
    pub fn documents(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut docs: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        !name.starts_with('.') && !name.ends_with(".prn")
                    })
                    .filter_map(|p| fs::read(&p).ok().map(|b| (p, b)))
                    .collect()
            })
            .unwrap_or_default();
        docs.sort_by_key(|(p, _)| job_number(p));
        docs
    }
}

fn job_number(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

impl Drop for Printer {
    fn drop(&mut self) {
        let _ = run_with_timeout(
            Command::new(workspace().join("tests/peers/ipp-printer.sh"))
                .arg("stop")
                .arg(&self.dir),
            Duration::from_secs(30),
        );
    }
}

/// Makes a test CA and a `localhost` server certificate it signed (as an
/// enterprise CA would for a printer), with `openssl`: writes
/// `DIR/ca.crt` and `DIR/keys/localhost.{crt,key}`; returns the CA path.
pub fn tls_identity(dir: &Path) -> Result<PathBuf> {
    let keys = dir.join("keys");
    fs::create_dir_all(&keys)?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let openssl = |args: &[&str]| -> Result<()> {
        let out = run_with_timeout(
            Command::new("openssl").args(args).current_dir(dir),
            Duration::from_secs(60),
        )?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=Branch Test CA"],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=localhost"],
            &["-keyout", "keys/localhost.key", "-out", "leaf.csr"],
        ]
        .concat(),
    )?;
    fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "keys/localhost.crt",
    ])?;
    Ok(dir.join("ca.crt"))
}

/// A raw-socket (port 9100 style) printer: accepts connections one after
/// another and keeps each one's bytes, in order.
pub struct SocketSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl SocketSink {
    /// Starts listening on a free loopback port.
    pub fn start() -> Result<SocketSink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let mut bytes = Vec::new();
                if conn.read_to_end(&mut bytes).is_ok()
                    && let Ok(mut all) = sink.lock()
                {
                    all.push(bytes);
                }
            }
        });
        Ok(SocketSink { port, received })
    }

    /// `socket://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("socket://127.0.0.1:{}", self.port)
    }

    /// What each connection delivered so far, in order.
    pub fn documents(&self) -> Vec<Vec<u8>> {
        self.received.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

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

/// One HTTP/1.1 request on a fresh connection, body sent as given.
fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<RawAnswer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&http_request(method, path, token, content_type, body))?;
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

/// Reads an HTTP/1.1 answer to the end of the connection.
fn read_answer(mut stream: TcpStream) -> Result<RawAnswer> {
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP head")?;
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
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
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

/// A real LPD server: CUPS's `cups-lpd` (an inetd-style program: one
/// process per connection, talking on its standard input and output) in
/// front of a private `cupsd` with a raw queue `held` that keeps what it
/// gets (`peers/cupsd-held.sh`).
pub struct LpdServer {
    /// The LPD port on 127.0.0.1.
    pub port: u16,
    cupsd_dir: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl LpdServer {
    /// Starts cupsd in `dir` (whose parent is made world-searchable, as
    /// cupsd runs as an unprivileged user) and an LPD acceptor.
    pub fn start(dir: &Path) -> Result<LpdServer> {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::Ordering;
        if let Some(parent) = dir.parent() {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
        }
        let cups_port = free_port();
        let out = run_with_timeout(
            Command::new(workspace().join("tests/peers/cupsd-held.sh"))
                .arg("start")
                .arg(cups_port.to_string())
                .arg(dir),
            Duration::from_secs(300),
        )?;
        if !out.status.success() {
            bail!(
                "cupsd did not start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let mut children = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let Ok(input) = conn.try_clone() else {
                            continue;
                        };
                        let spawned = Command::new("/usr/lib/cups/daemon/cups-lpd")
                            .env("CUPS_SERVER", format!("127.0.0.1:{cups_port}"))
                            .stdin(Stdio::from(std::os::fd::OwnedFd::from(input)))
                            .stdout(Stdio::from(std::os::fd::OwnedFd::from(conn)))
                            .stderr(Stdio::null())
                            .spawn();
                        if let Ok(child) = spawned {
                            children.push(child);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for mut child in children {
                let _ = child.kill();
                let _ = child.wait();
            }
        });
        Ok(LpdServer {
            port,
            cupsd_dir: dir.to_owned(),
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// Documents cupsd received (its spool keeps them as `d*` files), oldest first.
    pub fn documents(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(self.cupsd_dir.join("spool"))
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('d'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths.iter().filter_map(|p| fs::read(p).ok()).collect()
    }
}

impl Drop for LpdServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = run_with_timeout(
            Command::new(workspace().join("tests/peers/cupsd-held.sh"))
                .arg("stop")
                .arg(&self.cupsd_dir),
            Duration::from_secs(30),
        );
    }
}

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

/// Copies CUPS's `ipp-1.1.test` and `ipp-2.0.test` into `dir` together with
/// the documents they print (`document-a4.pdf` etc., which Debian does not
/// ship), so the suites run in full. With `wait_limit`, the step that waits
/// for a job to complete polls that many times instead of 30 (for queues
/// whose jobs are held and never complete). Returns the `ipp-2.0.test` path.
pub fn conformance_suite(dir: &Path, wait_limit: Option<u32>) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let system = Path::new("/usr/share/cups/ipptool");
    for name in ["ipp-1.1.test", "ipp-2.0.test"] {
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

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
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
