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
//! one 1 GiB document, the disk's fsynced sequential write rate (direct
//! I/O), the appliance's fsync calls per acknowledged job (`strace -c`,
//! outside the timed runs), its peak RSS, and what a hand-off between two
//! threads costs on this machine (across cores and on one core). The disk
//! of a shared VM is noisy, so every measure is taken `BENCH_ROUNDS` times
//! (default 3), alternating the peers, and reported as the median with the
//! range. Prints a Markdown table with appliance / cupsd, appliance /
//! limit and durable / tmpfs.
//!
//! Run it with `tests/bench` (release build). `bench profile` runs only the
//! appliance's 16-client job rate (`BENCH_CLIENTS`, `BENCH_JOBS` in all,
//! default 1600) and `BENCH_BIG` 1 GiB documents (default 1), for a
//! profiler. `BENCH_DIR` picks the
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
    Appliance, LimitResponder, Rng, cores, cpu_secs_of, fixture, free_port, median, own_cpu_secs,
    run_with_timeout, send_print_job_to, spread, upload, workspace, write_generated,
};

struct Peer {
    name: &'static str,
    port: u16,
    path: &'static str,
    /// The server's process, when it is not this one, for its CPU time.
    pid: Option<u32>,
}

/// One timed run of jobs: how fast, and whose CPU it took.
struct Rate {
    jobs_per_s: f64,
    /// The server's CPU seconds per job (`None` for the in-process limit).
    server_cpu_per_job: Option<f64>,
    /// This process's (the load generator's) share of all cores.
    load_share: f64,
}

struct Cupsd(PathBuf);

impl Cupsd {
    /// cupsd's process id, from the recipe's pid file.
    fn pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.0.join("runner.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "cupsd").then_some(pid)
    }
}

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
            pid: appliance.pid(),
        };
        let clients = std::env::var("BENCH_CLIENTS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(16);
        let jobs = std::env::var("BENCH_JOBS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1600);
        let rate = job_rate(&peer, clients, jobs / clients, &small)?;
        println!(
            "{clients} clients: {:.0} jobs/s, {:.0} µs of appliance CPU per job; {}",
            rate.jobs_per_s,
            rate.server_cpu_per_job.unwrap_or(f64::NAN) * 1e6,
            batch_sizes(&appliance)?
        );
        for line in appliance.get("/metrics")?.lines() {
            if line.contains("_seconds_sum") || line.contains("_seconds_count") {
                println!("{line}");
            }
        }
        let size = 1u64 << 30;
        let uploads = std::env::var("BENCH_BIG")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        for _ in 0..uploads {
            let (response, elapsed) =
                upload(appliance.port, "/ipp/print/secure", "bench", size, |out| {
                    write_generated(out, size, 11)
                })?;
            ensure!(response.status < 0x0100, "{response:?}");
            println!(
                "1 GiB: {:.0} MB/s",
                size as f64 / elapsed.as_secs_f64() / 1e6
            );
        }
        return Ok(());
    }

    eprintln!("measuring the disk's fsynced sequential write rate (1 GiB)...");
    let disk = disk_write_rate(&root.join("disk-test"), 1 << 30)?;
    eprintln!("measuring the disk's flush round trip (4 KiB append + fdatasync)...");
    let flush = flush_round_trip(&root.join("flush-test"), 1000)?;
    eprintln!("measuring a hand-off between two threads, across cores and on one core...");
    let across = hand_off_round_trip(20_000, false)?;
    let one_core = hand_off_round_trip(20_000, true)?;

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
            pid: appliance.pid(),
        },
        Peer {
            name: "appliance on tmpfs",
            port: on_tmpfs.port,
            path: "/ipp/print/secure",
            pid: on_tmpfs.pid(),
        },
        Peer {
            name: "cupsd",
            port: cupsd_port,
            path: "/printers/held",
            pid: _cupsd.pid(),
        },
        Peer {
            name: "limit",
            port: limit.port,
            path: "/ipp/print",
            pid: None,
        },
    ];

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for (clients, per_client) in [(1usize, 300usize), (16, 60)] {
        let mut samples = vec![Vec::new(); peers.len()];
        let mut cpu = vec![Vec::new(); peers.len()];
        let mut load = vec![Vec::new(); peers.len()];
        for round in 0..rounds {
            for (i, peer) in peers.iter().enumerate() {
                eprintln!(
                    "round {}/{rounds}, {}: {clients} client(s) x {per_client} jobs of 4 KiB...",
                    round + 1,
                    peer.name
                );
                let rate = job_rate(peer, clients, per_client, &small)?;
                samples[i].push(rate.jobs_per_s);
                cpu[i].extend(rate.server_cpu_per_job.map(|s| s * 1e6));
                load[i].push(100.0 * rate.load_share);
            }
        }
        cpu_rows.push((clients, cpu, load));
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
        "- disk, fsynced sequential write (1 GiB in 1 MiB writes, O_DIRECT): {disk:.0} MB/s \
         before, {disk_after:.0} MB/s after"
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
    writeln!(
        out,
        "- disk flush round trip (4 KiB append + fdatasync, 1000 times): median {:.2} ms, \
         so one client that waits for a flush per job gets at most {:.0} jobs/s; with the \
         appliance's own time per job on tmpfs added: {:.0} jobs/s (the appliance, one client: \
         {:.0}% of that)",
        flush * 1e3,
        1.0 / flush,
        one_client_bound(&rows, flush),
        100.0 * median(&rows[0].samples[0]) / one_client_bound(&rows, flush),
    )?;
    writeln!(
        out,
        "- hand-off round trip between two threads (a token passed back and forth, 20,000 \
         times): {:.1} µs, {:.1} µs of CPU, when they run on different cores; {:.1} µs, {:.1} µs \
         of CPU, both on one core. A job that goes to another thread and back (the store's \
         writer, a blocking thread) pays one such round trip each time.",
        across.wall * 1e6,
        across.cpu * 1e6,
        one_core.wall * 1e6,
        one_core.cpu * 1e6,
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| CPU per 4 KiB job, µs (median, range) | appliance | appliance on tmpfs | cupsd \
         | load generator's share of the {} cores (appliance runs) |",
        cores()
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for (clients, cpu, load) in &cpu_rows {
        writeln!(
            out,
            "| {clients} client{} | {} | {} | {} | {}% |",
            if *clients > 1 { "s" } else { "" },
            spread(&cpu[0]),
            spread(&cpu[1]),
            spread(&cpu[2]),
            spread(&load[0]),
        )?;
    }
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

/// The best a single client can do when each of its jobs waits for one
/// flush of the disk on top of the appliance's own work (its time per job
/// on tmpfs, where flushes cost nothing).
fn one_client_bound(rows: &[Row], flush_secs: f64) -> f64 {
    let tmpfs_secs_per_job = 1.0 / median(&rows[0].samples[1]);
    1.0 / (tmpfs_secs_per_job + flush_secs)
}

/// Median seconds of one 4 KiB append followed by `fdatasync`, the least
/// a durable acknowledgement costs on this disk.
fn flush_round_trip(path: &Path, times: usize) -> Result<f64> {
    let mut file = fs::File::create(path)?;
    let block = vec![0x5a_u8; 4096];
    let mut samples = Vec::with_capacity(times);
    for _ in 0..times {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64());
    }
    fs::remove_file(path)?;
    Ok(median(&samples))
}

/// Seconds per round trip of a hand-off between two threads, wall and CPU.
struct HandOff {
    wall: f64,
    cpu: f64,
}

/// Two threads pass a token back and forth `times` times over channels,
/// each waiting (asleep) for the other: what one request pays each time it
/// goes to another thread and back. `one_core` pins both to the first CPU
/// this process may use, so no wake-up crosses cores.
fn hand_off_round_trip(times: usize, one_core: bool) -> Result<HandOff> {
    use std::sync::mpsc;
    let pin = move || -> Result<()> {
        if !one_core {
            return Ok(());
        }
        // SAFETY: a zeroed cpu_set_t is an empty set; the calls only read
        // and write the set they are given, for the calling thread (pid 0).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            ensure!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0,
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            );
            let first = (0..libc::CPU_SETSIZE as usize)
                .find(|&cpu| libc::CPU_ISSET(cpu, &set))
                .context("no CPU to run on")?;
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first, &mut set);
            ensure!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0,
                "sched_setaffinity: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    };
    let (to_echo, echo_gets) = mpsc::channel::<u64>();
    let (echo_answers, answers) = mpsc::channel::<u64>();
    let echo = std::thread::spawn(move || -> Result<()> {
        pin()?;
        while let Ok(token) = echo_gets.recv() {
            if echo_answers.send(token).is_err() {
                break;
            }
        }
        Ok(())
    });
    let measured = std::thread::spawn(move || -> Result<HandOff> {
        pin()?;
        let (cpu_before, started) = (own_cpu_secs(), Instant::now());
        for token in 0..times as u64 {
            to_echo.send(token).context("the echo thread ended")?;
            ensure!(
                answers.recv()? == token,
                "the echo thread answered out of turn"
            );
        }
        let n = times as f64;
        Ok(HandOff {
            wall: started.elapsed().as_secs_f64() / n,
            cpu: (own_cpu_secs() - cpu_before) / n,
        })
    });
    let result = measured
        .join()
        .map_err(|_| anyhow::anyhow!("the hand-off thread panicked"))?;
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    result
}

/// Jobs per second with `clients` concurrent clients each sending
/// `per_client` jobs, and the CPU the server and this process spent.
fn job_rate(
    peer: &Peer,
    clients: usize,
    per_client: usize,
    document: &Arc<Vec<u8>>,
) -> Result<Rate> {
    let server_before = peer.pid.and_then(cpu_secs_of);
    let own_before = own_cpu_secs();
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
    let wall = started.elapsed().as_secs_f64();
    let jobs = (clients * per_client) as f64;
    let server_after = peer.pid.and_then(cpu_secs_of);
    Ok(Rate {
        jobs_per_s: jobs / wall,
        server_cpu_per_job: server_before
            .zip(server_after)
            .map(|(before, after)| (after - before) / jobs),
        load_share: (own_cpu_secs() - own_before) / (wall * cores() as f64),
    })
}

/// MB/s writing `size` bytes in 1 MiB writes, then fsync (included).
/// The disk's own sequential write rate: `size` bytes in 1 MiB writes with
/// `O_DIRECT`, then an fsync. Direct I/O, because a buffered copy measures
/// the page cache as much as the disk: on this VM, writing into memory the
/// guest never used before gave 916 and then 260 MB/s in one run.
fn disk_write_rate(path: &Path, size: u64) -> Result<f64> {
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 1 << 20;
    const ALIGN: usize = 4096;
    let mut rng = Rng::new(3);
    // O_DIRECT wants an aligned buffer: take an aligned window of a larger one.
    let mut backing = vec![0u8; BLOCK + ALIGN];
    let skip = backing.as_ptr().align_offset(ALIGN);
    let block = &mut backing[skip..skip + BLOCK];
    block.copy_from_slice(&rng.pdf(BLOCK));
    let started = Instant::now();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("cannot open {} for direct I/O", path.display()))?;
    let mut written = 0u64;
    while written < size {
        file.write_all(block)?;
        written += BLOCK as u64;
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
