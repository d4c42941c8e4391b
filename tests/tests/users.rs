//! `appliance users`: adding, importing, disabling and listing users, with
//! secrets read from standard input, hashed, and never shown again.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::{Appliance, appliance_bin, run_with_input};

/// Runs `appliance users ARGS --data-dir DIR` with `stdin` as input.
fn users(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut full = vec!["users"];
    full.extend_from_slice(args);
    full.push("--data-dir");
    full.push(data_dir.to_str().unwrap());
    appliance(&full, stdin)
}

fn appliance(args: &[&str], stdin: &str) -> Output {
    run_with_input(
        Command::new(appliance_bin()).args(args),
        Some(stdin),
        Duration::from_secs(60),
    )
    .unwrap()
}

fn listed(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = users(data_dir, &["list", "--json"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn users_are_added_beside_a_running_daemon_and_secrets_never_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start(tmp.path(), "").unwrap();
    let data = &appliance.data_dir;
    let key = data.join("installation.key");
    assert_eq!(
        fs::metadata(&key).unwrap().len(),
        32,
        "created at first start"
    );
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(data).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let out = users(
        data,
        &[
            "add",
            "alice",
            "--name",
            "Alice Smith",
            "--email",
            "alice@example.com",
            "--group",
            "finance",
            "--card",
            "04:A2:19:FF",
            "--pin",
            "--password",
        ],
        "4711\ncorrect horse battery\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let all = listed(data);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["groups"], serde_json::json!(["finance"]));
    assert_eq!(
        (all[0]["pin"].clone(), all[0]["password"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(all[0]["cards"], 1);

    // The same card, written differently, cannot go to a second user.
    let out = users(
        data,
        &["add", "bob", "--name", "Bob", "--card", "04a219ff"],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already registered"));
    assert_eq!(listed(data).len(), 1, "nothing half-added");

    // No secret in any output or in the database files.
    let table = text(&users(data, &["list"], ""));
    for secret in ["4711", "correct horse", "04A219FF", "04:A2"] {
        assert!(!table.contains(secret), "{secret} shown in {table}");
        for file in ["appliance.db", "appliance.db-wal"] {
            if let Ok(bytes) = fs::read(data.join(file)) {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} stored in clear in {file}"
                );
            }
        }
    }

    let out = users(data, &["disable", "alice"], "");
    assert!(out.status.success());
    assert_eq!(listed(data)[0]["disabled"], true);
    let out = users(data, &["enable", "alice"], "");
    assert!(out.status.success());
    assert_eq!(listed(data)[0]["disabled"], false);
    let out = users(data, &["disable", "nobody"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_csv_import_lands_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bad = tmp.path().join("bad.csv");
    fs::write(
        &bad,
        "id,display_name,groups,pin,cards\ncarol,Carol,staff,1234,\ndave,Dave,staff,12,\n,Nobody,,5678,\n",
    )
    .unwrap();
    let out = users(&data, &["import", bad.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let message = text(&out);
    assert!(
        message.contains("line 3") && message.contains("line 4"),
        "{message}"
    );
    assert!(!message.contains("1234"), "a secret was echoed: {message}");
    assert!(listed(&data).is_empty(), "a bad file imports nobody");

    let good = tmp.path().join("good.csv");
    let mut csv = String::from("id,display_name,email,groups,pin,cards,password\n");
    for i in 0..30 {
        csv.push_str(&format!(
            "user{i},User {i},u{i}@example.com,staff;floor-{},{:04},{:08X},\n",
            i % 3,
            1000 + i,
            i
        ));
    }
    fs::write(&good, csv).unwrap();
    let out = users(&data, &["import", good.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("hashing credentials: 30/30"),
        "progress is shown"
    );
    let all = listed(&data);
    assert_eq!(all.len(), 30);
    assert_eq!(all[0]["groups"], serde_json::json!(["floor-0", "staff"]));

    // Importing again: every id exists, so nobody is added.
    let out = users(&data, &["import", good.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("already exists"));
}

#[test]
fn pin_only_login_needs_unique_pins() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("appliance.toml");
    fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[users]\npin_only_login = true\n",
            tmp.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let add = |id: &str, pin: &str| {
        let config = config.to_str().unwrap();
        appliance(
            &[
                "users", "add", id, "--name", id, "--pin", "--config", config,
            ],
            &format!("{pin}\n"),
        )
    };
    assert!(add("erin", "8642").status.success());
    let out = add("frank", "8642");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("PIN is already used"), "{}", text(&out));
    assert!(add("frank", "2468").status.success());
    let all = listed(&tmp.path().join("data"));
    assert!(all.iter().all(|u| u["pin_only"] == true));
}
