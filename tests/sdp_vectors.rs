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
    // Completed: the RFC's c=/m=/a= lines verbatim, v=/o=/s=/t= added (see README.md).
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
fn rfc4975_4_as_printed_is_not_a_whole_sdp() {
    // RFC 4975 §4 prints only the c=, m= and a= lines ("Some lines in the examples are removed
    // for clarity and brevity"); without v=0 first it is not an SDP body (RFC 4566 §5).
    for name in [
        "rfc4975-4-offer-as-printed.txt",
        "rfc4975-4-answer-as-printed.txt",
    ] {
        let e = Sdp::parse(load(name)).unwrap_err();
        assert_eq!(e.answer(), Answer::Status(400), "{name}: {e}");
        assert!(e.to_string().contains("v=0"), "{name}: {e}");
        assert_eq!(e.offset(), Some(0), "{name}");
    }
}

#[test]
fn rfc4975_8_2_path() {
    let (sdp, m) = accepted("rfc4975-8.2-path.txt");
    assert_eq!(m.port, 7394);
    assert_eq!(m.path, ["msrp://alice.example.com:7394/2s93i9ek2a;tcp"]);
    assert_eq!(m.accept_types, ["text/plain"]);
    assert_eq!(m.setup, None);
    assert_eq!(sdp.origin().unwrap().sess_version, 2890844527);
}

#[test]
fn rfc4975_8_7_offer_and_answer() {
    let (sdp, m) = accepted("rfc4975-8.7-offer.txt");
    assert_eq!(m.accept_types, ["message/cpim", "text/plain", "text/html"]);
    assert_eq!(m.path, ["msrp://alice.example.com:7394/2s93i93idj;tcp"]);
    assert_eq!(sdp.origin().unwrap().sess_version, 2890844527);
    let (sdp, m) = accepted("rfc4975-8.7-answer.txt");
    assert_eq!(m.port, 8493);
    assert_eq!(m.accept_types, ["message/cpim", "text/plain"]);
    assert_eq!(m.path, ["msrp://bob.example.com:8493/si438dsaodes;tcp"]);
    assert_eq!(sdp.origin().unwrap().sess_version, 2890844532);
}

#[test]
fn wrapped_types_and_max_size() {
    let (_, m) = accepted("ours-wrapped-types-max-size.txt");
    assert_eq!(m.accept_wrapped_types, ["text/plain", "text/html"]);
    assert_eq!(m.max_size, Some(65536));
}

/// The value of the first `a=<name>` line, kept verbatim (kind `Other`).
fn attr(sdp: &Sdp, name: &str) -> Option<Bytes> {
    sdp.lines()
        .iter()
        .filter_map(|l| l.attribute())
        .find(|a| a.name == name)
        .map(|a| a.value.clone().unwrap_or_default())
}

#[test]
fn rfc5547_9_1_file_offer_and_answer_keep_file_attributes() {
    let (sdp, m) = accepted("rfc5547-9.1-file-offer.txt");
    assert_eq!(m.direction, Direction::Sendonly);
    assert_eq!(m.accept_wrapped_types, ["*"]);
    assert_eq!(m.path, ["msrp://alicepc.example.com:7654/jshA7we;tcp"]);
    // The RFC folds a=file-selector over three lines for the page; on the wire it is one.
    assert_eq!(
        attr(&sdp, "file-selector").unwrap(),
        "name:\"My cool picture.jpg\" type:image/jpeg size:4092 \
         hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E"
    );
    assert_eq!(
        attr(&sdp, "file-transfer-id").unwrap(),
        "Q6LMoGymJdh0IKIgD6wD0jkcfgva4xvE"
    );
    assert_eq!(
        attr(&sdp, "file-date").unwrap(),
        "creation:\"Mon, 15 May 2006 15:01:31 +0300\""
    );
    let (sdp, m) = accepted("rfc5547-9.1-file-answer.txt");
    assert_eq!(m.direction, Direction::Recvonly);
    assert_eq!(m.port, 8888);
    assert_eq!(
        attr(&sdp, "file-transfer-id").unwrap(),
        "Q6LMoGymJdh0IKIgD6wD0jkcfgva4xvE"
    );
}

#[test]
fn rfc5547_9_2_request_and_second_transfer() {
    let (sdp, m) = accepted("rfc5547-9.2-request-offer.txt");
    assert_eq!(m.direction, Direction::Recvonly);
    assert_eq!(
        attr(&sdp, "file-selector").unwrap(),
        "hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E"
    );
    let (sdp, m) = accepted("rfc5547-9.2-request-answer.txt");
    assert_eq!(m.direction, Direction::Sendonly);
    assert!(
        attr(&sdp, "file-selector")
            .unwrap()
            .starts_with(b"type:image/jpeg hash:sha-1:72:24:")
    );
    let (sdp, m) = accepted("rfc5547-9.2-second-offer.txt");
    assert_eq!(m.direction, Direction::Sendonly);
    assert_eq!(m.path, ["msrp://alicepc.example.com:7654/iau39;tcp"]);
    assert_eq!(sdp.origin().unwrap().sess_version, 2890844527);
    let (sdp, m) = accepted("rfc5547-9.2-second-answer.txt");
    assert_eq!(m.direction, Direction::Recvonly);
    assert_eq!(m.path, ["msrp://bobpc.example.com:8888/eh10dsk;tcp"]);
    assert_eq!(
        attr(&sdp, "file-transfer-id").unwrap(),
        "ZVE8MfI9mhAdZ8GyiNMzNN5dpqgzQlCO"
    );
}

#[test]
fn rfc5547_9_3_capability_is_not_an_offer() {
    // The SDP of a 200 (OK) to OPTIONS: port 0 and no a=path. It parses and round-trips; as an
    // offer it would be a rejected stream, answered 488.
    let input = load("rfc5547-9.3-capability.txt");
    let sdp = Sdp::parse(input.clone()).unwrap();
    assert_eq!(sdp.to_bytes(), input);
    let m = sdp.msrp_media().unwrap();
    assert_eq!(m.port, 0);
    assert_eq!(m.max_size, Some(20000));
    assert_eq!(m.accept_wrapped_types, ["*"]);
    assert!(m.path.is_empty());
    assert_eq!(attr(&sdp, "file-selector").unwrap(), "");
    let e = sdp.require_msrp().unwrap_err();
    assert!(e.to_string().contains("port 0"), "{e}");
    assert_eq!(e.answer(), Answer::Status(488));
}

#[test]
fn ours_setup_actpass() {
    let (_, m) = accepted("ours-setup-actpass.txt");
    assert_eq!(m.setup, Some(Setup::Actpass));
}

#[test]
fn ours_cema_behind_an_alg() {
    let (_, m) = accepted("ours-cema-alg.txt");
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
