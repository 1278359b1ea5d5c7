//! `cpm-iwf inspect msrp` through the real binary: JSON on a vector, one-line errors.

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
}

fn vector(name: &str) -> String {
    format!("{}/tests/vectors/msrp/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn inspects_a_file() {
    let out = bin()
        .args(["inspect", "msrp", &vector("rfc4975-11.4-cpim-chunk1.txt")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["transaction_id"], "d93kswow");
    assert_eq!(v["kind"], "request");
    assert_eq!(v["method"], "SEND");
    assert_eq!(v["headers"][0]["name"], "To-Path");
    assert_eq!(v["headers"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["to_path"][0]["host"], "bobpc.example.com");
    assert_eq!(v["to_path"][0]["port"], 8888);
    assert_eq!(v["to_path"][0]["session_id"], "9di4eae923wzd");
    assert_eq!(v["from_path"][0]["transport"], "tcp");
    assert_eq!(v["message_id"], "12339sdqwer");
    assert_eq!(v["byte_range"]["start"], 1);
    assert_eq!(v["byte_range"]["end"], 137);
    assert_eq!(v["byte_range"]["total"], 148);
    assert_eq!(v["byte_range_check"], "ok");
    assert_eq!(v["continuation"], "more");
    assert_eq!(v["body"]["length"], 137);
    assert_eq!(v["body"]["content_type"], "message/cpim");
    // message/cpim bodies are handed to the CPIM inspector: decoded or an error, never absent.
    assert!(v["body"].get("decoded").is_some() || v["body"].get("error").is_some());
}

#[test]
fn inspects_a_report_on_stdin() {
    let data = std::fs::read(vector("rfc4975-11.6-report.txt")).unwrap();
    let mut child = bin()
        .args(["inspect", "msrp", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["method"], "REPORT");
    assert_eq!(v["status"]["namespace"], 0);
    assert_eq!(v["status"]["code"], 200);
    assert_eq!(v["status"]["comment"], "OK");
    assert_eq!(v["body"], serde_json::Value::Null);
}

#[test]
fn malformed_input_is_one_error_line() {
    for input in [
        &b"MSRP abcd SEND\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/t;tcp\r\nByte-Range: 20-10/30\r\n-------abcd$\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"",
    ] {
        let mut child = bin()
            .args(["inspect", "msrp", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = bin()
        .args([
            "inspect",
            "msrp",
            &vector("rfc4975-5.1-chunk1-fragment.txt"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: To-Path header field missing"),
        "{err}"
    );
}
