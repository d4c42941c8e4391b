//! Direct queues: jobs go to the queue's printer at once, or when released
//! if submitted held; a printer that is down keeps the job with a retry and
//! a clear message; raw socket printers get the exact bytes. Pull queues
//! refuse IPP Release-Job and say where to release.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use e2e::{
    Appliance, LpdServer, Printer, appliance_bin, fixture, free_port, ipptool_text, lobby_config,
    run_with_timeout, send_print_job, send_print_job_to, wait_for,
};

const HEADER: &str = r#"
	GROUP operation-attributes-tag
	ATTR charset attributes-charset utf-8
	ATTR naturalLanguage attributes-natural-language en
	ATTR uri printer-uri $uri
	ATTR name requesting-user-name $requester"#;

fn job(appliance: &Appliance, queue: &str, id: i64) -> Option<serde_json::Value> {
    appliance
        .jobs()
        .ok()?
        .into_iter()
        .find(|j| j["queue"] == queue && j["job_id"] == id)
}

fn wait_state(appliance: &Appliance, queue: &str, id: i64, state: &str) -> serde_json::Value {
    wait_for(
        Duration::from_secs(60),
        &format!("job {id} to be {state}"),
        || job(appliance, queue, id).filter(|j| j["state"] == state),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", job(appliance, queue, id), appliance.log()))
}

/// An ippeveprinter and an appliance with its direct queue `lobby-direct`.
fn lobby(dir: &std::path::Path) -> (Printer, Appliance) {
    let printer = Printer::start(&dir.join("printer")).unwrap();
    let appliance =
        Appliance::start(&dir.join("appliance"), &lobby_config(&printer.uri())).unwrap();
    (printer, appliance)
}

#[test]
fn a_held_job_prints_only_when_its_owner_releases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (printer, appliance) = lobby(tmp.path());
    let uri = appliance.uri("lobby-direct");
    let document = fixture("three-pages.pdf");

    let submit = format!(
        "{{\n\tNAME \"Print-Job held\"\n\tOPERATION Print-Job{HEADER}\n\
         \tATTR mimeMediaType document-format application/pdf\n\
         \tGROUP job-attributes-tag\n\tATTR keyword job-hold-until indefinite\n\
         \tFILE $filename\n\tSTATUS successful-ok\n\tEXPECT job-state WITH-VALUE 4\n}}\n"
    );
    let (ok, out) =
        ipptool_text(&uri, &submit, Some(&document), &[("requester", "alice")]).unwrap();
    assert!(ok, "{out}");
    let held = wait_state(&appliance, "lobby-direct", 1, "held");
    assert!(
        printer.documents().is_empty(),
        "a held job reached the printer"
    );
    assert_eq!(held["owner"], "alice");

    // The release API does not take it away from its queue's printer.
    appliance.add_user("alice", "1234", &[]).unwrap();
    let api = appliance.api().unwrap();
    let token = api.login_pin("lobby", "alice", "1234").unwrap();
    let body = serde_json::json!({"jobs": [held["uuid"]]});
    let r = api
        .call("POST", "/api/v1/jobs/release", Some(&token), Some(&body))
        .unwrap();
    assert_eq!(r.json["jobs"][0]["outcome"], "not_held", "{}", r.json);
    assert!(
        r.json["jobs"][0]["message"]
            .as_str()
            .unwrap()
            .contains("lobby-direct")
    );
    let all = serde_json::json!({"jobs": "all"});
    let r = api
        .call("POST", "/api/v1/jobs/release", Some(&token), Some(&all))
        .unwrap();
    assert_eq!(r.json["jobs"], serde_json::json!([]));

    // ipptool does not expand variables in STATUS, so the status is written in.
    let release = |expect: &str| {
        format!(
            "{{\n\tNAME \"Release-Job\"\n\tOPERATION Release-Job{HEADER}\n\tATTR integer job-id 1\n\tSTATUS {expect}\n}}\n"
        )
    };
    let as_user = |user: &str, expect: &str| {
        ipptool_text(&uri, &release(expect), None, &[("requester", user)]).unwrap()
    };
    let (ok, out) = as_user("bob", "client-error-not-authorized");
    assert!(ok, "bob must not release alice's job: {out}");
    assert_eq!(job(&appliance, "lobby-direct", 1).unwrap()["state"], "held");
    let (ok, out) = as_user("alice", "successful-ok");
    assert!(ok, "{out}");

    wait_state(&appliance, "lobby-direct", 1, "completed");
    let received = printer.documents();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].1, fs::read(&document).unwrap());

    // Releasing again is not possible: it is no longer held.
    let (ok, out) = as_user("alice", "client-error-not-possible");
    assert!(ok, "{out}");
}

#[test]
fn ipp_release_on_a_pull_queue_says_where_to_release() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let pdf = fs::read(fixture("document-a4.pdf")).unwrap();
    let r = send_print_job(appliance.port, "secure", "alice", &pdf).unwrap();
    assert_eq!(r.status, 0);
    let test = format!(
        "{{\n\tNAME \"Release-Job on a pull queue\"\n\tOPERATION Release-Job{HEADER}\n\tATTR integer job-id 1\n\
         \tSTATUS client-error-not-possible\n\tEXPECT status-message WITH-VALUE \"/released at a printer/\"\n}}\n"
    );
    let (ok, out) = ipptool_text(
        &appliance.uri("secure"),
        &test,
        None,
        &[("requester", "alice")],
    )
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(job(&appliance, "secure", 1).unwrap()["state"], "held");
}

#[test]
fn a_printer_that_is_down_keeps_the_job_until_it_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let printer_uri = format!("ipp://127.0.0.1:{port}/ipp/print");
    let appliance =
        Appliance::start(&tmp.path().join("appliance"), &lobby_config(&printer_uri)).unwrap();
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    let r = send_print_job(appliance.port, "lobby-direct", "alice", &document).unwrap();
    assert_eq!(r.status, 0);

    let waiting = wait_for(Duration::from_secs(30), "a retry message", || {
        job(&appliance, "lobby-direct", 1).filter(|j| {
            j["state"] == "pending"
                && j["state_message"]
                    .as_str()
                    .is_some_and(|m| m.contains("not reachable") && m.contains("trying again"))
        })
    })
    .unwrap();
    assert_eq!(waiting["state_reasons"], "printer-stopped");

    // The printer comes up on the configured port; the job prints, once.
    let printer = Printer::start_on(&tmp.path().join("printer"), port).unwrap();
    wait_state(&appliance, "lobby-direct", 1, "completed");
    let received = printer.documents();
    assert_eq!(received.len(), 1, "printed more than once");
    assert_eq!(received[0].1, document);
}

#[test]
fn a_socket_printer_receives_the_exact_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut bytes = Vec::new();
        conn.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        &lobby_config(&format!("socket://127.0.0.1:{port}")),
    )
    .unwrap();
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    let r =
        send_print_job_to(appliance.port, "/printers/lobby-direct", "carol", &document).unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(receiver.join().unwrap(), document);
    wait_state(&appliance, "lobby-direct", 1, "completed");
}

#[test]
fn an_lpd_printer_receives_the_exact_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let lpd = LpdServer::start(&tmp.path().join("cupsd")).unwrap();
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        &lobby_config(&format!("lpd://127.0.0.1:{}/held", lpd.port)),
    )
    .unwrap();
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    let r = send_print_job(appliance.port, "lobby-direct", "dave", &document).unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    wait_state(&appliance, "lobby-direct", 1, "completed");
    let received = wait_for(Duration::from_secs(30), "cupsd to spool the job", || {
        let docs = lpd.documents();
        (!docs.is_empty()).then_some(docs)
    })
    .unwrap();
    assert_eq!(received, [document]);
}

#[test]
fn printers_list_shows_what_each_printer_can_do() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let config = tmp.path().join("appliance.toml");
    fs::write(
        &config,
        format!(
            "[[printer]]\nid = \"lobby\"\nname = \"Lobby MFD\"\nlocation = \"Ground floor\"\nuri = \"{}\"\n\
             [[printer]]\nid = \"gone\"\nuri = \"ipp://127.0.0.1:{}/ipp/print\"\n\
             [[printer]]\nid = \"raw\"\nuri = \"socket://127.0.0.1:9100\"\n",
            printer.uri(),
            free_port()
        ),
    )
    .unwrap();
    let out = e2e::run_with_timeout(
        std::process::Command::new(e2e::appliance_bin())
            .args(["printers", "list", "--json", "--timeout", "3", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printers: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printers.len(), 3);
    let lobby = &printers[0];
    assert_eq!(lobby["reachable"], true, "{lobby}");
    assert_eq!(lobby["color"], true);
    assert_eq!(lobby["state"], "idle");
    assert!(
        lobby["formats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "application/pdf")
    );
    assert_eq!(printers[1]["reachable"], false);
    assert!(
        printers[1]["problem"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    assert!(
        printers[2]["problem"]
            .as_str()
            .unwrap()
            .contains("cannot say")
    );
}

#[test]
fn an_ipps_printer_is_trusted_through_its_configured_ca_only() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = e2e::tls_identity(&tmp.path().join("pki")).unwrap();
    let printer =
        Printer::start_tls(&tmp.path().join("printer"), &tmp.path().join("pki/keys")).unwrap();
    let ipps = format!("ipps://localhost:{}/ipp/print", printer.port);
    let mut config = lobby_config(&ipps);
    config.push_str(&format!(
        "[[printer]]\nid = \"untrusted\"\nuri = \"{ipps}\"\n"
    ));
    let config = config.replacen(
        &format!("uri = \"{ipps}\"\n"),
        &format!(
            "uri = \"{ipps}\"\ntls_ca = {:?}\n",
            ca.display().to_string()
        ),
        1,
    );
    let appliance = Appliance::start(&tmp.path().join("appliance"), &config).unwrap();
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    let r =
        send_print_job_to(appliance.port, "/printers/lobby-direct", "carol", &document).unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    wait_state(&appliance, "lobby-direct", 1, "completed");
    assert!(printer.documents().iter().any(|(_, d)| *d == document));

    // Without the CA, the same printer's certificate is refused, and says why.
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["printers", "list", "--json", "--config"])
            .arg(appliance.config_path()),
        Duration::from_secs(60),
    )
    .unwrap();
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text = |id: &str| {
        listed
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p.to_string())
            .unwrap_or_default()
    };
    assert!(text("lobby").contains("application/pdf"), "{listed:?}");
    assert!(text("untrusted").contains("UnknownIssuer"), "{listed:?}");
}

#[test]
fn gzip_and_deflate_jobs_print_byte_identical_to_their_uncompressed_form() {
    let tmp = tempfile::tempdir().unwrap();
    let (printer, appliance) = lobby(tmp.path());
    let uri = appliance.uri("lobby-direct");
    let document = fixture("three-pages.pdf");
    for compression in ["gzip", "deflate"] {
        let submit = format!(
            "{{\n\tNAME \"Print-Job with {compression}\"\n\tOPERATION Print-Job{HEADER}\n\
             \tATTR mimeMediaType document-format application/pdf\n\
             \tATTR keyword compression {compression}\n\tCOMPRESSION {compression}\n\
             \tFILE $filename\n\tSTATUS successful-ok\n}}\n"
        );
        let (ok, out) =
            ipptool_text(&uri, &submit, Some(&document), &[("requester", "alice")]).unwrap();
        assert!(ok, "{out}\n{}", appliance.log());
    }
    wait_state(&appliance, "lobby-direct", 2, "completed");
    let sent = fs::read(&document).unwrap();
    let received = printer.documents();
    assert_eq!(received.len(), 2);
    for (path, bytes) in &received {
        assert!(
            bytes == &sent,
            "{} differs from the document",
            path.display()
        );
    }
    // A compression the appliance does not take, and gzip that is not.
    let refused = format!(
        "{{\n\tNAME \"Print-Job with compress\"\n\tOPERATION Print-Job{HEADER}\n\
         \tATTR mimeMediaType document-format application/pdf\n\
         \tATTR keyword compression compress\n\
         \tFILE $filename\n\tSTATUS client-error-compression-not-supported\n}}\n\
         {{\n\tNAME \"Print-Job labelled gzip, sent plain\"\n\tOPERATION Print-Job{HEADER}\n\
         \tATTR mimeMediaType document-format application/pdf\n\
         \tATTR keyword compression gzip\n\
         \tFILE $filename\n\tSTATUS client-error-compression-error\n}}\n"
    );
    let (ok, out) =
        ipptool_text(&uri, &refused, Some(&document), &[("requester", "alice")]).unwrap();
    assert!(ok, "{out}");
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs.len(), 2, "a refused job was kept: {jobs:?}");
}

#[test]
fn page_ranges_and_overrides_reach_the_printer_and_only_those_pages_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (printer, appliance) = lobby(tmp.path());
    let submit = format!(
        "{{\n\tNAME \"Print-Job, pages 2-3, twice, page 3 landscape\"\n\tOPERATION Print-Job{HEADER}\n\
         \tATTR mimeMediaType document-format application/pdf\n\
         \tGROUP job-attributes-tag\n\tATTR rangeOfInteger page-ranges 2-3\n\
         \tATTR integer copies 2\n\
         \tATTR collection overrides {{ MEMBER rangeOfInteger pages 3-3 \
         MEMBER enum orientation-requested 4 }}\n\
         \tFILE $filename\n\tSTATUS successful-ok\n}}\n\
         {{\n\tNAME \"Print-Job, ranges out of order\"\n\tOPERATION Print-Job{HEADER}\n\
         \tATTR mimeMediaType document-format application/pdf\n\
         \tATTR boolean ipp-attribute-fidelity true\n\
         \tGROUP job-attributes-tag\n\tATTR rangeOfInteger page-ranges 3-3,1-2\n\
         \tFILE $filename\n\tSTATUS client-error-attributes-or-values-not-supported\n\
         \tEXPECT page-ranges IN-GROUP unsupported-attributes-tag\n}}\n"
    );
    let document = fixture("three-pages.pdf");
    let (ok, out) = ipptool_text(
        &appliance.uri("lobby-direct"),
        &submit,
        Some(&document),
        &[("requester", "alice")],
    )
    .unwrap();
    assert!(ok, "{out}\n{}", appliance.log());
    wait_state(&appliance, "lobby-direct", 1, "completed");

    // The printer got the whole document and the ranges to apply.
    assert_eq!(printer.documents()[0].1, fs::read(&document).unwrap());
    let asked = format!(
        "{{\n\tNAME \"the printer's job\"\n\tOPERATION Get-Job-Attributes{HEADER}\n\
         \tATTR integer job-id 1\n\tSTATUS successful-ok\n\
         \tEXPECT page-ranges OF-TYPE rangeOfInteger\n\tEXPECT copies WITH-VALUE 2\n\
         \tEXPECT overrides OF-TYPE collection\n}}\n"
    );
    let (ok, out) = ipptool_text(&printer.uri(), &asked, None, &[("requester", "alice")]).unwrap();
    assert!(ok, "{out}");

    // Accounting counts 2 pages of the 3, twice.
    let report = appliance
        .cli(&["report", "--by", "user", "--csv"], "")
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.lines().any(|l| l.starts_with("alice,1,4,")),
        "{report}"
    );
}

#[test]
fn identify_printer_reaches_the_printer_behind_a_direct_queue_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (printer, appliance) = lobby(tmp.path());
    let identify = |actions: &str, status: &str| {
        format!(
            "{{\n\tNAME \"Identify-Printer {actions}\"\n\tOPERATION Identify-Printer{HEADER}\n\
             \tATTR keyword identify-actions {actions}\n\tATTR text message \"Collect your report here\"\n\
             \tSTATUS {status}\n}}\n"
        )
    };
    let run = |queue: &str, test: &str| {
        ipptool_text(&appliance.uri(queue), test, None, &[("requester", "alice")]).unwrap()
    };
    let (ok, out) = run("lobby-direct", &identify("display,sound", "successful-ok"));
    assert!(ok, "{out}\n{}", appliance.log());
    let printer_log = fs::read_to_string(printer.dir.join(".printer.log")).unwrap();
    assert!(printer_log.contains("Identify-Printer"), "{printer_log}");

    let (ok, out) = run(
        "lobby-direct",
        &identify("dance", "client-error-attributes-or-values-not-supported"),
    );
    assert!(ok, "{out}");
    // A pull queue has no one printer; it says so, and does not offer it.
    let (ok, out) = run("secure", &identify("sound", "client-error-not-possible"));
    assert!(ok, "{out}");
    // The printer gone: not possible, and why.
    drop(printer);
    let (ok, out) = run(
        "lobby-direct",
        &identify("sound", "client-error-not-possible"),
    );
    assert!(ok, "{out}");
}
