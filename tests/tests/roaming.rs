//! Job roaming end to end with real processes on loopback: a `central`
//! and three enrolled appliances, each with its own `ippeveprinter`. A job
//! printed at one site is released at another: the printer there gets the
//! same bytes, the origin marks the job printed, two sites racing for one
//! job print it once, and a job whose site is down is refused with the
//! reason and never prints.

use std::time::Duration;

use e2e::{ApiClient, Appliance, Central, Printer, fixture, free_udp_port, wait_for};
use serde_json::{Value, json};

const PIN: &str = "2468";

/// A central, and three sites `branch-1`.. each printing to its own
/// `ippeveprinter`; alice is a user of the fleet.
struct Fleet {
    central: Central,
    sites: Vec<Appliance>,
    printers: Vec<Printer>,
    _dir: tempfile::TempDir,
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&dir.path().join("central"), free_udp_port(), "").unwrap();
    let mut sites = Vec::new();
    let mut printers = Vec::new();
    for i in 1..=3 {
        let name = format!("branch-{i}");
        let printer = Printer::start(&dir.path().join(format!("printer-{i}"))).unwrap();
        let token = central.add_site(&name).unwrap();
        let config = format!(
            "site = {name:?}\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
             [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
             [[printer]]\nid = \"lobby\"\nuri = \"{}\"\n",
            printer.uri()
        );
        let site = Appliance::start_enrolled(
            &dir.path().join(&name),
            &central.endpoint(),
            &token,
            &config,
        )
        .unwrap();
        sites.push(site);
        printers.push(printer);
    }
    central
        .cli_ok(
            &["user", "add", "alice", "--name", "Alice", "--pin"],
            &format!("{PIN}\n"),
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
        _dir: dir,
    }
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
    assert!(
        ["printed_elsewhere", "not_found"].contains(&outcome["outcome"].as_str().unwrap_or("")),
        "{answer}"
    );

    // branch-2 and branch-3 release the same job at once, round after
    // round: it prints exactly once, and the other is told where it went.
    for round in 0..4 {
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
