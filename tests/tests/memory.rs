//! Memory does not grow with document size: a document far larger than the
//! RSS budget is accepted while the daemon's peak RSS (`VmHWM`) stays under
//! 64 MiB. 256 MiB by default; 1 GiB in soak mode (`SOAK=1 tests/run`).

use e2e::{Appliance, upload, write_generated};

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
    // Generated on the fly: the test does not hold the document either.
    let (response, elapsed) = upload(appliance.port, "/ipp/print/secure", "alice", size, |out| {
        write_generated(out, size, 7)
    })
    .unwrap();
    assert_eq!(response.status, 0, "{response:?}");

    let peak = appliance.peak_rss().unwrap();
    eprintln!(
        "accepted a {} MiB document in {:.1} s with peak RSS {:.1} MiB",
        size >> 20,
        elapsed.as_secs_f64(),
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < RSS_BUDGET, "peak RSS {peak} bytes exceeds 64 MiB");
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs[0]["size"].as_u64(), Some(size));
}
