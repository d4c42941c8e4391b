//! What an operator touches: `/metrics`, `appliance jobs list`, and config
//! errors that exit 2 naming the key.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::{Appliance, appliance_bin, fixture, run_with_timeout, send_print_job};

#[test]
fn metrics_count_received_and_held_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let pdf = fs::read(fixture("document-a4.pdf")).unwrap();
    assert_eq!(
        send_print_job(appliance.port, "secure", "alice", &pdf)
            .unwrap()
            .status,
        0
    );
    let metrics = appliance.get("/metrics").unwrap();
    for expected in [
        "appliance_jobs_received_total{queue=\"secure\"} 1".to_owned(),
        format!(
            "appliance_document_bytes_received_total{{queue=\"secure\"}} {}",
            pdf.len()
        ),
        "appliance_jobs_held 1".to_owned(),
        "appliance_store_errors_total 0".to_owned(),
        "appliance_ipp_requests_total{operation=\"Print-Job\",status=\"ok\"} 1".to_owned(),
    ] {
        assert!(
            metrics.contains(&expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
}

#[test]
fn jobs_list_shows_jobs_while_the_daemon_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let pdf = fs::read(fixture("three-pages.pdf")).unwrap();
    assert_eq!(
        send_print_job(appliance.port, "secure", "alice", &pdf)
            .unwrap()
            .status,
        0
    );
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["jobs", "list", "--data-dir"])
            .arg(&appliance.data_dir),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    for field in ["secure", "alice", "held", &pdf.len().to_string()] {
        assert!(row.contains(field), "{field:?} not in {row:?}");
    }

    let missing = run_with_timeout(
        Command::new(appliance_bin()).args([
            "jobs",
            "list",
            "--data-dir",
            "/nonexistent/appliance",
        ]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no job store"));
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[ipp]\nlisten = \"not an address\"\n", "listen"),
        (
            "[[queue]]\nname = \"d\"\nkind = \"direct\"\n",
            "queue[0].printer",
        ),
        (
            "[[printer]]\nid = \"p\"\nuri = \"ftp://x/q\"\n",
            "printer[0].uri",
        ),
        ("sight = \"typo\"\n", "sight"),
    ] {
        let path = tmp.path().join("bad.toml");
        fs::write(&path, text).unwrap();
        for args in [&["check-config"][..], &["serve", "--config"][..]] {
            let out = run_with_timeout(
                Command::new(appliance_bin()).args(args).arg(&path),
                Duration::from_secs(30),
            )
            .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {text:?}: {stderr}");
            assert!(
                stderr.contains(key),
                "{args:?}: {stderr:?} does not name {key}"
            );
        }
    }
}

/// Clients that do not know the length up front send chunked bodies, and
/// careful ones ask `Expect: 100-continue` first: the appliance answers
/// `100 Continue` once it starts reading the document, and stores it whole.
#[test]
fn chunked_uploads_with_expect_100_continue() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let uri = appliance.uri("secure");
    let mut attrs = e2e::standard_attributes(&uri, "alice");
    attrs.push((0x49, "document-format", b"application/pdf"));
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    let body = e2e::ipp_request(0x0200, 0x0002, 5, &attrs, &document);

    let mut stream = TcpStream::connect(("127.0.0.1", appliance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            b"POST /ipp/print/secure HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\n\
              Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 100"), "{status:?}");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    for chunk in body.chunks(300) {
        write!(stream, "{:x}\r\n", chunk.len()).unwrap();
        stream.write_all(chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    reader.read_to_end(&mut answer).unwrap();
    let r = e2e::IppResponse::parse(&answer).unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs[0]["sha256"], e2e::sha256(&document));
}
