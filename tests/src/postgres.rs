//! A private PostgreSQL server (Debian's `postgresql` package): `initdb` in
//! a temporary directory, TCP on a loopback port only, trust
//! authentication for the one role `central`; stopped when dropped. As
//! root (CI), the server runs as the `postgres` user, which PostgreSQL
//! insists on.

use super::*;

/// A running PostgreSQL server of its own.
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    data: PathBuf,
    log_path: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// With TLS: the test CA clients must trust (it signed the server's
    /// certificate for 127.0.0.1), and the server takes no connection
    /// without TLS.
    pub tls_ca: Option<PathBuf>,
    // Last: removed after the server has stopped.
    _dir: tempfile::TempDir,
}

/// The newest installed server's binaries, `/usr/lib/postgresql/N/bin`.
fn server_bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (tests/run installs Debian's postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("no PostgreSQL server under /usr/lib/postgresql"))
}

/// The `postgres` user's (uid, gid) when running as root, which the server
/// refuses to run as; `None` otherwise.
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no memory effects and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam is given a NUL-terminated name; the record it
    // returns is read before any other call could overwrite it.
    let user = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if user.is_null() {
        bail!("running as root and there is no postgres user to run PostgreSQL as");
    }
    // SAFETY: non-null, as checked above.
    let (uid, gid) = unsafe { ((*user).pw_uid, (*user).pw_gid) };
    Ok(Some((uid, gid)))
}

impl Postgres {
    /// Initialises a cluster in a new temporary directory and starts it.
    pub fn start() -> Result<Postgres> {
        Postgres::start_with(false)
    }

    /// Like [`Postgres::start`], taking TLS connections only.
    pub fn start_tls() -> Result<Postgres> {
        Postgres::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Postgres> {
        let bin = server_bin_dir()?;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let user = server_user()?;
        if let Some((uid, gid)) = user {
            // The server's user must reach and own its directory.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
            fs::create_dir(&data)?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        let out = run_with_timeout(
            Self::as_server_user(&bin.join("initdb"), user)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "central",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
            Duration::from_secs(120),
        )?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let tls_ca = if tls {
            let certificate = ca_signed_certificate(&data, "server", "127.0.0.1", "IP:127.0.0.1")?;
            let key = data.join("server.key");
            use std::os::unix::fs::PermissionsExt;
            // The server refuses a key others may read.
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
            }
            // Every TCP client must come over TLS.
            fs::write(
                data.join("pg_hba.conf"),
                "hostssl all all 127.0.0.1/32 trust\n",
            )?;
            Some(certificate)
        } else {
            None
        };
        let mut server = Postgres {
            child: None,
            bin,
            user,
            log_path: dir.path().join("postgres.log"),
            data,
            port: free_port(),
            tls_ca,
            _dir: dir,
        };
        server.restart()?;
        Ok(server)
    }

    /// A command that runs `program` as the server's user, directly (no
    /// wrapper process, so signals reach the server itself).
    fn as_server_user(program: &Path, user: Option<(u32, u32)>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Starts the server (again) on the same directory and port, and
    /// waits until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Self::as_server_user(&self.bin.join("postgres"), self.user);
        if self.tls_ca.is_some() {
            command.args(["-c", "ssl=on"]);
            command.args([
                "-c",
                "ssl_cert_file=server.crt",
                "-c",
                "ssl_key_file=server.key",
            ]);
        }
        let child = command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start postgres")?;
        self.child = Some(child);
        let ready = wait_for(
            Duration::from_secs(60),
            "PostgreSQL to accept connections",
            || {
                let out = self
                    .client("pg_isready")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .ok()?;
                out.success().then_some(())
            },
        );
        if let Err(e) = ready {
            let log = self.log();
            self.stop();
            return Err(e.context(format!("postgres log:\n{log}")));
        }
        Ok(())
    }

    /// Stops the server: fast shutdown (SIGINT: sessions are ended, what
    /// was committed stays), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory effects.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// Creates database `name` (owned by `central`).
    pub fn create_database(&self, name: &str) -> Result<()> {
        let out = run_with_timeout(self.client("createdb").arg(name), Duration::from_secs(30))?;
        if !out.status.success() {
            bail!("createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The client tool `program` of this server's installation, pointed
    /// at it as `central`.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "central",
        ]);
        command
    }

    /// The URL of database `name` for `[storage] url`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://central@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in database `name` with `psql`; its output, unaligned.
    pub fn psql(&self, name: &str, sql: &str) -> Result<String> {
        let out = run_with_timeout(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(["-d", &self.url(name), "-c", sql]),
            Duration::from_secs(30),
        )?;
        if !out.status.success() {
            bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
