//! The offline conformance suite, through the binary as an operator runs it, and a check that
//! the runner does fail a case whose expectation is wrong.

use std::process::Command;

fn run(dir: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
        .args(["conformance", "run", "--offline", dir])
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn every_case_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/cases");
    let (code, stdout) = run(dir);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert_eq!(code, Some(0), "{stdout}");
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("N passed, M failed");
    assert!(passed >= 68, "{last}");
    assert!(last.ends_with(" 0 failed"), "{last}");
}

#[test]
fn a_wrong_expectation_fails_the_run() {
    let dir = std::env::temp_dir().join(format!("cpm-iwf-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/cases/p006-cpm-pager-new-leg.toml"
    ))
    .expect("case file")
    .replace(
        "input_file = \"../../tests/",
        &format!("input_file = \"{}/tests/", env!("CARGO_MANIFEST_DIR")),
    );
    std::fs::write(dir.join("a-good.toml"), &good).expect("write");
    std::fs::write(dir.join("b-bad.toml"), good.replace("gen-2", "gen-99")).expect("write");
    let (code, stdout) = run(dir.to_str().expect("utf-8"));
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL b-bad.toml"), "{stdout}");
    assert!(
        stdout.contains("Call-ID: Some(\"gen-2\"), expected \"gen-99\""),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 passed, 1 failed\n"), "{stdout}");
}
