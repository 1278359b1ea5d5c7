//! Chat-session INVITEs and answers across the two networks.

use bytes::Bytes;

use super::*;
use crate::correlate::{Table, TableLimits};
use crate::time::Millis;
use crate::translate::conversation::IdSource;
use crate::translate::state::View;
use crate::translate::{Outcome, Reply};
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

fn addresses() -> Addresses {
    Addresses {
        cpm: SideAddresses {
            contact: "sip:iwf@127.0.0.1:5060".into(),
            msrp: "127.0.0.1:2855".parse().expect("addr"),
            secure: false,
        },
        simple: SideAddresses {
            contact: "sip:iwf@127.0.0.1:5062".into(),
            msrp: "127.0.0.1:2856".parse().expect("addr"),
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

/// The gateway as the node drives it: a table, fresh ids, and the requests it received (to
/// answer them when the far side answers).
struct Gw {
    table: Table,
    ids: Counter,
}

impl Gw {
    fn new() -> Self {
        Gw {
            table: Table::new(TableLimits::default()),
            ids: Counter(0),
        }
    }

    fn request(&mut self, from: Side, text: &str) -> Result<Outcome, TranslateError> {
        let msg = sip(text);
        let view = self.table.view(Millis(0));
        let out = crate::translate::sip_request(
            &msg,
            from,
            &view,
            &mappings(),
            &addresses(),
            &mut env(&mut self.ids),
        )?;
        self.table.apply(&out.changes, Millis(0)).expect("room");
        Ok(out)
    }

    fn response(&mut self, request: &str, from: Side, far: &str) -> Outcome {
        let view = self.table.view(Millis(0));
        let out = session_response(
            &sip(request),
            from,
            &sip(far),
            &view,
            &mappings(),
            &addresses(),
            &mut env(&mut self.ids),
        )
        .expect("answered");
        self.table.apply(&out.changes, Millis(0)).expect("room");
        out
    }

    fn dialogs(&self) -> usize {
        self.table.stats().dialogs.len
    }
}

fn one(out: &Outcome, side: Side) -> &SipMessage {
    assert_eq!(out.send.len(), 1, "{:?}", out.send);
    assert_eq!(out.send[0].0, side);
    &out.send[0].1
}

fn msrp_path(msg: &SipMessage) -> Bytes {
    let sdp = Sdp::parse(msg.body().clone()).expect("SDP");
    let m = sdp.require_msrp().expect("MSRP");
    m.path.first().cloned().unwrap_or_default()
}

#[test]
fn a_cpm_chat_invite_becomes_a_gateway_invite_on_the_simple_leg() {
    let mut gw = Gw::new();
    let offer = gw.request(Side::Cpm, CPM_INVITE).expect("translated");
    let out = one(&offer, Side::Simple);
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
    // Session-ids gen-1 (CPM leg) and gen-2 (SIMPLE leg) are the gateway's.
    assert_eq!(
        msrp_path(out),
        Bytes::from_static(b"msrp://127.0.0.1:2856/gen-2;tcp")
    );
    let sdp = Sdp::parse(out.body().clone()).expect("SDP");
    assert_eq!(sdp.require_msrp().expect("MSRP").setup, Some(Setup::Active));
    assert_eq!(offer.msrp.len(), 1);
    assert_eq!(offer.msrp[0].side, Side::Cpm);
    assert_eq!(offer.msrp[0].local_session, Bytes::from_static(b"gen-1"));
    assert_eq!(
        offer.msrp[0].setup,
        Setup::Passive,
        "the CPM caller is active"
    );
    assert_eq!(
        offer.msrp[0].peer.path,
        vec![Bytes::from_static(b"msrp://192.0.2.10:9/s111271x;tcp")]
    );
    let view = gw.table.view(Millis(1));
    let peer = view.msrp(b"gen-1").expect("MSRP leg remembered");
    assert_eq!(peer.peer_session, Bytes::from_static(b"gen-2"));
    let dialog = view
        .dialog(&DialogKey {
            side: Side::Cpm,
            call_id: Bytes::from_static(b"chat-9f8e7d6c5b4a@192.0.2.10"),
        })
        .expect("dialog remembered");
    assert_eq!(
        dialog.call_id.as_ref(),
        out.call_id().unwrap_or_default().as_bytes()
    );
    assert_eq!(
        dialog.conversation.map(|c| c.conversation_id),
        Some(Bytes::from_static(b"0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"))
    );
    assert_eq!(
        dialog.leg.remote_target,
        Bytes::from_static(b"sip:+15557654321@192.0.2.10:5060;transport=tcp")
    );
    assert_eq!(dialog.leg.remote_tag, Some(Bytes::from_static(b"a1b2c3d4")));
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

/// The SIMPLE side's 200 for the gateway's INVITE of `gw` (its Call-ID and From tag).
fn simple_200(invite: &SipMessage, tag: &str) -> String {
    SIMPLE_200
        .replace(
            "Call-ID: gen-2",
            &format!("Call-ID: {}", invite.call_id().unwrap_or_default()),
        )
        .replace(
            ";tag=gen-1",
            &format!(";tag={}", invite.from_tag().unwrap_or_default()),
        )
        .replace(";tag=bob7", &format!(";tag={tag}"))
}

/// A session set up from the CPM side: the gateway's INVITE on the SIMPLE leg and its 200.
fn established(gw: &mut Gw) -> (SipMessage, Outcome) {
    let offer = gw.request(Side::Cpm, CPM_INVITE).expect("translated");
    let invite = one(&offer, Side::Simple).clone();
    let ok = gw.response(CPM_INVITE, Side::Cpm, &simple_200(&invite, "bob7"));
    (invite, ok)
}

#[test]
fn the_simple_answer_becomes_the_gateways_answer_to_the_cpm_caller() {
    let mut gw = Gw::new();
    let (_, answered) = established(&mut gw);
    let ok = one(&answered, Side::Cpm);
    assert_eq!(ok.status_code(), Some(200));
    assert_eq!(ok.header("Call-ID"), Some("chat-9f8e7d6c5b4a@192.0.2.10"));
    let to = ok.header("To").unwrap_or_default().to_string();
    assert!(
        to.starts_with("<sip:+15551234567@ims.example.net>;tag=gen-"),
        "{to}"
    );
    assert_eq!(
        ok.header("Contact"),
        Some(
            "<sip:iwf@127.0.0.1:5060>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session\""
        )
    );
    assert_eq!(
        msrp_path(ok),
        Bytes::from_static(b"msrp://127.0.0.1:2855/gen-1;tcp")
    );
    let sdp = Sdp::parse(ok.body().clone()).expect("SDP");
    let m = sdp.require_msrp().expect("MSRP");
    assert_eq!(
        m.setup,
        Some(Setup::Passive),
        "the CPM caller is active: the gateway listens"
    );
    assert_eq!(m.port, 2855);
    assert_eq!(answered.msrp.len(), 1);
    assert_eq!(answered.msrp[0].side, Side::Simple);
    assert_eq!(answered.msrp[0].setup, Setup::Active);
    assert_eq!(
        answered.msrp[0].peer.path,
        vec![Bytes::from_static(b"msrp://203.0.113.5:7394/bobsess;tcp")]
    );
    // A provisional answer carries the same tag as the final one (RFC 3261 §12.1.1).
    let mut gw2 = Gw::new();
    let offer = gw2.request(Side::Cpm, CPM_INVITE).expect("translated");
    let invite = one(&offer, Side::Simple).clone();
    let ringing = simple_200(&invite, "bob7")
        .replace("SIP/2.0 200 OK", "SIP/2.0 180 Ringing")
        .replace("Content-Type: application/sdp\n", "")
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .to_string()
        + "\n\n";
    let r = gw2.response(CPM_INVITE, Side::Cpm, &ringing);
    let r180 = one(&r, Side::Cpm).clone();
    let ok = gw2.response(CPM_INVITE, Side::Cpm, &simple_200(&invite, "bob7"));
    assert_eq!(r180.to_tag(), one(&ok, Side::Cpm).to_tag());
    let trying = ringing.replace("180 Ringing", "100 Trying");
    assert!(
        gw2.response(CPM_INVITE, Side::Cpm, &trying).send.is_empty(),
        "100 is hop by hop"
    );
}

#[test]
fn ack_and_bye_follow_the_dialogs_of_each_leg() {
    let mut gw = Gw::new();
    let (invite, answered) = established(&mut gw);
    let gw_tag = one(&answered, Side::Cpm)
        .to_tag()
        .unwrap_or_default()
        .to_string();
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} sip:iwf@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-{method}
Max-Forwards: 70
From: <sip:+15557654321@ims.example.net>;tag=a1b2c3d4
To: <sip:+15551234567@ims.example.net>;tag={gw_tag}
Call-ID: chat-9f8e7d6c5b4a@192.0.2.10
CSeq: {cseq} {method}
Content-Length: 0

"
        )
    };
    let ack = gw.request(Side::Cpm, &in_dialog("ACK", 1)).expect("ACK");
    let a = one(&ack, Side::Simple);
    assert_eq!(a.request_uri(), Some(&b"sip:bob@203.0.113.5:5060"[..]));
    assert_eq!(a.header("CSeq"), Some("1 ACK"));
    assert_eq!(a.header("Call-ID"), invite.call_id());
    assert_eq!(a.to_tag(), Some("bob7"));
    assert_eq!(a.from_tag(), invite.from_tag());
    assert!(ack.changes.is_empty());

    // Bob hangs up: the BYE on the CPM leg is the gateway's, in the caller's dialog.
    let bye = format!(
        "BYE sip:iwf@127.0.0.1:5062 SIP/2.0
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-bye
Max-Forwards: 70
From: <sip:+15551234567@ims.example.net>;tag=bob7
To: <sip:+15557654321@ims.example.net>;tag={}
Call-ID: {}
CSeq: 2 BYE
Content-Length: 0

",
        invite.from_tag().unwrap_or_default(),
        invite.call_id().unwrap_or_default()
    );
    let out = gw.request(Side::Simple, &bye).expect("BYE");
    let b = one(&out, Side::Cpm);
    assert_eq!(
        b.request_uri(),
        Some(&b"sip:+15557654321@192.0.2.10:5060;transport=tcp"[..])
    );
    assert_eq!(
        b.header("From"),
        Some(format!("<sip:+15551234567@ims.example.net>;tag={gw_tag}").as_str())
    );
    assert_eq!(
        b.header("To"),
        Some("<sip:+15557654321@ims.example.net>;tag=a1b2c3d4")
    );
    assert_eq!(b.header("Call-ID"), Some("chat-9f8e7d6c5b4a@192.0.2.10"));
    assert_eq!(b.header("CSeq"), Some("1 BYE"));
    assert_eq!(gw.dialogs(), 0, "the session is forgotten");
    assert_eq!(gw.table.stats().msrp.len, 0);
    // A BYE for it again: no such dialog (RFC 3261 §12.2.2).
    let err = gw.request(Side::Simple, &bye).expect_err("gone");
    assert_eq!(err.status(), 481);
}

#[test]
fn a_bye_from_the_caller_uses_the_gateways_next_cseq() {
    let mut gw = Gw::new();
    let (invite, answered) = established(&mut gw);
    let gw_tag = one(&answered, Side::Cpm)
        .to_tag()
        .unwrap_or_default()
        .to_string();
    let bye = format!(
        "BYE sip:iwf@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-bye1
Max-Forwards: 70
From: <sip:+15557654321@ims.example.net>;tag=a1b2c3d4
To: <sip:+15551234567@ims.example.net>;tag={gw_tag}
Call-ID: chat-9f8e7d6c5b4a@192.0.2.10
CSeq: 2 BYE
Reason: SIP;cause=200;text=\"User ended\"
Content-Length: 0

"
    );
    let out = gw.request(Side::Cpm, &bye).expect("BYE");
    let b = one(&out, Side::Simple);
    assert_eq!(b.header("CSeq"), Some("2 BYE"));
    assert_eq!(b.request_uri(), Some(&b"sip:bob@203.0.113.5:5060"[..]));
    assert_eq!(b.header("Call-ID"), invite.call_id());
    assert_eq!(
        b.header("Reason"),
        Some("SIP;cause=200;text=\"User ended\"")
    );
    // Bob's 200 to it is the gateway's 200 on the CPM leg, with the gateway's tag.
    let ok = gw.response(
        &bye,
        Side::Cpm,
        &format!(
            "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKb
From: {}
To: <sip:+15551234567@ims.example.net>;tag=bob7
Call-ID: {}
CSeq: 2 BYE
Content-Length: 0

",
            b.header("From").unwrap_or_default(),
            b.header("Call-ID").unwrap_or_default()
        ),
    );
    let r = one(&ok, Side::Cpm);
    assert_eq!(r.status_code(), Some(200));
    assert_eq!(r.to_tag(), Some(gw_tag.as_str()));
    assert_eq!(r.header("CSeq"), Some("2 BYE"));
}

#[test]
fn cancel_is_answered_here_and_cancels_the_gateways_invite() {
    let mut gw = Gw::new();
    let offer = gw.request(Side::Cpm, CPM_INVITE).expect("translated");
    let invite = one(&offer, Side::Simple).clone();
    let cancel = "CANCEL sip:+15551234567@ims.example.net SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-inv-1a2b3c4d
Max-Forwards: 70
From: <sip:+15557654321@ims.example.net>;tag=a1b2c3d4
To: <sip:+15551234567@ims.example.net>
Call-ID: chat-9f8e7d6c5b4a@192.0.2.10
CSeq: 1 CANCEL
Content-Length: 0

";
    let out = gw.request(Side::Cpm, cancel).expect("CANCEL");
    assert_eq!(out.reply, Some(Reply::OK));
    let c = one(&out, Side::Simple);
    assert_eq!(c.request_uri(), invite.request_uri());
    assert_eq!(c.header("From"), invite.header("From"));
    assert_eq!(c.header("To"), invite.header("To"));
    assert_eq!(c.header("Call-ID"), invite.call_id());
    assert_eq!(c.header("CSeq"), Some("1 CANCEL"));
    // The far side's 487 ends the INVITE on both legs.
    let terminated = format!(
        "SIP/2.0 487 Request Terminated
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKgw
From: {}
To: <sip:+15551234567@ims.example.net>;tag=bob7
Call-ID: {}
CSeq: 1 INVITE
Content-Length: 0

",
        invite.header("From").unwrap_or_default(),
        invite.call_id().unwrap_or_default()
    );
    let r = gw.response(CPM_INVITE, Side::Cpm, &terminated);
    assert_eq!(one(&r, Side::Cpm).status_code(), Some(487));
    assert_eq!(gw.dialogs(), 0);
    assert_eq!(
        gw.request(Side::Cpm, cancel).expect_err("gone").status(),
        481
    );
}

#[test]
fn a_second_2xx_from_another_fork_is_acked_and_hung_up() {
    let mut gw = Gw::new();
    let (invite, _) = established(&mut gw);
    let other = simple_200(&invite, "fork2")
        .replace("sip:bob@203.0.113.5:5060", "sip:bob@203.0.113.6:5060");
    let out = gw.response(CPM_INVITE, Side::Cpm, &other);
    assert_eq!(out.send.len(), 2);
    let (ack, bye) = (&out.send[0], &out.send[1]);
    assert_eq!((ack.0, bye.0), (Side::Simple, Side::Simple));
    assert_eq!(ack.1.method(), Some(&rsip::Method::Ack));
    assert_eq!(ack.1.request_uri(), Some(&b"sip:bob@203.0.113.6:5060"[..]));
    assert_eq!(ack.1.to_tag(), Some("fork2"));
    assert_eq!(ack.1.header("CSeq"), Some("1 ACK"));
    assert_eq!(bye.1.method(), Some(&rsip::Method::Bye));
    assert_eq!(bye.1.header("CSeq"), Some("2 BYE"));
    assert_eq!(bye.1.from_tag(), invite.from_tag());
    // The session itself is untouched: the first fork is still the far end.
    let view = gw.table.view(Millis(0));
    let far = view
        .dialog(&DialogKey {
            side: Side::Simple,
            call_id: Bytes::copy_from_slice(invite.call_id().unwrap_or_default().as_bytes()),
        })
        .expect("still there");
    assert_eq!(far.leg.remote_tag, Some(Bytes::from_static(b"bob7")));
}

#[test]
fn a_reinvite_is_relayed_with_the_gateways_endpoint_and_next_cseq() {
    let mut gw = Gw::new();
    let (invite, answered) = established(&mut gw);
    let gw_tag = one(&answered, Side::Cpm)
        .to_tag()
        .unwrap_or_default()
        .to_string();
    let reinvite = CPM_INVITE
        .replace(
            "To: <sip:+15551234567@ims.example.net>",
            &format!("To: <sip:+15551234567@ims.example.net>;tag={gw_tag}"),
        )
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(
            "INVITE sip:+15551234567@ims.example.net",
            "INVITE sip:iwf@127.0.0.1:5060",
        )
        .replace("3962418300 3962418300", "3962418300 3962418301");
    let out = gw.request(Side::Cpm, &reinvite).expect("re-INVITE");
    let r = one(&out, Side::Simple);
    assert_eq!(r.header("CSeq"), Some("2 INVITE"));
    assert_eq!(r.call_id(), invite.call_id());
    assert_eq!(r.request_uri(), Some(&b"sip:bob@203.0.113.5:5060"[..]));
    assert_eq!(
        r.header("Contact"),
        Some("<sip:iwf@127.0.0.1:5062>;+g.oma.sip-im")
    );
    assert_eq!(
        msrp_path(r),
        Bytes::from_static(b"msrp://127.0.0.1:2856/gen-2;tcp")
    );
    // Its answer goes back with the gateway's endpoint on the CPM leg.
    let ok = simple_200(&invite, "bob7").replace("CSeq: 1 INVITE", "CSeq: 2 INVITE");
    let back = gw.response(&reinvite, Side::Cpm, &ok);
    let a = one(&back, Side::Cpm);
    assert_eq!(a.header("CSeq"), Some("2 INVITE"));
    assert_eq!(a.to_tag(), Some(gw_tag.as_str()));
    assert_eq!(
        msrp_path(a),
        Bytes::from_static(b"msrp://127.0.0.1:2855/gen-1;tcp")
    );
    // The next request on the SIMPLE leg is number 3.
    let bye = in_dialog_bye(&gw_tag, 3);
    let b = gw.request(Side::Cpm, &bye).expect("BYE");
    assert_eq!(one(&b, Side::Simple).header("CSeq"), Some("3 BYE"));
}

fn in_dialog_bye(gw_tag: &str, cseq: u32) -> String {
    format!(
        "BYE sip:iwf@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-b{cseq}
Max-Forwards: 70
From: <sip:+15557654321@ims.example.net>;tag=a1b2c3d4
To: <sip:+15551234567@ims.example.net>;tag={gw_tag}
Call-ID: chat-9f8e7d6c5b4a@192.0.2.10
CSeq: {cseq} BYE
Content-Length: 0

"
    )
}

#[test]
fn other_methods_outside_a_dialog_are_405_and_options_200() {
    let mut gw = Gw::new();
    let subscribe = CPM_INVITE
        .replace("INVITE sip:", "SUBSCRIBE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 SUBSCRIBE");
    assert_eq!(
        gw.request(Side::Cpm, &subscribe).expect_err("405").status(),
        405
    );
    let options = CPM_INVITE
        .replace("INVITE sip:", "OPTIONS sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    assert_eq!(
        gw.request(Side::Cpm, &options).expect("200").reply,
        Some(Reply::OK)
    );
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
            &addresses(),
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
            &addresses(),
            &mut env(&mut ids),
        )
        .expect_err("refused");
        assert_eq!(err.status(), 488, "{err}");
    }
}

#[test]
fn hang_up_sends_bye_on_both_answered_legs_and_forgets_the_session() {
    let mut gw = Gw::new();
    let (invite, answered) = established(&mut gw);
    let gw_tag = one(&answered, Side::Cpm)
        .to_tag()
        .unwrap_or_default()
        .to_string();
    let view = gw.table.view(Millis(0));
    // gen-1 is the gateway's MSRP session-id on the CPM leg.
    let out = hang_up(b"gen-1", &view, &mappings(), "the peer stalled").expect("hung up");
    assert_eq!(out.send.len(), 2);
    let (cpm, simple) = (&out.send[0], &out.send[1]);
    assert_eq!((cpm.0, simple.0), (Side::Cpm, Side::Simple));
    assert_eq!(cpm.1.method(), Some(&rsip::Method::Bye));
    assert_eq!(
        cpm.1.request_uri(),
        Some(&b"sip:+15557654321@192.0.2.10:5060;transport=tcp"[..])
    );
    assert_eq!(cpm.1.from_tag(), Some(gw_tag.as_str()));
    assert_eq!(cpm.1.header("CSeq"), Some("1 BYE"));
    assert_eq!(simple.1.call_id(), invite.call_id());
    assert_eq!(simple.1.header("CSeq"), Some("2 BYE"));
    assert_eq!(simple.1.to_tag(), Some("bob7"));
    assert_eq!(
        simple.1.header("Reason"),
        Some("SIP;cause=480;text=\"the peer stalled\"")
    );
    gw.table.apply(&out.changes, Millis(0)).expect("applied");
    assert_eq!(gw.dialogs(), 0);
    assert_eq!(gw.table.stats().msrp.len, 0);
    let view = gw.table.view(Millis(0));
    assert_eq!(
        hang_up(b"nope", &view, &mappings(), "x")
            .expect_err("unknown")
            .status(),
        481
    );
}
