//! Job roaming end to end with real processes on loopback: a `central`
//! and three enrolled appliances, each with its own `ippeveprinter`. A job
//! printed at one site is released at another: the printer there gets the
//! same bytes, the origin marks the job printed, two sites racing for one
//! job print it once, and a job whose site is down is refused with the
//! reason and never prints. A job submitted at central over IPPS is
//! listed, released and printed at a branch like any other.

use std::time::Duration;

use e2e::{
    ApiClient, Appliance, Central, Faults, Postgres, Printer, UdpProxy, central_bin,
    curl_ipp_print, fixture, free_port, free_udp_port, ipptool_text, peak_rss_of, run_with_timeout,
    self_signed_certificate, sha256, stored_jobs, upload, wait_for, write_generated,
};
use serde_json::{Value, json};

const PIN: &str = "2468";
const PASSWORD: &str = "horse-battery-9";

/// A central, and three sites `branch-1`.. each printing to its own
/// `ippeveprinter`; alice is a user of the fleet.
struct Fleet {
    central: Central,
    sites: Vec<Appliance>,
    printers: Vec<Printer>,
    /// Between a site and central, when asked for.
    proxy: Option<UdpProxy>,
    /// Further central nodes on the PostgreSQL `central` uses, if it does.
    nodes: Vec<Central>,
    _postgres: Option<Postgres>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// What went on, for a failed wait: each site's jobs and the roaming
    /// and session lines of every site's and node's log.
    fn story(&self) -> String {
        let relevant = |log: String| {
            log.lines()
                .filter(|l| l.contains("roaming") || l.contains("session") || l.contains("node"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut story = String::new();
        for (i, site) in (1..).zip(&self.sites) {
            let jobs = site.jobs().map(|j| json!(j).to_string());
            story += &format!("--- branch-{i} jobs: {jobs:?}\n{}\n", relevant(site.log()));
        }
        for (i, node) in (1..).zip(std::iter::once(&self.central).chain(&self.nodes)) {
            story += &format!("--- central node {i}\n{}\n", relevant(node.log()));
        }
        story
    }

    /// `waited`'s value, or a panic telling the fleet's story.
    fn or_story<T>(&self, waited: anyhow::Result<T>) -> T {
        waited.unwrap_or_else(|e| panic!("{e}\n{}", self.story()))
    }
}

fn fleet() -> Fleet {
    fleet_with(None, "prefetch = false\n", "")
}

/// The fleet; with `proxied`, that site (`Some(2)`: branch-2) reaches
/// central through a fault-injecting UDP proxy; `central_extra` is added
/// to every site's `[central]` section, `central_config` to central's
/// configuration.
fn fleet_with(proxied: Option<usize>, central_extra: &str, central_config: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let central =
        Central::start(&dir.path().join("central"), free_udp_port(), central_config).unwrap();
    let proxy =
        proxied.map(|_| UdpProxy::start(central.endpoint().parse().unwrap(), 0x0a11ce).unwrap());
    let endpoints: Vec<Vec<String>> = (1..=3)
        .map(|i| match &proxy {
            Some(proxy) if proxied == Some(i) => vec![proxy.endpoint()],
            _ => vec![central.endpoint()],
        })
        .collect();
    let (sites, printers) = sites_at(dir.path(), &central, &endpoints, central_extra);
    fleet_of(dir, central, sites, printers, proxy)
}

/// Three sites `branch-1`.. under `dir`, each with its own `ippeveprinter`,
/// registered through `central`, site i dialing `endpoints[i - 1]` in order.
fn sites_at(
    dir: &std::path::Path,
    central: &Central,
    endpoints: &[Vec<String>],
    central_extra: &str,
) -> (Vec<Appliance>, Vec<Printer>) {
    let mut sites = Vec::new();
    let mut printers = Vec::new();
    for (i, endpoints) in (1..).zip(endpoints) {
        let name = format!("branch-{i}");
        let printer = Printer::start(&dir.join(format!("printer-{i}"))).unwrap();
        let token = central.add_site(&name).unwrap();
        let config = format!(
            "site = {name:?}\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
             [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
             [[printer]]\nid = \"lobby\"\nuri = \"{}\"\n\
             [central]\nendpoints = {endpoints:?}\n{central_extra}\n",
            printer.uri()
        );
        let mut site = Appliance::prepare(&dir.join(&name), &config).unwrap();
        site.enroll_as_configured(&token).unwrap();
        site.restart().unwrap();
        sites.push(site);
        printers.push(printer);
    }
    (sites, printers)
}

/// The fleet of `central` and its sites, once alice is a user at each.
fn fleet_of(
    dir: tempfile::TempDir,
    central: Central,
    sites: Vec<Appliance>,
    printers: Vec<Printer>,
    proxy: Option<UdpProxy>,
) -> Fleet {
    central
        .cli_ok(
            &[
                "user",
                "add",
                "alice",
                "--name",
                "Alice",
                "--pin",
                "--password",
            ],
            &format!("{PIN}\n{PASSWORD}\n"),
        )
        .unwrap();
    // Polled by policy version, not by logins: failed ones would lock out.
    for site in &sites {
        wait_for(Duration::from_secs(20), "alice at every site", || {
            (site.sync_status().ok()?["policy_version"] == 1).then_some(())
        })
        .unwrap();
    }
    Fleet {
        central,
        sites,
        printers,
        proxy,
        nodes: Vec::new(),
        _postgres: None,
        _dir: dir,
    }
}

/// The fleet on two central nodes sharing a private PostgreSQL: branch-1
/// dials node one (through a proxy, to pace its uploads) then node two,
/// branch-2 node two then one, branch-3 node one then two. A dead node is
/// noticed after the QUIC idle timeout, 3 s here.
fn fleet_on_two_nodes() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let postgres = Postgres::start().unwrap();
    postgres.create_database("fleet").unwrap();
    let extra = format!(
        "sync.idle_timeout_secs = 3\nstorage.url = {:?}\n",
        postgres.url("fleet")
    );
    let one = Central::start(&dir.path().join("one"), free_udp_port(), &extra).unwrap();
    let two = Central::start_node(&dir.path().join("two"), free_udp_port(), &extra, &one).unwrap();
    let proxy = UdpProxy::start(one.endpoint().parse().unwrap(), 0x0de5).unwrap();
    let endpoints = [
        vec![proxy.endpoint(), two.endpoint()],
        vec![two.endpoint(), one.endpoint()],
        vec![one.endpoint(), two.endpoint()],
    ];
    let (sites, printers) = sites_at(dir.path(), &one, &endpoints, "prefetch = false\n");
    let mut fleet = fleet_of(dir, one, sites, printers, Some(proxy));
    fleet.nodes.push(two);
    fleet._postgres = Some(postgres);
    fleet
}

/// The node whose endpoint `site` is connected to now, as its status says.
fn connected_to(site: &Appliance) -> Option<String> {
    site.sync_status().ok()?["connected_endpoint"]
        .as_str()
        .map(str::to_owned)
}

/// A session of alice's at `site`'s printer.
fn login(site: &Appliance) -> (ApiClient, String) {
    let api = site.api().unwrap();
    let token = api.login_pin("lobby", "alice", PIN).unwrap();
    (api, token)
}

/// alice's job list at a site.
fn job_list(api: &ApiClient, token: &str) -> Value {
    let r = api.call("GET", "/api/v1/jobs", Some(token), None).unwrap();
    assert_eq!(r.status, 200, "{}", r.json);
    r.json
}

/// Waits until alice's list at a site shows job `name` held at `origin`.
fn until_listed(api: &ApiClient, token: &str, name: &str, origin: &str) -> Value {
    wait_for(
        Duration::from_secs(20),
        &format!("{name} from {origin}"),
        || {
            let list = job_list(api, token);
            list["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["name"] == name && j["site"] == origin)
                .cloned()
        },
    )
    .unwrap()
}

fn release(api: &ApiClient, token: &str, ids: Value) -> Value {
    let r = api
        .call(
            "POST",
            "/api/v1/jobs/release",
            Some(token),
            Some(&json!({ "jobs": ids })),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.json);
    r.json
}

/// The job named `name` in a site's store.
fn stored(site: &Appliance, name: &str) -> Value {
    site.jobs()
        .unwrap()
        .into_iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} at the site"))
}

/// alice's job `name` from `origin`, listed as available at site `index`,
/// released there; what that site's printer then holds.
fn released_and_printed(
    fleet: &Fleet,
    index: usize,
    name: &str,
    origin: &str,
) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let (api, token) = login(&fleet.sites[index]);
    let listed = until_listed(&api, &token, name, origin);
    assert_eq!(listed["available"], true, "{listed}");
    let answer = release(&api, &token, json!([listed["id"]]));
    assert_eq!(answer["jobs"][0]["outcome"], "queued", "{answer}");
    wait_for(Duration::from_secs(30), "the job at the printer", || {
        let docs = fleet.printers[index].documents();
        (!docs.is_empty()).then_some(docs)
    })
    .unwrap()
}

/// branch-2 and branch-3 release each of `rounds` new jobs of branch-1's
/// at once: exactly one wins it, the other is told it printed there, and
/// branch-1 marks it printed.
fn race_for_jobs(fleet: &Fleet, rounds: usize) {
    let (a, b, c) = (&fleet.sites[0], &fleet.sites[1], &fleet.sites[2]);
    let ((api_b, token_b), (api_c, token_c)) = (login(b), login(c));
    for round in 0..rounds {
        let name = format!("race-{round}");
        a.lp("alice", &name, &fixture("three-pages.pdf"));
        let at_b = until_listed(&api_b, &token_b, &name, "branch-1");
        until_listed(&api_c, &token_c, &name, "branch-1");
        let id = at_b["id"].as_str().unwrap().to_owned();
        let (answer_b, answer_c) = std::thread::scope(|s| {
            let from_b = s.spawn(|| release(&api_b, &token_b, json!([id])));
            let from_c = s.spawn(|| release(&api_c, &token_c, json!([id])));
            (from_b.join().unwrap(), from_c.join().unwrap())
        });
        let outcomes = [&answer_b["jobs"][0], &answer_c["jobs"][0]];
        let winners = outcomes.iter().filter(|o| o["outcome"] == "queued").count();
        assert_eq!(winners, 1, "round {round}: {answer_b} {answer_c}");
        let loser = outcomes.iter().find(|o| o["outcome"] != "queued").unwrap();
        assert_eq!(loser["outcome"], "printed_elsewhere", "{loser}");
        let winner_site = if answer_b["jobs"][0]["outcome"] == "queued" {
            "branch-2"
        } else {
            "branch-3"
        };
        assert_eq!(loser["site"], winner_site, "{loser}");
        wait_for(
            Duration::from_secs(30),
            "branch-1 to mark it printed",
            || (stored(a, &name)["state"] == "completed").then_some(()),
        )
        .unwrap();
    }
}

#[test]
fn a_job_printed_at_one_site_prints_once_at_another_and_races_print_it_once() {
    let fleet = fleet();
    let (a, b, c) = (&fleet.sites[0], &fleet.sites[1], &fleet.sites[2]);
    let document = std::fs::read(fixture("three-pages.pdf")).unwrap();

    // alice prints at branch-1 and releases at branch-2.
    a.lp("alice", "travel-report", &fixture("three-pages.pdf"));
    let (api_b, token_b) = login(b);
    let listed = until_listed(&api_b, &token_b, "travel-report", "branch-1");
    assert_eq!(listed["available"], true, "{listed}");
    assert_eq!(listed["state"], "held");
    let id = listed["id"].as_str().unwrap().to_owned();
    let answer = release(&api_b, &token_b, json!([id]));
    assert_eq!(answer["jobs"][0]["outcome"], "queued", "{answer}");
    let printed = wait_for(
        Duration::from_secs(30),
        "the job at branch-2's printer",
        || {
            let docs = fleet.printers[1].documents();
            (!docs.is_empty()).then_some(docs)
        },
    )
    .unwrap();
    assert_eq!(printed.len(), 1);
    assert_eq!(
        printed[0].1, document,
        "branch-2's printer got the bytes alice sent"
    );
    let origin = wait_for(
        Duration::from_secs(30),
        "branch-1 to mark it printed",
        || {
            let job = stored(a, "travel-report");
            (job["state"] == "completed").then_some(job)
        },
    )
    .unwrap();
    assert!(
        origin["state_message"]
            .as_str()
            .unwrap_or("")
            .contains("branch-2"),
        "{origin}"
    );
    assert!(
        fleet.printers[0].documents().is_empty(),
        "nothing printed at branch-1"
    );

    // Printed: at branch-3 it is no longer offered, and asked for by id it
    // says where it went.
    let (api_c, token_c) = login(c);
    let answer = release(&api_c, &token_c, json!([id]));
    let outcome = &answer["jobs"][0];
    assert_eq!(outcome["outcome"], "printed_elsewhere", "{answer}");
    assert_eq!(outcome["site"], "branch-2", "{answer}");
    let listed = job_list(&api_c, &token_c);
    assert!(
        !listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()),
        "a printed job is not offered: {listed}"
    );

    // branch-2 and branch-3 release the same job at once, round after
    // round: it prints exactly once, and the other is told where it went.
    race_for_jobs(&fleet, 4);
    let prints = fleet.printers[1].documents().len() + fleet.printers[2].documents().len();
    assert_eq!(prints, 1 + 4, "one print per job, whoever won");
    drop(fleet.central);
}

#[test]
fn a_job_whose_site_is_down_is_unavailable_with_the_reason_and_never_prints() {
    let mut fleet = fleet();
    fleet.sites[0].lp("alice", "stranded", &fixture("three-pages.pdf"));
    let (api_b, token_b) = login(&fleet.sites[1]);
    until_listed(&api_b, &token_b, "stranded", "branch-1");
    fleet.sites[0].kill();
    let listed = wait_for(Duration::from_secs(30), "branch-1 to count as away", || {
        let job = until_listed(&api_b, &token_b, "stranded", "branch-1");
        (job["available"] == false).then_some(job)
    })
    .unwrap();
    assert!(
        listed["reason"].as_str().unwrap_or("").contains("branch-1"),
        "{listed}"
    );
    let id = listed["id"].as_str().unwrap().to_owned();
    let answer = release(&api_b, &token_b, json!([id]));
    let outcome = &answer["jobs"][0];
    assert_eq!(outcome["outcome"], "unavailable", "{answer}");
    assert!(
        outcome["message"]
            .as_str()
            .unwrap_or("")
            .contains("branch-1"),
        "{answer}"
    );

    // Central down: the list holds this site's jobs and says why not more.
    fleet.central.kill();
    let list = wait_for(Duration::from_secs(30), "central to count as away", || {
        let list = job_list(&api_b, &token_b);
        (list["remote"]["available"] == false).then_some(list)
    })
    .unwrap();
    assert!(list["remote"]["reason"].as_str().is_some(), "{list}");
    assert!(fleet.printers[1].documents().is_empty(), "nothing printed");
}

/// The SHA-256 of what [`write_generated`] writes for `size` and `seed`.
fn generated_sha256(size: u64, seed: u64) -> String {
    let mut bytes = Vec::with_capacity(size as usize);
    write_generated(&mut bytes, size, seed).unwrap();
    sha256(&bytes)
}

/// Sends alice's job of `size` generated bytes (from `seed`) to branch-1
/// and releases it at branch-2; the document's SHA-256.
fn big_job_released_at_branch_2(fleet: &Fleet, size: u64, seed: u64) -> String {
    let (response, _) = upload(
        fleet.sites[0].port,
        "/ipp/print/secure",
        "alice",
        size,
        |out| write_generated(out, size, seed),
    )
    .unwrap();
    assert_eq!(response.status, 0, "{response:?}");
    let (api_b, token_b) = login(&fleet.sites[1]);
    let listed = wait_for(Duration::from_secs(30), "the big job at branch-2", || {
        job_list(&api_b, &token_b)["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["size"] == size && j["site"] == "branch-1")
            .cloned()
    })
    .unwrap();
    let answer = release(&api_b, &token_b, json!([listed["id"]]));
    assert_eq!(answer["jobs"][0]["outcome"], "queued", "{answer}");
    generated_sha256(size, seed)
}

/// Bytes of roaming documents `site` has received.
fn received(site: &Appliance) -> Option<u64> {
    site.sync_status().ok()?["roaming"]["bytes_received"].as_u64()
}

/// Whether `site` holds a completed job of `size` bytes.
fn completed_of_size(site: &Appliance, size: u64) -> bool {
    site.jobs().is_ok_and(|jobs| {
        jobs.iter()
            .any(|j| j["size"] == size && j["state"] == "completed")
    })
}

/// Waits until branch-2 has printed the job of `size` bytes, then checks
/// its printer got it once, with SHA-256 `expected`; how long after
/// `since` it printed.
fn printed_once_at_branch_2(
    fleet: &Fleet,
    size: u64,
    expected: &str,
    since: std::time::Instant,
) -> Duration {
    let printed = fleet.or_story(wait_for(
        Duration::from_secs(120),
        "the job printed at branch-2",
        || completed_of_size(&fleet.sites[1], size).then(|| since.elapsed()),
    ));
    let docs = fleet.printers[1].documents();
    assert_eq!(docs.len(), 1, "printed once");
    assert_eq!(sha256(&docs[0].1), expected, "the bytes alice sent");
    printed
}

/// What any process may hold while 100 MiB roam (as `memory.rs` allows
/// the appliance for a 256 MiB upload).
const RSS_BUDGET: u64 = 64 << 20;

#[test]
fn a_100_mb_transfer_survives_a_cut_link_and_a_restart_and_prints_once() {
    const SIZE: u64 = 100 << 20;
    let mut fleet = fleet_with(Some(2), "prefetch = false\n", "");
    // branch-2's link: 8 MB/s, so the transfer lasts long enough to cut.
    let link = Faults {
        rate: 8_000_000,
        ..Faults::default()
    };
    fleet.proxy.as_ref().unwrap().set(link);
    let printer_b = &fleet.printers[1];
    let expected = big_job_released_at_branch_2(&fleet, SIZE, 11);

    // The link is cut (longer than QUIC's idle timeout, so the session
    // dies) once a third has arrived, and restored.
    wait_for(Duration::from_secs(120), "a third of the document", || {
        (received(&fleet.sites[1])? > SIZE / 3).then_some(())
    })
    .unwrap();
    let proxy = fleet.proxy.as_ref().unwrap();
    proxy.set(Faults {
        partitioned: true,
        ..Faults::default()
    });
    let at_cut = received(&fleet.sites[1]).unwrap();

    std::thread::sleep(Duration::from_secs(20));
    proxy.set(link);

    // branch-2 is killed once two thirds have arrived, and restarted.
    wait_for(
        Duration::from_secs(180),
        "two thirds of the document",
        || (received(&fleet.sites[1])? > 2 * SIZE / 3).then_some(()),
    )
    .unwrap();
    let before_kill = fleet.sites[1].sync_status().unwrap();
    assert!(
        before_kill["roaming"]["resumes"].as_u64() >= Some(1),
        "the fetch went on after the cut: {before_kill}"
    );
    let moved_before_kill = received(&fleet.sites[1]).unwrap();
    let claimant_rss = fleet.sites[1].peak_rss().unwrap();
    fleet.sites[1].kill();
    fleet.sites[1].restart().unwrap();

    // Read once branch-2 counts it printed: the printer is done writing it.
    wait_for(
        Duration::from_secs(240),
        "the job printed at branch-2",
        || completed_of_size(&fleet.sites[1], SIZE).then_some(()),
    )
    .unwrap();
    let printed = printer_b.documents();
    assert_eq!(printed.len(), 1, "printed once");
    assert_eq!(sha256(&printed[0].1), expected, "the bytes alice sent");
    let after = fleet.sites[1].sync_status().unwrap();
    let moved_after_restart = after["roaming"]["bytes_received"].as_u64().unwrap();
    assert!(
        after["roaming"]["resumes"].as_u64() >= Some(1),
        "the restarted fetch went on from the partial file: {after}"
    );
    assert!(
        moved_after_restart < SIZE / 2,
        "after the restart only the missing third (and a window) came again: {after}"
    );
    // Memory does not grow with the document: the claimant (over two
    // thirds of it), central (relaying all of it) and the origin (serving
    // all of it) stay far below its size.
    let central_rss = peak_rss_of(fleet.central.pid().unwrap()).unwrap();
    let origin_rss = fleet.sites[0].peak_rss().unwrap();
    println!(
        "100 MiB: {at_cut} bytes before the cut, {moved_before_kill} before the kill, \
         {moved_after_restart} after the restart; peak RSS: claimant {} MiB, central {} MiB, \
         origin {} MiB; status {after}",
        claimant_rss >> 20,
        central_rss >> 20,
        origin_rss >> 20
    );
    for (who, rss) in [
        ("claimant", claimant_rss),
        ("central", central_rss),
        ("origin", origin_rss),
    ] {
        assert!(rss < RSS_BUDGET, "{who}'s peak RSS is {} MiB", rss >> 20);
    }
    wait_for(
        Duration::from_secs(60),
        "branch-1 to mark it printed",
        || completed_of_size(&fleet.sites[0], SIZE).then_some(()),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(printer_b.documents().len(), 1, "still printed once");
}

/// The origin's link goes down mid-transfer for longer than its session
/// lives: central answers the claimant's fetches that the origin cannot be
/// reached, and the claimant asks again until it can, instead of giving
/// the job back.
#[test]
fn a_transfer_waits_out_its_origins_outage_and_prints_once() {
    const SIZE: u64 = 32 << 20;
    let fleet = fleet_with(
        Some(1),
        "prefetch = false\n",
        "sync.idle_timeout_secs = 3\n",
    );
    let link = Faults {
        rate: 8_000_000,
        ..Faults::default()
    };
    let proxy = fleet.proxy.as_ref().unwrap();
    proxy.set(link);
    let expected = big_job_released_at_branch_2(&fleet, SIZE, 29);
    wait_for(Duration::from_secs(60), "a quarter of the document", || {
        (received(&fleet.sites[1])? > SIZE / 4).then_some(())
    })
    .unwrap();
    proxy.set(Faults {
        partitioned: true,
        ..Faults::default()
    });
    let cut = std::time::Instant::now();
    // Once branch-1's session is gone, the claimant's next round of
    // fetches (after a stall) is answered that branch-1 cannot be reached.
    fleet.or_story(wait_for(
        Duration::from_secs(60),
        "central to answer that branch-1 cannot be reached",
        || {
            let log = fleet.sites[1].log();
            log.contains("roaming: the origin cannot be reached")
                .then_some(())
        },
    ));
    let told = cut.elapsed();
    proxy.set(link);
    let printed = printed_once_at_branch_2(&fleet, SIZE, &expected, cut);
    fleet.or_story(wait_for(
        Duration::from_secs(60),
        "branch-1 to mark it printed",
        || completed_of_size(&fleet.sites[0], SIZE).then_some(()),
    ));
    println!(
        "32 MiB: told branch-1 was unreachable {told:?} into the cut, printed {printed:?} after it"
    );
}

#[test]
fn print_all_across_sites_comes_out_in_submission_order() {
    let fleet = fleet();
    let (a, b, c) = (&fleet.sites[0], &fleet.sites[1], &fleet.sites[2]);
    // Oldest first: a large job at branch-1 (it arrives last), a small one
    // at branch-3, one at branch-2 itself.
    const BIG: u64 = 24 << 20;
    let (response, _) = upload(a.port, "/ipp/print/secure", "alice", BIG, |out| {
        write_generated(out, BIG, 5)
    })
    .unwrap();
    assert_eq!(response.status, 0, "{response:?}");
    c.lp("alice", "second", &fixture("document-a4.pdf"));
    b.lp("alice", "third", &fixture("three-pages.pdf"));
    let (api_b, token_b) = login(b);
    until_listed(&api_b, &token_b, "second", "branch-3");
    wait_for(Duration::from_secs(30), "the big job listed", || {
        job_list(&api_b, &token_b)["jobs"]
            .as_array()?
            .iter()
            .any(|j| j["size"] == BIG)
            .then_some(())
    })
    .unwrap();
    let answer = release(&api_b, &token_b, json!("all"));
    let outcomes: Vec<&str> = answer["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["queued"; 3], "{answer}");
    let printed = wait_for(
        Duration::from_secs(120),
        "three documents at branch-2",
        || {
            let docs = fleet.printers[1].documents();
            (docs.len() == 3).then_some(docs)
        },
    )
    .unwrap();
    let order: Vec<String> = printed.iter().map(|(_, bytes)| sha256(bytes)).collect();
    assert_eq!(
        order,
        [
            generated_sha256(BIG, 5),
            sha256(&std::fs::read(fixture("document-a4.pdf")).unwrap()),
            sha256(&std::fs::read(fixture("three-pages.pdf")).unwrap()),
        ],
        "submission order: branch-1's, branch-3's, branch-2's"
    );
}

/// The spool files of `site` that no job of its store names.
fn unclaimed_spool_files(site: &Appliance) -> Vec<String> {
    let jobs: Vec<String> = site
        .jobs()
        .unwrap()
        .iter()
        .filter_map(|j| j["uuid"].as_str().map(str::to_owned))
        .collect();
    std::fs::read_dir(site.data_dir.join("spool"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".zst") || name.ends_with(".raw"))
        .filter(|name| !jobs.iter().any(|uuid| name.starts_with(uuid.as_str())))
        .collect()
}

#[test]
fn prefetched_jobs_print_at_once_only_after_a_claim_and_go_if_not_released() {
    let fleet = fleet_with(None, "prefetch = true\nprefetch_keep_secs = 4\n", "");
    let (a, b, c) = (&fleet.sites[0], &fleet.sites[1], &fleet.sites[2]);
    a.lp("alice", "kept", &fixture("document-a4.pdf"));
    a.lp("alice", "taken", &fixture("three-pages.pdf"));
    let (api_c, token_c) = login(c);
    let taken = until_listed(&api_c, &token_c, "taken", "branch-1");
    until_listed(&api_c, &token_c, "kept", "branch-1");
    let sizes: u64 = ["document-a4.pdf", "three-pages.pdf"]
        .iter()
        .map(|f| std::fs::metadata(fixture(f)).unwrap().len())
        .sum();

    // alice logs in at branch-2: both jobs come ahead of any release.
    let (api_b, token_b) = login(b);
    let status = wait_for(Duration::from_secs(30), "both prefetched", || {
        let s = b.sync_status().ok()?;
        (s["roaming"]["bytes_received"] == sizes && s["roaming"]["transfers_in_flight"] == 0)
            .then_some(s)
    })
    .unwrap();
    // Small documents are held in memory until released: no file.
    assert!(unclaimed_spool_files(b).is_empty(), "{status}");
    assert_eq!(
        b.log().matches("roaming: prefetched").count(),
        2,
        "{status}"
    );
    assert!(
        fleet.printers[1].documents().is_empty(),
        "a prefetch prints nothing"
    );
    assert_eq!(
        stored(a, "taken")["state"],
        "held",
        "a prefetch leaves the job held at its site"
    );

    // Meanwhile the other job prints at branch-3: its prefetched bytes at
    // branch-2 can never print.
    let answer = release(&api_c, &token_c, json!([taken["id"]]));
    assert_eq!(answer["jobs"][0]["outcome"], "queued", "{answer}");
    wait_for(Duration::from_secs(30), "taken printed at branch-3", || {
        (stored(a, "taken")["state"] == "completed").then_some(())
    })
    .unwrap();
    let answer = release(&api_b, &token_b, json!([taken["id"]]));
    assert_eq!(
        answer["jobs"][0]["outcome"], "printed_elsewhere",
        "{answer}"
    );
    assert_eq!(answer["jobs"][0]["site"], "branch-3", "{answer}");

    // The prefetched one prints from what is here: nothing more moves.
    let kept = until_listed(&api_b, &token_b, "kept", "branch-1");
    let answer = release(&api_b, &token_b, json!([kept["id"]]));
    assert_eq!(answer["jobs"][0]["outcome"], "queued", "{answer}");
    wait_for(Duration::from_secs(30), "kept printed at branch-2", || {
        (stored(b, "kept")["state"] == "completed").then_some(())
    })
    .unwrap();
    let printed = fleet.printers[1].documents();
    assert_eq!(printed.len(), 1);
    assert_eq!(
        printed[0].1,
        std::fs::read(fixture("document-a4.pdf")).unwrap()
    );
    assert_eq!(
        b.sync_status().unwrap()["roaming"]["bytes_received"],
        sizes,
        "released from the prefetched copy"
    );

    // What was prefetched and not released goes.
    wait_for(
        Duration::from_secs(30),
        "the unused prefetch dropped",
        || {
            b.log()
                .contains("roaming: unused prefetch dropped")
                .then_some(())
        },
    )
    .unwrap();
    assert!(unclaimed_spool_files(b).is_empty());
}

/// Print-Job over IPPS, as a laptop at home sends it.
const SUBMIT: &str = r#"
{
    NAME "Print-Job at central"
    OPERATION Print-Job
    GROUP operation-attributes-tag
    ATTR charset attributes-charset utf-8
    ATTR naturalLanguage attributes-natural-language en
    ATTR uri printer-uri $uri
    ATTR name requesting-user-name laptop-user
    ATTR name job-name $job_name
    ATTR mimeMediaType document-format application/pdf
    FILE $filename
    STATUS successful-ok
    EXPECT job-id OF-TYPE integer
}
"#;

#[test]
fn a_job_submitted_at_central_over_ipps_prints_at_a_branch() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(certs.path(), "submission").unwrap();
    let port = free_port();
    let mut fleet = fleet_with(
        None,
        "prefetch = false\n",
        &format!(
            "[submission]\nlisten = \"127.0.0.1:{port}\"\ntls_certificate = {:?}\n\
             tls_private_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let submission = fleet.central.data_dir.join("submission");
    // The submission site enrolled at central and took the fleet's users.
    wait_for(
        Duration::from_secs(30),
        "alice at the submission site",
        || {
            let status = std::fs::read(submission.join("sync-status.json")).ok()?;
            let status: Value = serde_json::from_slice(&status).ok()?;
            (status["policy_version"] == 1).then_some(())
        },
    )
    .unwrap();
    let uri = |userinfo: &str| format!("ipps://{userinfo}127.0.0.1:{port}/ipp/print/secure");

    // A wrong password is challenged again and stores nothing; the right
    // one stores alice's job, whoever the request names.
    let pdf = fixture("three-pages.pdf");
    let https = format!("https://127.0.0.1:{port}/ipp/print/secure");
    let answer = curl_ipp_print(&https, Some("alice:wrong-password")).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(stored_jobs(&submission).unwrap().is_empty());
    let (ok, out) = ipptool_text(
        &uri(&format!("alice:{PASSWORD}@")),
        SUBMIT,
        Some(&pdf),
        &[("job_name", "from-home")],
    )
    .unwrap();
    assert!(ok, "{out}\n{}", fleet.central.log());
    let held = stored_jobs(&submission).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["owner"], "alice", "{}", held[0]);

    // At branch-3 it is alice's, from central; released, it prints there.
    let printed = released_and_printed(&fleet, 2, "from-home", "central");
    assert_eq!(printed.len(), 1);
    assert_eq!(printed[0].1, std::fs::read(&pdf).unwrap());
    wait_for(
        Duration::from_secs(30),
        "the submission site to mark it printed",
        || {
            let jobs = stored_jobs(&submission).ok()?;
            (jobs.first()?["state"] == "completed").then_some(())
        },
    )
    .unwrap();
    assert!(fleet.printers[0].documents().is_empty());
    assert!(fleet.printers[1].documents().is_empty());

    // Restarted, central's submission site is the same enrolled site: its
    // jobs keep reaching the branches.
    fleet.central.kill();
    fleet.central.restart().unwrap();
    let (ok, out) = ipptool_text(
        &uri(&format!("alice:{PASSWORD}@")),
        SUBMIT,
        Some(&pdf),
        &[("job_name", "after-restart")],
    )
    .unwrap();
    assert!(ok, "{out}");
    let (api_b, token_b) = login(&fleet.sites[1]);
    until_listed(&api_b, &token_b, "after-restart", "central");
    let log = fleet.central.log();
    assert_eq!(log.matches("submission site registered").count(), 1);
    assert_eq!(log.matches("submission site enrolled").count(), 1);
    assert!(!log.contains("panicked"));
}

#[test]
fn central_does_not_start_with_an_unusable_submission_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("central.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nsync.listen = \"127.0.0.1:{}\"\n[submission]\n\
             listen = \"127.0.0.1:{}\"\ntls_certificate = \"/nonexistent/ipp.crt\"\n\
             tls_private_key = \"/nonexistent/ipp.key\"\n",
            dir.path().join("data").display().to_string(),
            free_udp_port(),
            free_port()
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        std::process::Command::new(central_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve"),
        Duration::from_secs(60),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[submission] tls_certificate"), "{stderr}");
    assert!(stderr.contains("/nonexistent/ipp.crt"), "{stderr}");
}

#[test]
fn jobs_roam_between_sites_on_different_central_nodes_and_races_print_once() {
    let fleet = fleet_on_two_nodes();
    let (one, two) = (&fleet.central, &fleet.nodes[0]);
    let (a, b, c) = (&fleet.sites[0], &fleet.sites[1], &fleet.sites[2]);
    let proxied = fleet.proxy.as_ref().unwrap().endpoint();
    wait_for(
        Duration::from_secs(20),
        "each site on its first node",
        || {
            (connected_to(a)? == proxied
                && connected_to(b)? == two.endpoint()
                && connected_to(c)? == one.endpoint())
            .then_some(())
        },
    )
    .unwrap();
    // Either node lists both, and the sites each holds.
    let status: Value = serde_json::from_str(&two.cli_ok(&["status"], "").unwrap()).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{status}");
    let sites_of = |endpoint: String| {
        nodes
            .iter()
            .find(|n| n["address"] == endpoint.as_str())
            .map(|n| (n["alive"].clone(), n["sites"].clone()))
    };
    assert_eq!(
        sites_of(one.endpoint()),
        Some((json!(true), json!(["branch-1", "branch-3"]))),
        "{status}"
    );
    assert_eq!(
        sites_of(two.endpoint()),
        Some((json!(true), json!(["branch-2"]))),
        "{status}"
    );
    assert_eq!(status["node"], two.endpoint(), "{status}");

    // Printed at branch-1 (node one), released at branch-2 (node two):
    // the claim and every block cross between the nodes.
    let document = std::fs::read(fixture("three-pages.pdf")).unwrap();
    a.lp("alice", "travel-report", &fixture("three-pages.pdf"));
    let printed = released_and_printed(&fleet, 1, "travel-report", "branch-1");
    assert_eq!(printed[0].1, document, "the bytes alice sent");
    wait_for(
        Duration::from_secs(30),
        "branch-1 to mark it printed",
        || (stored(a, "travel-report")["state"] == "completed").then_some(()),
    )
    .unwrap();

    // branch-2 (node two) and branch-3 (node one) race for each job of
    // branch-1's: exactly one prints it, and the other hears where.
    const ROUNDS: usize = 8;
    race_for_jobs(&fleet, ROUNDS);
    let prints = || fleet.printers[1].documents().len() + fleet.printers[2].documents().len();
    assert_eq!(prints(), 1 + ROUNDS, "one print per job, whoever won");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(prints(), 1 + ROUNDS, "and no late second print");
    assert!(
        fleet.printers[0].documents().is_empty(),
        "nothing at branch-1"
    );
}

#[test]
fn a_transfer_goes_on_when_the_origins_node_is_killed_and_prints_once() {
    const SIZE: u64 = 48 << 20;
    let mut fleet = fleet_on_two_nodes();
    // branch-1's link to node one: 8 MB/s, so the transfer lasts seconds.
    fleet.proxy.as_ref().unwrap().set(Faults {
        rate: 8_000_000,
        ..Faults::default()
    });
    let expected = big_job_released_at_branch_2(&fleet, SIZE, 23);

    // Node one, which the origin's blocks go through, is killed a quarter
    // of the way: branch-1 moves to node two, and the fetch goes on.
    wait_for(Duration::from_secs(60), "a quarter of the document", || {
        (received(&fleet.sites[1])? > SIZE / 4).then_some(())
    })
    .unwrap();
    let killed = std::time::Instant::now();
    fleet.central.kill();
    let at_kill = received(&fleet.sites[1]).unwrap();
    let two = fleet.nodes[0].endpoint();
    let moved = wait_for(Duration::from_secs(30), "branch-1 on node two", || {
        (connected_to(&fleet.sites[0])? == two).then(|| killed.elapsed())
    })
    .unwrap();
    let printed = printed_once_at_branch_2(&fleet, SIZE, &expected, killed);
    assert!(
        at_kill < SIZE,
        "the kill came mid-transfer: {at_kill} bytes in"
    );
    wait_for(
        Duration::from_secs(60),
        "branch-1 to mark it printed",
        || completed_of_size(&fleet.sites[0], SIZE).then_some(()),
    )
    .unwrap();
    // Node two's status shows node one gone and every site on itself.
    let status = wait_for(Duration::from_secs(30), "node one taken for dead", || {
        let status: Value =
            serde_json::from_str(&fleet.nodes[0].cli_ok(&["status"], "").ok()?).ok()?;
        let listed = status["nodes"]
            .as_array()?
            .iter()
            .map(|n| (n["alive"].clone(), n["sites"].clone()))
            .collect::<Vec<_>>();
        let (dead, all) = (
            (json!(false), json!([])),
            (json!(true), json!(["branch-1", "branch-2", "branch-3"])),
        );
        // Listed by address; which of the two sorts first is the ports'.
        (listed.contains(&dead) && listed.contains(&all)).then(|| status.clone())
    })
    .unwrap();
    println!(
        "48 MiB across nodes: {at_kill} bytes in when node one was killed, branch-1 on node \
         two {moved:?} after, printed {printed:?} after; status {status}"
    );
    assert_eq!(fleet.printers[1].documents().len(), 1, "still printed once");
}
