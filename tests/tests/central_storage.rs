//! Central's two storage backends against the promises of `CentralStore`,
//! on real databases: an SQLite file, and a private PostgreSQL server. The
//! same script runs on both and must give the same answers; then what only
//! a shared database faces: two nodes (two stores on one database) racing
//! for one enrollment token, editing policy and storing one site's batches
//! at once, and the server restarted under a store that keeps working;
//! a central process on PostgreSQL serving a site, killed mid-upload; and
//! two central nodes on one database serving one fleet: an edit through
//! one reaches the sites on the other, and when a node is killed its sites
//! move to the other with every record stored once.

use std::path::Path;
use std::time::{Duration, Instant};

use central::store::{
    CentralStore, EnrollRefusal, PolicyDelta, PolicyEdit, PostgresStore, ReportBy, SnapshotPart,
    SqliteStore, StoreError,
};
use e2e::{
    Appliance, Central, Postgres, fill_journal, free_udp_port, self_signed_certificate, wait_for,
};
use sync_protocol::message::{JobAnnouncement, JobBatch, JournalBatch, JournalRecord, PolicyUser};
use sync_protocol::rules::Rules;
use tokio::sync::mpsc;

fn record(seq: u64, user: &str, pages: Option<u32>, outcome: &str) -> JournalRecord {
    JournalRecord {
        seq,
        job: format!("job-{seq}"),
        queue: "secure".into(),
        job_id: seq as i32,
        user: user.into(),
        device: "lobby".into(),
        pages,
        pages_exact: pages.is_some(),
        sheets: pages,
        copies: 1,
        color: if seq.is_multiple_of(2) {
            "color"
        } else {
            "monochrome"
        }
        .into(),
        sides: "one-sided".into(),
        media: seq.is_multiple_of(3).then(|| "iso_a4_210x297mm".into()),
        // A day apart, so the report by day has several rows.
        time_ms: 1_700_000_000_000 + seq as i64 * 86_400_000,
        outcome: outcome.into(),
        origin_site: (seq == 4).then(|| "branch-2".into()),
    }
}

fn journal(epoch: &str, after: u64, records: Vec<JournalRecord>) -> JournalBatch {
    JournalBatch {
        epoch: epoch.into(),
        after,
        records,
    }
}

fn announce(seq: u64, uuid: &str, state: &str) -> JobAnnouncement {
    JobAnnouncement {
        seq,
        uuid: uuid.into(),
        owner: "alice".into(),
        name: format!("{uuid}.pdf"),
        pages: Some(3),
        size: Some(4096),
        // Submitted once: later announcements of a job keep the time.
        submitted_ms: 1_000 + uuid.trim_start_matches('u').parse::<i64>().unwrap_or(0),
        state: state.into(),
        deleted: state == "deleted",
    }
}

fn user(id: &str, cards: &[&str]) -> PolicyUser {
    PolicyUser {
        id: id.into(),
        name: id.to_uppercase(),
        email: None,
        groups: vec![],
        disabled: false,
        password: None,
        pin: Some(format!("{id}-pin")),
        pin_only: None,
        cards: cards.iter().map(|c| c.to_string()).collect(),
    }
}

/// Reads a whole snapshot: (version, users announced, chunk sizes).
async fn read_snapshot<S: CentralStore>(store: &S) -> (u64, u64, Vec<usize>) {
    let (tx, mut rx) = mpsc::channel(2);
    let reader = tokio::spawn(async move {
        let mut parts = Vec::new();
        while let Some(part) = rx.recv().await {
            parts.push(part);
        }
        parts
    });
    store.snapshot(tx).await.unwrap();
    let parts = reader.await.unwrap();
    let SnapshotPart::Head(head) = &parts[0] else {
        panic!("the head comes first")
    };
    let sizes = parts[1..]
        .iter()
        .map(|p| match p {
            SnapshotPart::Users(u) => u.len(),
            SnapshotPart::Head(_) => panic!("one head"),
        })
        .collect();
    (head.version, head.users, sizes)
}

/// Runs the same script on `store`, asserting what the interface promises;
/// returns everything it read, to compare between backends.
async fn script<S: CentralStore>(store: &S) -> Vec<String> {
    let mut seen = Vec::new();

    // Sites and their one-time tokens.
    let far = i64::MAX / 2;
    store
        .add_site("branch-1".into(), "t1".into(), [1; 32], far)
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_site("branch-1".into(), "t2".into(), [1; 32], far)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_site("branch-2".into(), "t3".into(), [3; 32], 0)
        .await
        .unwrap();
    assert_eq!(
        store.check_token("t1".into(), [2; 32]).await.unwrap(),
        Err(EnrollRefusal::BadToken)
    );
    assert_eq!(
        store.check_token("t3".into(), [3; 32]).await.unwrap(),
        Err(EnrollRefusal::Expired)
    );
    assert_eq!(
        store
            .complete_enrollment("t1".into(), [1; 32], [9; 32])
            .await
            .unwrap(),
        Ok("branch-1".into())
    );
    assert_eq!(
        store
            .complete_enrollment("t1".into(), [1; 32], [8; 32])
            .await
            .unwrap(),
        Err(EnrollRefusal::Used)
    );
    let site = store.site_by_certificate([9; 32]).await.unwrap().unwrap();
    assert_eq!(site.name, "branch-1");
    assert!(store.site_by_certificate([8; 32]).await.unwrap().is_none());
    assert!(matches!(
        store.revoke_site("nowhere".into()).await,
        Err(StoreError::NotFound(_))
    ));
    store.revoke_site("branch-2".into()).await.unwrap();
    store
        .site_applied("branch-1".into(), 7, vec!["colour_budget".into()])
        .await
        .unwrap();
    let sites = store.list_sites().await.unwrap();
    seen.push(format!(
        "{:?}",
        sites
            .iter()
            .map(|s| (
                &s.name,
                s.enrolled_ms.is_some(),
                s.revoked_ms.is_some(),
                s.policy_version,
                &s.unknown_rules
            ))
            .collect::<Vec<_>>()
    ));

    // The journal: a resend stores nothing twice, a gap is refused, a new
    // epoch numbers from 0 again.
    assert_eq!(
        store
            .begin_session("branch-1".into(), "e1".into())
            .await
            .unwrap(),
        (0, 0)
    );
    let first: Vec<_> = (1..=4)
        .map(|s| record(s, "alice", Some(s as u32), "completed"))
        .collect();
    for _ in 0..2 {
        assert_eq!(
            store
                .store_journal("branch-1".into(), journal("e1", 0, first.clone()))
                .await
                .unwrap(),
            4
        );
    }
    let more = vec![
        record(3, "alice", Some(3), "completed"),
        record(5, "bob", None, "completed"),
        record(6, "bob", Some(6), "aborted"),
    ];
    assert_eq!(
        store
            .store_journal("branch-1".into(), journal("e1", 2, more))
            .await
            .unwrap(),
        6
    );
    assert!(matches!(
        store
            .store_journal(
                "branch-1".into(),
                journal("e1", 9, vec![record(10, "x", None, "completed")])
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .begin_session("branch-1".into(), "e2".into())
            .await
            .unwrap(),
        (0, 0)
    );
    store
        .store_journal(
            "branch-1".into(),
            journal("e2", 0, vec![record(1, "carol", Some(2), "completed")]),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .begin_session("branch-1".into(), "e1".into())
            .await
            .unwrap(),
        (6, 0)
    );
    for by in [
        ReportBy::User,
        ReportBy::Site,
        ReportBy::Device,
        ReportBy::Day,
    ] {
        let rows = store.report(by, 0).await.unwrap();
        seen.push(format!("{by:?} {rows:?}"));
    }
    let by_user = store.report(ReportBy::User, 0).await.unwrap();
    let alice = by_user.iter().find(|r| r.key == "alice").unwrap();
    assert_eq!((alice.jobs, alice.pages, alice.color_pages), (4, 10, 6));
    let bob = by_user.iter().find(|r| r.key == "bob").unwrap();
    assert_eq!((bob.jobs, bob.not_completed, bob.pages_unknown), (1, 1, 1));
    let later = store
        .report(ReportBy::User, 1_700_000_000_000 + 5 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(later.iter().map(|r| r.jobs).sum::<u64>(), 1, "{later:?}");

    // Job announcements: the latest wins, within a batch too.
    let batch = JobBatch {
        epoch: "e1".into(),
        after: 0,
        jobs: vec![
            announce(1, "u1", "held"),
            announce(2, "u2", "held"),
            announce(3, "u1", "completed"),
        ],
    };
    assert_eq!(
        store
            .store_jobs("branch-1".into(), batch.clone())
            .await
            .unwrap(),
        3
    );
    assert_eq!(store.store_jobs("branch-1".into(), batch).await.unwrap(), 3);
    let jobs = store.jobs_of("alice".into()).await.unwrap();
    let states: Vec<_> = jobs
        .iter()
        .map(|j| (j.uuid.as_str(), j.state.as_str()))
        .collect();
    assert_eq!(states, [("u2", "held"), ("u1", "completed")]);
    seen.push(format!("{jobs:?}"));

    // Policy: one version per effective edit, changes since any version,
    // a card on one user only (but movable within one edit).
    assert_eq!(store.policy_since(0).await.unwrap(), PolicyDelta::Current);
    assert_eq!(
        store
            .edit_policy(PolicyEdit::AddUsers(vec![
                user("alice", &["c1"]),
                user("bob", &[])
            ]))
            .await
            .unwrap(),
        1
    );
    let e = store
        .edit_policy(PolicyEdit::AddUsers(vec![user("carol", &["c1"])]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("registered to alice"), "{e}");
    let e = store
        .edit_policy(PolicyEdit::AddUsers(vec![user("bob", &[])]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    let disable = |disabled| PolicyEdit::SetDisabled {
        ids: vec!["bob".into()],
        disabled,
    };
    assert_eq!(store.edit_policy(disable(true)).await.unwrap(), 2);
    assert_eq!(store.edit_policy(disable(true)).await.unwrap(), 2);
    assert!(matches!(
        store
            .edit_policy(PolicyEdit::SetDisabled {
                ids: vec!["nobody".into()],
                disabled: true
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    let limit = Rules {
        max_pages_per_job: 5,
        ..Rules::default()
    };
    assert_eq!(
        store
            .edit_policy(PolicyEdit::SetRules(limit.clone()))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .edit_policy(PolicyEdit::SetRules(limit.clone()))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .edit_policy(PolicyEdit::ReplaceAllUsers(vec![
                user("bob", &["c1"]),
                user("carol", &["c2"])
            ]))
            .await
            .unwrap(),
        4
    );
    assert_eq!(store.policy_version().await.unwrap(), 4);
    assert_eq!(
        store.policy_since(9).await.unwrap(),
        PolicyDelta::Snapshot { version: 4 }
    );
    for since in 1..=4 {
        let delta = store.policy_since(since).await.unwrap();
        seen.push(format!("since {since}: {delta:?}"));
    }
    let PolicyDelta::Changes(changes) = store.policy_since(2).await.unwrap() else {
        panic!("changes since 2")
    };
    assert_eq!(changes.remove, ["alice"]);
    assert_eq!(changes.rules, Some(limit));
    let ids: Vec<_> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["bob", "carol"]);

    // A snapshot in bounded chunks at one version.
    let many: Vec<_> = (0..2500).map(|i| user(&format!("u{i:05}"), &[])).collect();
    assert_eq!(
        store.edit_policy(PolicyEdit::AddUsers(many)).await.unwrap(),
        5
    );
    let snapshot = read_snapshot(store).await;
    assert_eq!(snapshot, (5, 2502, vec![1000, 1000, 502]));
    assert_eq!(
        store.policy_since(4).await.unwrap(),
        PolicyDelta::Snapshot { version: 5 },
        "more than a chunk of users changed: a snapshot"
    );

    // Nodes and the sessions each holds: a site is on the node that opened
    // its session last; an older session's end there changes nothing.
    let (one, two) = ("10.0.0.1:7443".to_owned(), "10.0.0.2:7443".to_owned());
    store.node_started(one.clone(), [1; 32]).await.unwrap();
    store.node_started(two.clone(), [2; 32]).await.unwrap();
    store.node_alive(one.clone()).await.unwrap();
    for (site, node) in [("branch-1", &one), ("branch-2", &one), ("branch-1", &two)] {
        store
            .session_opened(site.to_owned(), node.clone())
            .await
            .unwrap();
    }
    store
        .session_closed("branch-1".into(), one.clone())
        .await
        .unwrap();
    let on = store
        .sessions_of(vec!["branch-1".into(), "branch-2".into(), "nowhere".into()])
        .await
        .unwrap();
    let mut on: Vec<_> = on.into_iter().collect();
    on.sort();
    seen.push(format!("{on:?}"));
    assert_eq!(
        store.node_by_certificate([2; 32]).await.unwrap(),
        Some(two.clone())
    );
    assert_eq!(store.node_by_certificate([3; 32]).await.unwrap(), None);
    let nodes: Vec<_> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.address, n.alive, n.sites))
        .collect();
    seen.push(format!("{nodes:?}"));
    assert_eq!(
        nodes,
        [
            (one.clone(), true, vec!["branch-2".to_owned()]),
            (two.clone(), true, vec!["branch-1".to_owned()])
        ]
    );
    // Started again, a node holds no session until its sites come back.
    store.node_started(two.clone(), [4; 32]).await.unwrap();
    assert_eq!(
        store
            .sessions_of(vec!["branch-1".into()])
            .await
            .unwrap()
            .len(),
        0
    );
    seen
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_and_postgresql_keep_the_same_promises_and_give_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Postgres::start().unwrap();
    server.create_database("central").unwrap();
    let runtime = runtime();
    let on_sqlite = runtime.block_on(async {
        let store = SqliteStore::open(tmp.path()).unwrap();
        script(&store).await
    });
    let on_postgres = runtime.block_on(async {
        let store = PostgresStore::connect(&server.url("central"), 4, None)
            .await
            .unwrap();
        script(&store).await
    });
    for (sqlite, postgres) in on_sqlite.iter().zip(&on_postgres) {
        assert_eq!(sqlite, postgres, "the backends answer differently");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());

    // A second node on the same database finds the schema there and
    // applies nothing again.
    runtime.block_on(async {
        let again = PostgresStore::connect(&server.url("central"), 2, None)
            .await
            .unwrap();
        assert_eq!(again.policy_version().await.unwrap(), 5);
    });
    assert_eq!(
        server
            .psql("central", "SELECT applied FROM schema_version")
            .unwrap(),
        "3"
    );
}

#[test]
fn two_nodes_on_one_database_decide_each_thing_once() {
    let server = Postgres::start().unwrap();
    server.create_database("central").unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        // Two nodes starting at once migrate the schema once.
        let url = server.url("central");
        let (one, two) = tokio::join!(
            PostgresStore::connect(&url, 8, None),
            PostgresStore::connect(&url, 8, None)
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        let nodes = [one, two];

        // Both nodes see one token used at the same moment: one enrolls.
        for round in 0..20 {
            let token = format!("token-{round}");
            nodes[0]
                .add_site(
                    format!("site-{round}"),
                    token.clone(),
                    [round; 32],
                    i64::MAX / 2,
                )
                .await
                .unwrap();
            let (a, b) = tokio::join!(
                nodes[0].complete_enrollment(token.clone(), [round; 32], [round; 32]),
                nodes[1].complete_enrollment(token.clone(), [round; 32], [round + 100; 32])
            );
            let outcomes = [a.unwrap(), b.unwrap()];
            assert_eq!(
                outcomes.iter().filter(|o| o.is_ok()).count(),
                1,
                "round {round}: {outcomes:?}"
            );
            assert!(outcomes.contains(&Err(EnrollRefusal::Used)));
        }

        // Edits through both nodes at once: gapless versions, each once.
        let mut edits = tokio::task::JoinSet::new();
        for i in 0..40 {
            let node = nodes[i % 2].clone();
            edits.spawn(async move {
                node.edit_policy(PolicyEdit::AddUsers(vec![user(&format!("n{i:02}"), &[])]))
                    .await
            });
        }
        let mut versions = Vec::new();
        while let Some(done) = edits.join_next().await {
            versions.push(done.unwrap().unwrap());
        }
        versions.sort();
        assert_eq!(versions, (1..=40).collect::<Vec<u64>>());
        let PolicyDelta::Changes(changes) = nodes[1].policy_since(30).await.unwrap() else {
            panic!("changes since 30")
        };
        assert_eq!(changes.upsert.len(), 10);

        // One site's batches stored through both nodes at once (a session
        // moving between nodes): every record once, the mark never back.
        nodes[0]
            .begin_session("site-0".into(), "e".into())
            .await
            .unwrap();
        let mut acked = 0;
        for start in (1..=2000u64).step_by(100) {
            let batch = journal(
                "e",
                start - 1,
                (start..start + 100)
                    .map(|s| record(s, "alice", Some(1), "completed"))
                    .collect(),
            );
            let (a, b) = tokio::join!(
                nodes[0].store_journal("site-0".into(), batch.clone()),
                nodes[1].store_journal("site-0".into(), batch)
            );
            acked = a.unwrap().max(b.unwrap());
        }
        assert_eq!(acked, 2000);
        assert_eq!(
            nodes[1]
                .begin_session("site-0".into(), "e".into())
                .await
                .unwrap(),
            (2000, 0)
        );
    });
    assert_eq!(
        server
            .psql("central", "SELECT count(*), sum(pages) FROM journal")
            .unwrap(),
        "2000|2000"
    );
}

#[test]
fn a_store_outlives_a_postgresql_restart() {
    let mut server = Postgres::start().unwrap();
    server.create_database("central").unwrap();
    let runtime = runtime();
    let store = runtime.block_on(async {
        let store = PostgresStore::connect(&server.url("central"), 4, None)
            .await
            .unwrap();
        store
            .edit_policy(PolicyEdit::AddUsers(vec![user("alice", &[])]))
            .await
            .unwrap();
        store
    });
    server.stop();
    let down = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), store.policy_version()).await
    });
    let error = down
        .expect("an operation while the database is down fails within its deadline")
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    server.restart().unwrap();
    runtime.block_on(async {
        // The pool drops the dead connections and opens new ones.
        assert_eq!(store.policy_version().await.unwrap(), 1);
        assert_eq!(
            store
                .edit_policy(PolicyEdit::AddUsers(vec![user("bob", &[])]))
                .await
                .unwrap(),
            2
        );
    });
}

#[test]
fn with_a_tls_ca_every_connection_is_verified_tls_and_none_goes_in_the_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Postgres::start_tls().unwrap();
    server.create_database("central").unwrap();
    let url = server.url("central");
    let ca = server.tls_ca.clone().unwrap();
    let (stranger, _) = self_signed_certificate(tmp.path(), "stranger").unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        // The server takes TLS connections only: these are.
        let store = PostgresStore::connect(&url, 2, Some(&ca)).await.unwrap();
        assert_eq!(
            store
                .edit_policy(PolicyEdit::AddUsers(vec![user("alice", &[])]))
                .await
                .unwrap(),
            1
        );
        assert!(store.describe().await.contains("over TLS"));
        // Without the CA nothing is sent over TLS, and the server refuses.
        let e = PostgresStore::connect(&url, 2, None).await.unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        // A server certificate the CA did not sign is refused here.
        let e = PostgresStore::connect(&url, 2, Some(&stranger))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
        // A URL that asks for TLS without saying whom to trust.
        let e = PostgresStore::connect(&format!("{url}?sslmode=require"), 2, None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("tls_ca"), "{e}");
    });
}

/// (completed prints, pages) central holds for `site`, by its report.
fn counted(central: &Central, site: &str) -> (u64, u64) {
    central
        .report("site")
        .ok()
        .and_then(|report| {
            let row = report
                .iter()
                .find(|r| r.first().is_some_and(|k| k == site))?;
            Some((row.get(1)?.parse().ok()?, row.get(2)?.parse().ok()?))
        })
        .unwrap_or((0, 0))
}

#[test]
fn a_central_on_postgresql_serves_a_site_and_loses_nothing_when_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Postgres::start().unwrap();
    server.create_database("fleet").unwrap();
    let mut central = Central::start(
        &tmp.path().join("central"),
        free_udp_port(),
        &format!("storage.url = {:?}", server.url("fleet")),
    )
    .unwrap();
    assert!(
        central.log().contains("storage open storage=PostgreSQL"),
        "{}",
        central.log()
    );
    let token = central.add_site("branch-1").unwrap();
    let mut site = Appliance::start_enrolled(
        &tmp.path().join("site"),
        &central.endpoint(),
        &token,
        "site = \"branch-1\"\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n",
    )
    .unwrap();

    // Policy down: a user added at central can log in at the site.
    central
        .cli_ok(
            &["user", "add", "carol", "--name", "Carol", "--pin"],
            "4711\n",
        )
        .unwrap();
    wait_for(Duration::from_secs(10), "policy 1 at the site", || {
        let status = site.sync_status().ok()?;
        (status["policy_version"] == 1).then_some(())
    })
    .unwrap();

    // Accounting up: 20,000 records, central killed (SIGKILL) in the
    // middle, every one stored once.
    site.stop().unwrap();
    fill_journal(&site.data_dir, "branch-1", 20_000).unwrap();
    site.restart().unwrap();
    let before = wait_for(Duration::from_secs(120), "the upload to begin", || {
        let (jobs, _) = counted(&central, "branch-1");
        (jobs > 0).then_some(jobs)
    })
    .unwrap();
    central.kill();
    central.restart().unwrap();
    let after = wait_for(Duration::from_secs(180), "20000 records at central", || {
        let now = counted(&central, "branch-1");
        (now.0 >= 20_000).then_some(now)
    })
    .unwrap();
    assert_eq!(after, (20_000, 60_000), "each record once");
    println!("central was killed with {before} of 20000 records stored");
    assert_eq!(
        server
            .psql("fleet", "SELECT count(*) FROM journal")
            .unwrap(),
        "20000"
    );
    // Its state is in PostgreSQL, not in its data directory.
    assert!(!central.data_dir.join("central.db").exists());
}

/// A central node on database `url` under `dir`, of `first`'s fleet when
/// given.
fn node(dir: &Path, url: &str, first: Option<&Central>) -> Central {
    // A dead node is noticed after the QUIC idle timeout, which sites take
    // from central when it is shorter than theirs.
    let extra = format!("sync.idle_timeout_secs = 3\nstorage.url = {url:?}");
    match first {
        Some(first) => Central::start_node(dir, free_udp_port(), &extra, first),
        None => Central::start(dir, free_udp_port(), &extra),
    }
    .unwrap()
}

/// Site `name` under `dir`, registered through `node` (any node: the token
/// is in the database), dialing `endpoints` in order; started.
fn site_of_nodes(dir: &Path, name: &str, node: &Central, endpoints: &[String]) -> Appliance {
    let token = node.add_site(name).unwrap();
    let mut site = Appliance::prepare(
        &dir.join(name),
        &format!(
            "site = {name:?}\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\n\
             default = true\n[[printer]]\nid = \"lobby\"\n\
             uri = \"socket://127.0.0.1:9\"\n[central]\nendpoints = {endpoints:?}\n"
        ),
    )
    .unwrap();
    site.enroll_as_configured(&token).unwrap();
    site.restart().unwrap();
    site
}

#[test]
fn postgresql_restarted_under_load_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Postgres::start().unwrap();
    server.create_database("fleet").unwrap();
    let url = server.url("fleet");
    let one = node(&tmp.path().join("one"), &url, None);
    let two = node(&tmp.path().join("two"), &url, Some(&one));
    let mut sites = [
        site_of_nodes(
            tmp.path(),
            "branch-1",
            &one,
            &[one.endpoint(), two.endpoint()],
        ),
        site_of_nodes(
            tmp.path(),
            "branch-2",
            &two,
            &[two.endpoint(), one.endpoint()],
        ),
    ];
    for (site, name) in sites.iter_mut().zip(["branch-1", "branch-2"]) {
        site.stop().unwrap();
        fill_journal(&site.data_dir, name, 20_000).unwrap();
        site.restart().unwrap();
    }
    wait_for(Duration::from_secs(60), "both uploads to begin", || {
        (counted(&one, "branch-1").0 > 0 && counted(&one, "branch-2").0 > 0).then_some(())
    })
    .unwrap();
    // A fast shutdown: open transactions are rolled back, connections cut.
    let before = (counted(&one, "branch-1").0, counted(&one, "branch-2").0);
    server.stop();
    let stopped = Instant::now();
    server.restart().unwrap();
    for (site, name) in [(&one, "branch-1"), (&two, "branch-2")] {
        let after = wait_for(
            Duration::from_secs(180),
            "20000 records of each site",
            || {
                let now = counted(site, name);
                (now.0 >= 20_000).then_some(now)
            },
        )
        .unwrap();
        assert_eq!(after, (20_000, 60_000), "{name}: each record once");
    }
    assert_eq!(
        server
            .psql("fleet", "SELECT count(*) FROM journal")
            .unwrap(),
        "40000"
    );
    // Both nodes hear policy edits again, and say they are alive.
    one.cli_ok(
        &["user", "add", "dora", "--name", "Dora", "--pin"],
        "8080\n",
    )
    .unwrap();
    wait_for(Duration::from_secs(5), "policy 1 at both sites", || {
        sites
            .iter()
            .all(|s| s.sync_status().is_ok_and(|st| st["policy_version"] == 1))
            .then_some(())
    })
    .unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&two.cli_ok(&["status"], "").unwrap()).unwrap();
    let alive = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["alive"] == true)
        .count();
    assert_eq!(alive, 2, "{status}");
    println!(
        "PostgreSQL restarted with {before:?} of 20000 records of each site stored; \
         all stored exactly {:?} after",
        stopped.elapsed()
    );
}

#[test]
fn two_nodes_on_one_database_serve_one_fleet_and_a_killed_node_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Postgres::start().unwrap();
    server.create_database("fleet").unwrap();
    let url = server.url("fleet");
    let mut one = node(&tmp.path().join("one"), &url, None);
    let two = node(&tmp.path().join("two"), &url, Some(&one));
    let endpoints = [one.endpoint(), two.endpoint()];
    let mut sites = [
        site_of_nodes(tmp.path(), "branch-1", &two, &endpoints),
        site_of_nodes(tmp.path(), "branch-2", &one, &endpoints),
    ];
    let on = |site: &Appliance, node: &Central| {
        site.sync_status()
            .ok()
            .is_some_and(|s| s["connected_endpoint"] == node.endpoint())
    };
    wait_for(
        Duration::from_secs(20),
        "both sites on the first node",
        || sites.iter().all(|s| on(s, &one)).then_some(()),
    )
    .unwrap();

    // An edit made through the second node reaches the sites on the first.
    let edited = Instant::now();
    two.cli_ok(
        &["user", "add", "carol", "--name", "Carol", "--pin"],
        "4711\n",
    )
    .unwrap();
    wait_for(Duration::from_secs(1), "policy 1 at both sites", || {
        sites
            .iter()
            .all(|s| s.sync_status().is_ok_and(|st| st["policy_version"] == 1))
            .then_some(())
    })
    .unwrap();
    println!(
        "an edit through node two reached both sites on node one in {:?}",
        edited.elapsed()
    );

    // The first node is killed in the middle of an upload: both sites
    // move to the second, and every record is stored once.
    sites[0].stop().unwrap();
    fill_journal(&sites[0].data_dir, "branch-1", 20_000).unwrap();
    sites[0].restart().unwrap();
    wait_for(Duration::from_secs(60), "the upload to begin", || {
        (counted(&two, "branch-1").0 > 0).then_some(())
    })
    .unwrap();
    let killed = Instant::now();
    one.kill();
    let moved = wait_for(
        Duration::from_secs(60),
        "both sites on the second node",
        || sites.iter().all(|s| on(s, &two)).then(|| killed.elapsed()),
    )
    .unwrap();
    let after = wait_for(Duration::from_secs(120), "20000 records at central", || {
        let now = counted(&two, "branch-1");
        (now.0 >= 20_000).then_some(now)
    })
    .unwrap();
    assert_eq!(after, (20_000, 60_000), "each record once");
    println!("both sites served by node two {moved:?} after node one was killed");
    // A policy edit through the surviving node still reaches them.
    two.cli_ok(&["user", "disable", "carol"], "").unwrap();
    wait_for(Duration::from_secs(5), "policy 2 at both sites", || {
        sites
            .iter()
            .all(|s| s.sync_status().is_ok_and(|st| st["policy_version"] == 2))
            .then_some(())
    })
    .unwrap();
}
