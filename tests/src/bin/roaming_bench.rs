//! Roaming benchmark (release build, real processes on loopback): a job
//! printed at `branch-1` is released at `branch-2` (which reaches central
//! through a UDP proxy: the path under test), for documents of 1 MiB and
//! 100 MiB.
//!
//! - **Throughput** of the transfer (the appliance's own measure: first
//!   block asked to verified spool file, `appliance_roaming_transfer_seconds`)
//!   against the raw capacity of the same path measured in the same run:
//!   one QUIC stream with the sync's own TLS and transport settings,
//!   through an identical proxy, 100 MiB.
//! - **Login to first byte** at the printer (a raw-socket listener that
//!   notes the first byte): log in, list, release by id, without prefetch.
//! - **Prefetch**: at `branch-3` (prefetch on) the same, but the user
//!   releases once the prefetch is done: release to first byte, against a
//!   job held at that site itself (the local baseline).
//!
//! Paths: plain loopback, and a simulated WAN (100 Mbit/s each way, 40 ms
//! round trip, 0.5 % loss each way) in the proxy. `tests/bench roaming`
//! runs it; `BENCH_ROAMING_PATHS=loopback` (or `wan`) runs one path.
//! Prints Markdown tables.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    ApiClient, Appliance, Central, Faults, Printed, UdpProxy, free_udp_port, timed_printer, upload,
    wait_for, write_generated,
};
use serde_json::{Value, json};
use sync_protocol::pki::{Authority, CENTRAL_NAME, Identity, site_request};
use sync_protocol::transport::{Timing, central_endpoint, site_endpoint, sync_client_config};

const MIB: u64 = 1 << 20;
const PIN: &str = "2468";

/// The simulated WAN: 100 Mbit/s each way, 20 ms each way, 0.5 % loss.
fn wan() -> Faults {
    Faults {
        rate: 12_500_000,
        latency: Duration::from_millis(20),
        drop: 0.005,
        ..Faults::default()
    }
}

/// MB/s of one QUIC stream carrying `size` bytes through a proxy doing
/// `faults`, with the sync's TLS and transport settings.
fn raw_quic(faults: Faults, size: u64) -> Result<f64> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (authority, _) = Authority::create("bench")?;
        let server = authority.server_identity(1)?;
        let (key_pem, csr) = site_request()?;
        let site = Identity {
            certificate_pem: authority.sign_site(&csr, "bench", 1)?,
            key_pem,
        };
        let ca = authority.certificate_pem().to_owned();
        let timing = Timing::default();
        let listener = central_endpoint(
            UdpSocket::bind("127.0.0.1:0")?,
            &server,
            &ca,
            timing,
            &[7; 32],
        )?;
        let proxy = UdpProxy::start(listener.local_addr()?, 0xbe4c)?;
        proxy.set(faults);
        let receiver = tokio::spawn(async move {
            let connection = listener.accept().await.context("no connection")?.await?;
            let mut stream = connection.accept_uni().await?;
            let mut total = 0u64;
            while let Some(chunk) = stream.read_chunk(1 << 20, true).await? {
                total += chunk.bytes.len() as u64;
            }
            let done = Instant::now();
            connection.close(0u32.into(), b"done");
            Ok::<_, anyhow::Error>((total, done))
        });
        let client = site_endpoint(UdpSocket::bind("127.0.0.1:0")?)?;
        let config = sync_client_config(&site, &ca, timing)?;
        let addr: SocketAddr = proxy.endpoint().parse()?;
        let connection = client.connect_with(config, addr, CENTRAL_NAME)?.await?;
        let mut stream = connection.open_uni().await?;
        let mut data = Vec::with_capacity(size as usize);
        write_generated(&mut data, size, 3)?;
        let started = Instant::now();
        for chunk in data.chunks(MIB as usize) {
            stream.write_all(chunk).await?;
        }
        stream.finish()?;
        let (total, done) = receiver.await??;
        ensure!(total == size, "raw stream carried {total} of {size} bytes");
        drop(proxy);
        Ok(size as f64 / 1e6 / done.duration_since(started).as_secs_f64())
    })
}

/// The sum of a site's transfer times so far (seconds).
fn transfer_seconds(site: &Appliance) -> Result<f64> {
    let metrics = site.get("/metrics")?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("appliance_roaming_transfer_seconds_sum "))
        .context("no transfer time in /metrics")?
        .trim()
        .parse()
        .context("transfer time unreadable")
}

fn login(api: &ApiClient) -> Result<String> {
    api.login_pin("lobby", "alice", PIN)
}

/// The id of alice's job of `size` bytes at `origin`, as `api` lists it.
fn listed(api: &ApiClient, token: &str, size: u64, origin: &str) -> Option<String> {
    let r = api.call("GET", "/api/v1/jobs", Some(token), None).ok()?;
    r.json["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["size"] == size && j["site"] == origin && j["state"] == "held")
        .and_then(|j| j["id"].as_str().map(str::to_owned))
}

fn release(api: &ApiClient, token: &str, id: &str) -> Result<Value> {
    let r = api.call(
        "POST",
        "/api/v1/jobs/release",
        Some(token),
        Some(&json!({ "jobs": [id] })),
    )?;
    ensure!(
        r.status == 202 && r.json["jobs"][0]["outcome"] == "queued",
        "release answered {}: {}",
        r.status,
        r.json
    );
    Ok(r.json)
}

fn submit(site: &Appliance, size: u64, seed: u64) -> Result<()> {
    let (response, _) = upload(site.port, "/ipp/print/secure", "alice", size, |out| {
        write_generated(out, size, seed)
    })?;
    ensure!(response.status == 0, "upload refused: {response:?}");
    Ok(())
}

/// One site of the fleet, printing to a raw-socket listener.
struct Site {
    appliance: Appliance,
    printer: mpsc::Receiver<Printed>,
    _proxy: Option<UdpProxy>,
}

fn site(
    central: &Central,
    dir: &std::path::Path,
    name: &str,
    faults: Option<Faults>,
    central_extra: &str,
) -> Result<Site> {
    let (port, printer) = timed_printer()?;
    let proxy = match faults {
        Some(faults) => {
            let proxy = UdpProxy::start(central.endpoint().parse()?, 0x5eed)?;
            proxy.set(faults);
            Some(proxy)
        }
        None => None,
    };
    let endpoint = proxy
        .as_ref()
        .map_or_else(|| central.endpoint(), UdpProxy::endpoint);
    let token = central.add_site(name)?;
    let config = format!(
        "site = {name:?}\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [ipp]\nlisten = \"127.0.0.1:0\"\nmax_document_bytes = {}\n\
         [[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:{port}\"\n",
        512 * MIB
    );
    let appliance =
        Appliance::start_enrolled_with(&dir.join(name), &endpoint, &token, &config, central_extra)?;
    Ok(Site {
        appliance,
        printer,
        _proxy: proxy,
    })
}

/// Waits for the printer's next job; checks its size.
fn printed(site: &Site, size: u64, within: Duration) -> Result<Printed> {
    let printed = site
        .printer
        .recv_timeout(within)
        .context("nothing printed in time")?;
    ensure!(
        printed.bytes == size,
        "printed {} of {size} bytes",
        printed.bytes
    );
    Ok(printed)
}

/// One path's figures for one size.
struct Row {
    path: &'static str,
    size: u64,
    raw_mbps: f64,
    transfer_s: f64,
    login_to_first_byte: Duration,
    prefetch_ready: Duration,
    prefetched_release: Duration,
    local_release: Duration,
}

fn run_path(path: &'static str, faults: Faults, sizes: &[u64]) -> Result<Vec<Row>> {
    let raw_mbps = raw_quic(faults, 100 * MIB)?;
    eprintln!("{path}: raw QUIC {raw_mbps:.1} MB/s");
    let dir = tempfile::tempdir()?;
    let central = Central::start(&dir.path().join("central"), free_udp_port(), "")?;
    let origin = site(&central, dir.path(), "branch-1", None, "prefetch = false")?;
    let plain = site(
        &central,
        dir.path(),
        "branch-2",
        Some(faults),
        "prefetch = false",
    )?;
    let reading = site(
        &central,
        dir.path(),
        "branch-3",
        Some(faults),
        "prefetch = true\nprefetch_max_mib = 128",
    )?;
    central.cli_ok(
        &["user", "add", "alice", "--name", "Alice", "--pin"],
        &format!("{PIN}\n"),
    )?;
    for s in [&origin, &plain, &reading] {
        wait_for(Duration::from_secs(30), "alice everywhere", || {
            (s.appliance.sync_status().ok()?["policy_version"] == 1).then_some(())
        })?;
    }
    let api_plain = plain.appliance.api()?;
    let api_reading = reading.appliance.api()?;
    let patience = Duration::from_secs(900);
    let mut rows = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        // Without prefetch: log in, list, release at once.
        submit(&origin.appliance, size, seed)?;
        let token = login(&api_plain)?;
        wait_for(
            Duration::from_secs(60),
            "the job in central's index",
            || listed(&api_plain, &token, size, "branch-1"),
        )?;
        let before = transfer_seconds(&plain.appliance)?;
        let started = Instant::now();
        let token = login(&api_plain)?;
        let id = listed(&api_plain, &token, size, "branch-1").context("not listed")?;
        release(&api_plain, &token, &id)?;
        let first = printed(&plain, size, patience)?.first;
        let login_to_first_byte = first.duration_since(started);
        let transfer_s = transfer_seconds(&plain.appliance)? - before;

        // With prefetch: log in, and release once it has arrived.
        submit(&origin.appliance, size, seed + 1)?;
        let token = login(&api_reading)?;
        wait_for(
            Duration::from_secs(60),
            "the job in central's index",
            || listed(&api_reading, &token, size, "branch-1"),
        )?;
        let before = reading.appliance.sync_status()?["roaming"]["bytes_received"]
            .as_u64()
            .unwrap_or(0);
        let logged_in = Instant::now();
        let token = login(&api_reading)?;
        wait_for(patience, "the prefetch", || {
            let s = reading.appliance.sync_status().ok()?;
            (s["roaming"]["bytes_received"].as_u64()? >= before + size
                && s["roaming"]["transfers_in_flight"] == 0)
                .then_some(())
        })?;
        let prefetch_ready = logged_in.elapsed();
        let id = listed(&api_reading, &token, size, "branch-1").context("not listed")?;
        let released = Instant::now();
        release(&api_reading, &token, &id)?;
        let prefetched_release = printed(&reading, size, patience)?
            .first
            .duration_since(released);

        // The baseline: a job held at that site itself.
        submit(&reading.appliance, size, seed + 2)?;
        let token = login(&api_reading)?;
        let id = listed(&api_reading, &token, size, "branch-3").context("local not listed")?;
        let released = Instant::now();
        release(&api_reading, &token, &id)?;
        let local_release = printed(&reading, size, patience)?
            .first
            .duration_since(released);
        eprintln!(
            "{path} {} MiB: transfer {transfer_s:.2} s, login to first byte {login_to_first_byte:?}",
            size / MIB
        );
        rows.push(Row {
            path,
            size,
            raw_mbps,
            transfer_s,
            login_to_first_byte,
            prefetch_ready,
            prefetched_release,
            local_release,
        });
    }
    Ok(rows)
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let paths = std::env::var("BENCH_ROAMING_PATHS").unwrap_or_else(|_| "loopback,wan".into());
    let sizes = [MIB, 100 * MIB];
    let mut rows = Vec::new();
    for path in paths.split(',') {
        match path {
            "loopback" => rows.extend(run_path("loopback", Faults::default(), &sizes)?),
            "wan" => rows.extend(run_path(
                "WAN 100 Mbit/s, 40 ms, 0.5 % loss",
                wan(),
                &sizes,
            )?),
            other => bail!("unknown path {other:?}: loopback or wan"),
        }
    }
    println!("\n### Job roaming: transfer against the raw path, and release latency\n");
    println!(
        "| path | document | raw QUIC, MB/s | transfer, MB/s | of raw | login → first byte, ms (no prefetch) | login → prefetched, ms | release → first byte, prefetched, ms | release → first byte, local job, ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let mbps = r.size as f64 / 1e6 / r.transfer_s;
        println!(
            "| {} | {} MiB | {:.1} | {:.1} | {:.0} % | {} | {} | {} | {} |",
            r.path,
            r.size / MIB,
            r.raw_mbps,
            mbps,
            100.0 * mbps / r.raw_mbps,
            ms(r.login_to_first_byte),
            ms(r.prefetch_ready),
            ms(r.prefetched_release),
            ms(r.local_release),
        );
    }
    Ok(())
}
