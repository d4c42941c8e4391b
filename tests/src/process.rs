//! The appliance as a process: building and starting it, its ports, logs,
//! CLI and data directory; waiting with deadlines; a small disk of its own.

use super::*;

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
    BIN.get_or_init(|| build_bin("appliance")).clone()
}

/// Builds the workspace binary `name` (its package has the same name) in
/// the tests' profile; its path.
///
/// The build asks for what the callers' own build asked for, because Cargo
/// unifies dependency features per build and compiles them again for a
/// different set: in debug, what `cargo test --workspace` builds (a no-op
/// under `tests/run`, where `-p appliance` alone took a minute); in release,
/// what `image/deb/build` packages, so a benchmark measures the shipped
/// binary.
pub(crate) fn build_bin(name: &str) -> PathBuf {
    let release = std::env::current_exe()
        .ok()
        .is_some_and(|p| p.components().any(|c| c.as_os_str() == "release"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace()).args(["build", "--quiet"]);
    if release {
        cmd.args(["--release", "-p", "appliance", "-p", "central"]);
    } else {
        cmd.args(["--workspace", "--bins", "--tests"]);
    }
    let status = cmd.status().expect("cargo must be runnable from tests");
    assert!(status.success(), "building the {name} binary failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(name)
}

/// A loopback TCP port that was free a moment ago (for peers that cannot
/// bind port 0).
pub fn free_port() -> u16 {
    unused_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    unused_port(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// A port below the kernel's ephemeral range that `bindable` accepts.
///
/// Why not port 0: the kernel hands out ports of its ephemeral range to
/// every outgoing connection too, so a port learnt by binding port 0 can be
/// taken by another test's client socket before the peer binds it (CI saw
/// `Address already in use` that way). Below the range only explicit binds
/// compete, and the counter keeps this process's tests apart.
fn unused_port(bindable: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| low > LOWEST + 1000)
        .unwrap_or(32_768);
    let span = ephemeral_low - LOWEST;
    // Test binaries run one after another: start each at its own place so
    // a port a previous binary's lingering peer holds is not tried first.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let port = LOWEST + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if let Ok(port) = u16::try_from(port)
            && bindable(port)
        {
            return port;
        }
    }
    panic!("no free loopback port between {LOWEST} and {ephemeral_low}")
}

/// Peak resident memory (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss_of(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc status")?;
    Ok(kb * 1024)
}

/// Online CPU cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU seconds (user + system) this process has used, all threads.
pub fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a
    // valid value of it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds (user + system) process `pid` has used, all its threads
/// counted, those that have ended too: read from its CPU-time clock to the
/// nanosecond, or from `/proc/PID/stat` in 10 ms ticks where that clock
/// cannot be read. Ticks made a release's few milliseconds of CPU a
/// matter of which side of a tick it fell on.
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    cpu_clock_secs(pid).or_else(|| proc_stat_cpu_secs(pid))
}

fn cpu_clock_secs(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t into the variable
    // it is given.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the variable it is
    // given.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
}

fn proc_stat_cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the
    // first, utime the 12th, stime the 13th.
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: f64 = after.nth(11)?.parse().ok()?;
    let stime: f64 = after.next()?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
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

/// Every job in the store under `data_dir` (`appliance jobs list --all
/// --json`, beside a running daemon), one JSON object each.
pub fn stored_jobs(data_dir: &Path) -> Result<Vec<serde_json::Value>> {
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["jobs", "list", "--all", "--json", "--data-dir"])
            .arg(data_dir),
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

/// A self-signed P-256 certificate for 127.0.0.1 and its key, written as
/// `NAME.crt` and `NAME.key` in `dir` by `openssl`.
pub fn self_signed_certificate(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = run_with_timeout(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-nodes", "-days", "1", "-subj", "/CN=appliance"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((cert, key))
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
    /// `listen = "127.0.0.1:0"` itself. Without a `[dnssd]` table it
    /// advertises nothing.
    pub fn start(dir: &Path, extra: &str) -> Result<Appliance> {
        let mut appliance = Appliance::prepare(dir, extra)?;
        appliance.restart()?;
        Ok(appliance)
    }

    /// Writes the configuration [`Appliance::start`] would use, without
    /// starting the daemon (for commands that must run first).
    pub fn prepare(dir: &Path, extra: &str) -> Result<Appliance> {
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
        // Tests that look for the appliance on the network say so.
        if !extra.contains("[dnssd]") {
            config.push_str("[dnssd]\nenabled = false\n");
        }
        fs::write(&config_path, config)?;
        Ok(Appliance {
            child: None,
            port: 0,
            api_port: 0,
            data_dir,
            config_path,
            log_path: dir.join("appliance.log"),
        })
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
            // `addr=127.0.0.1:PORT` in text logs, `"addr":"127.0.0.1:PORT"` in JSON ones.
            let port = |what: &str| {
                let line = log.lines().find(|l| l.contains(what))?;
                let (_, rest) = line
                    .split_once("addr=")
                    .or_else(|| line.split_once("\"addr\":\""))?;
                let addr = rest.split(|c: char| c.is_whitespace() || c == '"').next()?;
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
        peak_rss_of(self.pid().context("the appliance is not running")?)
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
        stored_jobs(&self.data_dir)
    }

    /// Whether the store still keeps job `uuid`'s document: a spool file
    /// (`<uuid>.zst` or `.raw`) or a row of the database's `documents`.
    pub fn document_stored(&self, uuid: &str) -> Result<bool> {
        let spool = self.data_dir.join("spool");
        if ["zst", "raw"]
            .iter()
            .any(|ext| spool.join(format!("{uuid}.{ext}")).exists())
        {
            return Ok(true);
        }
        let conn = rusqlite::Connection::open_with_flags(
            self.data_dir.join("appliance.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM documents WHERE uuid = ?1)",
            [uuid],
            |row| row.get(0),
        )?)
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

    /// `lp -U user -t title FILE` to the appliance's `secure` queue (CUPS's
    /// client, as a workstation would); panics if `lp` fails.
    pub fn lp(&self, user: &str, title: &str, file: &Path) {
        self.lp_with(user, title, file, &[]);
    }

    /// `lp` as [`Appliance::lp`], with more options (`-n 2` for copies).
    pub fn lp_with(&self, user: &str, title: &str, file: &Path, options: &[&str]) {
        let out = run_with_timeout(
            Command::new("lp")
                .arg("-h")
                .arg(format!("127.0.0.1:{}", self.port))
                .args(["-d", "secure", "-U", user, "-t", title])
                .args(options)
                .arg(file),
            Duration::from_secs(60),
        )
        .expect("lp runs");
        assert!(
            out.status.success(),
            "lp failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

    /// Adds a user with a password through the CLI.
    pub fn add_user_with_password(&self, id: &str, password: &str) -> Result<()> {
        let args = ["users", "add", id, "--name", id, "--password"];
        let out = self.cli(&args, &format!("{password}\n"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_clock_of_another_process_agrees_with_proc() {
        let mut child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let before = wait_for(Duration::from_secs(30), "the child to spend CPU", || {
            proc_stat_cpu_secs(pid).filter(|secs| *secs >= 0.3)
        });
        let clock = cpu_clock_secs(pid);
        let after = proc_stat_cpu_secs(pid);
        let _ = child.kill();
        let _ = child.wait();
        let (before, clock, after) = (before.unwrap(), clock.unwrap(), after.unwrap());
        // /proc counts whole 10 ms ticks; the clock, nanoseconds.
        assert!(
            before - 0.011 <= clock && clock <= after + 0.011,
            "/proc said {before} s then {after} s; the CPU clock {clock} s"
        );
    }
}
