//! Attacks and bad days, each once found to break the appliance: logins
//! raced past the lockout, a card login steering the lockout to another
//! user, deeply nested IPP collections, slow uploads taking every spool
//! writer, idle connections filling the API, a full disk. Each test sends
//! what the attacker (or the bad day) sent and checks what must hold.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::{
    Appliance, HeldRequest, IppResponse, Printer, Rng, SmallDisk, SocketSink, connect_from,
    fixture, free_port, ipp_request, send_print_job, standard_attributes, wait_for,
};
use serde_json::json;

const PRINT_JOB: u16 = 0x0002;
const GET_PRINTER_ATTRIBUTES: u16 = 0x000B;
const CLIENT_TIMEOUT: u16 = 0x0405;
const SERVER_BUSY: u16 = 0x0507;
const SUCCESSFUL_OK: u16 = 0x0000;
const BAD_REQUEST: u16 = 0x0400;
const TEMPORARY_ERROR: u16 = 0x0505;

const PRINTERS: &str = "[[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n\
                        [[printer]]\nid = \"floor-2\"\nuri = \"socket://127.0.0.1:9\"\n";

fn audit_count(appliance: &Appliance, event: &str) -> usize {
    let out = appliance.cli(&["audit"], "").unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == event))
        .count()
}

fn login(device: &str, user: Option<&str>, method: &str, secret: &str) -> serde_json::Value {
    let mut body = json!({"device": device, "method": method, "secret": secret});
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    body
}

/// 39 wrong PINs completed at the same moment on 39 connections, and the
/// right PIN 10 ms later: no more PINs are checked than one after the
/// other would be (`lockout_after`), and the right one is refused.
#[test]
fn a_burst_of_wrong_pins_is_checked_no_more_than_the_lockout_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), PRINTERS).unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let api = appliance.api().unwrap();

    let mut guesses: Vec<HeldRequest> = (0..39)
        .map(|i| {
            let pin = format!("{:04}", 5000 + i);
            HeldRequest::post(
                appliance.api_port,
                "/api/v1/sessions",
                &login("lobby", Some("alice"), "pin", &pin),
            )
            .unwrap()
        })
        .collect();
    let mut right = HeldRequest::post(
        appliance.api_port,
        "/api/v1/sessions",
        &login("lobby", Some("alice"), "pin", "1234"),
    )
    .unwrap();
    for guess in &mut guesses {
        guess.complete().unwrap();
    }
    std::thread::sleep(Duration::from_millis(10)); // the attacker's timing, not a wait for a result
    right.complete().unwrap();
    let statuses: Vec<u16> = guesses
        .into_iter()
        .map(|g| g.answer().unwrap().status)
        .collect();
    let right = right.answer().unwrap();
    assert_eq!(
        right.status, 429,
        "the right PIN got through: {}",
        right.json
    );

    // Four wrong (401), the fifth locks, the other 34 were never checked.
    let wrong = statuses.iter().filter(|&&s| s == 401).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((wrong, refused), (4, 35), "{statuses:?}");
    assert_eq!(audit_count(&appliance, "login-failed"), 5);
    assert_eq!(audit_count(&appliance, "login-refused"), 35);
    // And the lock holds for the right PIN at every printer.
    let later = api
        .call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(&login("floor-2", Some("alice"), "pin", "1234")),
        )
        .unwrap();
    assert_eq!(
        (later.status, later.json["error"]["code"].as_str()),
        (429, Some("locked"))
    );
}

/// Bob locked by wrong PINs cannot log in by card at another printer,
/// whatever user name the request adds; a card login naming a user is a
/// bad request and does not clear his lock.
#[test]
fn a_card_login_cannot_steer_the_lockout_to_someone_else() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        tmp.path(),
        &format!(
            "{PRINTERS}[api]\nlisten = \"127.0.0.1:0\"\nlockout_after = 3\nlockout_secs = 30\n"
        ),
    )
    .unwrap();
    let added = appliance
        .cli(
            &[
                "users", "add", "bob", "--name", "Bob", "--pin", "--card", "C0FFEE01",
            ],
            "9876\n",
        )
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    appliance.add_user("someone-else", "1111", &[]).unwrap();
    let api = appliance.api().unwrap();
    let call = |body: serde_json::Value| {
        api.call("POST", "/api/v1/sessions", None, Some(&body))
            .unwrap()
    };
    for pin in ["0000", "0001"] {
        assert_eq!(call(login("lobby", Some("bob"), "pin", pin)).status, 401);
    }
    assert_eq!(call(login("lobby", Some("bob"), "pin", "0002")).status, 429);

    let card = call(login("floor-2", None, "card", "C0FFEE01"));
    assert_eq!(
        (card.status, card.json["error"]["code"].as_str()),
        (429, Some("locked"))
    );
    let steered = call(login("floor-2", Some("someone-else"), "card", "C0FFEE01"));
    assert_eq!(
        (steered.status, steered.json["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{}",
        steered.json
    );
    let steered = call(login("floor-2", Some("bob"), "card", "C0FFEE01"));
    assert_eq!(steered.status, 400);
    // Bob is still locked, everywhere.
    assert_eq!(
        call(login("floor-2", Some("bob"), "pin", "9876")).status,
        429
    );
    assert_eq!(call(login("floor-2", None, "card", "C0FFEE01")).status, 429);
}

/// CPU time the process has used so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory-safety preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_sec)
}

/// A 64 KiB Get-Printer-Attributes with `media-col` nested 4,000 deep
/// once cost most of a CPU second to parse, unauthenticated. It is refused
/// as a bad request before the parser sees it; depth IPP uses still works.
#[test]
fn deeply_nested_collections_are_refused_before_they_cost_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let uri = appliance.uri("secure");
    let nested = |depth: usize| {
        let mut attrs = standard_attributes(&uri, "mallory");
        attrs.push((0x34, "media-col", b""));
        for _ in 1..depth {
            attrs.push((0x4a, "", b"a"));
            attrs.push((0x34, "", b""));
        }
        attrs.push((0x4a, "", b"x-dimension"));
        attrs.push((0x21, "", &[0, 0, 0x52, 0x08]));
        attrs.extend(std::iter::repeat_n((0x37, "", &b""[..]), depth));
        ipp_request(0x0200, GET_PRINTER_ATTRIBUTES, 1, &attrs, b"")
    };
    let pid = appliance.pid().unwrap();
    let before = cpu_time(pid);
    for _ in 0..20 {
        let request = nested(4000);
        assert!(request.len() <= 64 * 1024, "{}", request.len());
        let r = IppResponse::parse(&appliance.post_raw("/ipp/print", &request).unwrap()).unwrap();
        assert_eq!(r.status, BAD_REQUEST, "{r:?}");
        assert!(
            r.text("status-message").unwrap().contains("nested deeper"),
            "{r:?}"
        );
    }
    let spent = cpu_time(pid) - before;
    eprintln!("20 requests nested 4,000 deep cost the daemon {spent:?} of CPU");
    let fine = IppResponse::parse(&appliance.post_raw("/ipp/print", &nested(3)).unwrap()).unwrap();
    assert_eq!(fine.status, SUCCESSFUL_OK, "{fine:?}");
}

/// Journal records of the data directory, via `appliance report`.
fn journaled_jobs(appliance: &Appliance) -> u64 {
    let out = appliance
        .cli(&["report", "--by", "user", "--csv"], "")
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The disk filled to the last byte by someone else: documents are
/// refused with server-error-temporary-error and the queue says
/// `spool-area-full`, while logins, releases, job progress and the journal
/// go on in the reserve; every released job prints and is journaled once,
/// and the answer lists exactly what was queued. Once space is back, jobs
/// are taken again.
#[test]
fn a_full_disk_refuses_documents_and_keeps_releasing() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(tmp.path(), "32m");
    let sink = SocketSink::start().unwrap();
    let appliance = Appliance::start(
        &disk.dir,
        &format!(
            "[store]\nreserve_bytes = 8388608\n[[printer]]\nid = \"lobby\"\nuri = \"{}\"\n\
             [[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
             [ipp]\nlisten = \"127.0.0.1:0\"\ndocument_timeout_secs = 4\n",
            sink.uri()
        ),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let pdf = std::fs::read(fixture("document-a4.pdf")).unwrap();
    for _ in 0..10 {
        let r = send_print_job(appliance.port, "secure", "alice", &pdf).unwrap();
        assert_eq!(r.status, SUCCESSFUL_OK, "{r:?}");
    }

    let filler = disk.fill();
    let r = send_print_job(appliance.port, "secure", "alice", &pdf).unwrap();
    assert_eq!(r.status, TEMPORARY_ERROR, "{r:?}");
    assert!(
        r.text("status-message").unwrap().contains("disk is full"),
        "{r:?}"
    );

    // Logging in and releasing write the audit log and job states.
    let released = release_all(&appliance, "alice", "1234");
    let outcomes: Vec<&str> = released["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["queued"; 10], "{released}");
    wait_for(
        Duration::from_secs(60),
        "ten documents at the printer",
        || (sink.documents().len() == 10).then_some(()),
    )
    .unwrap();
    wait_for(Duration::from_secs(30), "ten journal records", || {
        (journaled_jobs(&appliance) == 10).then_some(())
    })
    .unwrap();
    let gpa = ipp_request(
        0x0200,
        GET_PRINTER_ATTRIBUTES,
        2,
        &standard_attributes(&appliance.uri("secure"), "alice"),
        b"",
    );
    let status =
        IppResponse::parse(&appliance.post_raw("/ipp/print/secure", &gpa).unwrap()).unwrap();
    assert_eq!(
        status.text("printer-state-reasons").as_deref(),
        Some("spool-area-full"),
        "{status:?}"
    );

    // Space is back: the reserve is put back and documents are taken.
    std::fs::remove_file(filler).unwrap();
    wait_for(
        Duration::from_secs(30),
        "documents to be taken again",
        || {
            let r = send_print_job(appliance.port, "secure", "alice", &pdf).ok()?;
            (r.status == SUCCESSFUL_OK).then_some(())
        },
    )
    .unwrap();
    assert!(appliance.log().contains("the reserve is in place"));
    assert!(!appliance.log().contains("panicked"));
}

/// A Print-Job that sends its head and the first bytes of a 1 MB document
/// at once, then one byte every half second (each inside any idle
/// timeout), from the loopback address `from`, until it is answered.
struct SlowUpload {
    stream: TcpStream,
    answer: std::sync::mpsc::Receiver<IppResponse>,
    stop: Arc<AtomicBool>,
}

impl SlowUpload {
    fn start(appliance: &Appliance, from: Ipv4Addr) -> SlowUpload {
        let uri = appliance.uri("secure");
        let mut attrs = standard_attributes(&uri, "mallory");
        attrs.push((0x49, "document-format", b"application/pdf"));
        let request = ipp_request(0x0101, PRINT_JOB, 1, &attrs, b"%PDF-1.4\n");
        let mut stream = connect_from(from, appliance.port).unwrap();
        let head = format!(
            "POST /ipp/print/secure HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ipp\r\n\
             Content-Length: {}\r\n\r\n",
            request.len() + 1_000_000
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&request).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut writer, trickling) = (stream.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            for _ in 0..120 {
                std::thread::sleep(Duration::from_millis(500)); // the attacker's pace
                if trickling.load(Ordering::SeqCst) || writer.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        let (tell, answer) = std::sync::mpsc::channel();
        let (mut reader, answered) = (stream.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
                if let Ok(r) = IppResponse::parse(&received) {
                    answered.store(true, Ordering::SeqCst);
                    let _ = tell.send(r);
                    return;
                }
            }
        });
        SlowUpload {
            stream,
            answer,
            stop,
        }
    }

    /// The IPP answer, if one comes by `deadline`.
    fn answer_by(&self, deadline: Instant) -> Option<IppResponse> {
        self.answer
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }
}

impl Drop for SlowUpload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A good Print-Job from 127.0.0.1, answered within 30 s or failed.
fn good_print_job(appliance: &Appliance) -> IppResponse {
    let pdf = std::fs::read(fixture("document-a4.pdf")).unwrap();
    let (done, answer) = std::sync::mpsc::channel();
    let port = appliance.port;
    std::thread::spawn(move || {
        let _ = done.send(send_print_job(port, "secure", "alice", &pdf));
    });
    answer
        .recv_timeout(Duration::from_secs(30))
        .expect("a good Print-Job got no answer within 30 s")
        .unwrap()
}

/// 16 Print-Jobs from 16 hosts, each sending a byte every half second,
/// once took every spool writer and a good Print-Job hung. Now an upload
/// under the rate floor is cut after one window and the good job gets its
/// turn.
#[test]
fn slow_uploads_are_cut_and_others_print() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        tmp.path(),
        "[ipp]\nlisten = \"127.0.0.1:0\"\nidle_timeout_secs = 2\nmin_bytes_per_sec = 1024\n",
    )
    .unwrap();
    let slow: Vec<SlowUpload> = (2..18)
        .map(|i| SlowUpload::start(&appliance, Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    let good = good_print_job(&appliance);
    assert_eq!(good.status, SUCCESSFUL_OK, "{good:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for upload in &slow {
        let answer = upload
            .answer_by(deadline)
            .expect("a slow upload got no answer");
        assert_eq!(answer.status, CLIENT_TIMEOUT, "{answer:?}");
        assert!(
            answer.text("status-message").unwrap().contains("bytes/s"),
            "{answer:?}"
        );
    }
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs.len(), 1, "only the good job is stored: {jobs:?}");
}

/// Without a rate floor, 16 slow uploads from one host take only that
/// host's share of the spool writers: a good Print-Job from another host
/// is served at once, and the host's uploads beyond its share are told
/// the appliance is busy after a bounded wait.
#[test]
fn one_host_takes_only_its_share_of_the_spool_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        tmp.path(),
        "[ipp]\nlisten = \"127.0.0.1:0\"\nidle_timeout_secs = 60\nmin_bytes_per_sec = 0\n",
    )
    .unwrap();
    let host = Ipv4Addr::new(127, 0, 0, 9);
    let slow: Vec<SlowUpload> = (0..16)
        .map(|_| SlowUpload::start(&appliance, host))
        .collect();
    let good = good_print_job(&appliance);
    assert_eq!(good.status, SUCCESSFUL_OK, "{good:?}");
    // The bounded wait is 10 s, then at most 5 s of draining the body; the
    // share's four keep trickling meanwhile.
    let deadline = Instant::now() + Duration::from_secs(25);
    let answers: Vec<Option<IppResponse>> = slow.iter().map(|u| u.answer_by(deadline)).collect();
    let busy = answers
        .iter()
        .flatten()
        .filter(|r| r.status == SERVER_BUSY)
        .count();
    assert_eq!(
        (busy, answers.iter().filter(|a| a.is_none()).count()),
        (12, 4),
        "all but the host's share of 4 are told busy: {answers:?}"
    );
}

/// 64 idle keep-alive connections (the release API's limit) once stalled
/// a new client until the header timeout closed them; now the idle ones
/// are closed as soon as the slots run out.
#[test]
fn idle_keep_alive_connections_do_not_lock_out_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), PRINTERS).unwrap();
    let request = b"GET /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", appliance.api_port)).unwrap();
            s.write_all(request).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            s
        })
        .collect();
    // A new client is answered well before the 10 s header timeout would
    // have closed the idle ones.
    let mut s = TcpStream::connect(("127.0.0.1", appliance.api_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .expect("the new client got no answer within 5 s");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(idle);
}

/// Logs `user` in at lobby and releases all their jobs; the answer.
fn release_all(appliance: &Appliance, user: &str, pin: &str) -> serde_json::Value {
    let api = appliance.api().unwrap();
    let token = api.login_pin("lobby", user, pin).unwrap();
    api.release_all(&token).unwrap()
}

/// Journal records by outcome, via `appliance report --csv`: completed,
/// failed, uncertain.
fn journal_outcomes(appliance: &Appliance) -> (u64, u64, u64) {
    let out = appliance
        .cli(&["report", "--by", "user", "--csv"], "")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let wanted = [column("jobs"), column("failed"), column("uncertain")];
    lines.fold((0, 0, 0), |(c, f, u), line| {
        let fields: Vec<&str> = line.split(',').collect();
        let value = |i: usize| fields[wanted[i]].parse::<u64>().unwrap();
        (c + value(0), f + value(1), u + value(2))
    })
}

/// The appliance killed at random moments while releasing to a real IPP
/// printer: after each restart, a job the printer got is found there (by
/// the mark in its name) and followed, one it never got is released again;
/// no document prints twice and every print is journaled once.
#[test]
fn a_crash_during_release_neither_prints_twice_nor_loses_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let mut appliance = Appliance::start(
        &tmp.path().join("appliance"),
        &format!(
            "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
             [[printer]]\nid = \"lobby\"\nuri = \"{}\"\n\
             [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n",
            printer.uri()
        ),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let rounds = 8;
    let mut rng = Rng::new(0x5eed_0014);
    let mut documents = Vec::new();
    let (mut released_again, mut found, mut not_found) = (0, 0, 0);
    for round in 0..rounds {
        let document = rng.pdf(24_000_000 + round * 1000);
        let r = send_print_job(appliance.port, "secure", "alice", &document).unwrap();
        assert_eq!(r.status, SUCCESSFUL_OK, "{r:?}");
        documents.push(document);
        release_all(&appliance, "alice", "1234");
        // The crash, somewhere on the job's way to the printer: once it is
        // being sent, after a random part of a transfer's time.
        wait_for(Duration::from_secs(30), "the job to be on its way", || {
            let jobs = appliance.jobs().ok()?;
            jobs.iter()
                .any(|j| j["state"] == "processing" || j["state"] == "completed")
                .then_some(())
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(rng.range(0, 400))); // when to crash, not a wait for a result
        appliance.kill();
        appliance.restart().unwrap();
        // Whatever the crash left held is released again, until all printed.
        wait_for(Duration::from_secs(90), "every job printed", || {
            let jobs = appliance.jobs().ok()?;
            if jobs.iter().all(|j| j["state"] == "completed") {
                return Some(());
            }
            if jobs.iter().any(|j| j["state"] == "held") {
                released_again += 1;
                release_all(&appliance, "alice", "1234");
            }
            None
        })
        .unwrap();
        let log = appliance.log();
        found += log.matches("the printer got the whole job").count();
        not_found += log.matches("the printer never got the job").count();
    }
    // What the printer produced: every job it ran for one of ours, whole
    // or cut short (some printers take a broken connection as the end of
    // the document).
    let received = printer.documents();
    let mut outputs = 0;
    for (round, document) in documents.iter().enumerate() {
        let runs: Vec<usize> = received
            .iter()
            .filter(|(_, d)| document.starts_with(d))
            .map(|(_, d)| d.len())
            .collect();
        let whole = runs.iter().filter(|&&n| n == document.len()).count();
        assert!(
            whole <= 1 && !runs.is_empty(),
            "round {round}: the printer ran it {} times, {whole} of them whole",
            runs.len()
        );
        outputs += runs.len() as u64;
    }
    let (completed, failed, uncertain) = journal_outcomes(&appliance);
    eprintln!(
        "{rounds} crashes: the printer ran {outputs} jobs; journaled {completed} printed, \
         {failed} failed, {uncertain} uncertain; after the restarts the printer had the job \
         {found} times, not {not_found} times; {released_again} polls found a job held"
    );
    assert_eq!(
        completed + failed + uncertain,
        outputs,
        "every job the printer ran is journaled once"
    );
    assert!(!appliance.log().contains("panicked"));
}

/// A raw 9100 printer cannot say what it got: an attempt cut by a crash
/// is journaled once as uncertain and the job held for its owner; deleting
/// it then adds no second record.
#[test]
fn an_attempt_the_printer_cannot_confirm_is_journaled_as_uncertain() {
    let tmp = tempfile::tempdir().unwrap();
    // A printer that takes the connection but never reads: the transfer
    // stalls once the socket buffers are full, and the job stays processing.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let mut appliance = Appliance::start(
        tmp.path(),
        &format!(
            "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
             [[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let document = Rng::new(9100).pdf(32 * 1024 * 1024);
    let r = send_print_job(appliance.port, "secure", "alice", &document).unwrap();
    assert_eq!(r.status, SUCCESSFUL_OK);
    release_all(&appliance, "alice", "1234");
    wait_for(Duration::from_secs(30), "the job to be on its way", || {
        let jobs = appliance.jobs().ok()?;
        (jobs[0]["state"] == "processing").then_some(())
    })
    .unwrap();
    appliance.kill();
    drop(stalled);
    appliance.restart().unwrap();
    let job = wait_for(Duration::from_secs(30), "the job to be held", || {
        let jobs = appliance.jobs().ok()?;
        (jobs[0]["state"] == "held").then(|| jobs[0].clone())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", appliance.jobs(), appliance.log()));
    assert!(
        job["state_message"]
            .as_str()
            .unwrap()
            .contains("may or may not have printed"),
        "{job}"
    );
    assert_eq!(journal_outcomes(&appliance), (0, 0, 1));

    let api = appliance.api().unwrap();
    let token = api.login_pin("lobby", "alice", "1234").unwrap();
    let id = job["uuid"].as_str().unwrap();
    let r = api
        .call("DELETE", &format!("/api/v1/jobs/{id}"), Some(&token), None)
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.json);
    assert_eq!(journal_outcomes(&appliance), (0, 0, 1), "no second record");
    let report = appliance
        .cli(&["report", "--by", "user", "--csv"], "")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&report.stdout).contains("\nalice,0,0,0,0,0,0,1"),
        "{}",
        String::from_utf8_lossy(&report.stdout)
    );
}

/// No reserve, and the disk filled by someone else while a job waits for
/// its printer: the forwarder cannot record its next step, and waits with
/// a growing delay (one log line, a metric, little CPU) instead of
/// retrying at once; once space is back the job prints and is journaled.
#[test]
fn a_forwarder_that_cannot_record_waits_instead_of_spinning() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(tmp.path(), "16m");
    let port = free_port();
    let appliance = Appliance::start(
        &disk.dir,
        &format!(
            "[store]\nreserve_bytes = 0\n[[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:{port}\"\n\
             [[queue]]\nname = \"direct\"\nkind = \"direct\"\nprinter = \"lobby\"\n\
             [output]\nretry_initial_secs = 1\nretry_max_secs = 1\n"
        ),
    )
    .unwrap();
    let pdf = std::fs::read(fixture("document-a4.pdf")).unwrap();
    let r = send_print_job(appliance.port, "direct", "alice", &pdf).unwrap();
    assert_eq!(r.status, SUCCESSFUL_OK, "{r:?}");
    // The printer is not there yet: the job waits, retried every second.
    wait_for(
        Duration::from_secs(30),
        "the job to wait for its printer",
        || {
            let jobs = appliance.jobs().ok()?;
            jobs[0]["state_message"]
                .as_str()?
                .contains("trying again")
                .then_some(())
        },
    )
    .unwrap();
    let filler = disk.fill();
    let pid = appliance.pid().unwrap();
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(4)); // a stretch of time to measure CPU and log over
    let spent = cpu_time(pid) - before;
    let log = appliance.log();
    assert_eq!(
        log.matches("cannot record print progress in the store")
            .count(),
        1,
        "{log}"
    );
    assert!(
        spent < Duration::from_millis(500),
        "{spent:?} of CPU in 4 s"
    );
    assert!(
        appliance
            .get("/metrics")
            .unwrap()
            .contains("appliance_output_store_failing{printer=\"lobby\"} 1")
    );

    // Space and the printer are back: the job prints and is journaled once.
    let printer = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::fs::remove_file(filler).unwrap();
    let (mut conn, _) = printer.accept().unwrap();
    let mut received = Vec::new();
    conn.read_to_end(&mut received).unwrap();
    assert!(received == pdf, "the printer got other bytes");
    wait_for(Duration::from_secs(30), "the job to be journaled", || {
        (journal_outcomes(&appliance) == (1, 0, 0)).then_some(())
    })
    .unwrap();
    assert!(
        appliance
            .log()
            .contains("the store records print progress again")
    );
    eprintln!("while the store could not write: {spent:?} of CPU in 4 s");
}
