//! What the tests that run the real `cpm-iwf` binary share.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A file of `tests/vectors/<dir>/`.
pub fn vector(dir: &str, name: &str) -> String {
    format!("{}/tests/vectors/{dir}/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run `cpm-iwf <args>`.
pub fn cpm_iwf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Run `cpm-iwf <args>` with `input` on standard input.
pub fn cpm_iwf_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("the binary ends")
}

/// The JSON a successful run printed (exit status 0 checked).
pub fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A failed run's one line on stderr: exit status 2, nothing on stdout, one line `error: ...`.
pub fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    err
}
