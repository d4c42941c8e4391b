//! Crash safety: clients submit jobs while the daemon is killed with
//! SIGKILL at random moments. After every restart, every job that was
//! answered `successful-ok` is there with the SHA-256 of what was sent, and
//! no job is visible without its complete document. Documents are mixed:
//! small ones (kept in the database) and large ones (spool files), noise
//! (stored as sent) and text (compressed).
//!
//! `APPLIANCE_CRASH_ROUNDS` sets the rounds (default 20; `SOAK=1 tests/run`
//! uses 200); `APPLIANCE_CRASH_SEED` replays a run.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::{Appliance, Rng, appliance_bin, run_with_timeout, send_print_job, sha256};

const CLIENTS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn acknowledged_jobs_survive_sigkill_at_random_moments() {
    let rounds = env_u64("APPLIANCE_CRASH_ROUNDS").unwrap_or(20);
    let seed = env_u64("APPLIANCE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("crash test: {rounds} rounds, seed {seed} (APPLIANCE_CRASH_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = Appliance::start(
        tmp.path(),
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n",
    )
    .unwrap();

    let mut acknowledged: HashMap<i64, String> = HashMap::new();
    let mut partial_uploads_removed = 0u64;
    let mut orphans_removed = 0u64;
    let mut kinds: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let port = appliance.port;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let stop = stop.clone();
                let mut rng = Rng::new(rng.next_u64() ^ c);
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let len = if rng.range(0, 10) == 0 {
                            rng.range(256 * 1024, 2 * 1024 * 1024)
                        } else {
                            rng.range(1024, 64 * 1024)
                        };
                        let mut doc = rng.pdf(len as usize);
                        if rng.range(0, 3) == 0 {
                            // Text compresses: stored with zstd.
                            doc = b"%PDF-1.4\n".to_vec();
                            while doc.len() < len as usize {
                                doc.extend_from_slice(b"BT /F1 12 Tf (a line of text) Tj ET\n");
                            }
                        }
                        match send_print_job(port, "secure", &format!("user{c}"), &doc) {
                            Ok(r) if r.status == 0 => {
                                let id = r.integer("job-id").expect("successful-ok carries job-id");
                                acked.push((i64::from(id), sha256(&doc)));
                            }
                            Ok(r) => panic!("job refused while the daemon was up: {r:?}"),
                            // The daemon died mid-request: not acknowledged.
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        // Let the clients run for a random moment, then crash the daemon.
        std::thread::sleep(Duration::from_millis(rng.range(30, 400)));
        appliance.kill();
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            for (id, sha) in client.join().expect("client thread") {
                assert!(
                    acknowledged.insert(id, sha).is_none(),
                    "job-id {id} acknowledged twice"
                );
            }
        }

        appliance.restart().unwrap();
        let log = appliance.log();
        partial_uploads_removed += count(&log, "partial_uploads_removed=");
        orphans_removed += count(&log, "orphan_spool_files_removed=");

        let stored: HashMap<i64, serde_json::Value> = appliance
            .jobs()
            .unwrap()
            .into_iter()
            .map(|j| (j["job_id"].as_i64().unwrap(), j))
            .collect();
        for (id, sha) in &acknowledged {
            let job = stored.get(id).unwrap_or_else(|| {
                panic!("round {round}: acknowledged job {id} is gone (seed {seed})")
            });
            assert_eq!(
                job["sha256"].as_str(),
                Some(sha.as_str()),
                "round {round}: job {id}"
            );
        }
        for job in stored.values() {
            assert!(
                job["size"].as_u64().is_some(),
                "round {round}: job without document: {job}"
            );
            assert_eq!(job["state"], "held", "round {round}: {job}");
        }
        if round % 10 == 9 || round + 1 == rounds {
            spool_check(&appliance);
        }
        for job in stored.values() {
            let kind = (
                job["stored_in"].as_str().unwrap_or("none").to_owned(),
                job["encoding"].as_str().unwrap_or("none").to_owned(),
            );
            *kinds.entry(kind).or_insert(0u64) += 1;
        }
    }
    eprintln!("crash test: documents stored, by place and encoding, summed over rounds: {kinds:?}");
    for place in ["database", "file"] {
        for encoding in ["zstd", "identity"] {
            assert!(
                kinds.contains_key(&(place.to_owned(), encoding.to_owned())),
                "no {place} document with {encoding} in the run: {kinds:?}"
            );
        }
    }
    eprintln!(
        "crash test: {rounds} rounds, {} jobs acknowledged and all present; start-ups removed \
         {partial_uploads_removed} partial uploads and {orphans_removed} orphaned spool files",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() as u64 >= rounds,
        "too little load to mean anything"
    );
}

/// Every stored document re-hashes to its recorded SHA-256.
fn spool_check(appliance: &Appliance) {
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["spool", "check", "--data-dir"])
            .arg(&appliance.data_dir),
        Duration::from_secs(300),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "spool check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(log: &str, key: &str) -> u64 {
    log.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
