//! Intake benchmark: the appliance (release build) against a private
//! `cupsd` with a held queue (`peers/cupsd-held.sh`, `SyncOnClose Yes` so
//! both fsync what they acknowledge), measured side by side in one run on
//! the same disk, with two references: the **limit**, a do-nothing IPP
//! responder ([`e2e::LimitResponder`]: reads request and document, answers
//! `successful-ok`), and the appliance itself with its data directory on
//! tmpfs (no fsync costs anything there).
//!
//! Measures: jobs/s accepted for a 4 KiB PDF with 1 and 16 concurrent
//! clients (a fresh connection per job for all), MB/s for one 100 MB and
//! one 1 GiB document, the disk's fsynced sequential write rate, the
//! appliance's fsync calls per acknowledged job (`strace -c`, outside the
//! timed runs) and its peak RSS. The disk of a shared VM is noisy, so every
//! measure is taken `BENCH_ROUNDS` times (default 3), alternating the
//! peers, and reported as the median with the range. Prints a Markdown
//! table with appliance / cupsd, appliance / limit and durable / tmpfs.
//!
//! Run it with `tests/bench` (release build). `bench profile` runs only the
//! appliance's 16-client job rate, for a profiler. `BENCH_DIR` picks the
//! directory (default `/var/tmp/appliance-bench`; it must be on the disk
//! you care about and reachable by cupsd's unprivileged user).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    Appliance, LimitResponder, Rng, fixture, free_port, run_with_timeout, send_print_job_to,
    upload, workspace, write_generated,
};

struct Peer {
    name: &'static str,
    port: u16,
    path: &'static str,
}

struct Cupsd(PathBuf);

impl Cupsd {
    fn start(dir: &Path) -> Result<(Cupsd, u16)> {
        let port = free_port();
        let out = run_with_timeout(
            Command::new(workspace().join("tests/peers/cupsd-held.sh"))
                .arg("start")
                .arg(port.to_string())
                .arg(dir),
            Duration::from_secs(300),
        )?;
        ensure!(
            out.status.success(),
            "cupsd did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((Cupsd(dir.to_owned()), port))
    }
}

impl Drop for Cupsd {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("tests/peers/cupsd-held.sh"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

fn main() -> Result<()> {
    let root = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/appliance-bench".into()),
    );
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    fs::create_dir_all(&root)?;
    set_mode(&root, 0o755)?;
    let small = Arc::new(fs::read(fixture("small-4k.pdf"))?);

    if std::env::args().nth(1).as_deref() == Some("profile") {
        let appliance = Appliance::start(
            &root.join("appliance"),
            "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n",
        )?;
        println!("appliance pid {}", appliance.pid().unwrap_or(0));
        let peer = Peer {
            name: "appliance",
            port: appliance.port,
            path: "/ipp/print/secure",
        };
        let clients = std::env::var("BENCH_CLIENTS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(16);
        let rate = job_rate(&peer, clients, 1600 / clients, &small)?;
        println!(
            "{clients} clients: {rate:.0} jobs/s; {}",
            batch_sizes(&appliance)?
        );
        for line in appliance.get("/metrics")?.lines() {
            if line.contains("_seconds_sum") || line.contains("_seconds_count") {
                println!("{line}");
            }
        }
        let size = 1u64 << 30;
        let (response, elapsed) =
            upload(appliance.port, "/ipp/print/secure", "bench", size, |out| {
                write_generated(out, size, 11)
            })?;
        ensure!(response.status < 0x0100, "{response:?}");
        println!(
            "1 GiB: {:.0} MB/s",
            size as f64 / elapsed.as_secs_f64() / 1e6
        );
        return Ok(());
    }

    eprintln!("measuring the disk's fsynced sequential write rate (1 GiB)...");
    let disk = disk_write_rate(&root.join("disk-test"), 1 << 30)?;

    eprintln!("starting cupsd, the appliance (on disk and on tmpfs) and the limit...");
    let (_cupsd, cupsd_port) = Cupsd::start(&root.join("cupsd"))?;
    let queue = "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n";
    let appliance = Appliance::start(&root.join("appliance"), queue)?;
    let tmpfs_root = PathBuf::from("/dev/shm/appliance-bench");
    if tmpfs_root.exists() {
        fs::remove_dir_all(&tmpfs_root)?;
    }
    ensure!(
        is_tmpfs(Path::new("/dev/shm")),
        "/dev/shm is not a tmpfs here: the no-fsync reference needs one"
    );
    let on_tmpfs = Appliance::start(&tmpfs_root, queue)?;
    let limit = LimitResponder::start()?;
    let peers = [
        Peer {
            name: "appliance",
            port: appliance.port,
            path: "/ipp/print/secure",
        },
        Peer {
            name: "appliance on tmpfs",
            port: on_tmpfs.port,
            path: "/ipp/print/secure",
        },
        Peer {
            name: "cupsd",
            port: cupsd_port,
            path: "/printers/held",
        },
        Peer {
            name: "limit",
            port: limit.port,
            path: "/ipp/print",
        },
    ];

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut rows = Vec::new();
    for (clients, per_client) in [(1usize, 300usize), (16, 60)] {
        let mut samples = vec![Vec::new(); peers.len()];
        for round in 0..rounds {
            for (peer, out) in peers.iter().zip(samples.iter_mut()) {
                eprintln!(
                    "round {}/{rounds}, {}: {clients} client(s) x {per_client} jobs of 4 KiB...",
                    round + 1,
                    peer.name
                );
                out.push(job_rate(peer, clients, per_client, &small)?);
            }
        }
        rows.push(Row {
            what: format!(
                "4 KiB PDF, {clients} client{}, jobs/s",
                if clients > 1 { "s" } else { "" }
            ),
            samples,
            higher_is_better: true,
        });
    }
    for (label, size) in [("100 MB", 100_000_000u64), ("1 GiB", 1u64 << 30)] {
        let mut rates = vec![Vec::new(); peers.len()];
        for round in 0..rounds {
            for (peer, out) in peers.iter().zip(rates.iter_mut()) {
                eprintln!(
                    "round {}/{rounds}, {}: one {label} document...",
                    round + 1,
                    peer.name
                );
                let (response, elapsed) = upload(peer.port, peer.path, "bench", size, |out| {
                    write_generated(out, size, 11)
                })?;
                ensure!(
                    response.status < 0x0100,
                    "{} refused the {label} document: {response:?}",
                    peer.name
                );
                out.push(size as f64 / elapsed.as_secs_f64() / 1e6);
            }
        }
        rows.push(Row {
            what: format!("one {label} document, MB/s"),
            samples: rates,
            higher_is_better: true,
        });
    }
    eprintln!("counting the appliance's fsyncs for 200 jobs from one client (strace)...");
    let fsyncs = fsyncs_per_job(&appliance, &peers[0], 200, &small)?;
    eprintln!("measuring the disk again...");
    let disk_after = disk_write_rate(&root.join("disk-test"), 1 << 30)?;
    let rss = appliance.peak_rss()? as f64 / (1 << 20) as f64;
    let rss_tmpfs = on_tmpfs.peak_rss()? as f64 / (1 << 20) as f64;
    let group = batch_sizes(&appliance)?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| measure (median of {rounds}, range) | appliance | appliance on tmpfs | cupsd | limit \
         | appliance / cupsd | appliance / limit | durable / tmpfs |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in &rows {
        let m: Vec<f64> = row.samples.iter().map(|s| median(s)).collect();
        let ratio = |a: f64, b: f64| if row.higher_is_better { a / b } else { b / a };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2}x | {:.0}% | {:.0}% |",
            row.what,
            spread(&row.samples[0]),
            spread(&row.samples[1]),
            spread(&row.samples[2]),
            spread(&row.samples[3]),
            ratio(m[0], m[2]),
            100.0 * ratio(m[0], m[3]),
            100.0 * ratio(m[0], m[1]),
        )?;
    }
    writeln!(out)?;
    let disk_best = disk.max(disk_after);
    writeln!(
        out,
        "- disk, fsynced sequential write (1 GiB in 1 MiB writes): {disk:.0} MB/s before, \
         {disk_after:.0} MB/s after"
    )?;
    for row in rows.iter().filter(|r| r.what.starts_with("one ")) {
        writeln!(
            out,
            "- appliance, {} (median): {:.0}% of the disk's better fsynced write rate",
            row.what,
            100.0 * median(&row.samples[0]) / disk_best
        )?;
    }
    writeln!(
        out,
        "- appliance fsync/fdatasync calls per acknowledged job, one client, 4 KiB PDF: {fsyncs:.2}"
    )?;
    writeln!(
        out,
        "- appliance peak RSS over the whole run: {rss:.1} MiB (on tmpfs: {rss_tmpfs:.1} MiB)"
    )?;
    writeln!(out, "- appliance group commit: {group}")?;
    drop(out);
    drop(appliance);
    drop(on_tmpfs);
    drop(_cupsd);
    // Remove the gigabytes written now, not at the next start: mass
    // deletion slows the file creations measured right after it.
    let _ = fs::remove_dir_all(&root);
    let _ = fs::remove_dir_all(&tmpfs_root);
    Ok(())
}

/// Whether `path` is on a tmpfs (from `/proc/mounts`).
fn is_tmpfs(path: &Path) -> bool {
    fs::read_to_string("/proc/mounts").is_ok_and(|mounts| {
        mounts.lines().any(|l| {
            let mut fields = l.split_whitespace();
            let (_, at, kind) = (fields.next(), fields.next(), fields.next());
            at == path.to_str() && kind == Some("tmpfs")
        })
    })
}

/// fsync and fdatasync calls the appliance makes per job while one client
/// sends `jobs` jobs, counted by `strace -c` attached to every thread.
fn fsyncs_per_job(
    appliance: &Appliance,
    peer: &Peer,
    jobs: usize,
    document: &Arc<Vec<u8>>,
) -> Result<f64> {
    let pid = appliance.pid().context("the appliance is not running")?;
    let summary = std::env::temp_dir().join(format!("bench-strace-{pid}.txt"));
    let mut strace = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&summary)
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("strace is needed to count fsyncs (apt-get install strace)")?;
    // strace says "Process N attached" once it traces the daemon.
    let mut stderr = std::io::BufReader::new(strace.stderr.take().context("no strace stderr")?);
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stderr, &mut line)? > 0 && !line.contains("attached") {
        line.clear();
    }
    // Let strace attach to the daemon's other threads too.
    std::thread::sleep(Duration::from_millis(500));
    job_rate(peer, 1, jobs, document)?;
    // SIGINT detaches strace, which then writes its summary.
    // SAFETY: kill(2) on a child process id we own.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    strace.wait()?;
    let text = fs::read_to_string(&summary)?;
    let _ = fs::remove_file(&summary);
    let calls: u64 = text
        .lines()
        .filter(|l| l.ends_with(" fsync") || l.ends_with(" fdatasync"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    Ok(calls as f64 / jobs as f64)
}

struct Row {
    what: String,
    /// Per peer, in the order of `peers`.
    samples: Vec<Vec<f64>>,
    higher_is_better: bool,
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `median (min-max)`.
fn spread(samples: &[f64]) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let digits = if median(samples) < 10.0 { 2 } else { 0 };
    format!(
        "{:.*} ({:.*}-{:.*})",
        digits,
        median(samples),
        digits,
        min,
        digits,
        max
    )
}

/// Jobs per second with `clients` concurrent clients each sending `per_client` jobs.
fn job_rate(
    peer: &Peer,
    clients: usize,
    per_client: usize,
    document: &Arc<Vec<u8>>,
) -> Result<f64> {
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let document = document.clone();
            let (port, path) = (peer.port, peer.path);
            std::thread::spawn(move || -> Result<()> {
                for _ in 0..per_client {
                    let r = send_print_job_to(port, path, &format!("user{c}"), &document)?;
                    ensure!(r.status < 0x0100, "job refused: {r:?}");
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    Ok((clients * per_client) as f64 / started.elapsed().as_secs_f64())
}

/// MB/s writing `size` bytes in 1 MiB writes, then fsync (included).
fn disk_write_rate(path: &Path, size: u64) -> Result<f64> {
    let mut rng = Rng::new(3);
    let chunk = rng.pdf(1 << 20);
    let started = Instant::now();
    let mut file = fs::File::create(path)?;
    let mut written = 0u64;
    while written < size {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()?;
    let rate = written as f64 / started.elapsed().as_secs_f64() / 1e6;
    fs::remove_file(path)?;
    Ok(rate)
}

/// Average writes per commit, from the appliance's own histogram.
fn batch_sizes(appliance: &Appliance) -> Result<String> {
    let text = appliance.get("/metrics")?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
    };
    match (
        value("appliance_store_commit_batch_size_sum"),
        value("appliance_store_commit_batch_size_count"),
    ) {
        (Some(sum), Some(count)) if count > 0.0 => Ok(format!(
            "{sum:.0} writes in {count:.0} commits, {:.2} per commit on average",
            sum / count
        )),
        _ => bail!("no commit histogram in /metrics"),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}
