//! Accounting from sites to central, exactly once, whatever happens on the
//! way: a hundred thousand records with central killed (SIGKILL) in the
//! middle of the upload and then the site killed; a hundred random
//! partitions and faults of a UDP proxy between them; and a site that
//! keeps working while central is down, then catches up.

use std::time::{Duration, Instant};

use e2e::{
    Appliance, Central, Faults, Rng, SocketSink, UdpProxy, fill_journal, fixture, free_udp_port,
    wait_for,
};

fn site_config(name: &str, uri: &str) -> String {
    format!(
        "site = {name:?}\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
         [[printer]]\nid = \"lobby\"\nuri = \"{uri}\"\n"
    )
}

/// (completed prints, pages) central holds for `site`.
fn counted(central: &Central, site: &str) -> (u64, u64) {
    let Ok(report) = central.report("site") else {
        return (0, 0);
    };
    report
        .iter()
        .find(|r| r.first().is_some_and(|k| k == site))
        .and_then(|r| Some((r.get(1)?.parse().ok()?, r.get(2)?.parse().ok()?)))
        .unwrap_or((0, 0))
}

/// Waits until central holds some but not all of `total` records.
fn until_partly(central: &Central, site: &str, total: u64) -> u64 {
    let jobs = wait_for(Duration::from_secs(120), "the upload to begin", || {
        let (jobs, _) = counted(central, site);
        (jobs > 0).then_some(jobs)
    })
    .unwrap();
    assert!(
        jobs < total,
        "the upload finished before it could be interrupted"
    );
    jobs
}

/// Waits until central holds exactly `jobs` records of `pages` pages.
fn until_exact(central: &Central, site: &str, jobs: u64, pages: u64) {
    let reached = wait_for(
        Duration::from_secs(180),
        &format!("{jobs} records at central"),
        || {
            let now = counted(central, site);
            (now.0 >= jobs).then_some(now)
        },
    )
    .unwrap();
    assert_eq!(reached, (jobs, pages), "central must hold each record once");
}

/// A central, a proxy in front of it and one enrolled site behind the
/// proxy, stopped, with `records` offline prints in its journal.
fn uploading_site(dir: &std::path::Path, records: u64) -> (Central, UdpProxy, Appliance) {
    let central = Central::start(&dir.join("central"), free_udp_port(), "").unwrap();
    let proxy = UdpProxy::start(central.endpoint().parse().unwrap(), 0x5eed).unwrap();
    let token = central.add_site("branch-1").unwrap();
    let mut site = Appliance::start_enrolled(
        &dir.join("site"),
        &proxy.endpoint(),
        &token,
        &site_config("branch-1", "socket://127.0.0.1:9"),
    )
    .unwrap();
    site.stop().unwrap();
    fill_journal(&site.data_dir, "branch-1", records).unwrap();
    (central, proxy, site)
}

#[test]
fn a_hundred_thousand_records_arrive_once_though_central_then_the_site_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut central, proxy, mut site) = uploading_site(tmp.path(), 100_000);
    let started = Instant::now();
    site.restart().unwrap();

    // Central dies in the middle of the upload (the path is cut first, so
    // the middle is certain), and comes back on the same port.
    let before = until_partly(&central, "branch-1", 100_000);
    proxy.set(Faults {
        partitioned: true,
        ..Faults::default()
    });
    central.kill();
    central.restart().unwrap();
    proxy.set(Faults::default());
    until_exact(&central, "branch-1", 100_000, 300_000);
    println!(
        "100000 records at central in {:?}; central was killed after {before}",
        started.elapsed()
    );

    // The site dies in the middle of the next hundred thousand.
    site.stop().unwrap();
    fill_journal(&site.data_dir, "branch-1", 100_000).unwrap();
    site.restart().unwrap();
    let before = wait_for(
        Duration::from_secs(120),
        "the second upload to begin",
        || {
            let (jobs, _) = counted(&central, "branch-1");
            (jobs > 100_000).then_some(jobs)
        },
    )
    .unwrap();
    assert!(
        before < 200_000,
        "the upload finished before it could be interrupted"
    );
    proxy.set(Faults {
        partitioned: true,
        ..Faults::default()
    });
    site.kill();
    proxy.set(Faults::default());
    site.restart().unwrap();
    until_exact(&central, "branch-1", 200_000, 600_000);
    let status = wait_for(
        Duration::from_secs(10),
        "the site to see it all acknowledged",
        || {
            let s = site.sync_status().ok()?;
            (s["journal_unacked"] == 0).then_some(s)
        },
    )
    .unwrap();
    assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
}

#[test]
fn a_hundred_random_partitions_lose_and_double_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (central, proxy, mut site) = uploading_site(tmp.path(), 100_000);
    site.restart().unwrap();
    until_partly(&central, "branch-1", 100_000);
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut random = move |below: u64| rng.range(0, below);
    let mut during_upload = 0;
    for _ in 0..100 {
        proxy.set(Faults {
            drop: random(20) as f64 / 100.0,
            duplicate: random(10) as f64 / 100.0,
            reorder: random(10) as f64 / 100.0,
            max_delay: Duration::from_millis(random(20)),
            ..Faults::default()
        });
        std::thread::sleep(Duration::from_millis(50 + random(150)));
        proxy.set(Faults {
            partitioned: true,
            ..Faults::default()
        });
        std::thread::sleep(Duration::from_millis(20 + random(300)));
        if counted(&central, "branch-1").0 < 100_000 {
            during_upload += 1;
        }
    }
    proxy.set(Faults::default());
    let (passed, dropped) = proxy.stats();
    println!(
        "{during_upload} of 100 partitions fell during the upload; proxy passed {passed} and dropped {dropped} datagrams"
    );
    assert!(
        during_upload >= 50,
        "the upload was too quick for the partitions: {during_upload}"
    );
    until_exact(&central, "branch-1", 100_000, 300_000);
}

#[test]
fn with_central_down_the_site_prints_and_catches_up_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SocketSink::start().unwrap();
    let mut central = Central::start(&tmp.path().join("central"), free_udp_port(), "").unwrap();
    let token = central.add_site("branch-1").unwrap();
    let site = Appliance::start_enrolled(
        &tmp.path().join("site"),
        &central.endpoint(),
        &token,
        &site_config("branch-1", &sink.uri()),
    )
    .unwrap();
    central
        .cli_ok(
            &["user", "add", "alice", "--name", "Alice", "--pin"],
            "2468\n",
        )
        .unwrap();
    let api = site.api().unwrap();
    // Polled by policy version, not by logins: failed ones would lock out.
    wait_for(Duration::from_secs(10), "alice at the site", || {
        (site.sync_status().ok()?["policy_version"] == 1).then_some(())
    })
    .unwrap();
    api.login_pin("lobby", "alice", "2468").unwrap();

    central.kill();
    site.lp("alice", "offline", &fixture("three-pages.pdf"));
    let token = api.login_pin("lobby", "alice", "2468").unwrap();
    api.release_all(&token).unwrap();
    wait_for(Duration::from_secs(30), "the job to print", || {
        (sink.documents().len() == 1).then_some(())
    })
    .unwrap();
    let status = wait_for(
        Duration::from_secs(30),
        "the record to wait for central",
        || {
            let s = site.sync_status().ok()?;
            (s["journal_unacked"] == 1 && s["connected_endpoint"].is_null()).then_some(s)
        },
    )
    .unwrap();
    println!("while central is down: {status}");

    central.restart().unwrap();
    until_exact(&central, "branch-1", 1, 3);
    wait_for(
        Duration::from_secs(30),
        "the site to see it acknowledged",
        || (site.sync_status().ok()?["journal_unacked"] == 0).then_some(()),
    )
    .unwrap();
}
