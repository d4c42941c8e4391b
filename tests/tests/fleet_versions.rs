//! A peer one protocol revision newer still syncs: it adds fields to the
//! messages it sends and sends message kinds this revision does not know.
//! Both directions, each against the real process of this revision:
//! a newer site against `central`, and a newer central against `appliance`.
//! The newer peer is written here with raw JSON frames, as a later
//! revision's code would put them on the wire.

use std::process::Command;
use std::time::Duration;

use e2e::{Appliance, Central, appliance_bin, free_udp_port, run_with_timeout, wait_for};
use serde_json::{Value, json};
use sync_protocol::frame::decode_payload;
use sync_protocol::message::Message;
use sync_protocol::pki::{Authority, CENTRAL_NAME, EnrollmentToken, Identity, site_request};
use sync_protocol::policy::credentials::{LookupKey, Secret};
use sync_protocol::policy::users::{NewUser, policy_user};
use sync_protocol::revision::{MIN_REVISION, REVISION};
use sync_protocol::transport::{
    Timing, central_endpoint, enroll_client_config, site_endpoint, sync_client_config,
};

/// Writes one uncompressed frame holding `json`.
async fn send(tx: &mut quinn::SendStream, json: Value) {
    let body = serde_json::to_vec(&json).unwrap();
    let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(0);
    frame.extend(body);
    tx.write_all(&frame).await.unwrap();
}

/// Reads one frame.
async fn recv(rx: &mut quinn::RecvStream) -> Message {
    let read = async {
        let mut len = [0u8; 4];
        rx.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        rx.read_exact(&mut frame).await.unwrap();
        decode_payload(&frame).unwrap()
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the peer answers in time")
}

/// A message of a kind no peer of this revision knows, with a body.
fn unknown_kind() -> Value {
    json!({"kind": "printer_pools", "body": {"pools": [{"name": "floor-2", "members": ["a", "b"]}]}})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_site_one_revision_newer_enrolls_and_uploads_to_this_central() {
    let tmp = tempfile::tempdir().unwrap();
    let central = Central::start(&tmp.path().join("central"), free_udp_port(), "").unwrap();
    let token = central.add_site("branch-next").unwrap();
    let pinned = EnrollmentToken::parse(&token).unwrap().ca_fingerprint;
    let addr = central.endpoint().parse().unwrap();
    runtime().block_on(async {
        let endpoint = site_endpoint(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();

        // Enrollment, with an unknown message first and extra fields.
        let (key_pem, csr_pem) = site_request().unwrap();
        let config = enroll_client_config(pinned, Timing::default()).unwrap();
        let connection = endpoint
            .connect_with(config, addr, CENTRAL_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut tx, mut rx) = connection.open_bi().await.unwrap();
        send(&mut tx, unknown_kind()).await;
        send(
            &mut tx,
            json!({"kind": "enroll_request", "body": {
                "token": token, "csr_pem": csr_pem, "software": "appliance 2.0",
                "hardware": {"model": "box-2", "disks": 2}}}),
        )
        .await;
        let Message::Enrolled(enrolled) = recv(&mut rx).await else {
            panic!("not enrolled")
        };
        connection.close(0u32.into(), b"done");
        let identity = Identity {
            certificate_pem: enrolled.certificate_pem,
            key_pem,
        };

        // The session: hello as the next revision, then a batch with extra fields.
        let config = sync_client_config(&identity, &enrolled.ca_pem, Timing::default()).unwrap();
        let connection = endpoint
            .connect_with(config, addr, CENTRAL_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut tx, mut rx) = connection.open_bi().await.unwrap();
        send(
            &mut tx,
            json!({"kind": "hello", "body": {
                "revision": REVISION + 1, "min_revision": 1, "software": "appliance 2.0",
                "policy_version": 0, "journal_epoch": "next-epoch",
                "features": ["pools", "roaming"]}}),
        )
        .await;
        send(&mut tx, unknown_kind()).await;
        let Message::Welcome(welcome) = recv(&mut rx).await else {
            panic!("no welcome")
        };
        assert_eq!(
            (welcome.revision, welcome.site.as_str()),
            (REVISION, "branch-next")
        );
        let records: Vec<Value> = (1..=3)
            .map(|seq| {
                json!({"seq": seq, "job": format!("job-{seq}"), "queue": "secure", "job_id": seq,
                    "user": "zoe", "device": "lobby", "pages": 2, "pages_exact": true,
                    "sheets": 1, "copies": 1, "color": "color", "sides": "two-sided-long-edge",
                    "media": null, "time_ms": 1_796_000_000_000i64 + seq, "outcome": "completed",
                    "cost_center": "CC-42", "toner_ml": 0.3})
            })
            .collect();
        send(
            &mut tx,
            json!({"kind": "journal", "body": {"epoch": "next-epoch", "after": 0,
                "records": records, "compression_hint": "none"}}),
        )
        .await;
        let ack = loop {
            if let Message::JournalAck(ack) = recv(&mut rx).await {
                break ack;
            }
        };
        assert_eq!(ack.through, 3);
        connection.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
    });
    let report = central.report("user").unwrap();
    let zoe = report.iter().find(|r| r[0] == "zoe").expect("zoe's prints");
    assert_eq!(zoe[1..3], ["3", "6"]);
}

#[test]
fn a_central_one_revision_newer_enrolls_this_site_and_pushes_policy_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (authority, _) = Authority::create("next").unwrap();
    let server = authority.server_identity(30).unwrap();
    let socket = std::net::UdpSocket::bind(("127.0.0.1", free_udp_port())).unwrap();
    let endpoint_name = format!("127.0.0.1:{}", socket.local_addr().unwrap().port());
    let fleet_key = [9u8; 32];
    let token = EnrollmentToken {
        id: "0123456789abcdef".into(),
        secret: "00112233445566778899aabbccddeeff".into(),
        ca_fingerprint: authority.fingerprint().unwrap(),
    }
    .to_string();
    let site = Appliance::prepare(
        &tmp.path().join("site"),
        &format!(
            "site = \"branch-1\"\n[[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n\
             [central]\nendpoints = [{endpoint_name:?}]\n"
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let central = central_endpoint(
        socket,
        &server,
        authority.certificate_pem(),
        Timing::default(),
        &[1; 32],
    )
    .unwrap();

    // Enrollment: an unknown message first, extra fields in the answer.
    let enrolling = runtime.spawn({
        let central = central.clone();
        let ca_pem = authority.certificate_pem().to_owned();
        async move {
            let connection = central.accept().await.unwrap().await.unwrap();
            let (tx, mut rx) = connection.accept_bi().await.unwrap();
            let Message::EnrollRequest(request) = recv(&mut rx).await else {
                panic!("no enrollment request")
            };
            (connection, tx, request, ca_pem)
        }
    });
    let enroll = std::thread::spawn({
        let (endpoint, token) = (endpoint_name.clone(), token.clone());
        let (bin, config) = (appliance_bin(), site.config_path().to_owned());
        move || {
            run_with_timeout(
                Command::new(bin)
                    .args([
                        "enroll",
                        "--central",
                        &endpoint,
                        "--token",
                        &token,
                        "--config",
                    ])
                    .arg(config),
                Duration::from_secs(60),
            )
            .unwrap()
        }
    });
    let (connection, mut tx, request, ca_pem) = runtime.block_on(enrolling).unwrap();
    let certificate = authority
        .sign_site(&request.csr_pem, "branch-1", 30)
        .unwrap();
    runtime.block_on(async {
        send(&mut tx, unknown_kind()).await;
        send(
            &mut tx,
            json!({"kind": "enrolled", "body": {"site": "branch-1", "certificate_pem": certificate,
                "ca_pem": ca_pem, "fleet_key": hex::encode(fleet_key),
                "region": "eu-west", "renew_after_days": 300}}),
        )
        .await;
        tx.finish().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
    });
    let out = enroll.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The session: the site starts, says hello; the newer central answers
    // with extra fields and unknown kinds, and pushes a policy with a user
    // carrying an unknown field and a rule this site does not know.
    let mut site = site;
    site.restart().unwrap();
    let carol = policy_user(
        &NewUser {
            id: "carol".into(),
            display_name: "Carol".into(),
            pin: Some(Secret::new("4711")),
            ..NewUser::default()
        },
        &LookupKey::new(fleet_key),
        false,
    )
    .unwrap();
    let mut carol = serde_json::to_value(&carol).unwrap();
    carol["photo_url"] = json!("https://example.com/carol.png");
    let applied = runtime.block_on(async {
        let connection = central.accept().await.unwrap().await.unwrap();
        let (mut tx, mut rx) = connection.accept_bi().await.unwrap();
        let Message::Hello(hello) = recv(&mut rx).await else {
            panic!("no hello")
        };
        assert_eq!((hello.revision, hello.min_revision), (REVISION, MIN_REVISION));
        send(&mut tx, unknown_kind()).await;
        send(
            &mut tx,
            json!({"kind": "welcome", "body": {"revision": REVISION, "site": "branch-1",
                "journal_acked": 0, "jobs_acked": 0, "central_node": "dc-2"}}),
        )
        .await;
        send(&mut tx, json!({"kind": "policy_snapshot_begin", "body": {"version": 7, "users": 1, "signed_by": "x"}})).await;
        send(&mut tx, json!({"kind": "policy_users", "body": {"version": 7, "users": [carol]}})).await;
        send(&mut tx, unknown_kind()).await;
        send(
            &mut tx,
            json!({"kind": "policy_snapshot_end", "body": {"version": 7,
                "rules": {"max_pages_per_job": 50, "max_color_pages_per_day": 10}}}),
        )
        .await;
        let applied = loop {
            match recv(&mut rx).await {
                Message::PolicyApplied(applied) => break applied,
                Message::Jobs(_) | Message::Journal(_) => continue,
                other => panic!("unexpected {}", other.kind()),
            }
        };
        let api = site.api().unwrap();
        let login = api.login_pin("lobby", "carol", "4711");
        connection.close(0u32.into(), b"done");
        (applied, login.is_ok())
    });
    assert_eq!(applied.0.version, 7);
    assert_eq!(applied.0.unknown_rules, ["max_color_pages_per_day"]);
    assert!(
        applied.1,
        "carol, from the newer central's policy, could not log in"
    );
    let status = wait_for(Duration::from_secs(10), "the site's status", || {
        let s = site.sync_status().ok()?;
        (s["policy_version"] == 7).then_some(s)
    })
    .unwrap();
    assert_eq!(status["rules"]["max_pages_per_job"], 50, "{status}");
    assert!(
        site.log().contains("cannot enforce"),
        "the unknown rule is logged"
    );
}
