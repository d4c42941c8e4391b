//! CUPS's own IPP conformance suites (`ipp-1.1.test`, `ipp-2.0.test`) and
//! CUPS's `lp`, against the real appliance, with a real printer
//! (`ippeveprinter`) behind the direct queue.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::{
    Appliance, Outcome, Printer, SUITE_DOCUMENTS, conformance_suite, fixture, ipptool,
    ipptool_text, lobby_config, run_with_timeout, sha256, wait_for,
};

const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn ipptool_suites_pass_in_full_on_the_direct_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let appliance =
        Appliance::start(&tmp.path().join("appliance"), &lobby_config(&printer.uri())).unwrap();
    conformance_suite(&tmp.path().join("suite"), None).unwrap();
    let document = fixture("three-pages.pdf");

    for file in ["ipp-1.1.test", "ipp-2.0.test"] {
        let run = ipptool(
            &appliance.uri("lobby-direct"),
            &tmp.path().join("suite").join(file),
            &document,
            SUITE_TIMEOUT,
        )
        .unwrap();
        eprintln!("direct queue, {file}: {}", run.summary());
        let failed = run.named(Outcome::Fail);
        assert!(
            failed.is_empty(),
            "{file}: failed {failed:?}\n{}",
            run.output
        );
        assert!(
            run.named(Outcome::Pass).len() >= 40,
            "{file}: too few tests ran\n{}",
            run.output
        );
        assert!(
            !run.output.contains("cannot be read"),
            "{file}: a document was missing\n{}",
            run.output
        );
    }

    // Every job reaches the printer, and what it received is byte for byte
    // what was submitted.
    wait_for(Duration::from_secs(300), "direct jobs to finish", || {
        let jobs = appliance.jobs().ok()?;
        jobs.iter()
            .filter(|j| j["queue"] == "lobby-direct")
            .all(|j| {
                matches!(
                    j["state"].as_str(),
                    Some("completed" | "canceled" | "aborted")
                )
            })
            .then_some(())
    })
    .unwrap();
    let submitted: Vec<Vec<u8>> = SUITE_DOCUMENTS
        .iter()
        .chain(["three-pages.pdf"].iter())
        .map(|n| fs::read(fixture(n)).unwrap())
        .collect();
    let received = printer.documents();
    assert!(
        received.len() >= 10,
        "printer got only {} documents",
        received.len()
    );
    for (path, bytes) in &received {
        assert!(
            submitted.contains(bytes),
            "{} differs from every submitted document",
            path.display()
        );
    }
    let original = fs::read(&document).unwrap();
    assert!(received.iter().any(|(_, b)| *b == original));
    let jobs = appliance.jobs().unwrap();
    assert!(
        jobs.iter()
            .any(|j| j["queue"] == "lobby-direct" && j["state"] == "completed"),
        "no job completed: {jobs:?}"
    );
}

/// On a pull queue jobs are held until released at a printer, so they never
/// complete: the suite's step that waits for completion must fail, and so
/// may the three that need a completed job. Everything else must pass. Our
/// copy of the suite polls once instead of 30 times in the waiting step,
/// since the job cannot complete.
#[test]
fn ipptool_suites_pass_on_the_pull_queue_except_completion_steps() {
    const WAIT_STEP: &str = "Get-Job-Attributes Until Job Complete";
    const NEEDS_COMPLETED_JOB: &[&str] = &[
        WAIT_STEP,
        "RFC 8011 section 4.2.6: Get-Jobs Operation (which-jobs=completed)",
        "RFC 8011 section 4.2.6: Get-Jobs Operation (which-jobs, requested-at",
        "RFC 8011 section 4.3.3: Cancel-Job Operation (completed job)",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n",
    )
    .unwrap();
    conformance_suite(&tmp.path().join("suite"), Some(1)).unwrap();

    for file in ["ipp-1.1.test", "ipp-2.0.test"] {
        let run = ipptool(
            &appliance.uri("secure"),
            &tmp.path().join("suite").join(file),
            &fixture("three-pages.pdf"),
            SUITE_TIMEOUT,
        )
        .unwrap();
        eprintln!(
            "pull queue, {file}: {}; failed: {:?}",
            run.summary(),
            run.named(Outcome::Fail)
        );
        let failed = run.named(Outcome::Fail);
        assert!(failed.contains(&WAIT_STEP), "{file}: {failed:?}");
        for name in &failed {
            assert!(
                NEEDS_COMPLETED_JOB.contains(name),
                "{file}: unexpected failure {name:?}\n{}",
                run.output
            );
        }
        assert!(
            run.named(Outcome::Pass).len() >= 35,
            "{file}: too few tests passed\n{}",
            run.output
        );
    }
    // Held, not printed: every job submitted by the suite is still held or
    // was canceled by the suite itself.
    for job in appliance.jobs().unwrap() {
        assert!(
            matches!(job["state"].as_str(), Some("held" | "canceled" | "aborted")),
            "{job}"
        );
    }
}

/// CUPS's `ipp-everywhere.test` in full (the IPP/2.0 suite it includes,
/// the attributes step, and its PWG raster prints, plain, deflate and
/// gzip) on both queues. The suite prints the samples whose resolution and
/// colour type the queue claims (300 and 600 dpi; black_1, sgray_8 and
/// srgb_8, what office printers take): 102 of its 432, all passing. What
/// fails is the attributes step (for the gaps pinned above) and, on the
/// pull queue, the steps that need a completed job.
#[test]
fn ipp_everywhere_suite_prints_every_sample_on_both_queues() {
    const ATTRIBUTES_STEP: &str = "PWG 5100.14 section 5.1/5.2 - Required Operations and Attribu";
    const PULL_ALSO: &[&str] = &[
        "Get-Job-Attributes Until Job Complete",
        "RFC 8011 section 4.2.6: Get-Jobs Operation (which-jobs=completed)",
        "RFC 8011 section 4.2.6: Get-Jobs Operation (which-jobs, requested-at",
        "RFC 8011 section 4.3.3: Cancel-Job Operation (completed job)",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let appliance =
        Appliance::start(&tmp.path().join("appliance"), &lobby_config(&printer.uri())).unwrap();
    for queue in ["lobby-direct", "secure"] {
        // Held jobs never complete: the pull queue's copy polls once.
        let suite = tmp.path().join(format!("suite-{queue}"));
        conformance_suite(&suite, (queue == "secure").then_some(1)).unwrap();
        let run = ipptool(
            &appliance.uri(queue),
            &suite.join("ipp-everywhere.test"),
            &fixture("three-pages.pdf"),
            SUITE_TIMEOUT,
        )
        .unwrap();
        eprintln!("{queue}, ipp-everywhere.test: {}", run.summary());
        for name in run.named(Outcome::Fail) {
            let allowed = name.starts_with(ATTRIBUTES_STEP)
                || (queue == "secure" && PULL_ALSO.contains(&name));
            assert!(
                allowed,
                "{queue}: unexpected failure {name:?}\n{}",
                run.output
            );
        }
        let prints = run
            .named(Outcome::Pass)
            .iter()
            .filter(|n| n.starts_with("Print ") && n.contains("dpi"))
            .count();
        assert_eq!(
            prints, 102,
            "{queue}: every sample it claims prints\n{}",
            run.output
        );
    }
    // Their pages were counted at intake: the two-page documents as two.
    let jobs = appliance.jobs().unwrap();
    let documents: Vec<_> = jobs
        .iter()
        .filter(|j| j["name"] == "document-a4" && j["format"] == "image/pwg-raster")
        .collect();
    assert_eq!(
        documents.len(),
        2 * 2 * 3 * 3,
        "2 queues, 2 resolutions, 3 types, 3 ways"
    );
    for job in documents {
        assert_eq!(
            (job["pages"].as_u64(), job["pages_exact"].as_bool()),
            (Some(2), Some(true)),
            "{job}"
        );
    }
}

#[test]
fn lp_prints_to_the_pull_queue_as_the_named_user() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(
        &tmp.path().join("appliance"),
        "[[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\n",
    )
    .unwrap();
    let document = fixture("three-pages.pdf");
    let out = run_with_timeout(
        Command::new("lp")
            .args(["-h", &format!("127.0.0.1:{}", appliance.port)])
            .args(["-d", "secure", "-U", "alice", "-t", "quarterly report"])
            .arg(&document),
        Duration::from_secs(60),
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lp failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("request id is secure-1"), "{stdout}");

    // The store has it, owned by alice, with the document's exact hash.
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["owner"], "alice");
    assert_eq!(jobs[0]["state"], "held");
    assert_eq!(jobs[0]["name"], "quarterly report");
    assert_eq!(jobs[0]["sha256"], sha256(&fs::read(&document).unwrap()));

    // Get-Jobs shows it to alice with her name; bob does not see it at all
    // (a pull queue lists jobs to their owner only).
    let get_jobs = r#"{
	NAME "Get-Jobs as $requester"
	OPERATION Get-Jobs
	GROUP operation-attributes-tag
	ATTR charset attributes-charset utf-8
	ATTR naturalLanguage attributes-natural-language en
	ATTR uri printer-uri $uri
	ATTR name requesting-user-name $requester
	ATTR keyword requested-attributes job-id,job-name,job-originating-user-name,job-state
	STATUS successful-ok
	EXPECT job-id COUNT 1 WITH-VALUE 1 IF-DEFINED owner
	EXPECT job-state WITH-VALUE 4 IF-DEFINED owner
	EXPECT job-originating-user-name WITH-VALUE "alice" IF-DEFINED owner
	EXPECT job-name WITH-VALUE "quarterly report" IF-DEFINED owner
	EXPECT !job-id IF-NOT-DEFINED owner
}
"#;
    for (user, owner) in [("alice", true), ("bob", false)] {
        let mut vars = vec![("requester", user)];
        if owner {
            vars.push(("owner", "1"));
        }
        let (ok, out) = ipptool_text(&appliance.uri("secure"), get_jobs, None, &vars).unwrap();
        assert!(ok, "Get-Jobs as {user}:\n{out}");
    }
}

#[test]
fn lpstat_says_since_when_the_queue_is_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let out = run_with_timeout(
        Command::new("lpstat")
            .args(["-h", &format!("127.0.0.1:{}", appliance.port)])
            .arg("-p"),
        Duration::from_secs(60),
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let year = Command::new("date").arg("+%Y").output().unwrap();
    let year = String::from_utf8_lossy(&year.stdout).trim().to_owned();
    // printer-state-change-time: since the appliance started, not 1970.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("printer secure"))
        .unwrap_or_default();
    assert!(line.contains("enabled since"), "{stdout}");
    assert!(!line.contains("1970") && line.contains(&year), "{stdout}");
}

#[test]
fn close_job_ends_a_created_job_and_cancel_my_jobs_cancels_only_the_requesters_and_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let uri = appliance.uri("secure");
    let header = "\tGROUP operation-attributes-tag\n\
                  \tATTR charset attributes-charset utf-8\n\
                  \tATTR naturalLanguage attributes-natural-language en\n\
                  \tATTR uri printer-uri $uri\n\
                  \tATTR name requesting-user-name $requester\n";
    let create_send_close = format!(
        "{{\n\tNAME \"Create-Job\"\n\tOPERATION Create-Job\n{header}\
         \tSTATUS successful-ok\n\tEXPECT job-id OF-TYPE integer\n}}\n\
         {{\n\tNAME \"Send-Document, more to come\"\n\tOPERATION Send-Document\n{header}\
         \tATTR integer job-id $job-id\n\tATTR boolean last-document false\n\
         \tATTR mimeMediaType document-format application/pdf\n\tFILE $filename\n\
         \tSTATUS successful-ok\n}}\n\
         {{\n\tNAME \"Close-Job\"\n\tOPERATION Close-Job\n{header}\
         \tATTR integer job-id $job-id\n\tSTATUS successful-ok\n\
         \tEXPECT job-state WITH-VALUE 4\n}}\n\
         {{\n\tNAME \"Close-Job again\"\n\tOPERATION Close-Job\n{header}\
         \tATTR integer job-id $job-id\n\tSTATUS successful-ok\n}}\n"
    );
    let document = fixture("three-pages.pdf");
    for user in ["alice", "alice", "bob"] {
        let (ok, out) = ipptool_text(
            &uri,
            &create_send_close,
            Some(&document),
            &[("requester", user)],
        )
        .unwrap();
        assert!(ok, "{out}\n{}", appliance.log());
    }
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j["state"] == "held"), "{jobs:?}");

    let cancel_mine = format!(
        "{{\n\tNAME \"Cancel-My-Jobs\"\n\tOPERATION Cancel-My-Jobs\n{header}\
         \tSTATUS successful-ok\n}}\n\
         {{\n\tNAME \"Cancel-My-Jobs naming another's job\"\n\tOPERATION Cancel-My-Jobs\n{header}\
         \tATTR integer job-ids 3\n\tSTATUS client-error-not-possible\n\
         \tEXPECT job-ids IN-GROUP unsupported-attributes-tag WITH-VALUE 3\n}}\n\
         {{\n\tNAME \"Get-Jobs naming another's job\"\n\tOPERATION Get-Jobs\n{header}\
         \tATTR integer job-ids 3\n\tSTATUS successful-ok\n\tEXPECT !job-id\n}}\n"
    );
    let (ok, out) = ipptool_text(&uri, &cancel_mine, None, &[("requester", "alice")]).unwrap();
    assert!(ok, "{out}");
    let jobs = appliance.jobs().unwrap();
    assert_eq!(jobs.iter().filter(|j| j["state"] == "held").count(), 1);
    // Bob's own, by id: listed in any state, then canceled.
    let bobs = format!(
        "{{\n\tNAME \"Get-Jobs by id\"\n\tOPERATION Get-Jobs\n{header}\
         \tATTR integer job-ids 1,3\n\tATTR keyword requested-attributes job-id,job-state\n\
         \tSTATUS successful-ok\n\tEXPECT job-id WITH-VALUE 3\n\tEXPECT job-state WITH-VALUE 4\n}}\n\
         {{\n\tNAME \"Cancel-My-Jobs by id\"\n\tOPERATION Cancel-My-Jobs\n{header}\
         \tATTR integer job-ids 3\n\tSTATUS successful-ok\n}}\n\
         {{\n\tNAME \"Get-Jobs by id, canceled\"\n\tOPERATION Get-Jobs\n{header}\
         \tATTR integer job-ids 3\n\tATTR keyword requested-attributes job-state\n\
         \tSTATUS successful-ok\n\tEXPECT job-state WITH-VALUE 7\n}}\n"
    );
    let (ok, out) = ipptool_text(&uri, &bobs, None, &[("requester", "bob")]).unwrap();
    assert!(ok, "{out}");
    let jobs = appliance.jobs().unwrap();
    let state_of = |owner: &str| -> Vec<String> {
        jobs.iter()
            .filter(|j| j["owner"] == owner)
            .map(|j| j["state"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(state_of("alice"), ["canceled", "canceled"]);
    assert_eq!(state_of("bob"), ["canceled"]);
}

/// The IPP Everywhere attributes step of CUPS's `ipp-everywhere.test`
/// (PWG 5100.14 §5.1/5.2), cut from the installed file.
fn everywhere_attributes_step() -> String {
    let suite = fs::read_to_string("/usr/share/cups/ipptool/ipp-everywhere.test")
        .expect("ipp-everywhere.test (cups-ipp-utils)");
    let name = suite
        .find("NAME \"PWG 5100.14 section 5.1/5.2")
        .expect("the attributes step");
    let start = suite[..name].rfind('{').expect("its opening brace");
    let end = name + suite[name..].find("\n}").expect("its closing brace") + 2;
    suite[start..end].to_owned()
}

/// What CUPS's step expects that no conforming printer has: it asks for
/// `overrides-supported` "document-number" where PWG 5100.6 names the
/// member `document-numbers` (ippeveprinter, CUPS's own reference printer,
/// fails the same line).
const EVERYWHERE_GAPS: &[&str] = &["overrides-supported WITH-VALUE \"document-number\""];

/// What a pull queue lacks by nature: its jobs print at whichever printer
/// their owner logs in at, so there is no one printer to identify or to
/// report the supplies of, and it does not claim IPP Everywhere.
const PULL_GAPS: &[&str] = &[
    "operations-supported WITH-VALUE \"0x003c\"",
    "identify-actions-default",
    "identify-actions-supported",
    "ipp-features-supported WITH-VALUE \"ipp-everywhere\"",
    "overrides-supported WITH-VALUE \"document-number\"",
    "printer-supply",
    "printer-supply-description",
    "printer-supply-info-uri",
];

const HAS_SUPPLIES: &str = r#"{
    NAME "the printer's supply levels"
    OPERATION Get-Printer-Attributes
    GROUP operation-attributes-tag
    ATTR charset attributes-charset utf-8
    ATTR naturalLanguage attributes-natural-language en
    ATTR uri printer-uri $uri
    ATTR keyword requested-attributes printer-supply,printer-supply-description
    STATUS successful-ok
    EXPECT printer-supply OF-TYPE octetString
    EXPECT printer-supply-description OF-TYPE text SAME-COUNT-AS printer-supply
}
"#;

#[test]
fn ipp_everywhere_attributes_are_there_but_for_the_known_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let printer = Printer::start(&tmp.path().join("printer")).unwrap();
    let appliance =
        Appliance::start(&tmp.path().join("appliance"), &lobby_config(&printer.uri())).unwrap();
    let step = everywhere_attributes_step();
    // The direct queue reports its printer's supplies once they were read
    // (at start, then every five minutes).
    wait_for(
        Duration::from_secs(30),
        "the printer's supply levels",
        || {
            let (ok, _) =
                ipptool_text(&appliance.uri("lobby-direct"), HAS_SUPPLIES, None, &[]).ok()?;
            ok.then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()));
    for queue in ["secure", "lobby-direct"] {
        let (_, out) = ipptool_text(
            &appliance.uri(queue),
            &step,
            None,
            &[("requester", "alice")],
        )
        .unwrap();
        let mut missing: Vec<&str> = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("EXPECTED: "))
            .collect();
        missing.dedup();
        let expected = if queue == "secure" {
            PULL_GAPS
        } else {
            EVERYWHERE_GAPS
        };
        assert_eq!(missing, expected, "{queue}:\n{out}");
    }
    // The icons it lists are served.
    for size in [48, 128, 512] {
        let url = format!(
            "http://127.0.0.1:{}/icons/printer-{size}.png",
            appliance.port
        );
        let got = run_with_timeout(
            Command::new("curl").args(["-sSf", &url]),
            Duration::from_secs(30),
        )
        .unwrap();
        let icon = e2e::workspace().join(format!("appliance/web/icons/printer-{size}.png"));
        assert_eq!(got.stdout, fs::read(icon).unwrap(), "{url}");
    }
}
