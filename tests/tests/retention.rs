//! Held jobs expire: not released within `retention.held_job_secs`, a job
//! ends, its document is deleted from the spool, and the expiry is logged.

use std::fs;
use std::time::Duration;

use e2e::{Appliance, fixture, send_print_job, wait_for};

#[test]
fn an_unreleased_job_expires_and_its_document_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "[retention]\nheld_job_secs = 2\n").unwrap();
    let pdf = fs::read(fixture("three-pages.pdf")).unwrap();
    assert_eq!(
        send_print_job(appliance.port, "secure", "alice", &pdf)
            .unwrap()
            .status,
        0
    );
    let held = appliance.jobs().unwrap().remove(0);
    let uuid = held["uuid"].as_str().unwrap();
    assert!(
        appliance.document_stored(uuid).unwrap(),
        "a held job has its document"
    );

    let expired = wait_for(Duration::from_secs(30), "the job to expire", || {
        appliance
            .jobs()
            .ok()?
            .into_iter()
            .find(|j| j["state"] == "aborted")
    })
    .unwrap();
    let message = expired["state_message"].as_str().unwrap();
    assert!(
        message.starts_with("Expired: not released within 2 s"),
        "{message}"
    );
    assert!(
        !appliance.document_stored(uuid).unwrap(),
        "the document of an expired job is deleted"
    );
    assert!(
        appliance.log().contains("held job expired"),
        "{}",
        appliance.log()
    );

    // A fresh job is unaffected until its own time is up.
    assert_eq!(
        send_print_job(appliance.port, "secure", "bob", &pdf)
            .unwrap()
            .status,
        0
    );
    let jobs = appliance.jobs().unwrap();
    assert!(
        jobs.iter()
            .any(|j| j["owner"] == "bob" && j["state"] == "held")
    );
}
