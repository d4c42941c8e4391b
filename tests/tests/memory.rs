//! Memory does not grow with document size: a document far larger than the
//! RSS budget is accepted while the daemon's peak RSS (`VmHWM`) stays under
//! 64 MiB. 256 MiB by default; 1 GiB in soak mode (`SOAK=1 tests/run`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::{Appliance, IppResponse, Rng, ipp_request, standard_attributes};

const RSS_BUDGET: u64 = 64 * 1024 * 1024;

#[test]
fn a_huge_document_streams_through_in_bounded_memory() {
    let size: u64 = if std::env::var("APPLIANCE_SOAK").is_ok() {
        1 << 30
    } else {
        256 << 20
    };
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        tmp.path(),
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n",
    )
    .unwrap();
    let uri = appliance.uri("secure");
    let mut attrs = standard_attributes(&uri, "alice");
    attrs.push((0x49, "document-format", b"application/pdf"));
    let head = ipp_request(0x0101, 0x0002, 1, &attrs, b"");

    let mut stream = TcpStream::connect(("127.0.0.1", appliance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    write!(
        stream,
        "POST /ipp/print/secure HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        head.len() as u64 + size
    )
    .unwrap();
    stream.write_all(&head).unwrap();
    // Generated on the fly: the test does not hold the document either.
    let mut rng = Rng::new(7);
    let mut chunk = rng.pdf(1 << 20);
    let mut sent = 0u64;
    while sent < size {
        let n = chunk.len().min((size - sent) as usize);
        stream.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
        for b in chunk.chunks_mut(8) {
            b.copy_from_slice(&rng.next_u64().to_le_bytes()[..b.len()]);
        }
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = IppResponse::parse(&response).unwrap();
    assert_eq!(response.status, 0, "{response:?}");

    let peak = appliance.peak_rss().unwrap();
    eprintln!(
        "accepted a {} MiB document with peak RSS {:.1} MiB",
        size >> 20,
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < RSS_BUDGET, "peak RSS {peak} bytes exceeds 64 MiB");
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs[0]["size"].as_u64(), Some(size));
}
