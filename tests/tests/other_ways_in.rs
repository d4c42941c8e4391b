//! LPD and raw socket intake with real clients: `rlpr` (both orders RFC
//! 1179 allows: control file first, data files first) and `nc`. Their jobs
//! land in the same store as IPP jobs: held on a pull queue with their
//! pages counted, printed byte-identical through a direct queue.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{
    Appliance, Printer, fixture, free_port, ipptool_text, lobby_config, run_with_timeout, sha256,
    wait_for,
};

/// An appliance with its lobby printer, LPD on `lpd` and raw on `raw`,
/// raw jobs from 127.0.0.2 owned by `erp`.
fn appliance_with_ways_in(dir: &Path, raw_queue: &str) -> (Printer, Appliance, u16, u16) {
    let printer = Printer::start(&dir.join("printer")).unwrap();
    let (lpd, raw) = (free_port(), free_port());
    let config = format!(
        "{}\n[lpd]\nlisten = \"127.0.0.1:{lpd}\"\n[raw]\nlisten = \"127.0.0.1:{raw}\"\n\
         queue = \"{raw_queue}\"\nhosts = {{ \"127.0.0.2\" = \"erp\" }}\n",
        lobby_config(&printer.uri())
    );
    let appliance = Appliance::start(&dir.join("appliance"), &config).unwrap();
    (printer, appliance, lpd, raw)
}

fn rlpr(port: u16, queue: &str, user: &str, options: &[&str], file: &Path) -> bool {
    let out = run_with_timeout(
        Command::new("rlpr")
            .args(["-H", "127.0.0.1", &format!("--port={port}"), "-P", queue])
            .args(["-U", user, "-N", "-q"])
            .args(options)
            .arg(file),
        Duration::from_secs(30),
    )
    .unwrap();
    out.status.success()
}

fn nc(port: u16, source: &str, data: &[u8]) {
    let mut child = Command::new("nc")
        .args(["-N", "-s", source, "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "nc failed");
}

fn wait_jobs(appliance: &Appliance, count: usize) -> Vec<serde_json::Value> {
    wait_for(Duration::from_secs(30), &format!("{count} jobs"), || {
        appliance.jobs().ok().filter(|j| j.len() >= count)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()))
}

#[test]
fn lpr_jobs_are_held_for_the_control_file_user_in_either_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (_printer, appliance, lpd, _) = appliance_with_ways_in(tmp.path(), "secure");
    let document = fixture("three-pages.pdf");
    let sent = std::fs::read(&document).unwrap();

    assert!(rlpr(
        lpd,
        "secure",
        "alice",
        &["-J", "Quarterly"],
        &document
    ));
    assert!(rlpr(
        lpd,
        "secure",
        "bob",
        &["--send-data-first", "-#2"],
        &document
    ));
    let jobs = wait_jobs(&appliance, 2);
    let by = |owner: &str| jobs.iter().find(|j| j["owner"] == owner).unwrap().clone();
    let (alice, bob) = (by("alice"), by("bob"));
    assert_eq!(alice["name"], "Quarterly");
    for job in [&alice, &bob] {
        assert_eq!(job["queue"], "secure");
        assert_eq!(job["state"], "held");
        assert_eq!(job["pages"], 3, "pages counted at intake: {job}");
        assert_eq!(job["format"], "application/pdf");
        assert_eq!(job["sha256"], sha256(&sent));
    }
    // BSD lpr's copies (a print line repeated) become the job's copies.
    let get = format!(
        "{{\n\tNAME \"copies\"\n\tOPERATION Get-Job-Attributes\n\tGROUP operation-attributes-tag\n\
         \tATTR charset attributes-charset utf-8\n\
         \tATTR naturalLanguage attributes-natural-language en\n\
         \tATTR uri printer-uri $uri\n\tATTR integer job-id {}\n\
         \tATTR name requesting-user-name bob\n\tSTATUS successful-ok\n\
         \tEXPECT copies OF-TYPE integer WITH-VALUE 2\n}}\n",
        bob["job_id"]
    );
    let (ok, out) = ipptool_text(&appliance.uri("secure"), &get, None, &[]).unwrap();
    assert!(ok, "{out}");
}

#[test]
fn lpr_to_a_direct_queue_prints_the_bytes_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let (printer, appliance, lpd, _) = appliance_with_ways_in(tmp.path(), "secure");
    let document = fixture("document-a4.ps");
    assert!(rlpr(lpd, "lobby-direct", "carol", &["-o"], &document));
    let printed = wait_for(Duration::from_secs(60), "the job to print", || {
        printer.documents().into_iter().next()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
    assert_eq!(printed.1, std::fs::read(&document).unwrap());
    let jobs = wait_jobs(&appliance, 1);
    assert_eq!(jobs[0]["owner"], "carol");
}

/// Sends LPD lines and bytes as given, one step after each answer, and
/// returns the acknowledgement bytes answered until the appliance closed
/// the connection (which every refusal does).
fn lpd_exchange(port: u16, steps: &[&[u8]]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let mut answers = Vec::new();
    for step in steps {
        if stream.write_all(step).is_err() {
            break;
        }
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(1) => answers.push(byte[0]),
            _ => return answers,
        }
    }
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "unexpected bytes after the steps: {rest:?}"
    );
    answers
}

#[test]
fn lpd_refuses_what_it_cannot_take_and_keeps_nothing_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_printer, appliance, lpd, _) = appliance_with_ways_in(tmp.path(), "secure");

    // An unknown queue: a negative acknowledgement, then the connection ends.
    assert_eq!(lpd_exchange(lpd, &[b"\x02nosuch\n"]), [1]);
    // A subcommand with no size.
    assert_eq!(
        lpd_exchange(lpd, &[b"\x02secure\n", b"\x03xx dfA001h\n"]),
        [0, 1]
    );
    // A control file naming no user: refused once it has come.
    let control = b"Hh\nldfA001h\n";
    let header = format!("\x02{} cfA001h\n", control.len());
    assert_eq!(
        lpd_exchange(
            lpd,
            &[b"\x02secure\n", header.as_bytes(), b"Hh\nldfA001h\n\0"]
        ),
        [0, 0, 1]
    );
    // A control file too large to be one.
    assert_eq!(
        lpd_exchange(lpd, &[b"\x02secure\n", b"\x021000000 cfA001h\n"]),
        [0, 1]
    );
    // A data file announced as 100000 bytes, 10 sent, then the sender is gone.
    let mut stream = TcpStream::connect(("127.0.0.1", lpd)).unwrap();
    stream
        .write_all(b"\x02secure\n\x03100000 dfA002h\n%PDF-1.7\n\n")
        .unwrap();
    let mut acks = [0u8; 2];
    stream.read_exact(&mut acks).unwrap();
    assert_eq!(acks, [0, 0]);
    drop(stream);
    // A complete data file whose control file never comes.
    let data = std::fs::read(fixture("small-4k.pdf")).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", lpd)).unwrap();
    stream
        .write_all(format!("\x02secure\n\x03{} dfA003h\n", data.len()).as_bytes())
        .unwrap();
    stream.write_all(&data).unwrap();
    stream.write_all(&[0]).unwrap();
    let mut acks = [0u8; 3];
    stream.read_exact(&mut acks).unwrap();
    assert_eq!(acks, [0, 0, 0]);
    drop(stream);

    // The daemon still serves, and none of that became a job or a file.
    assert!(rlpr(lpd, "secure", "alice", &[], &fixture("small-4k.pdf")));
    let jobs = wait_jobs(&appliance, 1);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["owner"], "alice");
    let spool = appliance.data_dir.join("spool");
    let files = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .count()
            })
            .unwrap_or(usize::MAX)
    };
    // The one job's small document is in the database: no file is left.
    let stored = wait_for(
        Duration::from_secs(30),
        "refused uploads to be removed",
        || (files(&spool) == 0 && files(&spool.join("tmp")) == 0).then_some(()),
    );
    assert!(
        stored.is_ok(),
        "spool: {} files, spool/tmp: {}",
        files(&spool),
        files(&spool.join("tmp"))
    );
    assert!(appliance.log().contains("before the job was complete"));
}

#[test]
fn raw_jobs_are_owned_by_their_pjl_user_or_their_host() {
    let tmp = tempfile::tempdir().unwrap();
    let (printer, appliance, _, raw) = appliance_with_ways_in(tmp.path(), "lobby-direct");
    let pdf = std::fs::read(fixture("three-pages.pdf")).unwrap();
    let mut pjl = b"\x1b%-12345X@PJL JOB NAME = \"Invoice 42\"\r\n\
@PJL SET USERNAME = \"dave\"\r\n@PJL ENTER LANGUAGE = PDF\r\n"
        .to_vec();
    pjl.extend_from_slice(&pdf);
    pjl.extend_from_slice(b"\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X");

    nc(raw, "127.0.0.1", &pjl);
    let printed = wait_for(Duration::from_secs(60), "the PJL job to print", || {
        printer.documents().into_iter().next()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
    assert_eq!(
        printed.1, pjl,
        "the printer gets the bytes as sent, PJL and all"
    );
    let jobs = wait_jobs(&appliance, 1);
    assert_eq!(jobs[0]["owner"], "dave");
    assert_eq!(jobs[0]["name"], "Invoice 42");
    assert_eq!(jobs[0]["pages"], 3);

    // No PJL, from a mapped host: the mapped owner.
    nc(raw, "127.0.0.2", &pdf);
    let jobs = wait_jobs(&appliance, 2);
    assert!(jobs.iter().any(|j| j["owner"] == "erp"), "{jobs:?}");

    // No PJL, from a host nobody is mapped to: refused and logged.
    nc(raw, "127.0.0.1", &pdf);
    wait_for(Duration::from_secs(30), "the refusal in the log", || {
        appliance.log().contains("raw job refused").then_some(())
    })
    .unwrap();
    assert_eq!(appliance.jobs().unwrap().len(), 2);
}
