//! Chat-session INVITEs and answers across the two networks.

use bytes::Bytes;

use super::*;
use crate::correlate::{Table, TableLimits};
use crate::time::Millis;
use crate::translate::conversation::IdSource;
use crate::translate::state::View;
use crate::wire::sip::{Limits, parse_datagram};

struct Counter(u32);
impl IdSource for Counter {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("gen-{}", self.0))
    }
}

const CPM_INVITE: &str = include_str!("../../tests/vectors/sip/cpm-chat-invite.txt");

fn mappings() -> Mappings {
    Mappings::embedded().expect("embedded mappings")
}

fn sip(text: &str) -> SipMessage {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").expect("blank line");
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    let body = body.replace('\n', "\r\n");
    let wire = format!(
        "{}\r\nContent-Length: {}\r\n\r\n{body}",
        head.join("\r\n"),
        body.len()
    );
    parse_datagram(Bytes::from(wire), &Limits::default()).expect("valid test message")
}

fn leg(contact: &str, msrp: &str, sid: &'static [u8]) -> LocalLeg {
    LocalLeg {
        contact: contact.to_string(),
        msrp: MsrpEndpoint {
            addr: msrp.parse().expect("addr"),
            session_id: Bytes::from_static(sid),
            secure: false,
        },
    }
}

fn env(ids: &mut Counter) -> Env<'_> {
    Env {
        now: Millis(0),
        ids,
        datetime: "2026-11-25T10:00:05.000Z",
    }
}

#[test]
fn a_cpm_chat_invite_becomes_a_gateway_invite_on_the_simple_leg() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    let incoming = sip(CPM_INVITE);
    let offer = invite_request(
        &incoming,
        Side::Cpm,
        &table.view(Millis(0)),
        &mappings(),
        &leg("sip:iwf@127.0.0.1:5062", "127.0.0.1:2856", b"simple-leg"),
        Bytes::from_static(b"cpm-leg"),
        &mut env(&mut ids),
    )
    .expect("translated");
    assert_eq!(offer.service, Service::Chat);
    assert_eq!(
        offer.received_media.path,
        vec![Bytes::from_static(b"msrp://192.0.2.10:9/s111271x;tcp")]
    );
    let (side, out) = &offer.outcome.send[0];
    assert_eq!(*side, Side::Simple);
    assert_eq!(out.header("CSeq"), Some("1 INVITE"));
    assert_eq!(
        out.header("Contact"),
        Some("<sip:iwf@127.0.0.1:5062>;+g.oma.sip-im")
    );
    assert_eq!(
        out.header("Accept-Contact"),
        Some("*;require;explicit;+g.oma.sip-im")
    );
    assert_eq!(out.header("Conversation-ID"), None);
    assert_eq!(out.header("Supported"), Some("timer"));
    let sdp = Sdp::parse(out.body().clone()).expect("SDP");
    let m = sdp.require_msrp().expect("MSRP");
    assert_eq!(
        m.path,
        vec![Bytes::from_static(b"msrp://127.0.0.1:2856/simple-leg;tcp")]
    );
    assert_eq!(m.setup, Some(Setup::Active));
    table
        .apply(&offer.outcome.changes, Millis(0))
        .expect("room");
    let view = table.view(Millis(1));
    let peer = view.msrp(b"cpm-leg").expect("MSRP leg remembered");
    assert_eq!(peer.peer_session, Bytes::from_static(b"simple-leg"));
    let dialog = view
        .dialog(&DialogKey {
            side: Side::Cpm,
            call_id: Bytes::from_static(b"chat-9f8e7d6c5b4a@192.0.2.10"),
        })
        .expect("dialog remembered");
    assert_eq!(
        dialog.call_id,
        out.call_id()
            .map(|c| Bytes::copy_from_slice(c.as_bytes()))
            .unwrap_or_default()
    );
    assert_eq!(
        dialog.conversation.map(|c| c.conversation_id),
        Some(Bytes::from_static(b"0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"))
    );
}

const SIMPLE_200: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKgw
From: <sip:+15557654321@ims.example.net>;tag=gen-1
To: <sip:+15551234567@ims.example.net>;tag=bob7
Call-ID: gen-2
CSeq: 1 INVITE
Contact: <sip:bob@203.0.113.5:5060>;+g.oma.sip-im
Content-Type: application/sdp

v=0
o=bob 2890844526 2890844527 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=message 7394 TCP/MSRP *
a=path:msrp://203.0.113.5:7394/bobsess;tcp
a=accept-types:message/cpim text/plain
";

#[test]
fn the_simple_answer_becomes_the_gateways_answer_to_the_cpm_caller() {
    let mut ids = Counter(10);
    let request = sip(CPM_INVITE);
    let (ok, far_media) = invite_answer(
        &request,
        &sip(SIMPLE_200),
        Side::Cpm,
        &leg("sip:iwf@127.0.0.1:5060", "127.0.0.1:2855", b"cpm-leg"),
        Some(Setup::Active),
        Service::Chat,
        Some("gwtag"),
        &mappings(),
        &mut env(&mut ids),
    )
    .expect("answered");
    assert_eq!(
        far_media.path,
        vec![Bytes::from_static(b"msrp://203.0.113.5:7394/bobsess;tcp")]
    );
    assert_eq!(ok.status_code(), Some(200));
    assert_eq!(ok.header("Call-ID"), Some("chat-9f8e7d6c5b4a@192.0.2.10"));
    assert_eq!(
        ok.header("To"),
        Some("<sip:+15551234567@ims.example.net>;tag=gwtag")
    );
    assert_eq!(
        ok.header("Contact"),
        Some(
            "<sip:iwf@127.0.0.1:5060>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session\""
        )
    );
    let sdp = Sdp::parse(ok.body().clone()).expect("SDP");
    let m = sdp.require_msrp().expect("MSRP");
    assert_eq!(
        m.path,
        vec![Bytes::from_static(b"msrp://127.0.0.1:2855/cpm-leg;tcp")]
    );
    assert_eq!(
        m.setup,
        Some(Setup::Passive),
        "the CPM caller is active: the gateway listens"
    );
    assert_eq!(m.port, 2855);
}

#[test]
fn simple_invites_are_classified_and_get_cpm_identities() {
    let table = Table::new(TableLimits::default());
    let simple = "INVITE sip:alice@cpm.example.net SIP/2.0
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-si
Max-Forwards: 70
From: <sip:bob@simple.example.net>;tag=b1
To: <sip:alice@cpm.example.net>
Call-ID: simple-inv-1
CSeq: 1 INVITE
Contact: <sip:bob@203.0.113.5:5060>;+g.oma.sip-im
Accept-Contact: *;+g.oma.sip-im
Content-Type: application/sdp

v=0
o=bob 1 1 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=message 7394 TCP/MSRP *
a=path:msrp://203.0.113.5:7394/b1;tcp
a=accept-types:message/cpim text/plain
";
    let cases = [
        (simple.to_string(), Service::Chat),
        (
            simple.replace("Accept-Contact: *;+g.oma.sip-im", "Accept-Contact: *;+g.oma.sip-im.large-message"),
            Service::LargeMessage,
        ),
        (
            simple.replace(
                "a=accept-types:message/cpim text/plain\n",
                "a=accept-types:message/cpim text/plain\na=file-selector:name:\"a.jpg\" type:image/jpeg size:3\n",
            ),
            Service::FileTransfer,
        ),
        (
            simple.replace("<sip:bob@203.0.113.5:5060>;+g.oma.sip-im", "<sip:conf@203.0.113.9>;isfocus;+g.oma.sip-im"),
            Service::GroupChat,
        ),
    ];
    for (text, want) in cases {
        let mut ids = Counter(0);
        let offer = invite_request(
            &sip(&text),
            Side::Simple,
            &table.view(Millis(0)),
            &mappings(),
            &leg("sip:iwf@127.0.0.1:5060", "127.0.0.1:2855", b"cpm-leg"),
            Bytes::from_static(b"simple-leg"),
            &mut env(&mut ids),
        )
        .expect("translated");
        assert_eq!(offer.service, want);
        let (side, out) = &offer.outcome.send[0];
        assert_eq!(*side, Side::Cpm);
        let icsi = mappings().service(want).cpm_icsi.clone();
        assert_eq!(out.header("P-Asserted-Service"), Some(icsi.as_str()));
        assert!(out.header("Conversation-ID").is_some());
        assert!(out.header("Contribution-ID").is_some());
    }
}

#[test]
fn invites_without_msrp_are_488() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    let no_sdp = CPM_INVITE
        .replace("\r\n", "\n")
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("Content-Type: application/sdp\n", "")
        + "\n\n";
    let audio = CPM_INVITE.replace("m=message 9 TCP/MSRP *", "m=audio 49170 RTP/AVP 0");
    for text in [no_sdp, audio] {
        let err = invite_request(
            &sip(&text),
            Side::Cpm,
            &table.view(Millis(0)),
            &mappings(),
            &leg("sip:iwf@127.0.0.1:5062", "127.0.0.1:2856", b"s"),
            Bytes::from_static(b"c"),
            &mut env(&mut ids),
        )
        .expect_err("refused");
        assert_eq!(err.status(), 488, "{err}");
    }
}
