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

#[test]
fn the_first_hour_printers_that_do_not_answer_no_users_and_failed_logins_are_logged() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port.
    let printers = "[[printer]]\nid = \"lobby\"\nuri = \"ipp://127.0.0.1:9/ipp/print\"\n";
    let appliance = Appliance::start(tmp.path(), printers).unwrap();
    let log = e2e::wait_for(Duration::from_secs(20), "the start-up checks", || {
        let log = appliance.log();
        (log.contains("printer does not answer") && log.contains("no user exists")).then_some(log)
    })
    .unwrap();
    let printer_line = log
        .lines()
        .find(|l| l.contains("printer does not answer"))
        .unwrap();
    assert!(
        printer_line.contains("lobby") && printer_line.contains("127.0.0.1:9"),
        "{printer_line}"
    );

    // A failed login names user and device, never the secret.
    appliance.add_user("alice", "2468", &[]).unwrap();
    let api = appliance.api().unwrap();
    let wrong = serde_json::json!({"device": "lobby", "method": "pin", "user": "alice",
                                   "secret": "97531"});
    let r = api
        .call("POST", "/api/v1/sessions", None, Some(&wrong))
        .unwrap();
    assert_eq!(r.status, 401);
    let line = e2e::wait_for(
        Duration::from_secs(10),
        "the failed login in the log",
        || {
            appliance
                .log()
                .lines()
                .find(|l| l.contains("login failed"))
                .map(str::to_owned)
        },
    )
    .unwrap();
    assert!(line.contains("alice") && line.contains("lobby"), "{line}");
    assert!(
        !appliance.log().contains("97531"),
        "a secret reached the log"
    );
}

#[test]
fn logs_are_json_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "[log]\nformat = \"json\"\n").unwrap();
    let log = e2e::wait_for(Duration::from_secs(20), "the API to listen", || {
        let log = appliance.log();
        log.contains("API listening").then_some(log)
    })
    .unwrap();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines >= 3, "{log}");
}

#[test]
fn a_data_directory_that_cannot_be_written_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: even root cannot make
    // a directory under it.
    let blocker = tmp.path().join("not-a-directory");
    fs::write(&blocker, b"").unwrap();
    let config = tmp.path().join("appliance.toml");
    let data = blocker.join("data").display().to_string();
    fs::write(
        &config,
        format!("data_dir = {data:?}\n[ipp]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["serve", "--config"])
            .arg(&config),
        Duration::from_secs(30),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&data) && stderr.contains("Not a directory"),
        "{stderr}"
    );
}

#[test]
fn check_config_prints_the_effective_configuration_as_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("appliance.toml");
    fs::write(
        &config,
        "site = \"zurich\"\n[api]\nsession_idle_secs = 90\n",
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .arg("check-config")
            .arg(&config),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("site = \"zurich\""), "{printed}");
    assert!(printed.contains("session_idle_secs = 90"), "{printed}");
    // Defaults are spelled out, and the output is itself a valid config.
    assert!(
        printed.contains("[retention]") && printed.contains("[[queue]]"),
        "{printed}"
    );
    let again = tmp.path().join("effective.toml");
    fs::write(&again, &printed).unwrap();
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .arg("check-config")
            .arg(&again),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), printed);
}
