//! Bad input gets a clear, protocol-correct answer, leaves nothing
//! half-written, and the daemon keeps serving: after every case a good
//! Print-Job still succeeds.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{Appliance, IppResponse, SmallDisk, fixture, ipp_request, standard_attributes, wait_for};

const PRINT_JOB: u16 = 0x0002;
const CREATE_JOB: u16 = 0x0005;
const SUCCESSFUL_OK: u16 = 0x0000;
const BAD_REQUEST: u16 = 0x0400;
const TOO_LARGE: u16 = 0x0408;
const FORMAT_NOT_SUPPORTED: u16 = 0x040A;
const FORMAT_ERROR: u16 = 0x0411;
const TEMPORARY_ERROR: u16 = 0x0505;
const OPERATION_NOT_SUPPORTED: u16 = 0x0501;
const VERSION_NOT_SUPPORTED: u16 = 0x0503;

const LIMITS: &str = r#"
[ipp]
listen = "127.0.0.1:0"
max_document_bytes = 1000000
max_attribute_bytes = 4096
idle_timeout_secs = 2
document_timeout_secs = 2
"#;

fn print_job(appliance: &Appliance, format: &str, document: &[u8]) -> IppResponse {
    let uri = appliance.uri("secure");
    let mut attrs = standard_attributes(&uri, "alice");
    attrs.push((0x49, "document-format", format.as_bytes()));
    let request = ipp_request(0x0101, PRINT_JOB, 7, &attrs, document);
    IppResponse::parse(&appliance.post_raw("/ipp/print/secure", &request).unwrap()).unwrap()
}

/// The daemon is alive, answers a good job, and left no temporary files.
fn still_serving(appliance: &mut Appliance) {
    assert!(appliance.is_running(), "daemon died:\n{}", appliance.log());
    let pdf = fs::read(fixture("document-a4.pdf")).unwrap();
    let response = print_job(appliance, "application/pdf", &pdf);
    assert_eq!(response.status, SUCCESSFUL_OK, "{response:?}");
    assert!(!appliance.log().contains("panicked"), "{}", appliance.log());
}

fn tmp_files(appliance: &Appliance) -> usize {
    fs::read_dir(appliance.data_dir.join("spool/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn start(dir: &Path) -> Appliance {
    Appliance::start(dir, LIMITS).unwrap()
}

#[test]
fn documents_over_the_limit_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize(1_500_000, b'x');
    let response = print_job(&appliance, "application/pdf", &big);
    assert_eq!(response.status, TOO_LARGE, "{response:?}");
    assert!(response.text("status-message").unwrap().contains("1000000"));
    assert_eq!(tmp_files(&appliance), 0);
    assert!(appliance.jobs().unwrap().is_empty());
    still_serving(&mut appliance);
}

#[test]
fn malformed_and_truncated_requests_are_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let uri = appliance.uri("secure");
    let good = ipp_request(
        0x0101,
        PRINT_JOB,
        1,
        &standard_attributes(&uri, "alice"),
        b"%PDF-1.4\n",
    );

    // An attribute tag that does not exist.
    let mut bad_tag = good.clone();
    bad_tag[9] = 0x7f;
    // Cut off in the middle of an attribute.
    let truncated = good[..20].to_vec();
    // Shorter than the 8-byte header.
    let tiny = good[..5].to_vec();
    // A text-with-language value whose inner lengths overrun the value
    // (makes the ipp crate's value parser panic; must still be a clean answer).
    let mut overrun = standard_attributes(&uri, "alice");
    overrun.push((
        0x35,
        "job-name",
        &[0x00, 0x02, b'e', b'n', 0x7f, 0xff, b'x'],
    ));
    let overrun = ipp_request(0x0101, PRINT_JOB, 1, &overrun, b"%PDF-1.4\n");
    // A requesting-user-name of the wrong type.
    let mut wrong_type = standard_attributes(&uri, "alice");
    wrong_type[3] = (0x21, "requesting-user-name", &[0, 0, 0, 1]);
    let wrong_type = ipp_request(0x0101, PRINT_JOB, 1, &wrong_type, b"%PDF-1.4\n");

    for (what, body) in [
        ("bad tag", bad_tag),
        ("truncated", truncated),
        ("tiny", tiny),
        ("overrun", overrun),
        ("wrong type", wrong_type),
    ] {
        let response = IppResponse::parse(&appliance.post_raw("/ipp/print/secure", &body).unwrap())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status, BAD_REQUEST, "{what}: {response:?}");
        assert!(
            response.text("status-message").is_some(),
            "{what}: no message"
        );
    }
    assert!(appliance.jobs().unwrap().is_empty());
    still_serving(&mut appliance);
}

#[test]
fn wrong_version_unknown_operation_and_unsupported_format() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let uri = appliance.uri("secure");
    let attrs = standard_attributes(&uri, "alice");

    let v3 = ipp_request(0x0300, 0x000B, 1, &attrs, b"");
    let r = IppResponse::parse(&appliance.post_raw("/ipp/print", &v3).unwrap()).unwrap();
    assert_eq!(r.status, VERSION_NOT_SUPPORTED);

    let unknown = ipp_request(0x0200, 0x0055, 1, &attrs, b"");
    let r = IppResponse::parse(&appliance.post_raw("/ipp/print", &unknown).unwrap()).unwrap();
    assert_eq!(r.status, OPERATION_NOT_SUPPORTED);

    let r = print_job(&appliance, "text/html", b"<html></html>");
    assert_eq!(r.status, FORMAT_NOT_SUPPORTED, "{r:?}");

    // Declared PDF, but it is PostScript.
    let r = print_job(&appliance, "application/pdf", b"%!PS-Adobe-3.0\nshowpage\n");
    assert_eq!(r.status, FORMAT_ERROR, "{r:?}");
    assert!(r.text("status-message").unwrap().contains("postscript"));

    assert!(appliance.jobs().unwrap().is_empty());
    assert_eq!(tmp_files(&appliance), 0);
    still_serving(&mut appliance);
}

#[test]
fn oversized_attributes_and_headers_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let uri = appliance.uri("secure");
    let long = vec![b'a'; 1000];
    let mut attrs = standard_attributes(&uri, "alice");
    for _ in 0..10 {
        attrs.push((0x41, "x-padding", &long));
    }
    let body = ipp_request(0x0101, PRINT_JOB, 1, &attrs, b"%PDF-1.4\n");
    let r = IppResponse::parse(&appliance.post_raw("/ipp/print/secure", &body).unwrap()).unwrap();
    assert_eq!(r.status, TOO_LARGE, "{r:?}");

    // A 64 KiB HTTP header line is refused at the HTTP layer.
    let mut stream = TcpStream::connect(("127.0.0.1", appliance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let huge = format!(
        "POST /ipp/print HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "j".repeat(64 * 1024)
    );
    let _ = stream.write_all(huge.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "unexpected answer: {answer}"
    );
    still_serving(&mut appliance);
}

#[test]
fn stalled_clients_time_out_without_blocking_others() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let uri = appliance.uri("secure");
    let mut attrs = standard_attributes(&uri, "alice");
    attrs.push((0x49, "document-format", b"application/pdf"));
    let mut document = b"%PDF-1.4\n".to_vec();
    document.resize(200_000, b'z');
    let request = ipp_request(0x0101, PRINT_JOB, 3, &attrs, &document);

    // Promise 200 KB, send half, then go silent.
    let mut stalled = TcpStream::connect(("127.0.0.1", appliance.port)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /ipp/print/secure HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
        request.len()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&request[..request.len() / 2]).unwrap();

    // Others are served meanwhile.
    let started = Instant::now();
    still_serving(&mut appliance);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a stalled client delayed others"
    );

    // The stalled request is answered with a timeout (or closed) after the idle timeout.
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    if !answer.is_empty() {
        let r = IppResponse::parse(&answer).unwrap();
        assert_eq!(r.status, 0x0405, "{r:?}");
    }
    wait_for(
        Duration::from_secs(10),
        "the partial upload to be removed",
        || (tmp_files(&appliance) == 0).then_some(()),
    )
    .unwrap();
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs.len(), 1, "only the good job is stored: {jobs:?}");
}

#[test]
fn create_job_without_its_document_is_aborted_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let uri = appliance.uri("secure");
    let request = ipp_request(
        0x0101,
        CREATE_JOB,
        1,
        &standard_attributes(&uri, "alice"),
        b"",
    );
    let r =
        IppResponse::parse(&appliance.post_raw("/ipp/print/secure", &request).unwrap()).unwrap();
    assert_eq!(r.status, SUCCESSFUL_OK);
    assert_eq!(r.integer("job-id"), Some(1));
    let job = wait_for(Duration::from_secs(30), "the job to be aborted", || {
        appliance
            .jobs()
            .ok()?
            .into_iter()
            .find(|j| j["state"] == "aborted")
    })
    .unwrap();
    assert!(
        job["state_message"]
            .as_str()
            .unwrap()
            .contains("No last document"),
        "{job}"
    );
    still_serving(&mut appliance);
}

/// A full disk: the data directory on a 4 MiB tmpfs. A document that does
/// not fit gets server-error-temporary-error naming the cause, and leaves no file and no
/// job; the daemon keeps serving smaller jobs.
#[test]
fn a_full_disk_is_a_server_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(tmp.path(), "4m");
    let mut appliance = Appliance::start(
        &disk.dir,
        "[ipp]\nlisten = \"127.0.0.1:0\"\nmax_document_bytes = 100000000\n\
         [store]\nreserve_bytes = 1048576\n",
    )
    .unwrap();
    // Incompressible bytes, so zstd cannot make them fit.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut document = b"%PDF-1.4\n".to_vec();
    while document.len() < 8 * 1024 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        document.extend_from_slice(&state.to_le_bytes());
    }
    let r = print_job(&appliance, "application/pdf", &document);
    assert_eq!(r.status, TEMPORARY_ERROR, "{r:?}");
    assert!(
        r.text("status-message").unwrap().contains("disk is full"),
        "{r:?}"
    );
    assert_eq!(tmp_files(&appliance), 0);
    assert!(appliance.jobs().unwrap().is_empty());
    still_serving(&mut appliance);
}

/// A refusal decided before the document is read still reaches a client
/// that is slow to send it: the server reads the rest of the body (up to a
/// bound) before answering, instead of closing on a client mid-upload.
#[test]
fn an_early_refusal_reaches_a_client_still_sending() {
    let tmp = tempfile::tempdir().unwrap();
    let mut appliance = start(tmp.path());
    let uri = appliance.uri("secure");
    let mut attrs = standard_attributes(&uri, "alice");
    attrs.push((0x49, "document-format", b"text/html"));
    let head = ipp_request(0x0101, PRINT_JOB, 9, &attrs, b"");
    let document = vec![b'<'; 900_000];

    let mut stream = TcpStream::connect(("127.0.0.1", appliance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /ipp/print/secure HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        head.len() + document.len()
    )
    .unwrap();
    stream.write_all(&head).unwrap();
    // The server has everything it needs to refuse; the client is still busy.
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&document).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let r = IppResponse::parse(&answer).unwrap();
    assert_eq!(r.status, FORMAT_NOT_SUPPORTED, "{r:?}");
    still_serving(&mut appliance);
}
