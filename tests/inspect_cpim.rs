//! `cpm-iwf inspect cpim` run as a real process.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, json, one_error_line};
use std::process::Output;

fn vector(name: &str) -> String {
    common::vector("cpim", name)
}

fn run_file(path: &str) -> Output {
    cpm_iwf(&["inspect", "cpim", path])
}

fn run_stdin(input: &[u8]) -> Output {
    cpm_iwf_stdin(&["inspect", "cpim", "-"], input)
}

fn check(v: &serde_json::Value) {
    assert_eq!(v["format"], "cpim");
    assert_eq!(v["layout"], "rfc3862");
    let h = v["headers"].as_array().unwrap();
    assert_eq!(h.len(), 9);
    assert_eq!(h[0]["name"], "From");
    assert_eq!(h[0]["namespace"], "urn:ietf:params:cpim-headers:");
    assert_eq!(h[4]["params"], ";lang=fr");
    assert_eq!(h[7]["name"], "MyFeatures.VitalMessageOption");
    assert_eq!(h[7]["namespace"], "mid:MessageFeatures@id.foo.com");
    assert_eq!(v["subject"][1]["lang"], "fr");
    assert_eq!(v["datetime"], "2000-12-13T13:40:00-08:00");
    assert_eq!(v["content_headers"][1]["name"], "Content-ID");
    assert_eq!(v["body"]["content_type"], "text/xml; charset=utf-8");
    assert_eq!(v["body"]["length"], 50);
}

#[test]
fn file_vector_renders() {
    check(&json(&run_file(&vector("rfc3862-5.1.txt"))));
}

#[test]
fn stdin_vector_renders() {
    let input = std::fs::read(vector("rfc3862-5.1.txt")).unwrap();
    check(&json(&run_stdin(&input)));
}

#[test]
fn errata_layout_and_namespaces() {
    let v = json(&run_file(&vector("rfc5438-7.1-imdn-request.txt")));
    assert_eq!(v["layout"], "errata3013");
    assert_eq!(v["imdn"]["message_id"], "34jk324j");
    assert_eq!(
        v["imdn"]["disposition_notification"][1],
        "negative-delivery"
    );
    assert_eq!(v["headers"][3]["namespace"], "urn:ietf:params:imdn");
    let v = json(&run_file(&vector("ours-cpm-chat.txt")));
    assert_eq!(v["cpm_payload_type"], "Application/X-CPM-Session");
    assert_eq!(v["body"]["length"], 18);
}

#[test]
fn malformed_file_is_one_error_line() {
    let err = one_error_line(&run_file(&vector("ours-bad-ns-400.txt")));
    assert!(err.contains("NS header"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn malformed_stdin_is_one_error_line() {
    let err = one_error_line(&run_stdin(b"From <sip:a@b>\r\nTo: x\r\n"));
    assert!(err.starts_with("error: CPIM"), "{err}");
    let err = one_error_line(&run_stdin(b"From: <sip:a@b>\r\n\r\nhi\r\n\r\nbody"));
    assert!(err.contains("content header"), "{err}");
}
