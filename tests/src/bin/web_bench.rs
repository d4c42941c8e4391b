//! Web app benchmark: a panel of 800×480 in headless Chromium against a
//! release-build appliance whose printer is a raw-socket listener.
//!
//! Per round, alice's one-page job is submitted over IPP (not timed); at
//! the panel the "card reader" types her number and Enter, she ticks the
//! job, taps Print and waits for "Printed", then taps Done. The app's own
//! `performance.measure` entries give: card Enter → job list drawn;
//! Print tap → progress screen drawn; Print tap → "Printing" (or
//! "Printed") shown. The same steps through the release API alone, from
//! this process, in the same run, are the floor the browser adds to.
//! Page weight: bytes transferred for the first load with an empty cache,
//! and for a second load (revalidated by ETag).
//!
//! Run with `tests/bench web`. `BENCH_WEB_ROUNDS` rounds (default 30).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{ApiClient, Appliance, Browser, ENTER, fixture, send_print_job, timed_printer};
use serde_json::json;

const CARD: &str = "C0FFEE01";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The page's `performance.measure` durations named `name`, in ms.
fn measured(browser: &Browser, name: &str) -> Result<Vec<f64>> {
    let values = browser.script(&format!(
        "return performance.getEntriesByName('{name}').map(e => e.duration)"
    ))?;
    Ok(values
        .as_array()
        .context("not an array")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect())
}

/// Bytes transferred and requests made since the page's navigation.
fn transferred(browser: &Browser) -> Result<(u64, usize)> {
    let sizes = browser.script(
        "return [...performance.getEntriesByType('navigation'), \
                 ...performance.getEntriesByType('resource')].map(e => e.transferSize)",
    )?;
    let sizes: Vec<u64> = sizes
        .as_array()
        .context("not an array")?
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    Ok((sizes.iter().sum(), sizes.len()))
}

fn main() -> Result<()> {
    let rounds: usize = std::env::var("BENCH_WEB_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d)?,
        Err(_) => tempfile::tempdir()?,
    };
    let (printer_port, printed) = timed_printer()?;
    let config = format!(
        "site = \"branch-1\"\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [[printer]]\nid = \"lobby\"\nname = \"Lobby MFP\"\nuri = \"socket://127.0.0.1:{printer_port}\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\nsession_idle_secs = 600\n"
    );
    let mut appliance = Appliance::prepare(dir.path(), &config)?;
    let out = appliance.cli(
        &["users", "add", "alice", "--name", "Alice", "--card", CARD],
        "",
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    appliance.restart()?;
    let document = std::fs::read(fixture("document-a4.pdf"))?;
    let panel = format!("http://127.0.0.1:{}/panel/lobby", appliance.api_port);

    let browser = Browser::start(800, 480)?;
    browser.goto(&panel)?;
    browser.wait_visible("#card")?;
    let (first_bytes, first_requests) = transferred(&browser)?;
    browser.goto(&panel)?;
    browser.wait_visible("#card")?;
    let (again_bytes, again_requests) = transferred(&browser)?;

    eprintln!("{rounds} rounds in the browser...");
    for round in 0..rounds {
        send_print_job(appliance.port, "secure", "alice", &document)?;
        browser.type_keys(&format!("{CARD}{ENTER}"))?;
        browser.wait_visible("#job-list input")?;
        browser.click("#job-list input")?;
        browser.click("#release")?;
        browser
            .wait_text("#progress-list", "Printed", Duration::from_secs(30))
            .with_context(|| format!("round {round}"))?;
        printed.recv_timeout(Duration::from_secs(30))?;
        browser.click("#done")?;
        browser.wait_visible("#card")?;
    }
    let login = sorted(measured(&browser, "login_to_list")?);
    let progress = sorted(measured(&browser, "release_to_progress")?);
    let printing = sorted(measured(&browser, "release_to_printing")?);
    ensure!(
        login.len() == rounds && progress.len() == rounds && printing.len() == rounds,
        "measures missing: {} {} {}",
        login.len(),
        progress.len(),
        printing.len()
    );

    eprintln!("{rounds} rounds through the API alone...");
    let api = ApiClient::new(appliance.api_port)?;
    let (mut api_login, mut api_ack, mut api_printing) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        send_print_job(appliance.port, "secure", "alice", &document)?;
        let started = Instant::now();
        let session = api.call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(&json!({"device": "lobby", "method": "card", "secret": CARD})),
        )?;
        ensure!(session.status == 201, "{}", session.json);
        let token = session.json["token"]
            .as_str()
            .context("no token")?
            .to_owned();
        let jobs = api.call("GET", "/api/v1/jobs", Some(&token), None)?;
        let id = jobs.json["jobs"][0]["id"].clone();
        api_login.push(started.elapsed().as_secs_f64() * 1000.0);
        let tapped = Instant::now();
        let release = api.call(
            "POST",
            "/api/v1/jobs/release",
            Some(&token),
            Some(&json!({"jobs": [id]})),
        )?;
        ensure!(release.status == 202, "{}", release.json);
        api_ack.push(tapped.elapsed().as_secs_f64() * 1000.0);
        let path = format!(
            "/api/v1/releases/{}",
            release.json["release"].as_str().context("no release id")?
        );
        // Asked as fast as the API answers: the floor, not a schedule.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = api.call("GET", &path, Some(&token), None)?;
            let state = status.json["jobs"][0]["state"].as_str().unwrap_or("");
            if state == "printing" || state == "printed" {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "not printing after 30 s: {}",
                status.json
            );
        }
        api_printing.push(tapped.elapsed().as_secs_f64() * 1000.0);
        printed.recv_timeout(Duration::from_secs(30))?;
        api.call("DELETE", "/api/v1/sessions/current", Some(&token), None)?;
    }
    let (api_login, api_ack, api_printing) =
        (sorted(api_login), sorted(api_ack), sorted(api_printing));

    println!(
        "### Web release app (`tests/bench web`, release build, {rounds} rounds, panel 800×480)\n"
    );
    println!(
        "| step | browser p50 ms | browser p95 ms | API alone p50 ms | API alone p95 ms | browser ÷ API at p95 |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |step: &str, b: &[f64], a: &[f64]| {
        println!(
            "| {step} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            percentile(b, 50.0),
            percentile(b, 95.0),
            percentile(a, 50.0),
            percentile(a, 95.0),
            percentile(b, 95.0) / percentile(a, 95.0)
        );
    };
    row(
        "card Enter → job list drawn (login + list)",
        &login,
        &api_login,
    );
    row(
        "Print tap → progress screen drawn (release accepted)",
        &progress,
        &api_ack,
    );
    row("Print tap → \"Printing\" shown", &printing, &api_printing);
    println!();
    println!(
        "Page weight: first load {:.1} KB in {first_requests} requests (empty cache); \
         second load {:.1} KB in {again_requests} requests (revalidated).",
        first_bytes as f64 / 1024.0,
        again_bytes as f64 / 1024.0
    );
    Ok(())
}
