//! IPP over TLS with HTTP Basic authentication (`[ipp] tls_certificate`,
//! `authentication = "basic"`), driven by CUPS's `ipptool` and `curl`: the
//! authenticated user owns the job whatever the request names, a wrong
//! password is refused, a request without credentials is challenged, plain
//! HTTP is not served, and Basic without TLS is refused at start. A queue
//! made in a private cupsd with `lpadmin -m everywhere` prints as the user
//! whose password it holds.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::{
    Appliance, Cupsd, appliance_bin, curl_ipp_print, fixture, ipptool_text, run_with_timeout,
    self_signed_certificate, wait_for,
};

/// Prints as `mallory` by name, then reads the job's owner back.
const PRINT_AND_READ_OWNER: &str = r#"
{
    NAME "Print-Job naming another user"
    OPERATION Print-Job
    GROUP operation-attributes-tag
    ATTR charset attributes-charset utf-8
    ATTR naturalLanguage attributes-natural-language en
    ATTR uri printer-uri $uri
    ATTR name requesting-user-name mallory
    ATTR name job-name "ipps test"
    ATTR mimeMediaType document-format application/pdf
    FILE $filename
    STATUS successful-ok
    EXPECT job-id OF-TYPE integer
}
{
    NAME "The job belongs to the authenticated user"
    OPERATION Get-Job-Attributes
    GROUP operation-attributes-tag
    ATTR charset attributes-charset utf-8
    ATTR naturalLanguage attributes-natural-language en
    ATTR uri printer-uri $uri
    ATTR integer job-id $job-id
    ATTR name requesting-user-name mallory
    STATUS successful-ok
    EXPECT job-originating-user-name OF-TYPE name WITH-VALUE "alice"
    EXPECT job-uri OF-TYPE uri WITH-VALUE "/^ipps:/"
}
"#;

/// Anonymous printer query: what a client asks first.
const PRINTER_QUERY: &str = r#"
{
    NAME "Get-Printer-Attributes without credentials"
    OPERATION Get-Printer-Attributes
    GROUP operation-attributes-tag
    ATTR charset attributes-charset utf-8
    ATTR naturalLanguage attributes-natural-language en
    ATTR uri printer-uri $uri
    STATUS successful-ok
    EXPECT uri-security-supported OF-TYPE keyword WITH-VALUE tls
    EXPECT uri-authentication-supported OF-TYPE keyword WITH-VALUE basic
    EXPECT printer-uri-supported OF-TYPE uri WITH-VALUE "/^ipps:/"
}
"#;

fn start(dir: &std::path::Path) -> Appliance {
    let (cert, key) = self_signed_certificate(dir, "ipp").unwrap();
    let config = format!(
        "[ipp]\nlisten = \"127.0.0.1:0\"\ntls_certificate = {:?}\ntls_private_key = {:?}\n\
         authentication = \"basic\"\n[api]\nlisten = \"127.0.0.1:0\"\nlockout_after = 3\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let appliance = Appliance::prepare(&dir.join("site"), &config).unwrap();
    appliance
        .add_user_with_password("alice", "horse-battery-9")
        .unwrap();
    let mut appliance = appliance;
    appliance.restart().unwrap();
    appliance
}

/// A raw IPP Print-Job posted with curl to the appliance's queue `secure`.
fn curl_print(appliance: &Appliance, scheme: &str, credentials: Option<&str>) -> String {
    let url = format!("{scheme}://127.0.0.1:{}/ipp/print/secure", appliance.port);
    curl_ipp_print(&url, credentials).unwrap()
}

fn jobs_stored(appliance: &Appliance) -> usize {
    let out = run_with_timeout(
        Command::new(appliance_bin())
            .args(["jobs", "list", "--config"])
            .arg(appliance.config_path()),
        Duration::from_secs(30),
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("secure"))
        .count()
}

#[test]
fn over_ipps_the_authenticated_user_owns_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = start(tmp.path());
    assert!(appliance.log().contains("authentication=\"basic\""));
    let pdf = fixture("document-a4.pdf");
    let uri = |userinfo: &str| {
        format!(
            "ipps://{userinfo}127.0.0.1:{}/ipp/print/secure",
            appliance.port
        )
    };

    let (ok, out) = ipptool_text(&uri(""), PRINTER_QUERY, None, &[]).unwrap();
    assert!(ok, "{out}");
    let (ok, out) = ipptool_text(
        &uri("alice:horse-battery-9@"),
        PRINT_AND_READ_OWNER,
        Some(&pdf),
        &[],
    )
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(jobs_stored(&appliance), 1);

    // No credentials: challenged, so clients ask their user.
    let answer = curl_print(&appliance, "https", None);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{answer}"
    );
    // A wrong password: refused, nothing stored.
    let (ok, out) = ipptool_text(
        &uri("alice:wrong-password@"),
        PRINT_AND_READ_OWNER,
        Some(&pdf),
        &[],
    )
    .unwrap();
    assert!(!ok, "a wrong password must not print: {out}");
    assert_eq!(jobs_stored(&appliance), 1);
    // Plain HTTP is not served on the TLS port.
    let answer = curl_print(&appliance, "http", Some("alice:horse-battery-9"));
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(jobs_stored(&appliance), 1);

    // Wrong passwords in a row lock the account: then even the right one
    // is refused (403) until the lock ends.
    for _ in 0..3 {
        let answer = curl_print(&appliance, "https", Some("alice:guess"));
        assert!(
            answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 403"),
            "{answer}"
        );
    }
    let answer = curl_print(&appliance, "https", Some("alice:horse-battery-9"));
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(jobs_stored(&appliance), 1);
    let audit = run_with_timeout(
        Command::new(appliance_bin())
            .args(["audit", "--config"])
            .arg(appliance.config_path()),
        Duration::from_secs(30),
    )
    .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("ipp-basic"), "{audit}");
    assert!(!audit.contains("guess"), "a secret reached the audit log");
    assert!(!appliance.log().contains("panicked"));
}

#[test]
fn basic_without_tls_is_refused_at_start_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("appliance.toml");
    let data = tmp.path().join("data").display().to_string();
    let check = |extra: &str| {
        fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n[ipp]\nlisten = \"127.0.0.1:0\"\n\
                 authentication = \"basic\"\n{extra}"
            ),
        )
        .unwrap();
        run_with_timeout(
            Command::new(appliance_bin())
                .arg("check-config")
                .arg(&config),
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let out = check("");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ipp.authentication"), "{stderr}");
    assert!(stderr.contains("allow_basic_without_tls"), "{stderr}");
    let out = check("allow_basic_without_tls = true\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a CUPS command against the private cupsd; its output.
fn cups(cupsd: &Cupsd, program: &str, args: &[&str]) -> (bool, String) {
    let out = run_with_timeout(
        Command::new(program)
            .args(["-h", &cupsd.server()])
            .args(args),
        Duration::from_secs(60),
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// How long cupsd may take to act on a job. It works on its own schedule:
/// its `ipp` backend sleeps 10 or 30 s after a failed connection or an
/// unexpected answer before it tries again. Twice (once on the CI
/// machine, once in a fresh-clone run on a development box) a job waited
/// over 60 s before its backend reached the appliance, at a different step
/// each time, and the cause was not found; a wait that runs out now prints
/// cupsd's debug log and jobs to say why.
const CUPSD_PATIENCE: Duration = Duration::from_secs(180);

#[test]
fn a_cups_queue_made_with_lpadmin_everywhere_prints_as_the_user_it_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let appliance = start(dir.path());
    let cupsd = Cupsd::start_logging(&dir.path().join("cupsd"), "debug").unwrap();
    // What both sides did, for a wait that ran out.
    let explain = |e: anyhow::Error| -> ! {
        let (_, jobs) = cups(&cupsd, "lpstat", &["-W", "all", "-l", "-o"]);
        panic!(
            "{e}\n--- cupsd's jobs:\n{jobs}\n--- cupsd's log:\n{}\n--- the appliance's log:\n{}",
            cupsd.log(),
            appliance.log()
        )
    };
    let queue = |name: &str, uri: &str| {
        let (ok, out) = cups(
            &cupsd,
            "lpadmin",
            &["-p", name, "-E", "-v", uri, "-m", "everywhere"],
        );
        assert!(ok, "lpadmin {name}: {out}");
    };
    let print = |queue: &str, user: &str, title: &str| {
        let file = fixture("three-pages.pdf");
        let file = file.to_str().unwrap();
        let (ok, out) = cups(&cupsd, "lp", &["-d", queue, "-U", user, "-t", title, file]);
        assert!(ok, "lp {queue}: {out}");
    };
    let port = appliance.port;

    // The workstation's queue holds alice's password; bob prints on it.
    queue(
        "branch",
        &format!("ipps://alice:horse-battery-9@127.0.0.1:{port}/ipp/print/secure"),
    );
    print("branch", "bob", "quarterly");
    let jobs = wait_for(CUPSD_PATIENCE, "the job from cupsd", || {
        // A job made by Create-Job is held from the start ("job-incoming"
        // until its document comes with Send-Document): wait for the document.
        appliance.jobs().ok().filter(|j| {
            j.first()
                .is_some_and(|j| j["state"] == "held" && !j["size"].is_null())
        })
    })
    .unwrap_or_else(|e| explain(e));
    assert_eq!(jobs[0]["owner"], "alice", "the authenticated user owns it");
    assert_eq!(jobs[0]["name"], "quarterly");
    assert_eq!(jobs[0]["pages"], 3, "{}\n{}", jobs[0], appliance.log());

    // Plain IPP to the TLS listener: no password crosses in the clear and
    // nothing is stored (cupsd cannot even read the printer's attributes).
    queue(
        "plain",
        &format!("ipp://alice:horse-battery-9@127.0.0.1:{port}/ipp/print/secure"),
    );
    print("plain", "alice", "in the clear");
    // A wrong password: refused, and cupsd holds the job for authentication.
    queue(
        "wrong",
        &format!("ipps://alice:not-her-password@127.0.0.1:{port}/ipp/print/secure"),
    );
    print("wrong", "alice", "guessed");
    wait_for(
        CUPSD_PATIENCE,
        "cupsd to hold the job for authentication",
        || {
            let (_, jobs) = cups(&cupsd, "lpstat", &["-l", "-o", "wrong"]);
            jobs.contains("cups-held-for-authentication").then_some(())
        },
    )
    .unwrap_or_else(|e| explain(e));
    wait_for(
        CUPSD_PATIENCE,
        "cupsd to give up on the plain queue",
        || {
            let (_, printer) = cups(&cupsd, "lpstat", &["-l", "-p", "plain"]);
            printer.contains("Unable").then_some(())
        },
    )
    .unwrap_or_else(|e| explain(e));
    assert!(
        appliance
            .log()
            .contains("IPP authentication failed user=alice"),
        "{}",
        appliance.log()
    );
    assert_eq!(
        appliance.jobs().unwrap().len(),
        1,
        "only the authenticated job"
    );
}
