//! The fleet, end to end with real processes on loopback: a `central`
//! process, appliances enrolled with it over QUIC with mutual TLS, policy
//! going down, accounting coming up, and the refusals of strangers.

use std::fs;
use std::time::{Duration, Instant};

use e2e::{Appliance, Central, SocketSink, fixture, free_udp_port, wait_for};
use serde_json::{Value, json};

/// A pull queue `secure` and the printer `lobby` at `uri`.
fn site_config(uri: &str) -> String {
    format!(
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
         [[printer]]\nid = \"lobby\"\nuri = \"{uri}\"\n"
    )
}

/// A central and `n` sites enrolled with it, named `branch-1`...
fn fleet(
    dir: &std::path::Path,
    n: usize,
    central_extra: &str,
    uri: &str,
) -> (Central, Vec<Appliance>) {
    let central = Central::start(&dir.join("central"), free_udp_port(), central_extra).unwrap();
    let sites = (1..=n)
        .map(|i| {
            let name = format!("branch-{i}");
            let token = central.add_site(&name).unwrap();
            Appliance::start_enrolled(
                &dir.join(&name),
                &central.endpoint(),
                &token,
                &format!("site = {name:?}\n{}", site_config(uri)),
            )
            .unwrap()
        })
        .collect();
    (central, sites)
}

/// Login status of `user` with `pin` at the site's `lobby`.
fn login_status(site: &Appliance, user: &str, pin: &str) -> u16 {
    let api = site.api().unwrap();
    api.call(
        "POST",
        "/api/v1/sessions",
        None,
        Some(&json!({"device": "lobby", "method": "pin", "user": user, "secret": pin})),
    )
    .map(|r| r.status)
    .unwrap_or(0)
}

/// Waits until every site enforces policy `version` (read from each
/// site's store by `appliance status`), at most `within`; how long it took
/// and the statuses. Logins are not polled: failed ones would lock out.
fn until_policy(sites: &[Appliance], version: u64, within: Duration) -> (Duration, Vec<Value>) {
    let started = Instant::now();
    let statuses = wait_for(within, &format!("policy {version} at every site"), || {
        let statuses: Vec<Value> = sites
            .iter()
            .map(|s| s.sync_status().ok())
            .collect::<Option<_>>()?;
        statuses
            .iter()
            .all(|s| s["policy_version"] == version)
            .then_some(statuses)
    })
    .unwrap();
    (started.elapsed(), statuses)
}

/// Every site answers `user`'s login with `expected`.
fn assert_logins(sites: &[Appliance], user: &str, pin: &str, expected: u16) {
    for site in sites {
        assert_eq!(login_status(site, user, pin), expected, "{user} at a site");
    }
}

#[test]
fn users_and_rules_from_central_reach_both_sites_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy");
    fs::create_dir_all(&policy).unwrap();
    let (central, sites) = fleet(
        tmp.path(),
        2,
        &format!("[policy]\ndir = {:?}\n", policy.display().to_string()),
        "socket://127.0.0.1:9",
    );
    wait_for(Duration::from_secs(10), "both sites connected", || {
        let listed = central.cli_ok(&["site", "list"], "").ok()?;
        (listed.matches("connected").count() == 2).then_some(())
    })
    .unwrap();

    central
        .cli_ok(
            &["user", "add", "carol", "--name", "Carol", "--pin"],
            "4711\n",
        )
        .unwrap();
    let (added, _) = until_policy(&sites, 1, Duration::from_secs(1));
    assert_logins(&sites, "carol", "4711", 201);
    println!("carol could log in at both sites {added:?} after `central user add` returned");
    assert_eq!(login_status(&sites[0], "carol", "0000"), 401);
    // A site in the fleet takes its users from central only.
    let out = sites[0]
        .cli_config(
            &["users", "add", "dave", "--name", "Dave", "--pin"],
            "1234\n",
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("managed at central"));

    central.cli_ok(&["user", "disable", "carol"], "").unwrap();
    let (disabled, _) = until_policy(&sites, 2, Duration::from_secs(1));
    assert_logins(&sites, "carol", "4711", 401);
    println!("carol's logins were refused at both sites {disabled:?} after `central user disable`");

    // Rules as a file in the policy directory reach both sites.
    fs::write(policy.join("rules.toml"), "max_pages_per_job = 5\n").unwrap();
    let (_, statuses) = until_policy(&sites, 3, Duration::from_secs(10));
    for status in &statuses {
        assert_eq!(status["rules"]["max_pages_per_job"], 5, "{status}");
    }
    // A broken file is refused with its name and line; the rules stay.
    fs::write(
        policy.join("rules.toml"),
        "max_pages_per_job = 9\nquota = { pages = \"many\", period = \"day\" }\n",
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the broken file to be refused",
        || {
            let log = central.log();
            log.lines()
                .any(|l| {
                    l.contains("policy file refused")
                        && l.contains("rules.toml")
                        && l.contains("line 2")
                })
                .then_some(())
        },
    )
    .unwrap();
    for site in &sites {
        let status = site.sync_status().unwrap();
        assert_eq!(status["policy_version"], 3, "{status}");
        assert_eq!(status["rules"]["max_pages_per_job"], 5, "{status}");
    }

    // users.csv in the directory is the users: dave comes, carol (not in
    // the file) goes, and the CLI may no longer edit users.
    fs::write(
        policy.join("users.csv"),
        "id,display_name,pin\ndave,Dave,13579\n",
    )
    .unwrap();
    until_policy(&sites, 4, Duration::from_secs(10));
    assert_logins(&sites, "dave", "13579", 201);
    let out = central
        .cli(
            &["user", "add", "erin", "--name", "Erin", "--pin"],
            "2468\n",
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("users.csv"));
}

#[test]
fn a_reused_token_a_revoked_site_and_a_stranger_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (central, mut sites) = fleet(tmp.path(), 1, "", "socket://127.0.0.1:9");
    let site = &mut sites[0];
    wait_for(Duration::from_secs(10), "the site to connect", || {
        (site.sync_status().ok()?["connected_endpoint"] == central.endpoint()).then_some(())
    })
    .unwrap();

    // A token works once.
    let other = Appliance::prepare(
        &tmp.path().join("thief"),
        &site_config("socket://127.0.0.1:9"),
    )
    .unwrap();
    let fresh = central.add_site("branch-9").unwrap();
    other.enroll(&central.endpoint(), &fresh).unwrap();
    let again = other
        .cli_config(
            &[
                "enroll",
                "--central",
                &central.endpoint(),
                "--token",
                &fresh,
            ],
            "",
        )
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("used already"), "{said}");
    assert!(central.log().contains("token_used"));
    // A token of the right shape whose secret is wrong.
    let mut forged = central.add_site("branch-10").unwrap();
    let secret_at = forged.find('.').unwrap() + 1;
    let flipped = if &forged[secret_at..=secret_at] == "0" {
        "1"
    } else {
        "0"
    };
    forged.replace_range(secret_at..=secret_at, flipped);
    let wrong = other
        .cli_config(
            &[
                "enroll",
                "--central",
                &central.endpoint(),
                "--token",
                &forged,
            ],
            "",
        )
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not one central issued"));
    // A token that is not one.
    let junk = other
        .cli_config(
            &[
                "enroll",
                "--central",
                &central.endpoint(),
                "--token",
                "hello",
            ],
            "",
        )
        .unwrap();
    assert_eq!(junk.status.code(), Some(2));
    // A token file that is not there; no central given or configured.
    let missing = other
        .cli_config(
            &[
                "enroll",
                "--central",
                &central.endpoint(),
                "--token-file",
                "/nonexistent/enrollment.token",
            ],
            "",
        )
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("cannot read the token file"), "{said}");
    let nowhere = other
        .cli_config(&["enroll", "--token", &fresh], "")
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(2));
    let said = String::from_utf8_lossy(&nowhere.stderr);
    assert!(said.contains("no central to enroll at"), "{said}");

    // Revoking a site ends its open session, and it is refused from then on.
    central.cli_ok(&["site", "revoke", "branch-1"], "").unwrap();
    let status = wait_for(
        Duration::from_secs(10),
        "the site to learn it was revoked",
        || {
            let status = site.sync_status().ok()?;
            status["last_error"]
                .as_str()?
                .contains("revoked")
                .then_some(status)
        },
    )
    .unwrap();
    assert_eq!(status["connected_endpoint"], Value::Null, "{status}");
    assert!(site.log().contains("central refused this site"));

    // A stranger: a certificate from another CA, trusting the real central.
    let stranger = stranger_connects(&central);
    assert!(stranger.is_err(), "a self-signed site got a session");
    wait_for(
        Duration::from_secs(10),
        "central to log the refused handshake",
        || central.log().contains("handshake refused").then_some(()),
    )
    .unwrap();
}

/// Dials central with a site certificate of a CA central never saw.
fn stranger_connects(central: &Central) -> Result<(), String> {
    use sync_protocol::frame::FrameCodec;
    use sync_protocol::message::{Message, PolicyApplied};
    use sync_protocol::pki::{Authority, CENTRAL_NAME, Identity, site_request};
    use sync_protocol::transport::{Timing, open_session, site_endpoint, sync_client_config};
    let ca_pem = fs::read_to_string(central.data_dir.join("ca.pem")).map_err(|e| e.to_string())?;
    let ca_cert = &ca_pem[..ca_pem
        .find("-----BEGIN PRIVATE KEY-----")
        .unwrap_or(ca_pem.len())];
    let (other, _) = Authority::create("elsewhere").map_err(|e| e.to_string())?;
    let (key_pem, csr) = site_request().map_err(|e| e.to_string())?;
    let identity = Identity {
        certificate_pem: other
            .sign_site(&csr, "branch-1", 30)
            .map_err(|e| e.to_string())?,
        key_pem,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let endpoint = site_endpoint(socket).map_err(|e| e.to_string())?;
        let config =
            sync_client_config(&identity, ca_cert, Timing::default()).map_err(|e| e.to_string())?;
        let addr = central
            .endpoint()
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?;
        let attempt = async {
            let connection = endpoint
                .connect_with(config, addr, CENTRAL_NAME)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (mut tx, mut rx) = open_session(&connection, FrameCodec::default())
                .await
                .map_err(|e| e.to_string())?;
            tx.send(&Message::PolicyApplied(PolicyApplied {
                version: 0,
                unknown_rules: vec![],
            }))
            .await
            .map_err(|e| e.to_string())?;
            rx.recv().await.map(|_| ()).map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .map_err(|_| "no answer".to_string())?
    })
}

/// Logs `user` in at the site's lobby, releases all their jobs and waits
/// until they printed.
fn release_all(site: &Appliance, user: &str, pin: &str) -> Value {
    let api = site.api().unwrap();
    let token = api.login_pin("lobby", user, pin).unwrap();
    let released = api.release_all(&token).unwrap();
    let path = format!("/api/v1/releases/{}", released["release"].as_str().unwrap());
    wait_for(Duration::from_secs(60), "the release to finish", || {
        let r = api.call("GET", &path, Some(&token), None).ok()?;
        (r.status == 200 && r.json["done"] == true).then_some(r.json)
    })
    .unwrap()
}

/// The row of `key` in a `central report --csv`.
fn report_row(report: &[Vec<String>], key: &str) -> Option<Vec<String>> {
    report
        .iter()
        .find(|r| r.first().is_some_and(|k| k == key))
        .cloned()
}

#[test]
fn six_jobs_released_at_two_sites_are_counted_exactly_and_indexed_at_central() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SocketSink::start().unwrap();
    let (central, sites) = fleet(tmp.path(), 2, "", &sink.uri());
    central
        .cli_ok(
            &["user", "add", "alice", "--name", "Alice", "--pin"],
            "2468\n",
        )
        .unwrap();
    until_policy(&sites, 1, Duration::from_secs(10));
    assert_logins(&sites, "alice", "2468", 201);
    for (i, site) in sites.iter().enumerate() {
        for (j, file) in ["three-pages.pdf", "small-4k.pdf", "document-a4.pdf"]
            .iter()
            .enumerate()
        {
            site.lp("alice", &format!("site {i} job {j}"), &fixture(file));
        }
        let progress = release_all(site, "alice", "2468");
        assert_eq!(progress["printed"], 3, "{progress}");
    }
    // 3 + 1 + 1 pages per site.
    let report = wait_for(
        Duration::from_secs(20),
        "both sites' accounting at central",
        || {
            let report = central.report("user").ok()?;
            (report_row(&report, "alice")?.get(1)? == "6").then_some(report)
        },
    )
    .unwrap();
    assert_eq!(report[0][..3], ["key", "jobs", "pages"]);
    assert_eq!(report_row(&report, "alice").unwrap()[1..3], ["6", "10"]);
    let by_site = central.report("site").unwrap();
    assert_eq!(report_row(&by_site, "branch-1").unwrap()[1..3], ["3", "5"]);
    assert_eq!(report_row(&by_site, "branch-2").unwrap()[1..3], ["3", "5"]);
    // The global index knows where alice's jobs are and that they printed.
    let jobs: Vec<Value> = wait_for(Duration::from_secs(20), "the job index", || {
        let out = central
            .cli_ok(&["jobs", "--user", "alice", "--json"], "")
            .ok()?;
        let jobs: Vec<Value> = serde_json::from_str(&out).ok()?;
        (jobs.len() == 6 && jobs.iter().all(|j| j["state"] == "completed")).then_some(jobs)
    })
    .unwrap();
    assert_eq!(jobs.iter().filter(|j| j["site"] == "branch-1").count(), 3);
    // Everything acknowledged at both sites.
    for (site, name) in sites.iter().zip(["branch-1", "branch-2"]) {
        let status = wait_for(Duration::from_secs(10), "acknowledgements", || {
            let s = site.sync_status().ok()?;
            (s["journal_unacked"] == 0 && s["outbox_unacked"] == 0 && s["site"] == name)
                .then_some(s)
        })
        .unwrap();
        assert!(status["last_contact_ms"].as_i64().is_some(), "{status}");
    }
}
