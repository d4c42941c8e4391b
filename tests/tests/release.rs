//! Release at the printer, end to end: `lp` into the pull queue, log in
//! through the release API at a device, release, and compare what real
//! printers (ippeveprinter, a raw socket listener) received; plus lockout,
//! another user's jobs, a printer that is down, rules, the journal and the
//! audit log. Every API answer is checked against the served OpenAPI
//! document by the harness's client.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::{
    ApiClient, Appliance, IppResponse, Printer, SocketSink, fixture, free_port, ipp_request,
    ipptool_text, standard_attributes, wait_for,
};
use serde_json::{Value, json};

/// Config: pull queue `secure`, printers as given, quick retries, and
/// `extra` tables.
fn config(printers: &[(&str, String)], extra: &str) -> String {
    config_with_output(printers, "", extra)
}

/// [`config`] with more `[output]` keys.
fn config_with_output(printers: &[(&str, String)], output: &str, extra: &str) -> String {
    let mut text = format!(
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n{output}"
    );
    for (id, uri) in printers {
        text.push_str(&format!(
            "[[printer]]\nid = \"{id}\"\nuri = \"{uri}\"\nname = \"{id} MFP\"\n"
        ));
    }
    text.push_str(extra);
    text
}

fn jobs(api: &ApiClient, token: &str) -> Vec<Value> {
    let r = api.call("GET", "/api/v1/jobs", Some(token), None).unwrap();
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["jobs"].as_array().cloned().unwrap_or_default()
}

fn release(api: &ApiClient, token: &str, body: Value) -> Value {
    let r = api
        .call("POST", "/api/v1/jobs/release", Some(token), Some(&body))
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.json);
    r.json
}

/// Polls a release until every job in it is done; returns its last state.
fn finished(api: &ApiClient, token: &str, release: &Value) -> Value {
    let path = format!("/api/v1/releases/{}", release["release"].as_str().unwrap());
    wait_for(Duration::from_secs(60), "the release to finish", || {
        let r = api.call("GET", &path, Some(token), None).ok()?;
        (r.status == 200 && r.json["done"] == true).then_some(r.json)
    })
    .unwrap()
}

fn cli_text(appliance: &Appliance, args: &[&str]) -> String {
    let out = appliance.cli(args, "").unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn alice_releases_her_three_pages_at_the_lobby_printer_and_bob_cannot_touch_them() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        &config(&[("lobby", printer.uri())], ""),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    appliance.add_user("bob", "9876", &[]).unwrap();
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    appliance.lp("alice", "quarterly report", &fixture("three-pages.pdf"));

    let api = appliance.api().unwrap();
    let alice = api.login_pin("lobby", "alice", "1234").unwrap();
    let listed = jobs(&api, &alice);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let job = &listed[0];
    assert_eq!(
        (
            &job["name"],
            &job["pages"],
            &job["pages_exact"],
            &job["state"]
        ),
        (
            &json!("quarterly report"),
            &json!(3),
            &json!(true),
            &json!("held")
        )
    );
    assert_eq!(job["size"], json!(document.len()));
    let id = job["id"].as_str().unwrap().to_owned();

    // Bob sees nothing of alice's, through the API and over IPP.
    let bob = api.login_pin("lobby", "bob", "9876").unwrap();
    assert!(jobs(&api, &bob).is_empty());
    let theirs = release(&api, &bob, json!({"jobs": [id]}));
    assert_eq!(theirs["jobs"][0]["outcome"], "not_found");
    let deleted = api
        .call("DELETE", &format!("/api/v1/jobs/{id}"), Some(&bob), None)
        .unwrap();
    assert_eq!(deleted.status, 404);
    let uri = appliance.uri("secure");
    let mut attrs = standard_attributes(&uri, "bob");
    attrs.push((0x44, "which-jobs", b"all"));
    let body = ipp_request(0x0200, 0x000A, 7, &attrs, b"");
    let answer =
        IppResponse::parse(&appliance.post_raw("/ipp/print/secure", &body).unwrap()).unwrap();
    assert_eq!(answer.status, 0);
    assert_eq!(
        answer.integer("job-id"),
        None,
        "bob's my-jobs lists alice's job"
    );
    assert_eq!(
        jobs(&api, &alice)[0]["state"],
        "held",
        "bob changed nothing"
    );

    // Alice releases everything; the printer gets her exact bytes.
    let released = release(&api, &alice, json!({"jobs": "all"}));
    assert_eq!(released["jobs"][0]["outcome"], "queued", "{released}");
    let progress = finished(&api, &alice, &released);
    assert_eq!(
        (progress["printed"].as_u64(), progress["total"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(progress["jobs"][0]["state"], "printed", "{progress}");
    let received = printer.documents();
    assert_eq!(received.len(), 1);
    assert!(received[0].1 == document, "the printer's copy differs");

    // One journal record, 3 pages, at lobby; logins and the release audited.
    let report = cli_text(&appliance, &["report", "--by", "user", "--csv"]);
    assert_eq!(
        report.lines().collect::<Vec<_>>(),
        [
            "key,jobs,pages,color_pages,sheets,jobs_pages_unknown,failed,uncertain",
            "alice,1,3,3,3,0,0,0"
        ]
    );
    let by_device = cli_text(&appliance, &["report", "--by", "device", "--csv"]);
    assert!(by_device.contains("\nlobby,1,3,"), "{by_device}");
    let audit = cli_text(&appliance, &["audit", "--json"]);
    let actions: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["login", "login", "release"], "{audit}");
    for secret in ["1234", "9876"] {
        assert!(!audit.contains(secret) && !appliance.log().contains(secret));
    }
    let metrics = appliance.get("/metrics").unwrap();
    for line in [
        "appliance_logins_total{method=\"pin\",outcome=\"ok\"} 2",
        "appliance_jobs_released_total{printer=\"lobby\"} 1",
        "appliance_api_requests_total{route=\"release\",status=\"202\"} 2",
        "appliance_api_requests_total{route=\"delete_job\",status=\"404\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert_eq!(
        api.call("DELETE", "/api/v1/sessions/current", Some(&alice), None)
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        api.call("GET", "/api/v1/jobs", Some(&alice), None)
            .unwrap()
            .status,
        401
    );
}

#[test]
fn wrong_pins_lock_the_user_everywhere_and_the_device_for_everyone() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        tmp.path(),
        &config(
            &[("lobby", "socket://127.0.0.1:9".into()), ("floor-2", "socket://127.0.0.1:9".into())],
            "[api]\nlisten = \"127.0.0.1:0\"\nlockout_after = 3\nlockout_secs = 2\nlockout_max_secs = 4\n",
        ),
    )
    .unwrap();
    let added = appliance
        .cli(
            &[
                "users", "add", "alice", "--name", "alice", "--pin", "--card", "C0FFEE01",
            ],
            "1234\n",
        )
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    appliance.add_user("bob", "9876", &[]).unwrap();
    let api = appliance.api().unwrap();
    let attempt = |device: &str, user: &str, pin: &str| {
        api.call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(&json!({"device": device, "method": "pin", "user": user, "secret": pin})),
        )
        .unwrap()
    };
    assert_eq!(attempt("lobby", "alice", "0000").status, 401);
    assert_eq!(attempt("lobby", "alice", "1111").status, 401);
    let locked = attempt("lobby", "alice", "2222");
    assert_eq!(
        (locked.status, locked.json["error"]["code"].as_str()),
        (429, Some("locked"))
    );
    assert_eq!(locked.header("retry-after"), Some("2"));
    // The right PIN is not even checked while locked, for alice anywhere and
    // for anyone at lobby.
    assert_eq!(attempt("lobby", "alice", "1234").status, 429);
    assert_eq!(attempt("floor-2", "alice", "1234").status, 429);
    assert_eq!(attempt("lobby", "bob", "9876").status, 429);
    assert_eq!(
        attempt("floor-2", "bob", "9876").status,
        201,
        "bob elsewhere is fine"
    );
    // The lock ends by itself.
    wait_for(Duration::from_secs(10), "the lockout to end", || {
        (attempt("lobby", "alice", "1234").status == 201).then_some(())
    })
    .unwrap();
    let audit = cli_text(&appliance, &["audit"]);
    assert!(audit.contains("locked for 2 s"), "{audit}");
    // Four refusals above, and more while waiting for the lock to end.
    assert!(audit.matches("login-refused").count() >= 4, "{audit}");

    // Bad requests are told apart from bad secrets, and never lock.
    let unknown = attempt("basement", "alice", "1234");
    assert_eq!(
        (unknown.status, unknown.json["error"]["code"].as_str()),
        (404, Some("unknown_device"))
    );
    let no_user = attempt("lobby", "", "1234");
    assert_eq!(
        no_user.status, 400,
        "PIN-only login is off: {}",
        no_user.json
    );
    let garbage = api
        .call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(&json!({"device": "lobby"})),
        )
        .unwrap();
    assert_eq!(garbage.status, 400);
}

#[test]
fn a_printer_that_is_down_keeps_the_job_held_and_a_later_release_prints_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        &config_with_output(
            &[("lobby", format!("ipp://127.0.0.1:{port}/ipp/print"))],
            "release_attempts = 2\n",
            "",
        ),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let document = fs::read(fixture("document-a4.pdf")).unwrap();
    appliance.lp("alice", "one page", &fixture("document-a4.pdf"));
    let api = appliance.api().unwrap();
    let alice = api.login_pin("lobby", "alice", "1234").unwrap();

    let progress = finished(&api, &alice, &release(&api, &alice, json!({"jobs": "all"})));
    let job = &progress["jobs"][0];
    assert_eq!(job["state"], "returned", "{progress}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.contains("could not be reached") && message.contains("still held"),
        "{message}"
    );
    assert_eq!(jobs(&api, &alice)[0]["state"], "held");
    let report = cli_text(&appliance, &["report", "--by", "user", "--csv"]);
    assert_eq!(
        report.lines().count(),
        1,
        "nothing printed, nothing in the journal: {report}"
    );

    let printer = Printer::start_on(&tmp.path().join("printer"), port).unwrap();
    let progress = finished(&api, &alice, &release(&api, &alice, json!({"jobs": "all"})));
    assert_eq!(progress["jobs"][0]["state"], "printed", "{progress}");
    let received = printer.documents();
    assert_eq!(received.len(), 1, "printed exactly once");
    assert!(received[0].1 == document);
}

#[test]
fn all_prints_in_submission_order_on_a_socket_printer() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SocketSink::start().unwrap();
    let appliance = Appliance::start(tmp.path(), &config(&[("lobby", sink.uri())], "")).unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    let files = [
        "small-4k.pdf",
        "three-pages.pdf",
        "document-letter.ps",
        "document-a4.pdf",
    ];
    for (i, file) in files.iter().enumerate() {
        appliance.lp("alice", &format!("doc {i}"), &fixture(file));
    }
    let api = appliance.api().unwrap();
    let alice = api.login_pin("lobby", "alice", "1234").unwrap();
    let listed = jobs(&api, &alice);
    let pages: Vec<&Value> = listed.iter().map(|j| &j["pages"]).collect();
    assert_eq!(pages, [&json!(1), &json!(3), &json!(1), &json!(1)]);
    let released = release(&api, &alice, json!({"jobs": "all"}));
    let progress = finished(&api, &alice, &released);
    assert_eq!(progress["printed"], 4, "{progress}");
    let expected: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(fixture(f)).unwrap())
        .collect();
    assert!(
        sink.documents() == expected,
        "socket printer got other bytes or another order"
    );
}

#[test]
fn a_group_rule_prints_in_monochrome_and_limits_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    // Also: a job counts as printed as soon as the printer accepted it.
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        &config_with_output(
            &[("lobby", printer.uri())],
            "printed_when = \"accepted\"\n",
            "[rules]\nforce_mono_groups = [\"students\"]\nmax_pages_per_job = 5\n",
        ),
    )
    .unwrap();
    appliance.add_user("sam", "4321", &["students"]).unwrap();
    appliance.lp("sam", "essay", &fixture("document-a4.pdf"));
    appliance.lp("sam", "handout", &fixture("three-pages.pdf"));
    let api = appliance.api().unwrap();
    let sam = api.login_pin("lobby", "sam", "4321").unwrap();
    let listed = jobs(&api, &sam);
    let (essay, handout) = (listed[0]["id"].clone(), listed[1]["id"].clone());

    // Two copies of three pages exceed the limit of five: refused, with why.
    let refused = release(&api, &sam, json!({"jobs": [handout], "copies": 2}));
    assert_eq!(refused["jobs"][0]["outcome"], "refused");
    let why = refused["jobs"][0]["message"].as_str().unwrap();
    assert!(
        why.contains("6 pages") && why.contains("limit here is 5"),
        "{why}"
    );

    let released = release(&api, &sam, json!({"jobs": [essay]}));
    let notes = released["jobs"][0]["notes"].to_string();
    assert!(notes.contains("black and white"), "{released}");
    assert_eq!(finished(&api, &sam, &released)["printed"], 1);
    let (ok, out) = ipptool_text(
        &printer.uri(),
        r#"{
  NAME "the released job reached the printer in monochrome"
  OPERATION Get-Jobs
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR naturalLanguage attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR keyword which-jobs all
  ATTR keyword requested-attributes job-id,print-color-mode
  STATUS successful-ok
  EXPECT print-color-mode OF-TYPE keyword IN-GROUP job-attributes-tag WITH-VALUE monochrome
}
"#,
        None,
        &[],
    )
    .unwrap();
    assert!(ok, "{out}");
    let report = cli_text(&appliance, &["report", "--by", "user", "--csv"]);
    assert!(
        report.contains("\nsam,1,1,0,1,0,0,0"),
        "a monochrome page: {report}"
    );
}

#[test]
fn the_console_terminal_logs_in_lists_releases_and_follows_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SocketSink::start().unwrap();
    let appliance = Appliance::start(tmp.path(), &config(&[("lobby", sink.uri())], "")).unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    appliance.lp("alice", "first", &fixture("three-pages.pdf"));
    appliance.lp("alice", "second", &fixture("document-a4.pdf"));
    let api_url = format!("http://127.0.0.1:{}", appliance.api_port);
    let terminal = |device: &str, script: &str| {
        let out = e2e::run_with_input(
            Command::new(e2e::appliance_bin())
                .args(["terminal", "--api", &api_url, "--device", device]),
            Some(script),
            Duration::from_secs(120),
        )
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A wrong PIN, the right one, release job 1, log out, quit.
    let (code, screen, err) = terminal("lobby", "p\nalice\n0000\np\nalice\n1234\n1\nl\nq\n");
    assert_eq!(code, Some(0), "{screen}{err}");
    for expected in [
        "lobby MFP — release station",
        "Wrong PIN, card or password",
        "Welcome, alice.",
        "first",
        "second",
        "first: printed",
        "Done: 1 of 1 printed.",
        "Logged out.",
        "Goodbye.",
    ] {
        assert!(
            screen.contains(expected),
            "{expected:?} missing from:\n{screen}"
        );
    }
    assert!(!screen.contains("1234"), "the PIN is never shown");
    assert!(sink.documents() == [fs::read(fixture("three-pages.pdf")).unwrap()]);

    let (code, _, err) = terminal("basement", "");
    assert_eq!(code, Some(2));
    assert!(err.contains("no printer \"basement\""), "{err}");
}

#[test]
fn a_printed_job_can_be_printed_again_until_its_time_for_reprint_is_over() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SocketSink::start().unwrap();
    let appliance = Appliance::start(
        tmp.path(),
        &config(
            &[("lobby", sink.uri())],
            "[retention]\nprinted_job_secs = 4\n",
        ),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    appliance.lp("alice", "minutes", &fixture("three-pages.pdf"));
    let document = fs::read(fixture("three-pages.pdf")).unwrap();
    let api = appliance.api().unwrap();
    let alice = api.login_pin("lobby", "alice", "1234").unwrap();
    assert_eq!(
        finished(&api, &alice, &release(&api, &alice, json!({"jobs": "all"})))["printed"],
        1
    );

    // Still listed, as printed, and can be printed again (a new job on the same bytes).
    let listed = jobs(&api, &alice);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "printed");
    assert!(listed[0]["reprint_until"].is_string());
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let again = release(&api, &alice, json!({"jobs": [id], "copies": 2}));
    assert_eq!(again["jobs"][0]["outcome"], "queued", "{again}");
    assert_eq!(finished(&api, &alice, &again)["printed"], 1);
    assert!(
        sink.documents() == [document.clone(), document],
        "two identical prints"
    );
    let report = cli_text(&appliance, &["report", "--by", "user", "--csv"]);
    assert!(
        report.contains("\nalice,2,9,"),
        "3 pages, then 2 copies of 3: {report}"
    );
    let audit = cli_text(&appliance, &["audit", "--json"]);
    let reprint: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["action"] == "reprint")
        .expect("the reprint is audited");
    assert!(
        reprint["job"].is_string() && reprint["job"] != json!(id),
        "{reprint}"
    );
    assert!(
        reprint["detail"].as_str().unwrap().contains(&id),
        "{reprint}"
    );

    // "all" never reprints; and once the time is over, the document goes.
    let all = release(&api, &alice, json!({"jobs": "all"}));
    assert!(all["jobs"].as_array().unwrap().is_empty(), "{all}");
    wait_for(Duration::from_secs(20), "the reprint time to end", || {
        (!appliance.document_stored(&id).unwrap() && jobs(&api, &alice).is_empty()).then_some(())
    })
    .unwrap();
    assert!(appliance.log().contains("time for reprint is over"));
    let gone = release(&api, &alice, json!({"jobs": [id]}));
    assert_eq!(gone["jobs"][0]["outcome"], "not_held", "{gone}");
}

#[test]
fn a_quota_counts_jobs_on_their_way_to_the_printer() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on the printer's port: released jobs stay on their way.
    let appliance = Appliance::start(
        tmp.path(),
        &config_with_output(
            &[("lobby", format!("socket://127.0.0.1:{}", free_port()))],
            "release_attempts = 30\n",
            "[rules]\nquota = { pages = 5, period = \"day\" }\n",
        ),
    )
    .unwrap();
    appliance.add_user("alice", "1234", &[]).unwrap();
    appliance.lp("alice", "first", &fixture("three-pages.pdf"));
    appliance.lp("alice", "second", &fixture("three-pages.pdf"));
    let api = appliance.api().unwrap();
    let alice = api.login_pin("lobby", "alice", "1234").unwrap();
    let listed = jobs(&api, &alice);
    let first = release(&api, &alice, json!({"jobs": [listed[0]["id"]]}));
    assert_eq!(first["jobs"][0]["outcome"], "queued", "{first}");
    let second = release(&api, &alice, json!({"jobs": [listed[1]["id"]]}));
    assert_eq!(second["jobs"][0]["outcome"], "refused", "{second}");
    let why = second["jobs"][0]["message"].as_str().unwrap();
    assert!(why.contains("2 of your 5 pages left today"), "{why}");
}
