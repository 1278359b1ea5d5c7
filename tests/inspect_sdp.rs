//! `cpm-iwf inspect sdp` run as a real process.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, json, one_error_line};
use std::process::Output;

fn vector(name: &str) -> String {
    common::vector("sdp", name)
}

fn run_file(path: &str) -> Output {
    cpm_iwf(&["inspect", "sdp", path])
}

fn run_stdin(input: &[u8]) -> Output {
    cpm_iwf_stdin(&["inspect", "sdp", "-"], input)
}

fn check(v: &serde_json::Value) {
    assert_eq!(v["format"], "sdp");
    assert_eq!(v["lines"][0]["type"], "v");
    assert_eq!(v["lines"][0]["value"], "0");
    assert_eq!(v["lines"].as_array().unwrap().len(), 12);
    assert_eq!(v["origin"]["sess_version"], 3958640041u64);
    let m = &v["msrp"];
    assert_eq!(m["port"], 9);
    assert_eq!(m["protocol"], "TCP/MSRP");
    assert_eq!(m["setup"], "active");
    assert_eq!(m["msrp_cema"], true);
    assert_eq!(m["connection"]["addrtype"], "IP6");
    assert_eq!(m["path"][0], "msrp://[2001:db8::10]:9/kSm2PVe7;tcp");
    assert_eq!(m["accept_types"][1], "application/im-iscomposing+xml");
    assert_eq!(v["msrp_usable"], true);
    assert_eq!(v["media"][0]["fmts"], "*");
}

#[test]
fn file_vector_renders() {
    check(&json(&run_file(&vector("ours-cpm-chat-offer.txt"))));
}

#[test]
fn stdin_vector_renders() {
    let input = std::fs::read(vector("ours-cpm-chat-offer.txt")).unwrap();
    check(&json(&run_stdin(&input)));
}

#[test]
fn audio_only_renders_with_reason() {
    let v = json(&run_file(&vector("ours-audio-only-488.txt")));
    assert_eq!(v["msrp"], serde_json::Value::Null);
    assert!(
        v["msrp_usable"]
            .as_str()
            .unwrap()
            .contains("no usable MSRP media")
    );
}

#[test]
fn malformed_file_is_one_error_line() {
    let err = one_error_line(&run_file(&vector("ours-bad-setup-400.txt")));
    assert!(err.contains("line 9"), "{err}");
    assert!(err.contains("a=setup"), "{err}");
}

#[test]
fn malformed_stdin_is_one_error_line() {
    let err = one_error_line(&run_stdin(b"v=0\r\nm=message x TCP/MSRP *\r\n"));
    assert!(err.contains("port"), "{err}");
    let err = one_error_line(&run_stdin(b"hello\r\n"));
    assert!(err.contains("v=0"), "{err}");
}
