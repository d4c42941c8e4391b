//! Real peers started for tests: `ippeveprinter` (through
//! `peers/ipp-printer.sh`), a raw socket printer, and `cups-lpd` in front of
//! a private `cupsd`; each stops when its handle drops.

use super::*;

/// Makes sure the tests' DNS-SD daemon (avahi on a loopback-only network
/// namespace, on the system D-Bus) runs, as `ippeveprinter` needs and as
/// `ippfind` and `avahi-browse` browse.
pub fn mdns() -> Result<()> {
    let out = run_with_timeout(
        Command::new(workspace().join("tests/peers/ipp-printer.sh")).arg("mdns"),
        Duration::from_secs(120),
    )?;
    if !out.status.success() {
        bail!(
            "the DNS-SD daemon did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
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

impl Printer {
    /// Loads `sheets` sheets of letter paper in each tray (0: every tray
    /// empty, which ippeveprinter reports as `media-empty-report`), through
    /// ippeveprinter's own media form.
    pub fn load_media(&self, sheets: u32) -> Result<()> {
        let size = "na_letter_8.5x11in";
        let query = format!(
            "size1={size}&type1=stationery&level1={sheets}&size2={size}&type2=stationery&level2={sheets}"
        );
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /media?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        // ippeveprinter keeps the connection open after the page: read
        // until the page ends.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("</html>") {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        if !answer.contains("Media updated") {
            bail!("ippeveprinter did not take the media change: {answer}");
        }
        Ok(())
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
    fs::create_dir_all(dir.join("keys"))?;
    ca_signed_certificate(dir, "keys/localhost", "localhost", "DNS:localhost")
}

/// Makes a test CA (`DIR/ca.crt`) and a server certificate it signed for
/// common name `cn` and subject alternative name `san` (`DIR/LEAF.crt`,
/// `DIR/LEAF.key`), with `openssl`; returns the CA certificate's path.
pub fn ca_signed_certificate(dir: &Path, leaf: &str, cn: &str, san: &str) -> Result<PathBuf> {
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
    let (key, certificate) = (format!("{leaf}.key"), format!("{leaf}.crt"));
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
            &["-subj", &format!("/CN={cn}")],
            &["-keyout", &key, "-out", "leaf.csr"],
        ]
        .concat(),
    )?;
    fs::write(
        dir.join("leaf.ext"),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
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
        &certificate,
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

/// A private CUPS scheduler (`peers/cupsd-held.sh`) on a loopback port,
/// with its own configuration in its directory and a raw queue `held`
/// that keeps what it gets; stopped when dropped.
pub struct Cupsd {
    /// Its IPP port on 127.0.0.1 (`lp -h 127.0.0.1:PORT`, `lpadmin -h`).
    pub port: u16,
    /// Its directory (configuration, spool, logs).
    pub dir: PathBuf,
}

impl Cupsd {
    /// Starts one in `dir` (whose parent is made world-searchable, as
    /// cupsd runs as an unprivileged user), logging warnings only.
    pub fn start(dir: &Path) -> Result<Cupsd> {
        Self::start_logging(dir, "warn")
    }

    /// Starts one as [`Cupsd::start`] does, with its error log at `level`
    /// (`info`, `debug`: what a test prints when cupsd does not do its part).
    pub fn start_logging(dir: &Path, level: &str) -> Result<Cupsd> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(parent) = dir.parent() {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
        }
        let port = free_port();
        let out = run_with_timeout(
            Command::new(workspace().join("tests/peers/cupsd-held.sh"))
                .env("LOG_LEVEL", level)
                .arg("start")
                .arg(port.to_string())
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
        Ok(Cupsd {
            port,
            dir: dir.to_owned(),
        })
    }

    /// `127.0.0.1:PORT`, for the CUPS tools' `-h`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its error log so far (empty if it wrote none).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log/error_log")).unwrap_or_default()
    }
}

impl Drop for Cupsd {
    fn drop(&mut self) {
        let _ = run_with_timeout(
            Command::new(workspace().join("tests/peers/cupsd-held.sh"))
                .arg("stop")
                .arg(&self.dir),
            Duration::from_secs(30),
        );
    }
}

/// A real LPD server: CUPS's `cups-lpd` (an inetd-style program: one
/// process per connection, talking on its standard input and output) in
/// front of a private [`Cupsd`].
pub struct LpdServer {
    /// The LPD port on 127.0.0.1.
    pub port: u16,
    cupsd: Cupsd,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl LpdServer {
    /// Starts cupsd in `dir` and an LPD acceptor.
    pub fn start(dir: &Path) -> Result<LpdServer> {
        use std::sync::atomic::Ordering;
        let cupsd = Cupsd::start(dir)?;
        let cups_port = cupsd.port;
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
            cupsd,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// Documents cupsd received (its spool keeps them as `d*` files), oldest first.
    pub fn documents(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(self.cupsd.dir.join("spool"))
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
    }
}

/// What a [`timed_printer`] saw of one connection (one job).
pub struct Printed {
    /// When its first byte arrived.
    pub first: Instant,
    /// Its bytes.
    pub bytes: u64,
}

/// A raw-socket printer (port 9100 style) on 127.0.0.1 that reports each
/// job once it has ended: when its first byte came and how many came.
/// For benchmarks, which time to the first byte.
pub fn timed_printer() -> Result<(u16, std::sync::mpsc::Receiver<Printed>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
            let mut buf = vec![0u8; 256 * 1024];
            let mut first = None;
            let mut bytes = 0u64;
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                bytes += n as u64;
            }
            if let Some(first) = first
                && tx.send(Printed { first, bytes }).is_err()
            {
                break;
            }
        }
    });
    Ok((port, rx))
}
