//! The web release app in a real browser: headless Chromium over WebDriver
//! against a running appliance with an `ippeveprinter` behind it. A panel
//! of 800×480 logs in by card (typed by the "reader" into the focused
//! field, then Enter), releases a job and follows it to "Printed" (the
//! printer's file is byte-identical); the PIN pad locks out after wrong
//! PINs and says for how long; rule and quota refusals are shown in words;
//! a phone of 390×844 picks the printer and logs in by password. Every
//! page loads with no request leaving the appliance and no console error.
//! Screenshots of each step are saved in `target/test-artifacts/web/`.

use std::time::Duration;

use e2e::{Appliance, Browser, ENTER, Printer, fixture, self_signed_certificate, wait_for};

const CARD: &str = "C0FFEE01";
const PIN: &str = "2468";
const PASSWORD: &str = "correct-horse-7";

/// An appliance whose printer `lobby` is an `ippeveprinter`, with alice
/// (card, PIN and password); `rules` and `api` are added to its config.
fn start(dir: &std::path::Path, rules: &str, api: &str) -> (Appliance, Printer) {
    let printer = Printer::start(&dir.join("printer")).unwrap();
    let appliance = start_with_printer(dir, &printer.uri(), rules, api);
    (appliance, printer)
}

/// The appliance of [`start`], its printer `lobby` at `uri`.
fn start_with_printer(dir: &std::path::Path, uri: &str, rules: &str, api: &str) -> Appliance {
    let config = format!(
        "site = \"branch-1\"\n[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n\
         [output]\nretry_initial_secs = 1\nretry_max_secs = 1\npoll_interval_secs = 1\n\
         release_attempts = 2\n[[printer]]\nid = \"lobby\"\nname = \"Lobby MFP\"\n\
         location = \"Ground floor\"\nuri = \"{uri}\"\n[rules]\n{rules}\n\
         [api]\nlisten = \"127.0.0.1:0\"\n{api}\n"
    );
    let mut appliance = Appliance::prepare(&dir.join("site"), &config).unwrap();
    let out = appliance
        .cli(
            &[
                "users",
                "add",
                "alice",
                "--name",
                "Alice",
                "--card",
                CARD,
                "--pin",
                "--password",
            ],
            &format!("{PIN}\n{PASSWORD}\n"),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    appliance.restart().unwrap();
    appliance
}

fn base(appliance: &Appliance) -> String {
    format!("http://127.0.0.1:{}", appliance.api_port)
}

/// A browser of `width`×`height` at the panel page of `lobby` under
/// `origin`, the card field waiting.
fn at_panel(origin: &str, width: u32, height: u32) -> Browser {
    let browser = Browser::start(width, height).unwrap();
    browser.goto(&format!("{origin}/panel/lobby")).unwrap();
    browser.wait_visible("#card").unwrap();
    browser
}

/// The reader types alice's card and Enter; waits for `shown` in her list
/// (or for the empty list).
fn card_login(browser: &Browser, shown: Option<&str>) {
    browser.type_keys(&format!("{CARD}{ENTER}")).unwrap();
    match shown {
        Some(name) => {
            browser
                .wait_text("#job-list", name, Duration::from_secs(10))
                .unwrap();
        }
        None => browser.wait_visible("#no-jobs").unwrap(),
    }
}

/// Every resource the page loaded came from `origin`, and the console
/// holds no error.
fn assert_local_and_clean(browser: &Browser, origin: &str) {
    let loaded = browser
        .script("return performance.getEntriesByType('resource').map(e => e.name)")
        .unwrap();
    for url in loaded.as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(origin),
            "a request left the appliance: {url}"
        );
    }
    let errors = browser.console_errors().unwrap();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// Milliseconds of the app's own `performance.measure` entries named `name`.
fn measured(browser: &Browser, name: &str) -> Vec<f64> {
    browser
        .script(&format!(
            "return performance.getEntriesByName('{name}').map(e => e.duration)"
        ))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

#[test]
fn at_a_panel_a_card_logs_in_and_a_released_job_prints_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (appliance, printer) = start(tmp.path(), "", "");
    appliance.lp("alice", "quarterly-report", &fixture("three-pages.pdf"));
    let browser = at_panel(&base(&appliance), 800, 480);
    assert_eq!(browser.text("#printer").unwrap(), "Lobby MFP");
    assert_eq!(
        browser.focused_id().unwrap(),
        "card",
        "the card field waits for the reader"
    );
    assert_local_and_clean(&browser, &base(&appliance));
    browser.screenshot("panel-1-login").unwrap();

    // The reader types the number and Enter into the focused field.
    card_login(&browser, Some("quarterly-report"));
    let listed = browser.text("#job-list").unwrap();
    assert!(listed.contains("3 pages"), "{listed}");
    assert!(browser.text("#who").unwrap().contains("Alice"));
    browser.screenshot("panel-2-jobs").unwrap();

    browser.click("#job-list input[type=checkbox]").unwrap();
    browser.click("#release").unwrap();
    browser
        .wait_text("#progress-list", "Printed", Duration::from_secs(60))
        .unwrap();
    browser.screenshot("panel-3-printed").unwrap();
    let documents = printer.documents();
    assert_eq!(documents.len(), 1);
    assert_eq!(
        documents[0].1,
        std::fs::read(fixture("three-pages.pdf")).unwrap(),
        "the printer got the bytes alice sent"
    );
    let login = measured(&browser, "login_to_list");
    let release = measured(&browser, "release_to_progress");
    println!(
        "card Enter → job list drawn: {login:?} ms; release tap → progress drawn: {release:?} ms"
    );
    assert_eq!((login.len(), release.len()), (1, 1));

    // A few seconds after the last job is done, the panel logs out by
    // itself, ready for the next card; the API no longer knows the session.
    browser
        .wait_visible_for("#form-card", Duration::from_secs(20))
        .unwrap();
    assert_eq!(browser.focused_id().unwrap(), "card");
    let status = browser
        .script(
            "const r = new XMLHttpRequest(); r.open('GET', '/api/v1/jobs', false); r.send(); \
             return r.status",
        )
        .unwrap();
    assert_eq!(status, 401);
    // The session lived in an HttpOnly cookie: no script could read it.
    assert_eq!(browser.script("return document.cookie").unwrap(), "");
    assert!(!appliance.log().contains("panicked"));
}

#[test]
fn wrong_pins_lock_the_pad_with_the_time_left_and_the_right_pin_works_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (appliance, _printer) = start(
        tmp.path(),
        "",
        "lockout_after = 3\nlockout_secs = 3\nlockout_max_secs = 3\n",
    );
    appliance.lp("alice", "payslip", &fixture("document-a4.pdf"));
    let browser = Browser::start(800, 480).unwrap();
    browser
        .goto(&format!("{}/panel/lobby", base(&appliance)))
        .unwrap();
    browser.click("#tab-pin").unwrap();
    browser.click("#pin-user").unwrap();
    browser.type_keys("alice").unwrap();
    let tap_pin = |pin: &str| {
        for digit in pin.chars() {
            browser.click(&format!("[data-digit=\"{digit}\"]")).unwrap();
        }
        browser.click("#form-pin button[type=submit]").unwrap();
    };
    for attempt in 1..=2 {
        tap_pin("1111");
        browser
            .wait_text("#message", "Wrong PIN", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e:#}"));
    }
    tap_pin("1111");
    let locked = browser
        .wait_text("#message", "Try again in", Duration::from_secs(10))
        .unwrap();
    browser.screenshot("pin-1-locked").unwrap();
    let secs: u64 = locked
        .split("Try again in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no time in {locked:?}"));
    assert!((1..=3).contains(&secs), "{locked}");
    // The right PIN while locked is refused too.
    tap_pin(PIN);
    browser
        .wait_text("#message", "Try again in", Duration::from_secs(10))
        .unwrap();
    // Once the lock has run out, the right PIN logs in.
    std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(300));
    tap_pin(PIN);
    browser
        .wait_text("#job-list", "payslip", Duration::from_secs(10))
        .unwrap();
    browser.screenshot("pin-2-after-lock").unwrap();
    assert!(
        browser
            .console_errors()
            .unwrap()
            .iter()
            .all(|e| e.contains("401") || e.contains("429"))
    );
}

#[test]
fn rule_and_quota_refusals_are_said_in_words() {
    let tmp = tempfile::tempdir().unwrap();
    let (appliance, printer) = start(
        tmp.path(),
        "max_pages_per_job = 2\nquota = { pages = 2, period = \"day\" }\n",
        "",
    );
    appliance.lp("alice", "one-page", &fixture("document-a4.pdf"));
    let browser = at_panel(&base(&appliance), 1024, 600);
    card_login(&browser, Some("one-page"));
    browser.click("#select-all").unwrap();
    browser.click("#release").unwrap();
    browser
        .wait_text("#progress-list", "Printed", Duration::from_secs(60))
        .unwrap();
    wait_for(Duration::from_secs(10), "the print", || {
        (printer.documents().len() == 1).then_some(())
    })
    .unwrap();

    // One page of two used: three pages are over the job limit, two
    // copies of one page over what is left of the quota.
    appliance.lp("alice", "three-pages", &fixture("three-pages.pdf"));
    appliance.lp_with(
        "alice",
        "two-copies",
        &fixture("document-a4.pdf"),
        &["-n", "2"],
    );
    browser.click("#more").unwrap();
    browser
        .wait_text("#job-list", "two-copies", Duration::from_secs(10))
        .unwrap();
    browser.click("#select-all").unwrap();
    browser.click("#release").unwrap();
    let said = browser
        .wait_text(
            "#progress-list",
            "limit here is 2 pages per job",
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(
        said.contains("you have 1 of your 2 pages left today"),
        "{said}"
    );
    browser.screenshot("rules-refusals").unwrap();
    assert_eq!(printer.documents().len(), 1, "nothing more printed");
}

#[test]
fn on_a_phone_the_user_picks_the_printer_and_logs_in_by_password() {
    let tmp = tempfile::tempdir().unwrap();
    let (appliance, printer) = start(tmp.path(), "", "");
    appliance.lp("alice", "boarding-pass", &fixture("document-a4.pdf"));
    appliance.lp("alice", "old-draft", &fixture("three-pages.pdf"));
    let browser = Browser::start(390, 844).unwrap();
    browser
        .goto(&format!("{}/release", base(&appliance)))
        .unwrap();
    browser
        .wait_text("#printers", "Lobby MFP", Duration::from_secs(10))
        .unwrap();
    assert!(browser.text("#printers").unwrap().contains("Ground floor"));
    assert_local_and_clean(&browser, &base(&appliance));
    browser.screenshot("phone-1-printers").unwrap();
    browser.click("#printers button").unwrap();
    // No card reader on a phone.
    browser.wait_visible("#form-password").unwrap();
    assert!(
        browser
            .script("return document.getElementById('tab-card').hidden")
            .unwrap()
            .as_bool()
            .unwrap()
    );
    browser.click("#password-user").unwrap();
    browser.type_keys("alice").unwrap();
    browser.click("#password").unwrap();
    browser.type_keys(&format!("{PASSWORD}{ENTER}")).unwrap();
    browser
        .wait_text("#job-list", "old-draft", Duration::from_secs(10))
        .unwrap();
    browser.screenshot("phone-2-jobs").unwrap();
    // Jobs are listed oldest first: delete the draft, print the pass.
    browser.click("#job-list li:nth-child(2) input").unwrap();
    browser.click("#delete").unwrap();
    browser
        .wait_text("#message", "Deleted: 1", Duration::from_secs(10))
        .unwrap();
    let left = browser.text("#job-list").unwrap();
    assert!(
        left.contains("boarding-pass") && !left.contains("old-draft"),
        "{left}"
    );
    browser.click("#job-list input[type=checkbox]").unwrap();
    browser.click("#release").unwrap();
    browser
        .wait_text("#progress-list", "Printed", Duration::from_secs(60))
        .unwrap();
    browser.screenshot("phone-3-printed").unwrap();
    assert_eq!(printer.documents().len(), 1);
    assert_eq!(
        printer.documents()[0].1,
        std::fs::read(fixture("document-a4.pdf")).unwrap()
    );
    browser.click("#done").unwrap();
    browser.wait_visible("#form-password").unwrap();
}

#[test]
fn a_printer_that_does_not_answer_is_said_and_the_job_kept() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port: every connection is refused.
    let appliance = start_with_printer(tmp.path(), "socket://127.0.0.1:9", "", "");
    appliance.lp("alice", "contract", &fixture("document-a4.pdf"));
    let browser = at_panel(&base(&appliance), 800, 480);
    card_login(&browser, Some("contract"));
    browser.click("#job-list input").unwrap();
    browser.click("#release").unwrap();
    let said = browser
        .wait_text(
            "#progress-list",
            "Not printed; kept for later",
            Duration::from_secs(30),
        )
        .unwrap();
    println!("the panel said: {said}");
    browser.screenshot("printer-unreachable").unwrap();
    // Kept: it is in the list again.
    browser.click("#more").unwrap();
    browser
        .wait_text("#job-list", "contract", Duration::from_secs(10))
        .unwrap();
}

#[test]
fn in_german_every_word_comes_from_the_catalogue() {
    let tmp = tempfile::tempdir().unwrap();
    let (appliance, _printer) = start(tmp.path(), "", "");
    let browser = Browser::start(800, 480).unwrap();
    browser
        .goto(&format!("{}/panel/lobby?lang=de", base(&appliance)))
        .unwrap();
    browser
        .wait_text(
            "#form-card",
            "Halten Sie Ihre Karte",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        browser
            .script("return document.documentElement.lang")
            .unwrap(),
        "de"
    );
    browser.type_keys(&format!("FFFF0000{ENTER}")).unwrap();
    browser
        .wait_text("#message", "Falsche PIN", Duration::from_secs(10))
        .unwrap();
    browser.screenshot("german-wrong-card").unwrap();
}

#[test]
fn over_https_the_session_cookie_is_secure_and_http_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(tmp.path(), "api").unwrap();
    let tls = format!(
        "tls_certificate = {:?}\ntls_private_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (appliance, _printer) = start(tmp.path(), "", &tls);
    let origin = format!("https://127.0.0.1:{}", appliance.api_port);
    let browser = at_panel(&origin, 800, 480);
    assert_local_and_clean(&browser, &origin);
    card_login(&browser, None);
    let cookies = browser.cookies().unwrap();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "release_session")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(browser.script("return document.cookie").unwrap(), "");
    let stored = browser
        .script("return localStorage.length + sessionStorage.length")
        .unwrap();
    assert_eq!(stored, 0, "nothing is kept in the browser's storage");
}

#[test]
fn a_pause_as_long_as_the_session_idle_time_logs_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (appliance, _printer) = start(tmp.path(), "", "session_idle_secs = 2\n");
    let browser = Browser::start(800, 480).unwrap();
    browser
        .goto(&format!("{}/panel/lobby", base(&appliance)))
        .unwrap();
    browser.wait_visible("#card").unwrap();
    browser.type_keys(&format!("{CARD}{ENTER}")).unwrap();
    browser.wait_visible("#no-jobs").unwrap();
    browser
        .wait_text(
            "#message",
            "Logged out after a pause",
            Duration::from_secs(10),
        )
        .unwrap();
    browser.wait_visible("#card").unwrap();
    assert_eq!(
        browser.focused_id().unwrap(),
        "card",
        "ready for the next card"
    );
}
