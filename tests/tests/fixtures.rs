//! The committed fixtures are what `fixtures/generate.py` makes.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::{run_with_timeout, workspace};

#[test]
fn generator_reproduces_the_committed_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new("python3")
            .arg(workspace().join("fixtures/generate.py"))
            .arg(tmp.path()),
        Duration::from_secs(60),
    )
    .expect("python3 runs the fixture generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut generated = 0;
    for entry in fs::read_dir(tmp.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let committed = fs::read(workspace().join("fixtures").join(name))
            .unwrap_or_else(|_| panic!("{name:?} is generated but not committed"));
        assert!(
            fs::read(&path).unwrap() == committed,
            "{name:?} differs from the committed file"
        );
        generated += 1;
    }
    assert!(generated >= 8);
}
