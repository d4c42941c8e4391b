//! Sync benchmarks (release build, real processes on loopback):
//!
//! 1. **Accounting up**: journal records a site holds (written offline)
//!    until central has acknowledged them all, for 100,000 and 1,000,000
//!    records, with central on SQLite and on PostgreSQL (a private server
//!    on the same disk); against the peer measured in the same run, SQLite
//!    itself inserting the same rows into central's table on the same disk
//!    (batches of 1,000, `synchronous=FULL`): central cannot beat that.
//!    Then three sites of 200,000 records each at once, over one SQLite
//!    central and over 1, 2 and 3 nodes sharing one PostgreSQL.
//! 2. **Policy down**: a newly enrolled site's start until it enforces a
//!    10,000- and a 100,000-user policy, and the bytes on the wire (counted
//!    by a UDP proxy between them), with zstd on and off.
//! 3. **Fleet scale**: 1,000 simulated sites (one load-generator process,
//!    each site a real QUIC connection with its own certificate running the
//!    site session state machine) connected to one central on SQLite, and
//!    spread over 1, 2 and 3 central nodes sharing one PostgreSQL; one
//!    policy change through the first node, and the time until each site
//!    has it; the first node's peak RSS.
//!
//! `tests/bench sync` runs it (`target/release/sync_bench accounting|policy|fleet`
//! one part); `BENCH_SITES` changes the fleet size.
//! Prints Markdown tables.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::{
    Appliance, Central, Postgres, UdpProxy, fill_journal, free_udp_port, peak_rss_of, wait_for,
};
use sync_protocol::frame::FrameCodec;
use sync_protocol::message::{EnrollRequest, Message};
use sync_protocol::pki::{CENTRAL_NAME, EnrollmentToken, Identity, site_request};
use sync_protocol::site::{SiteAction, SiteSession, SiteSettings};
use sync_protocol::transport::{
    Timing, enroll_client_config, open_session, site_endpoint, sync_client_config,
};

fn site_config(name: &str) -> String {
    format!("site = {name:?}\n[[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n")
}

fn status(site: &Appliance) -> serde_json::Value {
    site.sync_status().unwrap_or_default()
}

/// Seconds for central (with `storage`, `[storage]` keys as dotted TOML)
/// to acknowledge `n` records a site holds.
fn accounting(dir: &std::path::Path, n: u64, storage: &str) -> Result<Duration> {
    let centrals = central_nodes(dir, 1, storage)?;
    accounting_on(dir, &centrals, 1, n)
}

/// Seconds for `nodes` to acknowledge `n` records held by each of `sites`
/// sites, site i connected to node i mod the nodes, all starting at once.
fn accounting_on(
    dir: &std::path::Path,
    nodes: &[Central],
    sites: usize,
    n: u64,
) -> Result<Duration> {
    let mut started_sites = Vec::new();
    for i in 0..sites {
        let name = format!("branch-{}", i + 1);
        let token = nodes[0].add_site(&name)?;
        let mut site = Appliance::start_enrolled(
            &dir.join(&name),
            &nodes[i % nodes.len()].endpoint(),
            &token,
            &site_config(&name),
        )?;
        site.stop()?;
        fill_journal(&site.data_dir, &name, n)?;
        started_sites.push((name, site));
    }
    let started = Instant::now();
    for (_, site) in &mut started_sites {
        site.restart()?;
    }
    for (_, site) in &started_sites {
        wait_for(
            Duration::from_secs(900),
            "every record acknowledged",
            || {
                (status(site)["journal_unacked"] == 0 && status(site)["site"].is_string())
                    .then_some(())
            },
        )?;
    }
    let elapsed = started.elapsed();
    let report = nodes[0].report("site")?;
    for (name, _) in &started_sites {
        let row = report
            .iter()
            .find(|r| r[0] == *name)
            .with_context(|| format!("no {name} row"))?;
        if row[1] != n.to_string() {
            bail!("central counts {} records of {name}, not {n}", row[1]);
        }
    }
    Ok(elapsed)
}

/// Seconds for SQLite to insert `n` journal rows in central's schema, in
/// transactions of 1,000, with central's durability settings.
fn sqlite_ceiling(dir: &std::path::Path, n: u64) -> Result<Duration> {
    let conn = rusqlite::Connection::open(dir.join("ceiling.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE journal (site TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, \
         job_uuid TEXT NOT NULL, queue TEXT NOT NULL, job_id INTEGER NOT NULL, user_id TEXT NOT NULL, \
         device TEXT NOT NULL, pages INTEGER, pages_exact INTEGER NOT NULL, sheets INTEGER, \
         copies INTEGER NOT NULL, color TEXT NOT NULL, sides TEXT NOT NULL, media TEXT, \
         time_ms INTEGER NOT NULL, outcome TEXT NOT NULL, PRIMARY KEY (site, epoch, seq)) \
         STRICT, WITHOUT ROWID; CREATE INDEX journal_by_time ON journal (time_ms);",
    )?;
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < n {
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal VALUES ('branch-1', 'e', ?1, ?2, 'secure', ?3, ?4, 'lobby', \
                 2, 1, 2, 1, 'monochrome', 'one-sided', NULL, ?5, 'completed') ON CONFLICT DO NOTHING",
            )?;
            for _ in 0..1000.min(n - seq) {
                seq += 1;
                insert.execute(rusqlite::params![
                    seq as i64,
                    format!("00000000-0000-7000-8000-{seq:012}"),
                    seq as i64,
                    format!("user{}", seq % 100),
                    1_796_000_000_000i64 + seq as i64
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// Seconds for PostgreSQL itself to insert `n` journal rows into central's
/// table, server-side (a PL/pgSQL loop, no client and no network) in
/// transactions of 1,000 committed durably: what central on PostgreSQL
/// cannot beat, as [`sqlite_ceiling`] is for SQLite.
fn postgres_ceiling(postgres: &Postgres, n: u64) -> Result<Duration> {
    let database = format!("ceiling{n}");
    postgres.create_database(&database)?;
    postgres.psql(
        &database,
        "CREATE TABLE journal (site TEXT NOT NULL, epoch TEXT NOT NULL, seq BIGINT NOT NULL, \
         job_uuid TEXT NOT NULL, queue TEXT NOT NULL, job_id BIGINT NOT NULL, \
         user_id TEXT NOT NULL, device TEXT NOT NULL, pages BIGINT, pages_exact BIGINT NOT NULL, \
         sheets BIGINT, copies BIGINT NOT NULL, color TEXT NOT NULL, sides TEXT NOT NULL, \
         media TEXT, time_ms BIGINT NOT NULL, outcome TEXT NOT NULL, origin_site TEXT, \
         PRIMARY KEY (site, epoch, seq)); CREATE INDEX journal_by_time ON journal (time_ms);",
    )?;
    let started = Instant::now();
    let mut from = 0u64;
    // 100,000 rows per call, each under psql's time limit.
    while from < n {
        let to = (from + 100_000).min(n);
        postgres.psql(
            &database,
            &format!(
                "DO $$ BEGIN FOR b IN {from}..{} BY 1000 LOOP \
                 INSERT INTO journal SELECT 'branch-1', 'e', s, \
                 '00000000-0000-7000-8000-' || lpad(s::text, 12, '0'), 'secure', s, \
                 'user' || (s % 100), 'lobby', 2, 1, 2, 1, 'monochrome', 'one-sided', NULL, \
                 1796000000000 + s, 'completed', NULL \
                 FROM generate_series(b + 1, LEAST(b + 1000, {to})) s ON CONFLICT DO NOTHING; \
                 COMMIT; END LOOP; END $$",
                to - 1
            ),
        )?;
        from = to;
    }
    let elapsed = started.elapsed();
    let count = postgres.psql(&database, "SELECT count(*) FROM journal")?;
    if count != n.to_string() {
        bail!("PostgreSQL holds {count} rows, not {n}");
    }
    Ok(elapsed)
}

/// (seconds from the site's start to the policy in force, bytes central
/// sent) for a policy of `users` users.
fn policy(dir: &std::path::Path, users: usize, compress: bool) -> Result<(Duration, u64)> {
    let central = Central::start(
        &dir.join("central"),
        free_udp_port(),
        &format!("sync.compress = {compress}\n"),
    )?;
    let csv = dir.join("users.csv");
    let mut text = String::from("id,display_name,groups,pin\n");
    for i in 0..users {
        text.push_str(&format!(
            "u{i:06},User {i},staff;floor-{},{}\n",
            i % 7,
            100_000 + i
        ));
    }
    std::fs::write(&csv, text)?;
    central.cli_ok(&["user", "import", &csv.display().to_string()], "")?;
    let proxy = UdpProxy::start(central.endpoint().parse()?, 1)?;
    let token = central.add_site("branch-1")?;
    let mut site = Appliance::prepare(
        &dir.join("site"),
        &format!(
            "{}\n[central]\nendpoints = [{:?}]\n",
            site_config("branch-1"),
            proxy.endpoint()
        ),
    )?;
    site.enroll(&central.endpoint(), &token)?;
    let started = Instant::now();
    site.restart()?;
    wait_for(Duration::from_secs(300), "the policy at the site", || {
        (status(&site)["policy_version"] == 1).then_some(())
    })?;
    let elapsed = started.elapsed();
    Ok((elapsed, proxy.bytes().1))
}

/// A connection to central, tried again after a failed handshake, as a
/// real site's dialer does: a thousand handshakes at once on two cores
/// shared with central and PostgreSQL can outlast the handshake deadline
/// of either end.
async fn connect(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection> {
    let mut attempt = 1;
    loop {
        match endpoint
            .connect_with(config.clone(), addr, CENTRAL_NAME)?
            .await
        {
            Ok(connection) => return Ok(connection),
            Err(_) if attempt < 5 => attempt += 1,
            Err(e) => bail!("connecting (attempt {attempt}): {e}"),
        }
    }
}

/// One simulated site: enrolls, then runs the site session machine,
/// noting when each policy version arrives.
/// One enrollment exchange: the site's certificate, central's CA.
async fn enroll(
    endpoint: &quinn::Endpoint,
    addr: std::net::SocketAddr,
    token: &str,
    csr_pem: &str,
) -> Result<sync_protocol::message::Enrolled> {
    let parsed = EnrollmentToken::parse(token).context("token")?;
    let config = enroll_client_config(parsed.ca_fingerprint, Timing::default())?;
    let connection = connect(endpoint, config, addr).await?;
    let (mut tx, mut rx) = open_session(&connection, FrameCodec::default()).await?;
    tx.send(&Message::EnrollRequest(EnrollRequest {
        token: token.to_owned(),
        csr_pem: csr_pem.to_owned(),
        software: "sync_bench".into(),
    }))
    .await?;
    let Message::Enrolled(enrolled) = rx.recv().await? else {
        bail!("not enrolled")
    };
    connection.close(0u32.into(), b"done");
    Ok(enrolled)
}

async fn simulated_site(
    endpoint: quinn::Endpoint,
    addr: std::net::SocketAddr,
    token: String,
    arrivals: Arc<Mutex<Vec<(u64, Instant)>>>,
    welcomed: tokio::sync::mpsc::Sender<()>,
) -> Result<()> {
    let (key_pem, csr_pem) = site_request()?;
    // A connection central dropped before it read the request (its
    // handshake outlasted central's deadline under a thousand at once)
    // leaves the token unused: the site enrolls again, as a real one does.
    let mut attempt = 1;
    let enrolled = loop {
        match enroll(&endpoint, addr, &token, &csr_pem).await {
            Ok(enrolled) => break enrolled,
            Err(_) if attempt < 5 => attempt += 1,
            Err(e) => return Err(e.context(format!("enrolling (attempt {attempt})"))),
        }
    };
    let identity = Identity {
        certificate_pem: enrolled.certificate_pem,
        key_pem,
    };
    let config = sync_client_config(&identity, &enrolled.ca_pem, Timing::default())?;
    let connection = connect(&endpoint, config, addr).await?;
    let (mut tx, mut rx) = open_session(&connection, FrameCodec::default()).await?;
    let settings = SiteSettings {
        software: "sync_bench".into(),
        epoch: enrolled.site.clone(),
        window: 4,
        batch: 1000,
        hello_timeout: Duration::from_secs(60),
    };
    let mut machine = SiteSession::new(settings, 0, 0, 0, Instant::now());
    let mut welcome_sent = false;
    loop {
        while let Some(action) = machine.poll_action() {
            match action {
                SiteAction::Send(m) => tx.send(&m).await?,
                SiteAction::CommitSnapshot { version, .. } => {
                    arrivals
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((version, Instant::now()));
                    machine.policy_applied(version, vec![]);
                }
                SiteAction::ApplyChanges(c) => {
                    arrivals
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((c.to, Instant::now()));
                    machine.policy_applied(c.to, vec![]);
                }
                SiteAction::Close(r) => bail!("closed: {r}"),
                _ => {}
            }
        }
        if !welcome_sent && machine.running().is_some() {
            welcome_sent = true;
            let _ = welcomed.send(()).await;
        }
        let message = rx.recv().await?;
        machine.handle(message);
    }
}

/// `nodes` central nodes with `storage` (one SQLite node when empty; else
/// the nodes share that database and the first node's identity).
fn central_nodes(dir: &std::path::Path, nodes: usize, storage: &str) -> Result<Vec<Central>> {
    let first = Central::start(&dir.join("node-1"), free_udp_port(), storage)?;
    let mut all = vec![first];
    for i in 2..=nodes {
        let node = Central::start_node(
            &dir.join(format!("node-{i}")),
            free_udp_port(),
            storage,
            &all[0],
        )?;
        all.push(node);
    }
    Ok(all)
}

/// The centrals compared: one on SQLite, then 1, 2 and 3 nodes sharing a
/// PostgreSQL database.
const SETUPS: [(&str, usize); 4] = [
    ("SQLite", 1),
    ("PostgreSQL", 1),
    ("PostgreSQL", 2),
    ("PostgreSQL", 3),
];

/// The `nodes` of one of [`SETUPS`] under `dir`, on a fresh `database`
/// when `storage` is PostgreSQL.
fn setup(
    dir: &std::path::Path,
    storage: &str,
    nodes: usize,
    database: &mut impl FnMut() -> Result<String>,
) -> Result<Vec<Central>> {
    let extra = if storage == "SQLite" {
        String::new()
    } else {
        database()?
    };
    central_nodes(dir, nodes, &extra)
}

/// `sites` simulated sites spread over `nodes` (site i on node i mod
/// nodes); one policy change made through the first node, and how long
/// each site took to have it; the first node's peak RSS.
fn fleet(nodes: &[Central], sites: usize) -> Result<(Vec<Duration>, u64)> {
    let central = &nodes[0];
    central.cli_ok(
        &["user", "add", "first", "--name", "First", "--pin"],
        "1111\n",
    )?;
    eprintln!("fleet: registering {sites} sites");
    let tokens: Vec<String> = (0..sites)
        .map(|i| central.add_site(&format!("sim-{i:04}")))
        .collect::<Result<_>>()?;
    let addrs: Vec<std::net::SocketAddr> = nodes
        .iter()
        .map(|n| n.endpoint().parse())
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let (welcomed_tx, mut welcomed) = tokio::sync::mpsc::channel(sites);
    let _guard = runtime.enter();
    // A few client endpoints, each holding a share of the connections.
    let endpoints: Vec<quinn::Endpoint> = (0..8)
        .map(|_| {
            site_endpoint(std::net::UdpSocket::bind("127.0.0.1:0")?).map_err(anyhow::Error::from)
        })
        .collect::<Result<_>>()?;
    for (i, token) in tokens.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let addr = addrs[i % addrs.len()];
        let (arrivals, welcomed) = (arrivals.clone(), welcomed_tx.clone());
        runtime.spawn(async move {
            if let Err(e) = simulated_site(endpoint, addr, token, arrivals, welcomed).await {
                eprintln!("simulated site {i}: {e:#}");
            }
        });
    }
    runtime.block_on(async {
        for n in 0..sites {
            tokio::time::timeout(Duration::from_secs(300), welcomed.recv())
                .await
                .with_context(|| format!("only {n} of {sites} sites connected"))?;
        }
        anyhow::Ok(())
    })?;
    eprintln!("fleet: {sites} sites connected; changing the policy");
    // Every site has version 1 (the snapshot); the change makes 2.
    wait_for(Duration::from_secs(120), "every site at version 1", || {
        let a = arrivals.lock().ok()?;
        (a.iter().filter(|(v, _)| *v == 1).count() == sites).then_some(())
    })?;
    let changed = Instant::now();
    central.cli_ok(
        &["user", "add", "second", "--name", "Second", "--pin"],
        "2222\n",
    )?;
    wait_for(Duration::from_secs(120), "every site at version 2", || {
        let a = arrivals.lock().ok()?;
        (a.iter().filter(|(v, _)| *v == 2).count() == sites).then_some(())
    })?;
    let mut latencies: Vec<Duration> = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .filter(|(v, _)| *v == 2)
        .map(|(_, at)| at.duration_since(changed))
        .collect();
    latencies.sort();
    let rss = peak_rss_of(central.pid().context("central not running")?)?;
    Ok((latencies, rss))
}

fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    // Central on PostgreSQL: a private server on the same disk.
    let postgres = Postgres::start()?;
    let mut databases = 0;
    let mut fresh_database = || -> Result<String> {
        databases += 1;
        let name = format!("bench{databases}");
        postgres.create_database(&name)?;
        Ok(format!("storage.url = {:?}\n", postgres.url(&name)))
    };
    let only = std::env::args().nth(1);
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if run("accounting") {
        let postgres_alone = |n| postgres_ceiling(&postgres, n);
        accounting_table(tmp.path(), &mut fresh_database, &postgres_alone)?;
    }
    if run("policy") {
        policy_table(tmp.path())?;
    }
    if run("fleet") {
        fleet_table(tmp.path(), &mut fresh_database)?;
    }
    Ok(())
}

fn accounting_table(
    tmp: &std::path::Path,
    database: &mut impl FnMut() -> Result<String>,
    postgres_alone: &dyn Fn(u64) -> Result<Duration>,
) -> Result<()> {
    println!("### Accounting up (records acknowledged by central)\n");
    println!(
        "| records | central on SQLite | central on PostgreSQL | PostgreSQL / SQLite | \
         SQLite alone (same rows, same disk) | central on SQLite / SQLite alone | \
         PostgreSQL alone (same rows, same disk) | central on PostgreSQL / PostgreSQL alone |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [100_000u64, 1_000_000] {
        let dir = tmp.join(format!("acct-{n}"));
        let sqlite = accounting(&dir.join("sqlite"), n, "")?;
        let postgres = accounting(&dir.join("postgres"), n, &database()?)?;
        let ceiling = sqlite_ceiling(&dir, n)?;
        let postgres_ceiling = postgres_alone(n)?;
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "| {n} | {:.2} s ({:.0}/s) | {:.2} s ({:.0}/s) | {:.2} | {:.2} s ({:.0}/s) | {:.2} \
             | {:.2} s ({:.0}/s) | {:.2} |",
            sqlite.as_secs_f64(),
            rate(sqlite),
            postgres.as_secs_f64(),
            rate(postgres),
            rate(postgres) / rate(sqlite),
            ceiling.as_secs_f64(),
            rate(ceiling),
            ceiling.as_secs_f64() / sqlite.as_secs_f64(),
            postgres_ceiling.as_secs_f64(),
            rate(postgres_ceiling),
            postgres_ceiling.as_secs_f64() / postgres.as_secs_f64()
        );
    }
    // Several sites at once, over one SQLite central and 1-3 nodes on
    // PostgreSQL: the aggregate rate.
    let (sites, n) = (3usize, 200_000u64);
    println!("\n{sites} sites of {n} records each, starting together, spread over the nodes:\n");
    println!("| storage | nodes | all acknowledged after | records/s | / SQLite |");
    println!("|---|---:|---:|---:|---:|");
    let mut sqlite_rate = None;
    for (storage, nodes) in SETUPS {
        let dir = tmp.join(format!("acct-sites-{storage}-{nodes}"));
        let centrals = setup(&dir, storage, nodes, database)?;
        let took = accounting_on(&dir, &centrals, sites, n)?;
        let rate = (sites as u64 * n) as f64 / took.as_secs_f64();
        let sqlite = *sqlite_rate.get_or_insert(rate);
        println!(
            "| {storage} | {nodes} | {:.2} s | {rate:.0} | {:.2} |",
            took.as_secs_f64(),
            rate / sqlite
        );
    }
    Ok(())
}

fn policy_table(tmp: &std::path::Path) -> Result<()> {
    println!("\n### Policy down to a newly enrolled site (from its start)\n");
    println!("| users | zstd | in force after | bytes central sent | bytes per user |");
    println!("|---:|:---:|---:|---:|---:|");
    for users in [10_000usize, 100_000] {
        for compress in [true, false] {
            let dir = tmp.join(format!("policy-{users}-{compress}"));
            let (elapsed, bytes) = policy(&dir, users, compress)?;
            println!(
                "| {users} | {} | {:.2} s | {bytes} | {:.0} |",
                if compress { "on" } else { "off" },
                elapsed.as_secs_f64(),
                bytes as f64 / users as f64
            );
        }
    }
    Ok(())
}

fn fleet_table(tmp: &std::path::Path, database: &mut impl FnMut() -> Result<String>) -> Result<()> {
    let sites: usize = std::env::var("BENCH_SITES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    println!("\n### One policy change reaching {sites} connected sites\n");
    println!("Sites spread evenly over the nodes; the change made through the first node.\n");
    println!("| storage | nodes | p50 | p99 | max | first node's peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (storage, nodes) in SETUPS {
        let dir = tmp.join(format!("fleet-{storage}-{nodes}"));
        let centrals = setup(&dir, storage, nodes, database)?;
        let (latencies, rss) = fleet(&centrals, sites)?;
        let at = |p: f64| {
            latencies[((p / 100.0 * latencies.len() as f64).ceil() as usize)
                .clamp(1, latencies.len())
                - 1]
        };
        println!(
            "| {storage} | {nodes} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} MiB |",
            at(50.0).as_secs_f64() * 1000.0,
            at(99.0).as_secs_f64() * 1000.0,
            at(100.0).as_secs_f64() * 1000.0,
            rss as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
