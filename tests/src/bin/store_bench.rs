//! Store-size benchmark: does the appliance cost the same with a thousand,
//! a hundred thousand or a million stored jobs? For each size, a data
//! directory is filled with held jobs of 500 users through the store's own
//! API (`appliance/examples/fill_store.rs`, group commits of real
//! documents), then the release build serves it and one user with exactly
//! ten jobs of their own (submitted over IPP) is measured: the list of
//! their jobs (`GET /api/v1/jobs`), a card login, the intake rate with 16
//! clients, and the daemon's peak RSS.
//!
//! Run it with `tests/bench store`. `BENCH_STORE_SIZES=1000,100000` picks
//! the sizes (default 1000,100000,1000000); `BENCH_DIR` the directory.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{Appliance, fixture, run_with_timeout, send_print_job, workspace};
use serde_json::json;

const USERS: usize = 500;
const OWN_JOBS: usize = 10;
const SAMPLES: usize = 300;

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
    let fill = workspace().join("target/release/examples/fill_store");
    ensure!(
        fill.exists(),
        "{} is missing: cargo build --release -p appliance --example fill_store",
        fill.display()
    );
    let document = fs::read(fixture("small-4k.pdf"))?;
    let mut rows = Vec::new();
    for &size in &sizes {
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        let dir = root.join(format!("{size}"));
        let mut appliance = Appliance::prepare(
            &dir,
            "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
             [[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n",
        )?;
        eprintln!("filling a store with {size} held jobs...");
        let filled = run_with_timeout(
            Command::new(&fill)
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
        let started = Instant::now();
        appliance.restart()?;
        let start_secs = started.elapsed().as_secs_f64();
        for _ in 0..OWN_JOBS {
            let r = send_print_job(appliance.port, "secure", "bench", &document)?;
            ensure!(r.status == 0, "{r:?}");
        }
        let api = appliance.api()?;
        let login = json!({"device": "lobby", "method": "card", "secret": "CARDBENCH"});
        let mut token = String::new();
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
        let document = Arc::new(document.clone());
        let clients = 16;
        let per_client = 40;
        let intake_started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (document, port) = (document.clone(), appliance.port);
                std::thread::spawn(move || -> Result<()> {
                    for _ in 0..per_client {
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
        let rate = (clients * per_client) as f64 / intake_started.elapsed().as_secs_f64();
        let rss = appliance.peak_rss()? as f64 / (1 << 20) as f64;
        let disk = dir_size(&appliance.data_dir) as f64 / 1e6;
        rows.push(format!(
            "| {size} | {:.2} / {:.2} | {:.2} / {:.2} | {rate:.0} | {rss:.1} | {start_secs:.1} | {disk:.0} | {fill_line} |",
            percentile(&lists, 0.5),
            percentile(&lists, 0.99),
            percentile(&logins, 0.5),
            percentile(&logins, 0.99),
        ));
        drop(appliance);
    }
    let _ = fs::remove_dir_all(&root);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| stored jobs | a user's list (10 jobs), ms p50 / p99 | card login, ms p50 / p99 \
         | intake, 16 clients, jobs/s | peak RSS, MiB | start, s | data dir, MB | fill |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for row in rows {
        writeln!(out, "{row}")?;
    }
    Ok(())
}
