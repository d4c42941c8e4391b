//! Printer pools with three real printers (`ippeveprinter`s) behind one
//! direct queue: a member stopped in the middle of 30 jobs leaves every job
//! printed exactly once by the others and takes jobs again once restarted;
//! `least-busy` spreads jobs over every member, and skips one that reports
//! its trays empty; a job released at the pool prints on a fit member.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{
    Appliance, Printer, Rng, appliance_bin, run_with_timeout, send_print_job, sha256, wait_for,
};

const QUEUE: &str = "floor-direct";

/// Three printers `a`, `b`, `c` and an appliance with pool `floor` of
/// them under `policy`, its direct queue, and a pull queue; members probed
/// every second.
fn floor(dir: &Path, policy: &str) -> (Vec<Printer>, Appliance) {
    floor_probed_every(dir, policy, 1)
}

fn floor_probed_every(dir: &Path, policy: &str, probe_secs: u64) -> (Vec<Printer>, Appliance) {
    let printers: Vec<Printer> = ["a", "b", "c"]
        .iter()
        .map(|id| Printer::start(&dir.join(id)).unwrap())
        .collect();
    let mut config = String::new();
    for (id, printer) in ["a", "b", "c"].iter().zip(&printers) {
        config.push_str(&format!(
            "[[printer]]\nid = \"{id}\"\nuri = \"{}\"\n",
            printer.uri()
        ));
    }
    config.push_str(&format!(
        "[[pool]]\nid = \"floor\"\nname = \"Floor 2\"\nprinters = [\"a\", \"b\", \"c\"]\n\
         policy = \"{policy}\"\n\
         [[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [[queue]]\nname = \"{QUEUE}\"\nkind = \"direct\"\nprinter = \"floor\"\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 2\npoll_interval_secs = 1\n\
         probe_interval_secs = {probe_secs}\nrequest_timeout_secs = 5\n"
    ));
    let appliance = Appliance::start(&dir.join("appliance"), &config).unwrap();
    (printers, appliance)
}

/// `count` different 4 KiB PDFs, one per job.
fn documents(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| rng.pdf(4096)).collect()
}

fn submit(appliance: &Appliance, documents: &[Vec<u8>]) {
    for document in documents {
        let answer = send_print_job(appliance.port, QUEUE, "alice", document).unwrap();
        assert_eq!(answer.status, 0, "Print-Job refused");
    }
}

/// Which printer (by index) received each document, and how often.
fn receipts(printers: &[Printer]) -> HashMap<String, Vec<usize>> {
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, printer) in printers.iter().enumerate() {
        for (_, bytes) in printer.documents() {
            seen.entry(sha256(&bytes)).or_default().push(i);
        }
    }
    seen
}

/// Waits until `count` jobs are stored and every one is printed or held,
/// but for those still being followed at printer `stopped`; returns them.
fn settled(
    appliance: &Appliance,
    count: usize,
    stopped: Option<&str>,
    what: &str,
) -> Vec<serde_json::Value> {
    wait_for(Duration::from_secs(120), what, || {
        let jobs = appliance.jobs().ok()?;
        let done = jobs.len() >= count
            && jobs.iter().all(|j| {
                ["completed", "held"].contains(&j["state"].as_str().unwrap_or(""))
                    || (j["state"] == "processing" && j["printer"].as_str() == stopped)
            });
        done.then_some(jobs)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", appliance.jobs(), appliance.log()))
}

/// alice prints `document` to the pull queue, logs in at the pool and
/// releases it there.
fn release_at_pool(appliance: &Appliance, document: &[u8]) {
    appliance.add_user("alice", "1234", &[]).unwrap();
    let answer = send_print_job(appliance.port, "secure", "alice", document).unwrap();
    assert_eq!(answer.status, 0);
    let api = appliance.api().unwrap();
    let token = api.login_pin("floor", "alice", "1234").unwrap();
    let body = serde_json::json!({"jobs": "all"});
    let r = api
        .call("POST", "/api/v1/jobs/release", Some(&token), Some(&body))
        .unwrap();
    assert_eq!(r.json["jobs"][0]["outcome"], "queued", "{}", r.json);
}

/// `appliance report --by device --csv` as device → jobs printed.
fn printed_by_device(appliance: &Appliance) -> HashMap<String, u64> {
    let out = appliance
        .cli(&["report", "--by", "device", "--csv"], "")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.split(',');
            Some((cells.next()?.to_owned(), cells.next()?.parse().ok()?))
        })
        .collect()
}

/// Waits until the daemon's `/metrics` shows `printer` of pool `floor` in `state`.
fn wait_member_state(appliance: &Appliance, printer: &str, state: &str) {
    let line = format!(
        "appliance_pool_member_state{{pool=\"floor\",printer=\"{printer}\",state=\"{state}\"}} 1"
    );
    wait_for(
        Duration::from_secs(30),
        &format!("{printer} {state}"),
        || appliance.get("/metrics").ok().filter(|m| m.contains(&line)),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
}

#[test]
fn a_member_stopped_midway_leaves_every_job_printed_once_by_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut printers, appliance) = floor(tmp.path(), "failover");
    let first = documents(1, 30);
    submit(&appliance, &first);

    // Failover: the first member takes the pool's jobs while it is fit.
    wait_for(Duration::from_secs(60), "a to print 5 jobs", || {
        (printers[0].documents().len() >= 5).then_some(())
    })
    .unwrap();
    let (a_dir, a_port) = (printers[0].dir.clone(), printers[0].port);
    drop(printers.remove(0));
    let jobs = settled(
        &appliance,
        30,
        Some("a"),
        "the other members to print the rest",
    );

    // The job a was printing when it stopped may still be followed there.
    let waiting_for_a = jobs
        .iter()
        .filter(|j| j["state"] == "processing" && j["printer"] == "a")
        .count();
    assert!(waiting_for_a <= 1, "{jobs:#?}");
    printers.insert(0, Printer::start_on(&a_dir, a_port).unwrap());
    wait_member_state(&appliance, "a", "ready");

    // Back and fit, a takes the pool's new jobs again.
    let later = documents(2, 3);
    submit(&appliance, &later);
    let jobs = settled(&appliance, 33, None, "every job to finish");

    let seen = receipts(&printers);
    for (n, document) in first.iter().chain(&later).enumerate() {
        let at = seen.get(&sha256(document)).cloned().unwrap_or_default();
        assert!(at.len() <= 1, "job {n} printed twice: at {at:?}");
    }
    // A job cut off while it was on its way to a may be held (it may have
    // printed there); it never goes to another member.
    let held: Vec<_> = jobs.iter().filter(|j| j["state"] == "held").collect();
    assert!(held.len() <= 1, "{held:#?}");
    let completed = jobs.iter().filter(|j| j["state"] == "completed").count();
    assert_eq!(completed + held.len(), 33);
    for (n, document) in first.iter().enumerate() {
        let at = seen.get(&sha256(document)).cloned().unwrap_or_default();
        if at.is_empty() {
            assert_eq!(held.len(), 1, "job {n} never printed and is not held");
        }
    }
    for document in &later {
        assert_eq!(
            seen[&sha256(document)],
            [0],
            "a rejoined and takes new jobs"
        );
    }
    let b = printers[1].documents().len();
    assert!(b >= 1, "b took over");
    assert!(
        printers[2].documents().is_empty(),
        "failover goes to the next member in order, not to c"
    );
    // b printed what it took in submission order.
    let order: Vec<usize> = printers[1]
        .documents()
        .iter()
        .map(|(_, bytes)| first.iter().position(|d| d == bytes).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");

    // Accounting names the printer that printed each job.
    let by_device = printed_by_device(&appliance);
    assert_eq!(by_device.get("b").copied(), Some(b as u64), "{by_device:?}");
    assert_eq!(by_device.values().sum::<u64>(), completed as u64);
    assert_eq!(by_device.get("c"), None, "{by_device:?}");
}

#[test]
fn least_busy_spreads_jobs_skips_an_empty_member_and_takes_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let (printers, appliance) = floor(tmp.path(), "least-busy");
    let spread = documents(3, 30);
    submit(&appliance, &spread);
    settled(&appliance, 30, None, "30 jobs over three members");
    let seen = receipts(&printers);
    for (n, document) in spread.iter().enumerate() {
        assert_eq!(
            seen.get(&sha256(document)).map(Vec::len),
            Some(1),
            "job {n} must print exactly once"
        );
    }
    let counts: Vec<usize> = printers.iter().map(|p| p.documents().len()).collect();
    assert!(
        counts.iter().all(|n| *n >= 3),
        "least-busy keeps every member working: {counts:?}"
    );

    // c's trays run empty: it reports media-empty, and the pool skips it.
    printers[2].load_media(0).unwrap();
    wait_member_state(&appliance, "c", "degraded");
    let before_c = counts[2];
    let more = documents(4, 10);
    submit(&appliance, &more);
    settled(&appliance, 40, None, "10 more jobs");
    let seen = receipts(&printers);
    for document in &more {
        let at = &seen[&sha256(document)];
        assert!(at.len() == 1 && at[0] != 2, "printed at {at:?}");
    }
    assert_eq!(printers[2].documents().len(), before_c);
    let printers_list = run_with_timeout(
        Command::new(appliance_bin())
            .args(["printers", "list", "--timeout", "3", "--config"])
            .arg(appliance.config_path()),
        Duration::from_secs(60),
    )
    .unwrap();
    let listing = String::from_utf8_lossy(&printers_list.stdout);
    assert!(
        listing.contains("pool floor (Floor 2), least-busy")
            && listing.contains("takes jobs: a, b")
            && listing.contains("c: degraded (media-empty-report)"),
        "{listing}"
    );

    // A job released at the pool prints on one of its fit members.
    let held = Rng::new(5).pdf(4096);
    release_at_pool(&appliance, &held);
    let jobs = settled(&appliance, 41, None, "the released job to print");
    let released = jobs.iter().find(|j| j["queue"] == "secure").unwrap();
    assert_eq!(released["state"], "completed", "{released}");
    let at = &receipts(&printers)[&sha256(&held)];
    assert_eq!(at.len(), 1);
    let printer = ["a", "b", "c"][at[0]];
    assert_ne!(printer, "c", "the member without paper was skipped");
    assert_eq!(released["printer"], printer, "{released}");
}

#[test]
fn a_job_a_member_cannot_take_goes_to_the_next_member_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Probed once, at start: what takes a out here is the send that fails.
    let (mut printers, appliance) = floor_probed_every(tmp.path(), "failover", 3600);
    wait_for(Duration::from_secs(30), "the first probe", || {
        appliance.log().contains("pool probed").then_some(())
    })
    .unwrap();
    drop(printers.remove(0));
    let jobs = documents(6, 5);
    submit(&appliance, &jobs);
    let released = Rng::new(7).pdf(4096);
    release_at_pool(&appliance, &released);

    let stored = settled(&appliance, 6, None, "every job to print on b");
    assert!(
        stored
            .iter()
            .all(|j| j["state"] == "completed" && j["printer"] == "b"),
        "{stored:#?}"
    );
    let at_b: Vec<Vec<u8>> = printers[0]
        .documents()
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let mut expected = jobs.clone();
    expected.push(released);
    assert!(
        at_b == expected,
        "b printed every job once, in submission order, the one a could not take first"
    );
    assert!(printers[1].documents().is_empty(), "c is not needed");
    let metrics = appliance.get("/metrics").unwrap();
    assert!(
        metrics.contains("appliance_output_attempts_total{printer=\"a\",outcome=\"passed-on\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("appliance_pool_member_state{pool=\"floor\",printer=\"a\",state=\"out\"} 1")
    );

    // The direct queue says which printer of its pool is out.
    let (ok, out) = e2e::ipptool_text(
        &appliance.uri(QUEUE),
        "{\n\tNAME \"pool state\"\n\tOPERATION Get-Printer-Attributes\n\tGROUP operation-attributes-tag\n\
         \tATTR charset attributes-charset utf-8\n\
         \tATTR naturalLanguage attributes-natural-language en\n\tATTR uri printer-uri $uri\n\
         \tSTATUS successful-ok\n\
         \tEXPECT printer-state-message WITH-VALUE \"/2 of 3 printers of Floor 2 ready.*a out/\"\n}\n",
        None,
        &[],
    )
    .unwrap();
    assert!(ok, "{out}");
}
