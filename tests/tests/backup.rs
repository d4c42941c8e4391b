//! `appliance backup` while jobs are arriving, and `appliance restore` on a
//! fresh data directory: every job acknowledged before the backup began is
//! there and prints byte-identical. A restore refuses a data directory an
//! appliance runs on, one that holds a store (unless `--replace`, which
//! keeps the old one aside), and a damaged backup, changing nothing.

use std::collections::HashSet;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::{Appliance, Printer, Rng, send_print_job, sha256, wait_for};

const PIN: &str = "2468";

fn config(printer: &Printer) -> String {
    format!(
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
         [[printer]]\nid = \"lobby\"\nuri = \"{}\"\n",
        printer.uri()
    )
}

#[test]
fn a_backup_taken_while_jobs_arrive_restores_every_acknowledged_job() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let mut original = Appliance::prepare(&tmp.path().join("a"), &config(&printer)).unwrap();
    original.add_user("alice", PIN, &[]).unwrap();
    original.restart().unwrap();

    let mut rng = Rng::new(7);
    // Small documents live in the database, large ones in spool files:
    // a backup carries both.
    let before: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            rng.pdf(if i % 4 == 0 {
                400_000
            } else {
                20_000 + i * 1000
            })
        })
        .collect();
    for doc in &before {
        assert_eq!(
            send_print_job(original.port, "secure", "alice", doc)
                .unwrap()
                .status,
            0
        );
    }

    // More jobs keep arriving while the backup runs.
    let backup = tmp.path().join("backup");
    let arriving = AtomicBool::new(true);
    let (out, during) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut rng = Rng::new(8);
            let mut sent = 0;
            while arriving.load(Ordering::Relaxed) && sent < 200 {
                let doc = rng.pdf(30_000);
                if send_print_job(original.port, "secure", "alice", &doc)
                    .unwrap()
                    .status
                    == 0
                {
                    sent += 1;
                }
            }
            sent
        });
        let out = original
            .cli(&["backup", backup.to_str().unwrap()], "")
            .unwrap();
        arriving.store(false, Ordering::Relaxed);
        (out, sender.join().unwrap())
    });
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{said} ({during} jobs arrived meanwhile)");
    assert!(said.contains("installation key"), "{said}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(backup.join("backup.json")).unwrap()).unwrap();
    assert!(manifest["jobs"].as_u64().unwrap() >= 12, "{manifest}");

    // Restoring into the running appliance's directory is refused.
    let out = original
        .cli(&["restore", backup.to_str().unwrap()], "")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    original.stop().unwrap();

    // A fresh box: restore, start, log in, release all.
    let mut restored = Appliance::prepare(&tmp.path().join("b"), &config(&printer)).unwrap();
    let out = restored
        .cli(&["restore", backup.to_str().unwrap()], "")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = restored.cli(&["spool", "check"], "").unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    restored.restart().unwrap();
    let jobs = restored.jobs().unwrap();
    let api = restored.api().unwrap();
    let token = api.login_pin("lobby", "alice", PIN).unwrap();
    api.release_all(&token).unwrap();
    let printed = wait_for(
        Duration::from_secs(120),
        "every restored job printed",
        || {
            let docs = printer.documents();
            (docs.len() == jobs.len()).then_some(docs)
        },
    )
    .unwrap();
    let printed: HashSet<String> = printed.iter().map(|(_, bytes)| sha256(bytes)).collect();
    for (i, doc) in before.iter().enumerate() {
        assert!(
            printed.contains(&sha256(doc)),
            "job {i} acknowledged before the backup is missing"
        );
    }

    // A second restore over it needs --replace, and keeps what was there.
    restored.stop().unwrap();
    let out = restored
        .cli(&["restore", backup.to_str().unwrap()], "")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace"));
    let out = restored
        .cli(&["restore", "--replace", backup.to_str().unwrap()], "")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let aside: Vec<_> = fs::read_dir(&restored.data_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("before-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].path().join("appliance.db").exists());
}

#[test]
fn a_damaged_backup_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let original = Appliance::start(&tmp.path().join("a"), "").unwrap();
    // Large enough for a spool file, which the backup then carries.
    let doc = Rng::new(3).pdf(400_000);
    assert_eq!(
        send_print_job(original.port, "secure", "alice", &doc)
            .unwrap()
            .status,
        0
    );
    let backup = tmp.path().join("backup");
    let out = original
        .cli(&["backup", backup.to_str().unwrap()], "")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A backup into a directory that is not empty is refused.
    let out = original
        .cli(&["backup", backup.to_str().unwrap()], "")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let spool = fs::read_dir(backup.join("spool"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&spool).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&spool, bytes).unwrap();
    let fresh = Appliance::prepare(&tmp.path().join("c"), "").unwrap();
    let out = fresh
        .cli(&["restore", backup.to_str().unwrap()], "")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("damaged") && stderr.contains("nothing was restored"),
        "{stderr}"
    );
    assert!(!fresh.data_dir.join("appliance.db").exists());
    assert!(!fresh.data_dir.join(".restoring").exists());
}
