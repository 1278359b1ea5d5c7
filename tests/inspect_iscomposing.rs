//! `cpm-iwf inspect iscomposing` end to end: the real binary on a vector, on stdin, and on bad
//! input.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, json, one_error_line};

fn vector(name: &str) -> String {
    common::vector("iscomposing", name)
}

fn run_stdin(input: &[u8]) -> std::process::Output {
    cpm_iwf_stdin(&["inspect", "iscomposing", "-"], input)
}

#[test]
fn renders_an_rfc_vector() {
    let out = cpm_iwf(&["inspect", "iscomposing", &vector("rfc3994-5-active.txt")]);
    let v = json(&out);
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
    let v = json(&out);
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
        one_error_line(&run_stdin(input));
    }
    let out = run_stdin(
        b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'>\n<state>busy</state>\n</isComposing>",
    );
    let err = one_error_line(&out);
    assert_eq!(
        err.trim_end(),
        "error: <state> is \"busy\", expected active or idle (line 2, column 1, byte 60)"
    );
}
