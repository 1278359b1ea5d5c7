//! `cpm-iwf inspect msrp` through the real binary: JSON on a vector, one-line errors.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, json, one_error_line};

fn vector(name: &str) -> String {
    common::vector("msrp", name)
}

#[test]
fn inspects_a_file() {
    let out = cpm_iwf(&["inspect", "msrp", &vector("rfc4975-11.4-cpim-chunk1.txt")]);
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
    let out = cpm_iwf_stdin(&["inspect", "msrp", "-"], &data);
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
        one_error_line(&cpm_iwf_stdin(&["inspect", "msrp", "-"], input));
    }
    let out = cpm_iwf(&[
        "inspect",
        "msrp",
        &vector("rfc4975-5.1-chunk1-fragment.txt"),
    ]);
    let err = one_error_line(&out);
    assert!(
        err.starts_with("error: To-Path header field missing"),
        "{err}"
    );
}
