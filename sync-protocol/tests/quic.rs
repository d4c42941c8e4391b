//! The QUIC and TLS glue between real endpoints on loopback: mutual TLS
//! with the fleet's CA, enrollment pinned by the token's fingerprint, and
//! the refusals of strangers.

use std::net::UdpSocket;
use std::time::Duration;

use sync_protocol::frame::FrameCodec;
use sync_protocol::message::{Message, PolicyApplied};
use sync_protocol::pki::{Authority, CENTRAL_NAME, Identity, pem_fingerprint, site_request};
use sync_protocol::revision::{ALPN_ENROLL, ALPN_SYNC};
use sync_protocol::transport::{
    Timing, accept_session, central_endpoint, enroll_client_config, open_session, peer_identity,
    site_endpoint, sync_client_config,
};

fn loopback() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind loopback")
}

struct Fleet {
    ca: Authority,
    central: quinn::Endpoint,
}

fn fleet() -> Fleet {
    let (ca, _) = Authority::create("test").expect("CA");
    let server = ca.server_identity(30).expect("server identity");
    let central = central_endpoint(
        loopback(),
        &server,
        ca.certificate_pem(),
        Timing::default(),
        &[7; 32],
    )
    .expect("central endpoint");
    Fleet { ca, central }
}

fn site_identity(ca: &Authority) -> Identity {
    let (key_pem, csr) = site_request().expect("request");
    Identity {
        certificate_pem: ca.sign_site(&csr, "branch-1", 30).expect("signed"),
        key_pem,
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded in time")
}

#[tokio::test]
async fn an_enrolled_site_and_central_talk_over_mutual_tls() {
    let fleet = fleet();
    let site = site_identity(&fleet.ca);
    let addr = fleet.central.local_addr().unwrap();
    let expected = pem_fingerprint(&site.certificate_pem).unwrap();

    let server = fleet.central.clone();
    let central = tokio::spawn(async move {
        let connection = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        let peer = peer_identity(&connection);
        let (mut tx, mut rx) = accept_session(&connection, FrameCodec::default())
            .await
            .unwrap();
        let got = rx.recv().await.unwrap();
        tx.send(&got).await.unwrap();
        tx.finish().await.unwrap();
        // Keep the connection until the site has read the echo.
        let _ = rx.recv().await;
        peer
    });

    let endpoint = site_endpoint(loopback()).unwrap();
    let config = sync_client_config(&site, fleet.ca.certificate_pem(), Timing::default()).unwrap();
    let connection = within(async {
        endpoint
            .connect_with(config, addr, CENTRAL_NAME)
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    let (mut tx, mut rx) = open_session(&connection, FrameCodec::default())
        .await
        .unwrap();
    let hello = Message::PolicyApplied(PolicyApplied {
        version: 3,
        unknown_rules: vec![],
    });
    tx.send(&hello).await.unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), hello);
    tx.finish().await.unwrap();
    let peer = within(central).await.unwrap();
    assert_eq!(peer.alpn, ALPN_SYNC);
    assert_eq!(peer.certificate, Some(expected));
}

#[tokio::test]
async fn a_self_signed_site_is_refused_in_the_handshake() {
    let fleet = fleet();
    let (stranger_ca, _) = Authority::create("elsewhere").unwrap();
    let stranger = site_identity(&stranger_ca);
    let addr = fleet.central.local_addr().unwrap();
    let server = fleet.central.clone();
    let central = tokio::spawn(async move {
        match server.accept().await {
            Some(incoming) => incoming.await.map(|_| ()),
            None => Ok(()),
        }
    });
    let endpoint = site_endpoint(loopback()).unwrap();
    // It trusts the real central, but central does not trust it.
    let config =
        sync_client_config(&stranger, fleet.ca.certificate_pem(), Timing::default()).unwrap();
    let result: Result<(), String> = within(async {
        let connection = endpoint
            .connect_with(config, addr, CENTRAL_NAME)
            .unwrap()
            .await
            .map_err(|e| e.to_string())?;
        // TLS 1.3: the client learns of the refusal on its first use.
        let (mut tx, mut rx) = open_session(&connection, FrameCodec::default())
            .await
            .map_err(|e| e.to_string())?;
        let _ = tx
            .send(&Message::PolicyApplied(PolicyApplied {
                version: 0,
                unknown_rules: vec![],
            }))
            .await;
        rx.recv().await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    assert!(
        result.is_err(),
        "a stranger's certificate must not get a session"
    );
    let central_side = within(central).await.unwrap();
    let message = central_side
        .expect_err("central refuses the handshake")
        .to_string();
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}

#[tokio::test]
async fn enrollment_trusts_only_the_central_its_token_names() {
    let fleet = fleet();
    let addr = fleet.central.local_addr().unwrap();
    let server = fleet.central.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            if let Ok(connection) = incoming.await {
                // Hold the connection open until the client goes.
                tokio::spawn(async move { connection.closed().await });
            }
        }
    });
    let endpoint = site_endpoint(loopback()).unwrap();

    let right = enroll_client_config(fleet.ca.fingerprint().unwrap(), Timing::default()).unwrap();
    let connection = within(async {
        endpoint
            .connect_with(right, addr, CENTRAL_NAME)
            .unwrap()
            .await
    })
    .await
    .expect("the pinned CA is accepted");
    assert_eq!(peer_identity(&connection).alpn, ALPN_ENROLL);
    assert_eq!(peer_identity(&connection).certificate.map(|_| ()), Some(()));

    let wrong = enroll_client_config([0; 32], Timing::default()).unwrap();
    let refused = within(async {
        endpoint
            .connect_with(wrong, addr, CENTRAL_NAME)
            .unwrap()
            .await
    })
    .await;
    let message = refused.expect_err("another CA is refused").to_string();
    assert!(message.contains("enrollment token"), "{message}");
}
