//! `cpm-iwf inspect iscomposing` end to end: the real binary on a vector, on stdin, and on bad
//! input.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cpm-iwf");

fn vector(name: &str) -> String {
    format!(
        "{}/tests/vectors/iscomposing/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run_stdin(input: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["inspect", "iscomposing", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn renders_an_rfc_vector() {
    let out = Command::new(BIN)
        .args(["inspect", "iscomposing", &vector("rfc3994-5-active.txt")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["root"], "isComposing");
    assert_eq!(v["namespace"], "urn:ietf:params:xml:ns:im-iscomposing");
    assert_eq!(v["state"], "active");
    assert_eq!(v["contenttype"], "text/plain");
    assert_eq!(v["refresh"], 90);
    assert_eq!(v["active_timeout_secs"], 90);
    assert_eq!(v["lastactive"], serde_json::Value::Null);
}

#[test]
fn lists_extensions_from_stdin() {
    let input = std::fs::read(vector("wild-idle-with-refresh-and-extension.txt")).unwrap();
    let out = run_stdin(&input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "idle");
    assert_eq!(
        v["extensions"][0],
        "<v:device xmlns:v=\"urn:example:vendor:typing\">tablet</v:device>"
    );
}

#[test]
fn malformed_input_is_one_error_line() {
    for input in [
        &b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>"[..],
        b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'>\n<state>busy</state>\n</isComposing>",
        b"",
    ] {
        let out = run_stdin(input);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    let out = run_stdin(
        b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'>\n<state>busy</state>\n</isComposing>",
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end(),
        "error: <state> is \"busy\", expected active or idle (line 2, column 1, byte 60)"
    );
}
