//! The CPIM vectors of `tests/vectors/cpim/` (see its README.md).

use bytes::Bytes;
use cpm_iwf::wire::cpim::{Cpim, CpimError, Layout, NS_IMDN, parse_address};
use cpm_iwf::wire::{Answer, WireError};

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/vectors/cpim/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn accepted(name: &str) -> Cpim {
    let input = load(name);
    assert!(
        input.windows(2).any(|w| w == b"\r\n"),
        "{name}: CRLF line ends"
    );
    let c = Cpim::parse(input).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Whatever the input layout, the output is RFC 3862's and parses back to the same model.
    let again = Cpim::parse(c.to_bytes()).unwrap();
    assert_eq!(again.layout, Layout::Rfc3862);
    assert_eq!(
        Cpim {
            layout: c.layout,
            ..again
        },
        c,
        "{name}"
    );
    c
}

#[test]
fn rfc3862_5_1_round_trips_byte_for_byte() {
    let input = load("rfc3862-5.1.txt");
    let c = accepted("rfc3862-5.1.txt");
    assert_eq!(c.to_bytes(), input);
    assert_eq!(c.layout, Layout::Rfc3862);
    assert_eq!(c.headers.len(), 9);
    let subjects = c.subject();
    assert_eq!(subjects.len(), 2);
    assert_eq!(subjects[0].lang, None);
    assert_eq!(subjects[1].lang.as_deref(), Some(&b"fr"[..]));
    assert_eq!(c.datetime().unwrap(), "2000-12-13T13:40:00-08:00");
    assert_eq!(c.require(), ["MyFeatures.VitalMessageOption"]);
    assert_eq!(
        c.get_ns("mid:MessageFeatures@id.foo.com", "VitalMessageOption")
            .unwrap()
            .value,
        "Confirmation-requested"
    );
    assert_eq!(c.content_type().unwrap(), "text/xml; charset=utf-8");
    assert_eq!(
        c.content_header("content-id").unwrap(),
        "<1234567890@foo.com>"
    );
    assert!(c.body.starts_with(b"<body>"));
}

#[test]
fn rfc5438_7_1_1_3_request_errata_layout() {
    let c = accepted("rfc5438-7.1-imdn-request.txt");
    assert_eq!(c.layout, Layout::Errata3013);
    assert_eq!(c.headers.len(), 6);
    assert_eq!(c.imdn_message_id().unwrap(), "34jk324j");
    assert_eq!(
        c.imdn_disposition_notification(),
        ["positive-delivery", "negative-delivery"]
    );
    assert_eq!(c.datetime().unwrap(), "2006-04-04T12:16:49-05:00");
    assert_eq!(c.content_type().unwrap(), "text/plain");
    assert_eq!(c.body, "Hello World\r\n");
    let from = parse_address(c.from().unwrap()).unwrap();
    assert_eq!(from.uri, "im:alice@example.com");
}

#[test]
fn rfc5438_7_2_1_1_delivery_notification() {
    let c = accepted("rfc5438-7.2-delivery-notification.txt");
    assert_eq!(c.layout, Layout::Errata3013);
    assert_eq!(c.headers.len(), 4);
    assert_eq!(c.imdn_message_id().unwrap(), "d834jied93rf");
    assert_eq!(c.datetime(), None);
    assert_eq!(c.content_type().unwrap(), "message/imdn+xml");
    assert_eq!(
        c.content_header("Content-Disposition").unwrap(),
        "notification"
    );
    assert!(c.body.starts_with(b"<?xml"));
    assert!(c.body.windows(12).any(|w| w == b"<delivered/>"));
}

#[test]
fn rfc5438_7_2_1_2_display_notification() {
    let c = accepted("rfc5438-7.2.1.2-display-notification.txt");
    assert_eq!(c.layout, Layout::Errata3013);
    assert_eq!(c.imdn_message_id().unwrap(), "dfjkleriou432333");
    assert_eq!(c.datetime(), None);
    assert!(c.body.windows(11).any(|w| w == b"<displayed/"));
}

#[test]
fn rfc5438_8_1_processing_notification() {
    // No NS, no imdn.Message-ID, no DateTime in the RFC's example: only From and To.
    let c = accepted("rfc5438-8.1-processing-notification.txt");
    assert_eq!(c.layout, Layout::Errata3013);
    assert_eq!(c.headers.len(), 2);
    assert_eq!(c.imdn_message_id(), None);
    assert_eq!(c.content_type().unwrap(), "message/imdn+xml");
    assert!(c.body.windows(11).any(|w| w == b"<processed/"));
}

#[test]
fn rfc5438_8_3_aggregated_folded_content_type() {
    // The Content-type is folded over two lines in the RFC; MIME headers may be folded
    // (RFC 5322 §2.2.3), so it is kept as printed and unfolded when read.
    let c = accepted("rfc5438-8.3-aggregated.txt");
    assert_eq!(c.layout, Layout::Errata3013);
    assert_eq!(c.imdn_message_id().unwrap(), "d834jied93rf");
    let ct = c.content_type().unwrap();
    assert!(ct.starts_with(b"multipart/mixed;"), "{ct:?}");
    assert!(ct.ends_with(b"boundary=\"imdn-boundary\""), "{ct:?}");
    assert!(
        c.body
            .starts_with(b"--imdn-boundary\r\nContent-type: message/imdn+xml\r\n\r\n")
    );
    assert!(c.body.ends_with(b"\r\n--imdn-boundary\r\n"));
}

#[test]
fn ours_cpm_chat() {
    let input = load("ours-cpm-chat.txt");
    let c = accepted("ours-cpm-chat.txt");
    assert_eq!(c.to_bytes(), input);
    assert_eq!(c.cpm_payload_type().unwrap(), "Application/X-CPM-Session");
    assert_eq!(c.imdn_message_id().unwrap(), "Vt9YVRbE0vHfQ2xM");
    assert_eq!(c.body, "Bonjour depuis CPM");
}

#[test]
fn ours_alias_prefix_resolves_by_uri() {
    let c = accepted("ours-alias-prefix.txt");
    assert_eq!(c.imdn_message_id().unwrap(), "9a8b7c6d");
    assert_eq!(c.imdn_disposition_notification(), ["negative-delivery"]);
    assert_eq!(
        c.get_ns(NS_IMDN, "message-id").unwrap().prefix.as_deref(),
        Some(&b"IMDN"[..])
    );
}

#[test]
fn ours_no_content_type_is_415() {
    let e = Cpim::parse(load("ours-no-content-type-415.txt")).unwrap_err();
    assert!(matches!(e, CpimError::MissingContentType { .. }));
    assert_eq!(e.answer(), Answer::Status(415));
}

#[test]
fn ours_bad_ns_is_400() {
    let input = load("ours-bad-ns-400.txt");
    let e = Cpim::parse(input.clone()).unwrap_err();
    assert_eq!(e.answer(), Answer::Status(400));
    assert!(e.to_string().contains("NS header"), "{e}");
    assert!(input[e.offset().unwrap()..].starts_with(b"NS: imdn"));
}
