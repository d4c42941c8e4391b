//! Release benchmark: from a terminal's login to the first byte of the job
//! at the printer, for a 1 MB held job, with 1 and 50 terminals at once.
//!
//! Each terminal stands at its own printer (a raw-socket listener that
//! notes when the first byte of each connection arrives). Per round, every
//! terminal's user first submits a 1 MB job over IPP (not timed); then all
//! terminals at once log in (card or PIN), release all, and wait for their
//! printer's first byte. Card logins cost a keyed-hash lookup; PIN logins
//! an argon2id check (19 MiB, tens of milliseconds, one per core at a
//! time), which is what dominates under load. Prints a Markdown table of
//! p50/p99/max in milliseconds.
//!
//! Run with `tests/bench` (release build). `BENCH_DIR` as for the intake
//! benchmark; `BENCH_RELEASE_ROUNDS` rounds per terminal (default 40 for one
//! terminal, 4 for fifty); `BENCH_RELEASE_LOGINS=card` (or `pin`) measures
//! one login method only; `BENCH_BREAKDOWN=1` prints each release's login,
//! release and first-byte times.

use std::fs;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    ApiClient, Appliance, Printed, Rng, cores, cpu_secs_of, own_cpu_secs, send_print_job,
    timed_printer,
};
use serde_json::json;

const TERMINALS: usize = 50;
const JOB_BYTES: usize = 1 << 20;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One timed release: login at `device`, release all, first byte.
fn release_once(
    api: &ApiClient,
    device: &str,
    login: &serde_json::Value,
    first_byte: &mpsc::Receiver<Printed>,
) -> Result<f64> {
    let started = Instant::now();
    let session = api.call("POST", "/api/v1/sessions", None, Some(login))?;
    ensure!(session.status == 201, "login at {device}: {}", session.json);
    let token = session.json["token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let logged_in = started.elapsed();
    let released = api.call(
        "POST",
        "/api/v1/jobs/release",
        Some(&token),
        Some(&json!({"jobs": "all"})),
    )?;
    ensure!(
        released.json["jobs"][0]["outcome"] == "queued",
        "release at {device}: {}",
        released.json
    );
    let released_at = started.elapsed();
    let at = first_byte
        .recv_timeout(Duration::from_secs(60))
        .map(|printed| printed.first)
        .with_context(|| format!("no byte reached {device} within 60 s"))?;
    if std::env::var("BENCH_BREAKDOWN").is_ok() {
        eprintln!(
            "BREAKDOWN login {:.1} release {:.1} first-byte {:.1}",
            logged_in.as_secs_f64() * 1000.0,
            (released_at - logged_in).as_secs_f64() * 1000.0,
            at.duration_since(started).as_secs_f64() * 1000.0 - released_at.as_secs_f64() * 1000.0
        );
    }
    let _ = api.call("DELETE", "/api/v1/sessions/current", Some(&token), None);
    Ok(at.duration_since(started).as_secs_f64() * 1000.0)
}

/// CPU time of the appliance and of this process (the load generator:
/// terminals and printers) at one moment of a round.
struct Cpu {
    pid: Option<u32>,
    appliance: f64,
    bench: f64,
    at: Instant,
}

/// CPU seconds spent, and wall seconds passed, over one round.
struct Busy {
    appliance: f64,
    bench: f64,
    wall: f64,
}

impl Cpu {
    fn now(pid: Option<u32>) -> Cpu {
        Cpu {
            pid,
            appliance: pid.and_then(cpu_secs_of).unwrap_or(f64::NAN),
            bench: own_cpu_secs(),
            at: Instant::now(),
        }
    }

    fn since(&self) -> Busy {
        let now = Cpu::now(self.pid);
        Busy {
            appliance: now.appliance - self.appliance,
            bench: now.bench - self.bench,
            wall: now.at.duration_since(self.at).as_secs_f64(),
        }
    }
}

fn main() -> Result<()> {
    let root = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/appliance-bench".into()),
    )
    .join("release");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    fs::create_dir_all(&root)?;

    let mut printers = Vec::new();
    let mut config = String::from(
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [users]\npin_only_login = false\n",
    );
    for i in 0..TERMINALS {
        let (port, rx) = timed_printer()?;
        config.push_str(&format!(
            "[[printer]]\nid = \"mfp{i}\"\nuri = \"socket://127.0.0.1:{port}\"\n"
        ));
        printers.push(rx);
    }
    let appliance = Appliance::start(&root.join("appliance"), &config)?;
    let mut csv = String::from("id,display_name,email,groups,pin,cards,password\n");
    for i in 0..TERMINALS {
        csv.push_str(&format!("user{i},User {i},,,{:04},CARD{i:04},\n", 1000 + i));
    }
    let csv_path = root.join("users.csv");
    fs::write(&csv_path, csv)?;
    let imported = appliance.cli(&["users", "import", csv_path.to_str().context("path")?], "")?;
    ensure!(
        imported.status.success(),
        "users import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );

    let document = Arc::new(Rng::new(5).pdf(JOB_BYTES));
    let printers: Vec<Arc<std::sync::Mutex<mpsc::Receiver<Printed>>>> = printers
        .into_iter()
        .map(|rx| Arc::new(std::sync::Mutex::new(rx)))
        .collect();
    let rounds_env: Option<usize> = std::env::var("BENCH_RELEASE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok());

    let methods: Vec<&'static str> = match std::env::var("BENCH_RELEASE_LOGINS").as_deref() {
        Ok("card") => vec!["card"],
        Ok("pin") => vec!["pin"],
        _ => vec!["card", "pin"],
    };
    let mut table = Vec::new();
    for method in methods {
        for terminals in [1, TERMINALS] {
            let rounds = rounds_env.unwrap_or(if terminals == 1 { 40 } else { 4 });
            eprintln!(
                "release benchmark: {terminals} terminal(s), {method} login, {rounds} rounds..."
            );
            let barrier = Arc::new(Barrier::new(terminals));
            let workers: Vec<_> = (0..terminals)
                .map(|t| {
                    let (barrier, document) = (barrier.clone(), document.clone());
                    let printer = printers[t].clone();
                    let (ipp_port, api_port) = (appliance.port, appliance.api_port);
                    let pid = appliance.pid();
                    std::thread::spawn(move || -> Result<(Vec<f64>, Vec<Busy>)> {
                        let api = ApiClient::new(api_port)?;
                        let user = format!("user{t}");
                        let device = format!("mfp{t}");
                        let login = match method {
                            "card" => json!({"device": device, "method": "card", "secret": format!("CARD{t:04}")}),
                            _ => json!({"device": device, "method": "pin", "user": user, "secret": format!("{:04}", 1000 + t)}),
                        };
                        let first_byte = printer.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        let mut samples = Vec::with_capacity(rounds);
                        let mut busy = Vec::with_capacity(rounds);
                        for _ in 0..rounds {
                            let r = send_print_job(ipp_port, "secure", &user, &document)?;
                            ensure!(r.status == 0, "submit: {r:?}");
                            barrier.wait();
                            let cpu = Cpu::now(pid);
                            samples.push(release_once(&api, &device, &login, &first_byte)?);
                            barrier.wait();
                            // One terminal speaks for the round: the CPU
                            // spent from the start of the logins until every
                            // first byte arrived.
                            if t == 0 {
                                busy.push(cpu.since());
                            }
                        }
                        Ok((samples, busy))
                    })
                })
                .collect();
            let (mut samples, mut busy) = (Vec::new(), Vec::new());
            for w in workers {
                match w.join() {
                    Ok(result) => {
                        let (s, b) = result?;
                        samples.extend(s);
                        busy.extend(b);
                    }
                    Err(_) => bail!("a terminal thread panicked"),
                }
            }
            let rounds_seen = busy.len().max(1) as f64;
            let per_release = |f: fn(&Busy) -> f64| {
                busy.iter().map(f).sum::<f64>() / rounds_seen / terminals as f64 * 1000.0
            };
            let load_share = busy.iter().map(|b| b.bench).sum::<f64>()
                / busy.iter().map(|b| b.wall * cores() as f64).sum::<f64>();
            samples.sort_by(f64::total_cmp);
            eprintln!(
                "  peak RSS so far: {:.1} MiB",
                appliance.peak_rss()? as f64 / (1 << 20) as f64
            );
            table.push((
                terminals,
                method,
                samples.len(),
                percentile(&samples, 50.0),
                percentile(&samples, 99.0),
                samples.last().copied().unwrap_or(f64::NAN),
                (
                    per_release(|b| b.appliance),
                    per_release(|b| b.bench),
                    100.0 * load_share,
                ),
            ));
        }
    }
    let rss = appliance.peak_rss()? as f64 / (1 << 20) as f64;
    println!("\n### Release: login to first byte at the printer, 1 MB job (ms)\n");
    println!(
        "| terminals at once | login | samples | p50 | p99 | max | appliance CPU per release, ms \
         | load generator CPU per release, ms | load generator's share of the {} cores |",
        cores()
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (terminals, method, n, p50, p99, max, (appliance_ms, bench_ms, share)) in table {
        println!(
            "| {terminals} | {method} | {n} | {p50:.1} | {p99:.1} | {max:.1} | {appliance_ms:.2} \
             | {bench_ms:.2} | {share:.0}% |"
        );
    }
    println!("\n- appliance peak RSS over the release run: {rss:.1} MiB");
    drop(appliance);
    let _ = fs::remove_dir_all(&root);
    Ok(())
}
