//! The release API's contract: the OpenAPI document it serves, answers to
//! bad requests (each a JSON error with the right status, and the daemon
//! serving on), and HTTPS with a configured certificate, checked with curl.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::{Appliance, appliance_bin, run_with_timeout, self_signed_certificate, workspace};
use serde_json::json;

const PRINTERS: &str = "[[printer]]\nid = \"lobby\"\nuri = \"socket://127.0.0.1:9\"\n";

#[test]
fn the_served_openapi_document_is_the_published_one() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), PRINTERS).unwrap();
    let api = appliance.api().unwrap();
    let published: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(workspace().join("appliance/src/api/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(api.openapi(), &published);
    // Every error answer of every operation uses the Error schema.
    for (path, item) in published["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn bad_requests_get_json_errors_and_the_daemon_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), PRINTERS).unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let api = appliance.api().unwrap();
    let code = |r: &e2e::ApiResponse| r.json["error"]["code"].as_str().map(str::to_owned);

    let r = api.raw("GET", "/api/v1/printers", None, None, b"").unwrap();
    assert_eq!((r.status, code(&r).as_deref()), (404, Some("not_found")));
    let r = api.raw("PUT", "/api/v1/jobs", None, None, b"").unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let login = br#"{"device": "lobby", "method": "pin", "user": "alice", "secret": "1234"}"#;
    let r = api
        .raw("POST", "/api/v1/sessions", None, Some("text/plain"), login)
        .unwrap();
    assert_eq!(r.status, 415);
    let huge = format!(r#"{{"device": "{}"}}"#, "x".repeat(100 * 1024));
    let r = api
        .raw(
            "POST",
            "/api/v1/sessions",
            None,
            Some("application/json"),
            huge.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 413);
    for body in [
        &b"{not json"[..],
        b"[]",
        br#"{"device": "lobby", "method": "retina", "secret": "x"}"#,
    ] {
        let r = api
            .raw(
                "POST",
                "/api/v1/sessions",
                None,
                Some("application/json"),
                body,
            )
            .unwrap();
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
    }
    let r = api.call("GET", "/api/v1/jobs", None, None).unwrap();
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    let r = api.call("GET", "/api/v1/jobs", Some("00ff"), None).unwrap();
    assert_eq!(r.status, 401);

    let token = api.login_pin("lobby", "alice", "1234").unwrap();
    let r = api
        .call("DELETE", "/api/v1/jobs/not-a-uuid", Some(&token), None)
        .unwrap();
    assert_eq!(r.status, 404);
    let r = api
        .call("GET", "/api/v1/releases/nope", Some(&token), None)
        .unwrap();
    assert_eq!(r.status, 404);
    let r = api
        .call(
            "POST",
            "/api/v1/jobs/release",
            Some(&token),
            Some(&json!({"jobs": "some"})),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    let r = api
        .call(
            "POST",
            "/api/v1/jobs/release",
            Some(&token),
            Some(&json!({"jobs": ["nope"]})),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.json["jobs"][0]["outcome"].as_str()),
        (202, Some("not_found"))
    );
    // Still serving, and the session still works.
    assert_eq!(
        api.call("GET", "/api/v1/jobs", Some(&token), None)
            .unwrap()
            .status,
        200
    );
    assert!(!appliance.log().contains("panicked"));
}

#[test]
fn with_a_certificate_the_api_speaks_https() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(tmp.path(), "api").unwrap();
    let tls = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\ntls_certificate = {:?}\ntls_private_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let appliance = Appliance::start(&tmp.path().join("a"), &format!("{PRINTERS}{tls}")).unwrap();
    assert!(appliance.log().contains("tls=true"));
    let curl = |scheme: &str| {
        run_with_timeout(
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "--cacert"])
                .arg(&cert)
                .arg(format!(
                    "{scheme}://127.0.0.1:{}/api/v1/devices",
                    appliance.api_port
                )),
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let https = curl("https");
    assert!(
        https.status.success(),
        "{}",
        String::from_utf8_lossy(&https.stderr)
    );
    let devices: serde_json::Value = serde_json::from_slice(&https.stdout).unwrap();
    assert_eq!(devices["devices"][0]["id"], "lobby");
    assert!(
        !curl("http").status.success(),
        "plain HTTP must not be answered"
    );

    // A key that does not exist stops start-up with a message naming the key, exit 2.
    let bad = tmp.path().join("bad.toml");
    fs::write(
        &bad,
        format!(
            "data_dir = {:?}\n[ipp]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             tls_certificate = {:?}\ntls_private_key = \"/nonexistent/key.pem\"\n",
            tmp.path().join("d").display().to_string(),
            cert.display().to_string()
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["serve", "--config"])
            .arg(&bad),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.tls_private_key"));
}

#[test]
fn the_session_cookie_works_only_from_the_appliances_own_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::prepare(tmp.path(), PRINTERS).unwrap();
    let out = appliance
        .cli(
            &["users", "add", "alice", "--name", "Alice", "--pin"],
            "2468\n",
        )
        .unwrap();
    assert!(out.status.success());
    let mut appliance = appliance;
    appliance.restart().unwrap();
    let api = appliance.api().unwrap();
    // The harness's requests say `Host: 127.0.0.1`.
    let own = "http://127.0.0.1";
    let login = json!({"device": "lobby", "method": "pin", "user": "alice", "secret": "2468",
                       "session": "cookie"});

    // A cookie login must come from this appliance's pages.
    let from_elsewhere = [("Origin", "http://evil.example")];
    let r = api
        .call_with_headers("POST", "/api/v1/sessions", &from_elsewhere, Some(&login))
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "forbidden");
    let r = api
        .call_with_headers("POST", "/api/v1/sessions", &[], Some(&login))
        .unwrap();
    assert_eq!(r.status, 403, "no Origin at all: {}", r.json);

    let r = api
        .call_with_headers("POST", "/api/v1/sessions", &[("Origin", own)], Some(&login))
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json);
    assert!(
        r.json.get("token").is_none(),
        "the token stays in the cookie: {}",
        r.json
    );
    let set_cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // Reading with the cookie works; changing something needs the Origin.
    let r = api
        .call_with_headers("GET", "/api/v1/jobs", &[("Cookie", &cookie)], None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json);
    let release = json!({"jobs": "all"});
    for origin in [None, Some("http://evil.example")] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        let r = api
            .call_with_headers("POST", "/api/v1/jobs/release", &headers, Some(&release))
            .unwrap();
        assert_eq!(r.status, 403, "origin {origin:?}: {}", r.json);
    }
    let own_page = [("Cookie", cookie.as_str()), ("Origin", own)];
    let r = api
        .call_with_headers("POST", "/api/v1/jobs/release", &own_page, Some(&release))
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.json);
    // Logging out ends the session and clears the cookie.
    let r = api
        .call_with_headers("DELETE", "/api/v1/sessions/current", &own_page, None)
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = api
        .call_with_headers("GET", "/api/v1/jobs", &[("Cookie", &cookie)], None)
        .unwrap();
    assert_eq!(r.status, 401);
}
