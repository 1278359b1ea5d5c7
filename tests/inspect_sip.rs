//! `cpm-iwf inspect sip` run as a real process.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, json, one_error_line};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sip");

fn run_stdin(input: &[u8]) -> std::process::Output {
    cpm_iwf_stdin(&["inspect", "sip", "-"], input)
}

#[test]
fn renders_a_pager_message() {
    let out = cpm_iwf(&["inspect", "sip", &format!("{DIR}/cpm-pager-message.txt")]);
    let v = json(&out);
    assert_eq!(v["kind"], "request");
    assert_eq!(v["request_line"]["method"], "MESSAGE");
    assert_eq!(v["request_line"]["uri"], "sip:+15551234567@ims.example.net");
    assert_eq!(v["headers"].as_array().unwrap().len(), 14);
    assert_eq!(v["headers"][0]["name"], "Via");
    assert_eq!(v["headers"][10]["name"], "Conversation-ID");
    assert_eq!(
        v["call_id"],
        "4c7e9a1f-2b3d-4e5f-8a9b-0c1d2e3f4a5b@192.0.2.10"
    );
    assert_eq!(v["cseq"]["seq"], 1);
    assert_eq!(v["cseq"]["method"], "MESSAGE");
    assert_eq!(v["from_tag"], "8f3b2c1d");
    assert!(v["to_tag"].is_null());
    assert_eq!(v["via_branch"], "z9hG4bK-524287-1---7d8f3a2b1c4e5f60");
    assert_eq!(v["body"]["content_type"], "message/cpim");
    assert_eq!(v["body"]["length"], 331);
}

#[test]
fn renders_a_response_from_stdin() {
    let input = std::fs::read(format!("{DIR}/rfc3261-24.2-f2-trying.txt")).unwrap();
    let out = run_stdin(&input);
    let v = json(&out);
    assert_eq!(v["kind"], "response");
    assert_eq!(v["status_line"]["code"], 100);
    assert_eq!(v["status_line"]["reason"], "Trying");
    assert_eq!(
        v["headers"][0]["value"],
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8 ;received=192.0.2.1"
    );
}

#[test]
fn malformed_input_exits_2_with_one_error_line() {
    let input = std::fs::read(format!("{DIR}/rfc4475-mismatch01.txt")).unwrap();
    let out = run_stdin(&input);
    let err = one_error_line(&out);
    assert!(
        err.starts_with(
            "error: Bad Request: CSeq method INVITE does not match request method OPTIONS (line 6,"
        ),
        "{err}"
    );

    let out = run_stdin(b"not sip at all\r\n\r\n");
    let err = one_error_line(&out);
    assert!(
        err.starts_with("error: unreadable message dropped: "),
        "{err}"
    );
}
