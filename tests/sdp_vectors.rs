//! The SDP vectors of `tests/vectors/sdp/` (see its README.md): each is parsed, checked, and an
//! accepted one re-serialises to the same bytes.

use bytes::Bytes;
use cpm_iwf::wire::sdp::{Direction, MsrpProtocol, Sdp, SdpError, Setup};
use cpm_iwf::wire::{Answer, WireError};

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/vectors/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Parse, check the byte-identical round trip, and return the MSRP media.
fn accepted(name: &str) -> (Sdp, cpm_iwf::wire::sdp::MsrpMedia) {
    let input = load(name);
    assert!(
        input.windows(2).any(|w| w == b"\r\n"),
        "{name}: CRLF line ends"
    );
    let sdp = Sdp::parse(input.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(sdp.to_bytes(), input, "{name}: round trip");
    let m = sdp.require_msrp().unwrap_or_else(|e| panic!("{name}: {e}"));
    (sdp, m)
}

#[test]
fn rfc4975_4_offer_and_answer() {
    let (_, m) = accepted("rfc4975-4-offer.txt");
    assert_eq!(m.port, 7654);
    assert_eq!(m.protocol, MsrpProtocol::Tcp);
    assert_eq!(m.path, ["msrp://atlanta.example.com:7654/jshA7weztas;tcp"]);
    assert_eq!(m.accept_types, ["text/plain"]);
    let (_, m) = accepted("rfc4975-4-answer.txt");
    assert_eq!(m.port, 12763);
    assert_eq!(m.connection.unwrap().address, "biloxi.example.com");
}

#[test]
fn rfc4975_8_7_offer_and_answer() {
    let (sdp, m) = accepted("rfc4975-8.7-offer.txt");
    assert_eq!(m.accept_types, ["message/cpim", "text/plain", "text/html"]);
    assert_eq!(sdp.origin().unwrap().sess_version, 2890844557);
    let (_, m) = accepted("rfc4975-8.7-answer.txt");
    assert_eq!(m.port, 8888);
    assert_eq!(m.path, ["msrp://bob.example.com:8888/9di4eae923wzd;tcp"]);
}

#[test]
fn wrapped_types_and_max_size() {
    let (_, m) = accepted("ours-wrapped-types-max-size.txt");
    assert_eq!(m.accept_wrapped_types, ["text/plain", "text/html"]);
    assert_eq!(m.max_size, Some(65536));
}

#[test]
fn rfc5547_file_transfer_offer_keeps_file_attributes() {
    let (sdp, m) = accepted("rfc5547-9.1-file-offer.txt");
    assert_eq!(m.direction, Direction::Sendonly);
    assert_eq!(m.accept_wrapped_types, ["*"]);
    let fs = sdp
        .lines()
        .iter()
        .filter_map(|l| l.attribute())
        .find(|a| a.name == "file-selector")
        .expect("a=file-selector kept");
    assert!(
        fs.value
            .as_ref()
            .unwrap()
            .starts_with(b"name:\"My cool picture.jpg\"")
    );
}

#[test]
fn rfc6135_setup() {
    let (_, m) = accepted("rfc6135-setup-actpass.txt");
    assert_eq!(m.setup, Some(Setup::Actpass));
}

#[test]
fn rfc6714_cema() {
    let (_, m) = accepted("rfc6714-cema.txt");
    assert!(m.msrp_cema);
    assert_eq!(m.connection.unwrap().address, "192.0.2.1");
}

#[test]
fn ours_cpm_chat_offer_and_b2bua_rewrite() {
    let (mut sdp, m) = accepted("ours-cpm-chat-offer.txt");
    assert_eq!(m.port, 9);
    assert_eq!(m.setup, Some(Setup::Active));
    assert!(m.msrp_cema);
    assert_eq!(m.accept_wrapped_types.len(), 4);
    assert_eq!(m.connection.as_ref().unwrap().addrtype, "IP6");
    // What the B2BUA does to the offer before sending it on.
    sdp.set_connection(b"IP4", b"192.0.2.10").unwrap();
    sdp.set_port(2855).unwrap();
    sdp.set_path(&[Bytes::from_static(b"msrp://192.0.2.10:2855/iwf-1;tcp")])
        .unwrap();
    sdp.set_setup(Setup::Passive).unwrap();
    sdp.set_msrp_cema(false).unwrap();
    sdp.set_accept_wrapped_types(&[
        Bytes::from_static(b"text/plain"),
        Bytes::from_static(b"message/imdn+xml"),
    ])
    .unwrap();
    sdp.bump_session_version();
    let out = sdp.to_bytes();
    let again = Sdp::parse(out.clone()).unwrap();
    assert_eq!(again, sdp);
    let m = again.require_msrp().unwrap();
    assert_eq!(m.port, 2855);
    assert_eq!(m.connection.unwrap().address, "192.0.2.10");
    assert_eq!(m.setup, Some(Setup::Passive));
    assert!(!m.msrp_cema);
    assert_eq!(again.origin().unwrap().sess_version, 3958640042);
    // Lines nobody touched kept their bytes.
    assert!(out.starts_with(b"v=0\r\n"));
    assert!(out.ends_with(b"a=sendrecv\r\n"));
}

#[test]
fn ours_audio_only_is_488() {
    let sdp = Sdp::parse(load("ours-audio-only-488.txt")).unwrap();
    let e = sdp.require_msrp().unwrap_err();
    assert!(matches!(e, SdpError::NoMsrpMedia { .. }));
    assert_eq!(e.answer(), Answer::Status(488));
}

#[test]
fn ours_bad_setup_is_400() {
    let input = load("ours-bad-setup-400.txt");
    let e = Sdp::parse(input.clone()).unwrap_err();
    assert_eq!(e.answer(), Answer::Status(400));
    assert!(e.to_string().contains("line 9"), "{e}");
    assert!(e.to_string().contains("both"), "{e}");
    let off = e.offset().unwrap();
    assert!(input[off..].starts_with(b"setup:both"));
}
