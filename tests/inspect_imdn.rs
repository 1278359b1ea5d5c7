//! `cpm-iwf inspect imdn` end to end: the real binary on a vector, on stdin, and on bad input.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, json, one_error_line};

fn vector(name: &str) -> String {
    common::vector("imdn", name)
}

fn run_stdin(input: &[u8]) -> std::process::Output {
    cpm_iwf_stdin(&["inspect", "imdn", "-"], input)
}

#[test]
fn renders_an_rfc_vector() {
    let out = cpm_iwf(&["inspect", "imdn", &vector("rfc5438-7.2.1.1-delivered.txt")]);
    let v = json(&out);
    assert_eq!(v["root"], "imdn");
    assert_eq!(v["namespace"], "urn:ietf:params:xml:ns:imdn");
    assert_eq!(v["message_id"], "34jk324j");
    assert_eq!(v["datetime"], "2008-04-04T12:16:49-05:00");
    assert_eq!(v["recipient_uri"], "im:bob@example.com");
    assert_eq!(v["original_recipient_uri"], "im:bob@example.com");
    assert_eq!(v["subject"], serde_json::Value::Null);
    assert_eq!(v["notification"]["element"], "delivery-notification");
    assert_eq!(v["notification"]["status"], "delivered");
    assert_eq!(v["notification"]["disposition"], "positive-delivery");
    assert_eq!(v["extensions"], serde_json::json!([]));
}

#[test]
fn lists_extensions_as_raw_xml_from_stdin() {
    let input = std::fs::read(vector("wild-linphone-reason.txt")).unwrap();
    let out = run_stdin(&input);
    let v = json(&out);
    assert_eq!(v["notification"]["status"], "error");
    assert_eq!(v["notification"]["disposition"], "negative-delivery");
    assert_eq!(
        v["status_extensions"][0],
        "<linphoneimdn:reason xmlns:linphoneimdn=\"http://www.linphone.org/xsds/imdn.xsd\" code=\"415\">Unsupported content</linphoneimdn:reason>"
    );
}

#[test]
fn malformed_input_is_one_error_line() {
    for input in [
        &b"<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>x</message-id>"[..],
        b"<imdn xmlns='urn:ietf:params:xml:ns:imdn'>\n<datetime>d</datetime>\n</imdn>",
        b"\x00\xff garbage",
    ] {
        one_error_line(&run_stdin(input));
    }
    let out = cpm_iwf(&["inspect", "imdn", &vector("bad-two-notifications.txt")]);
    let err = one_error_line(&out);
    assert!(
        err.starts_with("error: <imdn> has two notifications"),
        "{err}"
    );
    assert!(err.contains("(line 6, column 3, byte"), "{err}");
}
