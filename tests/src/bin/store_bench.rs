//! Store-size benchmark: does the appliance cost the same with a thousand,
//! a hundred thousand or a million stored jobs? For each size, a data
//! directory is filled with held jobs of 500 users through the store's own
//! API (`appliance/examples/fill_store.rs`, group commits of real
//! documents), then the release build serves it and one user with exactly
//! ten jobs of their own (submitted over IPP) is measured: the list of
//! their jobs (`GET /api/v1/jobs`), a card login, the intake rate with 16
//! clients, and the daemon's peak RSS.
//!
//! Every size is filled first; then `BENCH_ROUNDS` rounds (default 3)
//! measure the sizes in turn, so a noisy minute on a shared host shows as
//! a range instead of as a difference between sizes. Each round restarts
//! the daemon (its start time is reported) and adds 640 jobs to the store.
//!
//! Run it with `tests/bench store`. `BENCH_STORE_SIZES=1000,100000` picks
//! the sizes (default 1000,100000,1000000); `BENCH_DIR` the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{Appliance, fixture, run_with_timeout, send_print_job, spread, workspace};
use serde_json::json;

const USERS: usize = 500;
const OWN_JOBS: usize = 10;
const SAMPLES: usize = 300;
const WARM_UP: usize = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// Milliseconds of `samples` calls of `f`, sorted.
fn timed(samples: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        f()?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

fn dir_size(path: &std::path::Path) -> u64 {
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// One size's store, filled once and measured in every round.
struct Store {
    size: usize,
    appliance: Appliance,
    fill_line: String,
    measured: Vec<Round>,
}

/// What one round measured on one store.
struct Round {
    list_p50_ms: f64,
    list_p99_ms: f64,
    login_p50_ms: f64,
    login_p99_ms: f64,
    intake_jobs_per_sec: f64,
    peak_rss_mib: f64,
    start_secs: f64,
}

fn main() -> Result<()> {
    let root = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/appliance-bench".into()),
    )
    .join("store");
    let sizes: Vec<usize> = std::env::var("BENCH_STORE_SIZES")
        .unwrap_or_else(|_| "1000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().context("BENCH_STORE_SIZES"))
        .collect::<Result<_>>()?;
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let fill = workspace().join("target/release/examples/fill_store");
    ensure!(
        fill.exists(),
        "{} is missing: cargo build --release -p appliance --example fill_store",
        fill.display()
    );
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let document = Arc::new(fs::read(fixture("small-4k.pdf"))?);
    let mut stores = Vec::new();
    for &size in &sizes {
        stores.push(filled_store(&fill, &root, size, &document)?);
    }
    // Every fill's writes reach the disk before anything is timed, so no
    // round pays for another size's writeback.
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    for round in 1..=rounds {
        for store in &mut stores {
            eprintln!("round {round} of {rounds}: {} stored jobs...", store.size);
            let measured = measure(&mut store.appliance, &document)?;
            store.measured.push(measured);
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| stored jobs | a user's list (10 jobs), ms p50 | p99 | card login, ms p50 | p99 \
         | intake, 16 clients, jobs/s | peak RSS, MiB | start, s | data dir, MB | fill |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for store in &stores {
        let column =
            |of: fn(&Round) -> f64| spread(&store.measured.iter().map(of).collect::<Vec<_>>());
        let disk = dir_size(&store.appliance.data_dir) as f64 / 1e6;
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {disk:.0} | {} |",
            store.size,
            column(|r| r.list_p50_ms),
            column(|r| r.list_p99_ms),
            column(|r| r.login_p50_ms),
            column(|r| r.login_p99_ms),
            column(|r| r.intake_jobs_per_sec),
            column(|r| r.peak_rss_mib),
            column(|r| r.start_secs),
            store.fill_line,
        )?;
    }
    writeln!(
        out,
        "\nMedians of {rounds} rounds (range), the sizes alternating; each round adds \
         {} jobs to every store.",
        INTAKE_CLIENTS * INTAKE_PER_CLIENT
    )?;
    drop(stores);
    let _ = fs::remove_dir_all(&root);
    Ok(())
}

const INTAKE_CLIENTS: usize = 16;
const INTAKE_PER_CLIENT: usize = 40;

/// A store of `size` jobs under `root`: filled through the store's own
/// API, with the bench user's card and [`OWN_JOBS`] jobs of theirs
/// submitted over IPP; its daemon stopped.
fn filled_store(fill: &Path, root: &Path, size: usize, document: &[u8]) -> Result<Store> {
    let dir = root.join(format!("{size}"));
    let mut appliance = Appliance::prepare(
        &dir,
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n",
    )?;
    eprintln!("filling a store with {size} held jobs...");
    let filled = run_with_timeout(
        Command::new(fill)
            .arg(&appliance.data_dir)
            .arg((size - OWN_JOBS).to_string())
            .arg(USERS.to_string())
            .arg(fixture("small-4k.pdf")),
        Duration::from_secs(3600),
    )?;
    ensure!(
        filled.status.success(),
        "fill_store: {}",
        String::from_utf8_lossy(&filled.stderr)
    );
    let fill_line = String::from_utf8_lossy(&filled.stdout).trim().to_owned();
    eprintln!("{fill_line}");
    let csv = dir.join("users.csv");
    fs::write(
        &csv,
        "id,display_name,email,groups,pin,cards,password\nbench,Bench,,,,CARDBENCH,\n",
    )?;
    let imported = appliance.cli(&["users", "import", csv.to_str().context("path")?], "")?;
    ensure!(
        imported.status.success(),
        "users import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    appliance.restart()?;
    for _ in 0..OWN_JOBS {
        let r = send_print_job(appliance.port, "secure", "bench", document)?;
        ensure!(r.status == 0, "{r:?}");
    }
    appliance.stop()?;
    Ok(Store {
        size,
        appliance,
        fill_line,
        measured: Vec::new(),
    })
}

/// One round on a stopped store: starts its daemon, times [`SAMPLES`] card
/// logins and lists of the bench user's jobs, then 16 clients' intake;
/// stops it again.
fn measure(appliance: &mut Appliance, document: &Arc<Vec<u8>>) -> Result<Round> {
    let started = Instant::now();
    appliance.restart()?;
    let start_secs = started.elapsed().as_secs_f64();
    let api = appliance.api()?;
    let login = json!({"device": "lobby", "method": "card", "secret": "CARDBENCH"});
    let mut token = String::new();
    // Untimed first: the daemon has just started, and a user's first
    // calls open read connections and fill page caches.
    timed(WARM_UP, || {
        let r = api.call("POST", "/api/v1/sessions", None, Some(&login))?;
        let token = r.json["token"].as_str().context("token")?;
        let r = api.call("GET", "/api/v1/jobs", Some(token), None)?;
        ensure!(r.status == 200, "list: {}", r.json);
        Ok(())
    })?;
    let logins = timed(SAMPLES, || {
        let r = api.call("POST", "/api/v1/sessions", None, Some(&login))?;
        ensure!(r.status == 201, "login: {}", r.json);
        token = r.json["token"].as_str().context("token")?.to_owned();
        Ok(())
    })?;
    let lists = timed(SAMPLES, || {
        let r = api.call("GET", "/api/v1/jobs", Some(&token), None)?;
        ensure!(r.status == 200, "list: {}", r.json);
        let n = r.json["jobs"].as_array().map_or(0, Vec::len);
        ensure!(n == OWN_JOBS, "bench sees {n} jobs");
        Ok(())
    })?;
    let intake_started = Instant::now();
    let threads: Vec<_> = (0..INTAKE_CLIENTS)
        .map(|c| {
            let (document, port) = (document.clone(), appliance.port);
            std::thread::spawn(move || -> Result<()> {
                for _ in 0..INTAKE_PER_CLIENT {
                    let r = send_print_job(port, "secure", &format!("user{c}"), &document)?;
                    ensure!(r.status == 0, "{r:?}");
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let intake_jobs_per_sec =
        (INTAKE_CLIENTS * INTAKE_PER_CLIENT) as f64 / intake_started.elapsed().as_secs_f64();
    let peak_rss_mib = appliance.peak_rss()? as f64 / (1 << 20) as f64;
    appliance.stop()?;
    Ok(Round {
        list_p50_ms: percentile(&lists, 0.5),
        list_p99_ms: percentile(&lists, 0.99),
        login_p50_ms: percentile(&logins, 0.5),
        login_p99_ms: percentile(&logins, 0.99),
        intake_jobs_per_sec,
        peak_rss_mib,
        start_secs,
    })
}
