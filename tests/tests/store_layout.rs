//! How documents are kept: small ones in the database, large ones in spool
//! files, each compressed only when that pays. Every kind prints
//! byte-identical at a real IPP printer and passes `appliance spool
//! check`; a damaged one of any kind is found by the check and refused at
//! output; and a data directory written by the first layout (every
//! document a zstd spool file) still prints every held job.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use e2e::{Appliance, Printer, Rng, fixture, send_print_job, sha256, wait_for, workspace};
use serde_json::Value;

const PIN: &str = "2468";

fn config(printer: &Printer) -> String {
    format!(
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [retention]\nheld_job_secs = 3153600000\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
         [[printer]]\nid = \"lobby\"\nuri = \"{}\"\n",
        printer.uri()
    )
}

/// A PDF of `len` bytes of repeated text, which zstd shrinks many times.
fn text_pdf(len: usize) -> Vec<u8> {
    let mut doc = b"%PDF-1.4\n".to_vec();
    while doc.len() < len {
        doc.extend_from_slice(b"BT /F1 12 Tf 72 700 Td (Quarterly figures) Tj ET\n");
    }
    doc.truncate(len);
    doc
}

/// Logs alice in at the lobby and releases all her jobs.
fn release_all(appliance: &Appliance) {
    let api = appliance.api().unwrap();
    let token = api.login_pin("lobby", "alice", PIN).unwrap();
    api.release_all(&token).unwrap();
}

fn spool_check(appliance: &Appliance) -> (bool, String) {
    let out = appliance.cli(&["spool", "check"], "").unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits until the appliance has seen `n` jobs printed (the printer then
/// has every byte of them); returns the SHA-256s of what the printer got.
fn printed(appliance: &Appliance, printer: &Printer, n: usize) -> BTreeSet<String> {
    wait_for(Duration::from_secs(60), "the jobs to print", || {
        let jobs = appliance.jobs().ok()?;
        (jobs.iter().filter(|j| j["state"] == "completed").count() >= n).then_some(())
    })
    .unwrap();
    printer.documents().iter().map(|(_, b)| sha256(b)).collect()
}

/// (place, encoding) of each stored job, by SHA-256.
fn storage(appliance: &Appliance) -> Vec<(String, String, String)> {
    appliance
        .jobs()
        .unwrap()
        .iter()
        .map(|j: &Value| {
            (
                j["sha256"].as_str().unwrap_or("").to_owned(),
                j["stored_in"].as_str().unwrap_or("").to_owned(),
                j["encoding"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_kind_of_stored_document_prints_byte_identical_and_damage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let mut appliance = Appliance::prepare(&tmp.path().join("a"), &config(&printer)).unwrap();
    appliance.add_user("alice", PIN, &[]).unwrap();
    appliance.restart().unwrap();

    let mut rng = Rng::new(11);
    let kinds = [
        ("database", "zstd", text_pdf(20_000)),
        ("database", "identity", rng.pdf(20_000)),
        ("file", "zstd", text_pdf(600_000)),
        ("file", "identity", rng.pdf(600_000)),
    ];
    let submit = |doc: &[u8]| {
        let r = send_print_job(appliance.port, "secure", "alice", doc).unwrap();
        assert_eq!(r.status, 0, "{r:?}");
    };
    for (_, _, doc) in &kinds {
        submit(doc);
    }
    let stored = storage(&appliance);
    for (place, encoding, doc) in &kinds {
        assert!(
            stored.contains(&(sha256(doc), (*place).to_owned(), (*encoding).to_owned())),
            "a {} byte document is not kept in the {place} with {encoding}: {stored:?}",
            doc.len()
        );
    }
    let (ok, said) = spool_check(&appliance);
    assert!(
        ok && said.contains("4 documents checked, 0 damaged"),
        "{said}"
    );

    release_all(&appliance);
    let expected: BTreeSet<String> = kinds.iter().map(|(_, _, d)| sha256(d)).collect();
    assert_eq!(
        printed(&appliance, &printer, 4),
        expected,
        "byte-identical at the printer"
    );

    // The same four kinds again, each damaged where it is kept.
    let mut damaged = Vec::new();
    for (_, _, doc) in &kinds {
        let mut again = doc.clone();
        again.extend_from_slice(b"\n% second copy\n");
        submit(&again);
        damaged.push(sha256(&again));
    }
    let jobs = appliance.jobs().unwrap();
    let db = rusqlite::Connection::open(appliance.data_dir.join("appliance.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    for job in jobs.iter().filter(|j| j["state"] == "held") {
        let uuid = job["uuid"].as_str().unwrap();
        match job["stored_in"].as_str().unwrap() {
            "database" => {
                let mut bytes: Vec<u8> = db
                    .query_row("SELECT bytes FROM documents WHERE uuid = ?1", [uuid], |r| {
                        r.get(0)
                    })
                    .unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
                db.execute(
                    "UPDATE documents SET bytes = ?2 WHERE uuid = ?1",
                    rusqlite::params![uuid, bytes],
                )
                .unwrap();
            }
            _ => {
                let ext = if job["encoding"] == "zstd" {
                    "zst"
                } else {
                    "raw"
                };
                let path = appliance.data_dir.join(format!("spool/{uuid}.{ext}"));
                let mut bytes = fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
                fs::write(&path, bytes).unwrap();
            }
        }
    }
    drop(db);
    let (ok, said) = spool_check(&appliance);
    assert!(!ok, "{said}");
    assert!(said.contains("4 damaged or missing"), "{said}");

    // Released, none of them reaches the printer: each is checked before
    // the printer is contacted and goes back to held with the reason.
    release_all(&appliance);
    let refused = wait_for(
        Duration::from_secs(60),
        "the damaged jobs to be refused",
        || {
            let jobs = appliance.jobs().ok()?;
            let back: Vec<Value> = jobs
                .into_iter()
                .filter(|j| {
                    j["state"] == "held"
                        && damaged.iter().any(|d| j["sha256"] == d.as_str())
                        && j["state_message"]
                            .as_str()
                            .is_some_and(|m| m.contains("Nothing was sent"))
                })
                .collect();
            (back.len() == 4).then_some(back)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:#?}\n{}", appliance.jobs().unwrap(), appliance.log()));
    assert_eq!(printer.documents().len(), 4, "nothing damaged was printed");
    println!(
        "{:#?}",
        refused
            .iter()
            .map(|j| &j["state_message"])
            .collect::<Vec<_>>()
    );
    assert!(
        appliance
            .log()
            .contains("stored document damaged; not sent")
    );
}

/// Copies a directory tree (plain files and directories).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_data_directory_of_the_first_layout_prints_every_held_job() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let mut appliance = Appliance::prepare(&tmp.path().join("a"), &config(&printer)).unwrap();
    copy_tree(
        &workspace().join("fixtures/store-layout-1"),
        &appliance.data_dir,
    );
    fs::remove_file(appliance.data_dir.join("README.md")).unwrap();
    appliance.add_user("alice", PIN, &[]).unwrap();
    appliance.restart().unwrap();

    let stored = storage(&appliance);
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|(_, place, encoding)| place == "file" && encoding == "zstd"),
        "{stored:?}"
    );
    let (ok, said) = spool_check(&appliance);
    assert!(
        ok && said.contains("4 documents checked, 0 damaged"),
        "{said}"
    );

    release_all(&appliance);
    let mut expected: BTreeSet<String> = ["small-4k.pdf", "document-a4.ps", "color.jpg"]
        .iter()
        .map(|name| sha256(&fs::read(fixture(name)).unwrap()))
        .collect();
    expected.insert("b2c05bf72021e31375765722b4e8807ebf0596b8bb96ed82e750fa9329244cdd".into());
    assert_eq!(printed(&appliance, &printer, 4), expected);

    // New documents beside the old ones are kept the new way.
    let r = send_print_job(appliance.port, "secure", "alice", &text_pdf(5000)).unwrap();
    assert_eq!(r.status, 0);
    let stored = storage(&appliance);
    assert!(
        stored.contains(&(sha256(&text_pdf(5000)), "database".into(), "zstd".into())),
        "{stored:?}"
    );
}
