//! Hot folders with real files on disk: a thousand files dropped while the
//! daemon is killed mid-intake and restarted each become exactly one job
//! with their bytes; a file still being written is not taken early; files
//! that cannot print go to `rejected/` with their reason; printed files
//! go to `done/`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{Appliance, fixture, sha256, wait_for};

fn config(drop: &Path, folder: &str) -> String {
    format!(
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [[hot_folder]]\npath = {:?}\nqueue = \"secure\"\n{folder}",
        drop.display().to_string()
    )
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, Iterator::count)
}

/// PostScript, distinct for each `n`.
fn document(n: usize) -> Vec<u8> {
    format!("%!PS-Adobe-3.0\n%%Title: document {n}\n%%Pages: 1\n%%EndComments\nshowpage\n")
        .into_bytes()
}

#[test]
fn a_thousand_dropped_files_become_a_thousand_jobs_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    fs::create_dir_all(&drop).unwrap();
    let folder = "owner_from = \"file-name\"\nsettle_ms = 200\n";
    let mut appliance =
        Appliance::start(&dir.path().join("appliance"), &config(&drop, folder)).unwrap();

    let mut expected = BTreeMap::new();
    let mut drop_files = |range: std::ops::Range<usize>| {
        for n in range {
            let (owner, name) = (format!("user{}", n % 7), format!("doc-{n:04}.ps"));
            let bytes = document(n);
            fs::write(drop.join(format!("{owner}_{name}")), &bytes).unwrap();
            expected.insert((owner, name), sha256(&bytes));
        }
    };
    drop_files(0..600);

    // Killed while files wait in .taking/ and some jobs are already stored.
    let taking = drop.join(".taking");
    wait_for(Duration::from_secs(60), "intake to be under way", || {
        let waiting = entries(&taking);
        (waiting > 0 && waiting < 500).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
    appliance.kill();
    let left = entries(&taking);
    assert!(left > 0, "the crash left files being taken");

    // More arrive while it is down.
    drop_files(600..1000);
    appliance.restart().unwrap();
    wait_for(Duration::from_secs(120), "every file taken", || {
        let dropped = fs::read_dir(&drop)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count();
        (dropped == 0 && entries(&taking) == 0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
    assert!(
        appliance
            .log()
            .contains("hot folder finishing files taken before a stop"),
        "{}",
        appliance.log()
    );

    let jobs = appliance.jobs().unwrap();
    let stored: BTreeMap<_, _> = jobs
        .iter()
        .map(|j| {
            let key = (
                j["owner"].as_str().unwrap().to_owned(),
                j["name"].as_str().unwrap().to_owned(),
            );
            (key, j["sha256"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(jobs.len(), 1000, "one job per file, none twice");
    assert_eq!(stored, expected, "every file's job, with its bytes");
    assert!(jobs.iter().all(|j| j["state"] == "held"));
    assert_eq!(entries(&drop.join("rejected")), 0);
    assert!(!drop.join("done").exists(), "taken files are deleted");
}

#[test]
fn files_are_taken_whole_and_what_cannot_print_is_rejected_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let alice = drop.join("alice");
    fs::create_dir_all(&alice).unwrap();
    let folder = "owner_from = \"directory\"\nkeep_done = true\nsettle_ms = 1500\n";
    let appliance =
        Appliance::start(&dir.path().join("appliance"), &config(&drop, folder)).unwrap();

    let pdf = fs::read(fixture("three-pages.pdf")).unwrap();
    fs::write(alice.join("scan.pdf"), &pdf).unwrap();
    fs::write(
        alice.join("memo.docx"),
        b"PK\x03\x04\x14\x00\x06\x00word/document.xml",
    )
    .unwrap();
    fs::write(alice.join("empty.pdf"), b"").unwrap();
    fs::write(drop.join("stray.pdf"), &pdf).unwrap();
    fs::write(alice.join(".upload.pdf"), &pdf).unwrap();
    let outside = dir.path().join("appliance-secret.pdf");
    fs::write(&outside, &pdf).unwrap();
    std::os::unix::fs::symlink(&outside, alice.join("link.pdf")).unwrap();

    // A writer that pauses (less than the settle time) between chunks.
    let mut growing = fs::File::create(alice.join("report.ps")).unwrap();
    let mut written = Vec::new();
    for n in 0..8 {
        let chunk = if n == 0 {
            b"%!PS-Adobe-3.0\n".to_vec()
        } else {
            format!("% part {n}\n").into_bytes()
        };
        growing.write_all(&chunk).unwrap();
        written.extend(chunk);
        std::thread::sleep(Duration::from_millis(400));
    }
    growing.sync_all().unwrap();
    std::mem::drop(growing);

    let jobs = wait_for(Duration::from_secs(30), "two jobs", || {
        appliance.jobs().ok().filter(|j| j.len() >= 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
    let by_name: BTreeMap<_, _> = jobs
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_owned(), j))
        .collect();
    assert_eq!(by_name["scan.pdf"]["owner"], "alice");
    assert_eq!(by_name["scan.pdf"]["sha256"], sha256(&pdf).as_str());
    assert_eq!(by_name["scan.pdf"]["pages"], 3);
    assert_eq!(
        by_name["report.ps"]["sha256"],
        sha256(&written).as_str(),
        "taken only once the writer stopped"
    );

    let rejected = drop.join("rejected");
    wait_for(Duration::from_secs(30), "three rejected files", || {
        (entries(&rejected.join("alice")) == 4 && rejected.join("stray.pdf").exists()).then_some(())
    })
    .unwrap_or_else(|e| {
        let tree = Command::new("find").arg(&drop).output().unwrap().stdout;
        panic!(
            "{e}\n{}\n{}",
            String::from_utf8_lossy(&tree),
            appliance.log()
        )
    });
    let reason =
        |name: &str| fs::read_to_string(rejected.join(format!("{name}.reason.txt"))).unwrap();
    assert!(reason("alice/memo.docx").contains("not in a format the printers take"));
    assert!(reason("alice/empty.pdf").contains("empty"));
    assert!(reason("stray.pdf").contains("named after their owner"));
    assert_eq!(fs::read(drop.join("done/alice/scan.pdf")).unwrap(), pdf);
    assert_eq!(
        fs::read(drop.join("done/alice/report.ps")).unwrap(),
        written
    );

    // Left alone: hidden (still being uploaded) files and links.
    assert!(alice.join(".upload.pdf").exists());
    assert!(alice.join("link.pdf").exists());
    assert_eq!(appliance.jobs().unwrap().len(), 2);
    assert_eq!(entries(&drop.join(".taking")), 0);
}
