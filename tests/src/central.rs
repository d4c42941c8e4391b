//! The central service as a process, and appliances enrolled with it.

use super::*;

/// The `central` binary, built once per test process in the test's profile.
pub fn central_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("central")).clone()
}

/// A running central in its own data directory.
pub struct Central {
    child: Option<Child>,
    /// Its UDP port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
}

impl Central {
    /// Starts central under `dir` on UDP port `port` of 127.0.0.1, with
    /// `extra` TOML appended to its configuration (keys of `[sync]` as
    /// dotted keys, `sync.compress = false`: the table is begun here).
    pub fn start(dir: &Path, port: u16, extra: &str) -> Result<Central> {
        fs::create_dir_all(dir)?;
        let data_dir = dir.join("central-data");
        let config_path = dir.join("central.toml");
        fs::write(
            &config_path,
            format!(
                "data_dir = {:?}\nsync.listen = \"127.0.0.1:{port}\"\n{extra}\n",
                data_dir.display().to_string()
            ),
        )?;
        let mut central = Central {
            child: None,
            port,
            data_dir,
            config_path,
            log_path: dir.join("central.log"),
        };
        central.restart()?;
        Ok(central)
    }

    /// Starts another node of `first`'s fleet under `dir`: the same CA and
    /// fleet key (copied into its data directory before it first starts,
    /// as an operator does), `extra` as for [`Central::start`] (the shared
    /// `[storage] url` among it).
    pub fn start_node(dir: &Path, port: u16, extra: &str, first: &Central) -> Result<Central> {
        let data = dir.join("central-data");
        fs::create_dir_all(&data)?;
        for file in ["ca.pem", "fleet.key"] {
            fs::copy(first.data_dir.join(file), data.join(file))
                .with_context(|| format!("copying {file} from the first node"))?;
        }
        Central::start(dir, port, extra)
    }

    /// Starts it again on the same data directory and port.
    pub fn restart(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let before = self.log().matches("admin listening").count();
        let child = Command::new(central_bin())
            .arg("--config")
            .arg(&self.config_path)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start central")?;
        self.child = Some(child);
        let log_path = self.log_path.clone();
        let up = wait_for(Duration::from_secs(20), "central to listen", || {
            let log = fs::read_to_string(&log_path).ok()?;
            (log.matches("admin listening").count() > before).then_some(())
        });
        if let Err(e) = up {
            let log = self.log();
            self.kill();
            return Err(e.context(format!("central log:\n{log}")));
        }
        Ok(())
    }

    /// Kills it at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its sync endpoint as sites configure it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `central --config FILE ARGS` with `stdin`, bounded in time.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Result<Output> {
        run_with_input(
            Command::new(central_bin())
                .arg("--config")
                .arg(&self.config_path)
                .args(args),
            Some(stdin),
            Duration::from_secs(120),
        )
    }

    /// Runs a CLI command that must succeed; its standard output.
    pub fn cli_ok(&self, args: &[&str], stdin: &str) -> Result<String> {
        let out = self.cli(args, stdin)?;
        if !out.status.success() {
            bail!(
                "central {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Registers a site; its enrollment token.
    pub fn add_site(&self, name: &str) -> Result<String> {
        let out = self.cli_ok(&["site", "add", name], "")?;
        out.lines()
            .last()
            .map(str::to_owned)
            .context("site add printed no token")
    }

    /// `central report --by BY --csv`, as rows of fields (header first).
    pub fn report(&self, by: &str) -> Result<Vec<Vec<String>>> {
        let out = self.cli_ok(&["report", "--by", by, "--csv"], "")?;
        Ok(out
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect())
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Appliance {
    /// An appliance under `dir` in the fleet of `endpoint` (central, or a
    /// proxy in front of it): enrolled with `token`, then started.
    pub fn start_enrolled(
        dir: &Path,
        endpoint: &str,
        token: &str,
        extra: &str,
    ) -> Result<Appliance> {
        Appliance::start_enrolled_with(dir, endpoint, token, extra, "")
    }

    /// [`Appliance::start_enrolled`] with `central` added to `[central]`.
    pub fn start_enrolled_with(
        dir: &Path,
        endpoint: &str,
        token: &str,
        extra: &str,
        central: &str,
    ) -> Result<Appliance> {
        let mut appliance = Appliance::prepare(
            dir,
            &format!("{extra}\n[central]\nendpoints = [{endpoint:?}]\n{central}\n"),
        )?;
        appliance.enroll_as_configured(token)?;
        appliance.restart()?;
        Ok(appliance)
    }

    /// `appliance enroll --token-file FILE` at the configuration's first
    /// `[central]` endpoint, as the appliance image does at first boot.
    pub fn enroll_as_configured(&self, token: &str) -> Result<()> {
        let file = self.config_path().with_file_name("enrollment.token");
        std::fs::write(&file, format!("{token}\n"))?;
        let out = self.cli_config(&["enroll", "--token-file", &file.to_string_lossy()], "")?;
        if !out.status.success() {
            bail!(
                "appliance enroll failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `appliance enroll` with this appliance's config.
    pub fn enroll(&self, endpoint: &str, token: &str) -> Result<()> {
        let out = self.cli_config(&["enroll", "--central", endpoint, "--token", token], "")?;
        if !out.status.success() {
            bail!(
                "appliance enroll failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs `appliance ARGS --config FILE`, bounded in time.
    pub fn cli_config(&self, args: &[&str], stdin: &str) -> Result<Output> {
        run_with_input(
            Command::new(appliance_bin())
                .args(args)
                .arg("--config")
                .arg(self.config_path()),
            Some(stdin),
            Duration::from_secs(60),
        )
    }

    /// `appliance status --json`.
    pub fn sync_status(&self) -> Result<serde_json::Value> {
        let out = self.cli_config(&["status", "--json"], "")?;
        if !out.status.success() {
            bail!(
                "appliance status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// Appends `n` completed prints to a stopped site's journal, as if they
/// had printed while central was unreachable: user `user{i % 100}`,
/// `1 + i % 5` pages each (so `n` records hold `n + 2n` pages when `n` is a
/// multiple of 5).
pub fn fill_journal(data_dir: &Path, site: &str, n: u64) -> Result<()> {
    let conn = rusqlite::Connection::open(data_dir.join("appliance.db"))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO journal (job_uuid, queue, ipp_job_id, user_id, device, site, pages, \
           pages_exact, sheets, copies, color, sides, media, time_ms, outcome) \
         SELECT printf('00000000-0000-7000-8000-%012d', i), 'secure', i, 'user' || (i % 100), \
           'lobby', ?2, 1 + i % 5, 1, 1 + i % 5, 1, 'monochrome', 'one-sided', NULL, \
           1796000000000 + i, 'completed' FROM n",
        rusqlite::params![n as i64, site],
    )?;
    Ok(())
}
