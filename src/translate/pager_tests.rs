//! Pager-mode translation, both ways, with the table in between as the node would apply it.

use bytes::Bytes;

use super::*;
use crate::correlate::{Table, TableLimits};
use crate::time::Millis;
use crate::translate::conversation::IdSource;
use crate::translate::{Env, Outcome, Reply, TranslateError};
use crate::wire::sip::{Limits, SipMessage, parse_datagram};

struct Counter(u32);
impl IdSource for Counter {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("gen-{}", self.0))
    }
}

const DATETIME: &str = "2026-11-25T10:00:05.000Z";
const CPM_PAGER_FILE: &str = include_str!("../../tests/vectors/sip/cpm-pager-message.txt");

/// The CPM pager vector with `\n` line ends, for editing in tests.
fn cpm_pager() -> String {
    CPM_PAGER_FILE.replace("\r\n", "\n")
}

fn mappings() -> Mappings {
    Mappings::embedded().expect("embedded mappings")
}

/// A SIP message from text with `\n` line ends; CRLF is written and Content-Length computed.
fn sip(text: &str) -> SipMessage {
    let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let (head, body) = text.split_once("\r\n\r\n").expect("blank line");
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    let wire = format!(
        "{}\r\nContent-Length: {}\r\n\r\n{body}",
        head.join("\r\n"),
        body.len()
    );
    parse_datagram(Bytes::from(wire), &Limits::default()).expect("valid test message")
}

fn run(msg: &SipMessage, from: Side, table: &Table, ids: &mut Counter) -> Outcome {
    let outcome = {
        let mut env = Env {
            now: Millis(1_000),
            ids,
            datetime: DATETIME,
        };
        message_request(msg, from, &table.view(Millis(1_000)), &mappings(), &mut env)
            .expect("translates")
    };
    table
        .apply(&outcome.changes, Millis(1_000))
        .expect("table has room");
    outcome
}

fn only(outcome: &Outcome, side: Side) -> &SipMessage {
    assert_eq!(outcome.send.len(), 1, "{outcome:?}");
    let (s, m) = &outcome.send[0];
    assert_eq!(*s, side);
    m
}

fn simple_imdn(status: &str, kind: &str, message_id: &str) -> SipMessage {
    sip(&format!(
        "MESSAGE sip:+15557654321@ims.example.net SIP/2.0
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-s1
Max-Forwards: 70
From: <sip:+15551234567@ims.example.net>;tag=bob1
To: <sip:+15557654321@ims.example.net>
Call-ID: simple-imdn-1
CSeq: 7 MESSAGE
Contact: <sip:bob@203.0.113.5:5060>;+g.oma.sip-im
Content-Type: message/cpim

From: <sip:+15551234567@ims.example.net>
To: <sip:+15557654321@ims.example.net>
NS: imdn <urn:ietf:params:imdn>
imdn.Message-ID: Bob-IMDN-{kind}
DateTime: 2026-11-25T10:00:09Z

Content-Type: message/imdn+xml
Content-Disposition: notification

<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">
<message-id>{message_id}</message-id>
<datetime>2026-11-25T10:00:00.000Z</datetime>
<{kind}-notification><status><{status}/></status></{kind}-notification>
</imdn>
"
    ))
}

#[test]
fn cpm_pager_goes_to_simple_with_tags_rewritten_and_cpim_untouched() {
    let table = Table::new(TableLimits::default());
    let incoming = sip(&cpm_pager());
    let outcome = run(&incoming, Side::Cpm, &table, &mut Counter(0));
    let out = only(&outcome, Side::Simple);
    assert_eq!(
        out.request_uri(),
        Some(&b"sip:+15551234567@ims.example.net"[..])
    );
    assert_eq!(out.header("Via"), None, "the node writes its own Via");
    assert_eq!(out.header("Call-ID"), Some("gen-2"));
    assert_eq!(
        out.header("From"),
        Some("<sip:+15557654321@ims.example.net>;tag=gen-1")
    );
    assert_eq!(out.header("To"), Some("<sip:+15551234567@ims.example.net>"));
    assert_eq!(out.header("CSeq"), Some("1 MESSAGE"));
    for dropped in [
        "P-Preferred-Service",
        "Conversation-ID",
        "P-Asserted-Service",
    ] {
        assert_eq!(out.header(dropped), None, "{dropped}");
    }
    // Kept: SIMPLE IM clients of RCS lineage read it (mappings/headers.toml).
    assert!(out.header("Contribution-ID").is_some());
    assert_eq!(
        out.header("Contact"),
        Some("<sip:+15557654321@192.0.2.10:5060;transport=tcp>;+g.oma.sip-im")
    );
    assert_eq!(
        out.header("Accept-Contact"),
        Some("*;require;explicit;+g.oma.sip-im")
    );
    assert_eq!(out.content_type(), Some("message/cpim"));
    assert_eq!(out.body(), incoming.body());
    // The body is the received slice, not a copy.
    assert_eq!(out.body().as_ptr(), incoming.body().as_ptr());
    // Remembered: the conversation and the message's origin.
    let view = table.view(Millis(2_000));
    let origin = view.message(b"Kn31x9Ab7Qz").expect("origin remembered");
    assert_eq!(origin.side, Side::Cpm);
    assert_eq!(&origin.device.aor[..], b"sip:+15557654321@ims.example.net");
    assert_eq!(
        origin
            .conversation
            .as_ref()
            .map(|c| c.conversation_id.clone()),
        Some(Bytes::from_static(b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6"))
    );
}

#[test]
fn simple_imdns_come_back_with_the_cpm_identities_and_are_forgotten_when_displayed() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    run(&sip(&cpm_pager()), Side::Cpm, &table, &mut ids);

    let delivered = run(
        &simple_imdn("delivered", "delivery", "Kn31x9Ab7Qz"),
        Side::Simple,
        &table,
        &mut ids,
    );
    let out = only(&delivered, Side::Cpm);
    assert_eq!(
        out.request_uri(),
        Some(&b"sip:+15557654321@ims.example.net"[..])
    );
    assert_eq!(
        out.header("Conversation-ID"),
        Some("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    );
    assert_eq!(
        out.header("Contribution-ID"),
        Some("7b2f3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    );
    assert_eq!(
        out.header("P-Asserted-Service"),
        Some("urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg")
    );
    assert_eq!(
        out.header("Contact"),
        Some(
            "<sip:bob@203.0.113.5:5060>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\""
        )
    );
    assert!(table.view(Millis(2_000)).message(b"Kn31x9Ab7Qz").is_some());

    let displayed = run(
        &simple_imdn("displayed", "display", "Kn31x9Ab7Qz"),
        Side::Simple,
        &table,
        &mut ids,
    );
    only(&displayed, Side::Cpm);
    assert!(
        table.view(Millis(2_000)).message(b"Kn31x9Ab7Qz").is_none(),
        "nothing follows a display notification"
    );
}

#[test]
fn a_notification_goes_to_the_device_that_sent_the_message() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    let with_instance = cpm_pager().replace(
        "transport=tcp>;",
        "transport=tcp>;+sip.instance=\"<urn:gsma:imei:35-209900-176148-1>\";",
    );
    run(&sip(&with_instance), Side::Cpm, &table, &mut ids);
    let back = run(
        &simple_imdn("delivered", "delivery", "Kn31x9Ab7Qz"),
        Side::Simple,
        &table,
        &mut ids,
    );
    let out = only(&back, Side::Cpm);
    assert_eq!(
        out.header_all("Accept-Contact").collect::<Vec<_>>(),
        vec!["*;+sip.instance=\"<urn:gsma:imei:35-209900-176148-1>\";require;explicit"]
    );
}

#[test]
fn an_imdn_for_an_unknown_message_goes_to_the_addressed_user() {
    let table = Table::new(TableLimits::default());
    let out = run(
        &simple_imdn("delivered", "delivery", "never-seen"),
        Side::Simple,
        &table,
        &mut Counter(0),
    );
    let m = only(&out, Side::Cpm);
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:+15557654321@ims.example.net"[..])
    );
    // A new conversation for this pair: identities generated (SD 5.2.1.1).
    assert!(m.header("Conversation-ID").is_some());
}

const SIMPLE_TEXT: &str = "MESSAGE sip:alice@cpm.example.net SIP/2.0
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-s2
Max-Forwards: 70
From: \"Bob\" <sip:bob@simple.example.net>;tag=b2
To: <sip:alice@cpm.example.net>
Call-ID: simple-text-1
CSeq: 1 MESSAGE
Accept-Contact: *;+g.oma.sip-im
Content-Type: text/plain;charset=UTF-8

Hi Alice, from SIMPLE IM";

#[test]
fn bare_simple_text_is_wrapped_in_cpim_with_new_identities_for_cpm() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    let first = run(&sip(SIMPLE_TEXT), Side::Simple, &table, &mut ids);
    let out = only(&first, Side::Cpm);
    assert_eq!(out.content_type(), Some("message/cpim"));
    let cpim = Cpim::parse(out.body().clone()).expect("valid CPIM");
    assert_eq!(
        cpim.from().map(|f| &f[..]),
        Some(&b"<sip:bob@simple.example.net>"[..])
    );
    assert_eq!(cpim.datetime().map(|d| &d[..]), Some(DATETIME.as_bytes()));
    assert!(cpim.imdn_message_id().is_some());
    assert_eq!(&cpim.body[..], b"Hi Alice, from SIMPLE IM");
    assert_eq!(
        cpim.content_type().map(|c| &c[..]),
        Some(&b"text/plain;charset=UTF-8"[..])
    );
    let conv = out
        .header("Conversation-ID")
        .expect("generated")
        .to_string();
    assert!(out.header("Contribution-ID").is_some());
    assert_eq!(out.header("InReplyTo-Contribution-ID"), None);
    assert_eq!(
        out.header("Accept-Contact"),
        Some("*;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"")
    );
    // The next message of the same pair stays in the conversation.
    let second = run(&sip(SIMPLE_TEXT), Side::Simple, &table, &mut ids);
    assert_eq!(
        only(&second, Side::Cpm).header("Conversation-ID"),
        Some(conv.as_str())
    );
}

#[test]
fn a_simple_reply_answers_the_last_cpm_contribution() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    run(&sip(&cpm_pager()), Side::Cpm, &table, &mut ids);
    let reply = SIMPLE_TEXT
        .replace(
            "sip:alice@cpm.example.net",
            "sip:+15557654321@ims.example.net",
        )
        .replace(
            "sip:bob@simple.example.net",
            "sip:+15551234567@ims.example.net",
        );
    let out = run(&sip(&reply), Side::Simple, &table, &mut ids);
    let m = only(&out, Side::Cpm);
    assert_eq!(
        m.header("Conversation-ID"),
        Some("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    );
    assert_eq!(
        m.header("InReplyTo-Contribution-ID"),
        Some("7b2f3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    );
}

#[test]
fn iscomposing_is_unwrapped_for_simple_and_wrapped_for_cpm() {
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state><refresh>60</refresh></isComposing>";
    let pager = cpm_pager();
    let cpm = pager.split_once("\n\n").expect("head").0;
    let cpm = format!(
        "{cpm}\n\nFrom: <sip:+15557654321@ims.example.net>\nTo: <sip:+15551234567@ims.example.net>\nDateTime: 2026-11-25T10:00:00Z\n\nContent-Type: application/im-iscomposing+xml\n\n{xml}"
    );
    let out = run(&sip(&cpm), Side::Cpm, &table, &mut ids);
    let m = only(&out, Side::Simple);
    assert_eq!(m.content_type(), Some("application/im-iscomposing+xml"));
    assert_eq!(m.body(), xml.as_bytes());
    assert!(out.changes.is_empty(), "isComposing changes no state");

    let bare = SIMPLE_TEXT
        .replace("text/plain;charset=UTF-8", "application/im-iscomposing+xml")
        .replace("Hi Alice, from SIMPLE IM", xml);
    let out = run(&sip(&bare), Side::Simple, &table, &mut ids);
    let m = only(&out, Side::Cpm);
    assert_eq!(m.content_type(), Some("message/cpim"));
    let cpim = Cpim::parse(m.body().clone()).expect("CPIM");
    assert_eq!(&cpim.body[..], xml.as_bytes());
    assert_eq!(
        cpim.imdn_message_id(),
        None,
        "isComposing asks for no notification"
    );
}

#[test]
fn errors_name_their_answer() {
    let table = Table::new(TableLimits::default());
    let run_err = |msg: &SipMessage, from: Side| {
        let mut ids = Counter(0);
        let mut env = Env {
            now: Millis(0),
            ids: &mut ids,
            datetime: DATETIME,
        };
        message_request(msg, from, &table.view(Millis(0)), &mappings(), &mut env)
            .expect_err("refused")
    };
    let unknown = cpm_pager().replace(
        "P-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg",
        "P-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.mmtel",
    );
    let e = run_err(&sip(&unknown), Side::Cpm);
    assert!(matches!(e, TranslateError::UnknownService(_)), "{e}");
    assert_eq!(e.status(), 403);

    let bad_xml = SIMPLE_TEXT
        .replace("text/plain;charset=UTF-8", "application/im-iscomposing+xml")
        .replace(
            "Hi Alice, from SIMPLE IM",
            "<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>typing",
        );
    assert_eq!(run_err(&sip(&bad_xml), Side::Simple).status(), 400);

    let long_id = cpm_pager().replace(
        "Conversation-ID: f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        &format!("Conversation-ID: {}", "x".repeat(MAX_ID_LEN + 1)),
    );
    let e = run_err(&sip(&long_id), Side::Cpm);
    assert!(e.to_string().contains("Conversation-ID"), "{e}");
    assert_eq!(e.status(), 400);

    let bad_cpim = SIMPLE_TEXT
        .replace("text/plain;charset=UTF-8", "message/cpim")
        .replace("Hi Alice, from SIMPLE IM", "no headers at all");
    assert_eq!(run_err(&sip(&bad_cpim), Side::Simple).status(), 400);
}

#[test]
fn pager_iscomposing_is_dropped_when_the_side_takes_none() {
    let table = Table::new(TableLimits::default());
    let content = include_str!("../../mappings/content.toml").replace(
        "iscomposing_pager = \"cpim\"",
        "iscomposing_pager = \"drop\"",
    );
    let m = Mappings::from_sources(
        (
            "services.toml",
            include_str!("../../mappings/services.toml"),
        ),
        ("headers.toml", include_str!("../../mappings/headers.toml")),
        ("content.toml", &content),
    )
    .expect("valid");
    let bare = SIMPLE_TEXT
        .replace("text/plain;charset=UTF-8", "application/im-iscomposing+xml")
        .replace(
            "Hi Alice, from SIMPLE IM",
            "<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>idle</state></isComposing>",
        );
    let mut ids = Counter(0);
    let mut env = Env {
        now: Millis(0),
        ids: &mut ids,
        datetime: DATETIME,
    };
    let out = message_request(
        &sip(&bare),
        Side::Simple,
        &table.view(Millis(0)),
        &m,
        &mut env,
    )
    .expect("accepted");
    assert!(out.send.is_empty());
    assert_eq!(out.reply, Some(Reply::OK));
}

/// [`wrap_in_cpim`] as it was (a [`Cpim`] built header by header, then written), kept as the
/// reference.
fn reference_wrap(
    msg: &SipMessage,
    from_uri: &str,
    to_uri: &str,
    message_id: Option<&[u8]>,
    notification: bool,
    datetime: &str,
) -> Bytes {
    use crate::wire::cpim::CpimHeader;
    let mut cpim = Cpim::default();
    let addr = |u: &str| format!("<{u}>");
    cpim.headers
        .push(CpimHeader::new(None, b"From", addr(from_uri).as_bytes()));
    cpim.headers
        .push(CpimHeader::new(None, b"To", addr(to_uri).as_bytes()));
    cpim.headers
        .push(CpimHeader::new(None, b"DateTime", datetime.as_bytes()));
    if let Some(id) = message_id {
        cpim.set_ns(NS_IMDN, "imdn", "Message-ID", id);
    }
    let ct = msg.content_type().unwrap_or("text/plain");
    cpim.content_headers.push((
        Bytes::from_static(b"Content-Type"),
        Bytes::copy_from_slice(ct.as_bytes()),
    ));
    if notification {
        cpim.content_headers.push((
            Bytes::from_static(b"Content-Disposition"),
            Bytes::from_static(b"notification"),
        ));
    }
    cpim.body = msg.body().clone();
    cpim.to_bytes()
}

/// The CPIM the gateway wraps is the reference's, with and without a Message-ID and a
/// notification's disposition, with and without a Content-Type.
#[test]
fn wrapped_cpim_is_the_reference() {
    let head = "MESSAGE sip:a@x SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nMax-Forwards: 70\n\
From: <sip:b@y>;tag=1\nTo: <sip:a@x>\nCall-ID: c\nCSeq: 1 MESSAGE\n";
    let with_type = sip(&format!(
        "{head}Content-Type: text/plain;charset=UTF-8\n\nHi \"there\""
    ));
    let bare = sip(&format!("{head}\n"));
    let mut ids = Counter(0);
    let env = Env {
        now: Millis(0),
        ids: &mut ids,
        datetime: DATETIME,
    };
    for msg in [&with_type, &bare] {
        for id in [None, Some(&b"Kn31x9"[..]), Some(&b""[..])] {
            for notification in [false, true] {
                let got = wrap_in_cpim(msg, "sip:b@y", "tel:+1555", id, notification, &env);
                let want = reference_wrap(msg, "sip:b@y", "tel:+1555", id, notification, DATETIME);
                assert_eq!(got, want, "{id:?} {notification}");
                if id.is_some_and(|i| !i.is_empty()) {
                    assert!(Cpim::parse(got).is_ok());
                }
            }
        }
    }
}

/// The device a message's entry keeps is the one `device_of` reads in the sender's Contact
/// (the reference: the Contact copied whole, its parts shared from the copy), whichever way
/// its parts were found (the leg's rewrite, or the Contact read again when the rewrite kept
/// it or rewrote it for the CPM side), and the entry keeps only the GRUU and instance id.
#[test]
fn the_message_entry_keeps_the_device_device_of_reads() {
    let icsi = "+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"";
    let contacts = [
        format!("<sip:+15557654321@192.0.2.10:5060;transport=tcp>;{icsi}"),
        format!("<sip:a@x;gr=urn:uuid:f81d4fae>;{icsi}"),
        format!("<sip:a@x;GR>;+sip.instance=\"<urn:gsma:imei:35-1>\";{icsi}"),
        format!("\"a<b\" <sip:a@x;gr>;+sip.instance=\"<urn:x>\";{icsi}, <sip:b@y>"),
        format!("sip:a@x;{icsi}"),
        "<sip:a@x;gr>;+sip.instance=\"<urn:y>\";+g.oma.sip-im".to_string(),
        "<sip:a@x>;+sip.instance=\"\"".to_string(),
    ];
    let simple_message = |contact: &str| {
        format!(
            "MESSAGE sip:alice@cpm.example.net SIP/2.0\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-s1\n\
Max-Forwards: 70\n\
From: <sip:bob@simple.example.net>;tag=b1\n\
To: <sip:alice@cpm.example.net>\n\
Call-ID: s-1\n\
CSeq: 1 MESSAGE\n\
Contact: {contact}\n\
Content-Type: message/cpim\n\
\n\
From: <sip:bob@simple.example.net>\n\
To: <sip:alice@cpm.example.net>\n\
NS: imdn <urn:ietf:params:imdn>\n\
imdn.Message-ID: Kn31x9Ab7Qz\n\
imdn.Disposition-Notification: positive-delivery\n\
\n\
Content-Type: text/plain\n\
\n\
hi"
        )
    };
    for contact in &contacts {
        let cpm = cpm_pager().replace(
            "<sip:+15557654321@192.0.2.10:5060;transport=tcp>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"",
            contact,
        );
        for (text, from, aor) in [
            (cpm, Side::Cpm, "sip:+15557654321@ims.example.net"),
            (
                simple_message(contact),
                Side::Simple,
                "sip:bob@simple.example.net",
            ),
        ] {
            let msg = sip(&text);
            let table = Table::new(TableLimits::default());
            let mut ids = Counter(0);
            let mut env = Env {
                now: Millis(1_000),
                ids: &mut ids,
                datetime: DATETIME,
            };
            let outcome = message_request(
                &msg,
                from,
                &table.view(Millis(1_000)),
                &mappings(),
                &mut env,
            )
            .expect("translates");
            let device = Change::unpacked(&outcome.changes)
                .into_iter()
                .find_map(|c| match c {
                    Change::Insert(super::super::state::Entry::Message(_, o)) => Some(o.device),
                    _ => None,
                })
                .expect("the message is remembered");
            let wanted = super::super::device::device_of(
                Bytes::from_static(aor.as_bytes()),
                Some(&Bytes::copy_from_slice(contact.as_bytes())),
            )
            .unwrap();
            assert_eq!(device, wanted, "{contact} from {from:?}");
        }
    }
}

/// The packed change of a CPM pager message ([`Change::Remember`]) is the plain inserts the
/// translator made before it was packed: the conversation's state under the pair of users,
/// then the message's origin, each value as the request had it; with or without the
/// identities, `InReplyTo-Contribution-ID`, a notification request, a GRUU or an instance id,
/// and with a Message-ID that is not ASCII or not UTF-8. The table holds the same after the
/// packed change as after the plain ones.
#[test]
fn the_packed_change_is_the_plain_inserts_it_stands_for() {
    use super::super::state::{
        ConversationIds, ConversationKey, ConversationState, Entry, MessageOrigin,
    };
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let cpm = "sip:+15557654321@ims.example.net";
    let simple = "sip:+15551234567@ims.example.net";
    let icsi = "+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"";
    let contacts = [
        format!("<sip:+15557654321@192.0.2.10:5060;transport=tcp>;{icsi}"),
        format!("<sip:a@x;gr=urn:uuid:f81d4fae>;+sip.instance=\"<urn:gsma:imei:35-1>\";{icsi}"),
        format!("<sip:a@x;gr>;{icsi}"),
    ];
    // The last is replaced by bytes that are not UTF-8, of the same length, once on the wire.
    let not_utf8: &[u8] = b"M\xffA\xfeB\x80C";
    let mut cases = 0;
    for contact in &contacts {
        for ids in [0, 2, 3] {
            for disposition in [true, false] {
                for message_id in ["Kn31x9Ab7Qz", "M\u{e9}ssage-\u{1f600}", "NONUTF8"] {
                    let mut text = cpm_pager()
                        .replace(
                            "<sip:+15557654321@192.0.2.10:5060;transport=tcp>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"",
                            contact,
                        )
                        .replace(
                            "imdn.Message-ID: Kn31x9Ab7Qz",
                            &format!("imdn.Message-ID: {message_id}"),
                        );
                    if !disposition {
                        text = text.replace(
                            "imdn.Disposition-Notification: positive-delivery, display\n",
                            "",
                        );
                    }
                    match ids {
                        0 => {
                            text = text.replace(
                                "Conversation-ID: f81d4fae-7dec-11d0-a765-00a0c91e6bf6\n",
                                "",
                            )
                        }
                        3 => {
                            text = text.replace(
                                "Content-Type: message/cpim",
                                "InReplyTo-Contribution-ID: in-reply-1\nContent-Type: message/cpim",
                            )
                        }
                        _ => {}
                    }
                    let (msg, id) = match message_id {
                        "NONUTF8" => {
                            let wire = sip(&text).serialize();
                            let at = wire
                                .windows(7)
                                .position(|w| w == b"NONUTF8")
                                .expect("placeholder");
                            let mut wire = wire.to_vec();
                            wire.splice(at..at + 7, not_utf8.iter().copied());
                            let msg = parse_datagram(Bytes::from(wire), &Limits::default())
                                .expect("parses");
                            (msg, Bytes::from_static(not_utf8))
                        }
                        _ => (sip(&text), b(message_id)),
                    };
                    let table = Table::new(TableLimits::default());
                    let mut env_ids = Counter(0);
                    let mut env = Env {
                        now: Millis(1_000),
                        ids: &mut env_ids,
                        datetime: DATETIME,
                    };
                    let outcome = message_request(
                        &msg,
                        Side::Cpm,
                        &table.view(Millis(1_000)),
                        &mappings(),
                        &mut env,
                    )
                    .expect("translates");
                    let conversation = (ids > 0).then(|| ConversationIds {
                        conversation_id: b("f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
                        contribution_id: b("7b2f3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
                        in_reply_to: (ids == 3).then(|| b("in-reply-1")),
                    });
                    let mut want = Vec::new();
                    if let Some(c) = &conversation {
                        want.push(Change::Insert(Entry::Conversation(
                            ConversationKey {
                                cpm_user: b(cpm),
                                simple_user: b(simple),
                            },
                            ConversationState {
                                conversation_id: c.conversation_id.clone(),
                                last_cpm_contribution: Some(c.contribution_id.clone()),
                            },
                        )));
                    }
                    if disposition {
                        let device = super::super::device::device_of(
                            b(cpm),
                            Some(&Bytes::copy_from_slice(contact.as_bytes())),
                        )
                        .unwrap();
                        want.push(Change::Insert(Entry::Message(
                            id,
                            Box::new(MessageOrigin {
                                side: Side::Cpm,
                                device,
                                recipient: b(simple),
                                conversation,
                            }),
                        )));
                    }
                    let what = format!("{contact} ids {ids} {disposition} {message_id}");
                    let unpacked = Change::unpacked(&outcome.changes);
                    assert_eq!(unpacked, want, "{what}");
                    let packed = matches!(outcome.changes.as_slice(), [Change::Remember(_)]);
                    assert_eq!(packed, !want.is_empty(), "one packed change: {what}");
                    // The table holds the same after either.
                    let (a, p) = (
                        Table::new(TableLimits::default()),
                        Table::new(TableLimits::default()),
                    );
                    a.apply(&outcome.changes, Millis(0)).expect("room");
                    p.apply(&unpacked, Millis(0)).expect("room");
                    let by_key = |e: &Entry| format!("{:?}", e.key());
                    let (mut ea, mut ep) = (a.entries(Millis(1)), p.entries(Millis(1)));
                    ea.sort_by_key(by_key);
                    ep.sort_by_key(by_key);
                    assert_eq!(ea, ep, "{what}");
                    assert_eq!(ea.len(), want.len(), "{what}");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 54);
}

/// A packed change whose buffer does not hold its parts (it always does: only the translator
/// builds one) gives empty values, not a panic.
#[test]
fn a_packed_change_out_of_its_buffer_reads_empty_values() {
    let r = Remembered {
        buf: Bytes::from_static(b"abc"),
        ends: [2, 9, 9, 12, 12, 12, 12, 12],
        present: 0xff,
        raw_message_id: None,
        from: Side::Cpm,
        conversation: true,
        message: true,
    };
    let changes: Vec<Change> = r.changes().collect();
    assert_eq!(changes.len(), 2);
    let (id, origin) = r.message().expect("asked for");
    assert!(id.is_empty());
    assert_eq!(&origin.device.aor[..], b"ab");
    assert!(origin.recipient.is_empty());
}

/// What the pager's one pass over the fields reads ([`read`]) is what reading each header
/// gives (the first value of each name), and the new leg built from the fields as that pass
/// read them ([`LegFields`]) is the leg built from its own reading: whatever the names' case,
/// with more Contacts than the leg buffers, with more than 64 fields, with fields the rules
/// drop, in both directions.
#[test]
fn the_one_pass_reads_what_the_leg_and_the_headers_read() {
    use crate::mapping::HeaderRules;
    use crate::translate::leg::new_leg_rewritten;
    let base = cpm_pager();
    let icsi = "+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"";
    let at_ct =
        |s: &str, extra: &str| s.replacen("Content-Type:", &format!("{extra}Content-Type:"), 1);
    let pads: String = (0..70).map(|i| format!("X-Pad-{i}: v{i}\n")).collect();
    let contacts: String = (0..9)
        .map(|i| format!("Contact: <sip:a{i}@x>;{icsi}\n"))
        .collect();
    let texts = [
        base.clone(),
        at_ct(&base, &pads),
        at_ct(&base, &contacts),
        at_ct(
            &base,
            "conversation-id: second\nP-ASSERTED-SERVICE: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\nInReplyTo-Contribution-ID: r1\nX-Drop-Me: 1\nAccept-Contact: *;+g.oma.sip-im\n",
        ),
    ];
    let m = mappings();
    let drop = HeaderRules {
        drop: vec![
            "x-drop-me".into(),
            "x-pad-3".into(),
            "accept-contact".into(),
        ],
        ..HeaderRules::default()
    };
    for text in &texts {
        let msg = sip(text);
        for (rules, side) in [
            (&m.cpm_to_simple, Side::Simple),
            (&m.simple_to_cpm, Side::Cpm),
            (&drop, Side::Simple),
            (&drop, Side::Cpm),
        ] {
            let r = read(&msg, rules);
            assert_eq!(r.from, msg.header("From"));
            assert_eq!(r.to, msg.header("To"));
            assert_eq!(r.contact, msg.header("Contact"));
            assert_eq!(r.content_type, msg.header("Content-Type"));
            assert_eq!(
                r.content_type_text.map(|t| t.as_str()),
                msg.header("Content-Type")
            );
            assert_eq!(r.asserted_service, msg.header("P-Asserted-Service"));
            assert_eq!(r.preferred_service, msg.header("P-Preferred-Service"));
            assert_eq!(r.ids.conversation_id, msg.header("Conversation-ID"));
            assert_eq!(r.ids.contribution_id, msg.header("Contribution-ID"));
            assert_eq!(r.ids.in_reply_to, msg.header("InReplyTo-Contribution-ID"));
            assert!(
                r.leg.is_some(),
                "the codec's fields, rules that rename nothing"
            );
            let leg = |given: bool| {
                let mut ids = Counter(0);
                let mut env = Env {
                    now: Millis(0),
                    ids: &mut ids,
                    datetime: DATETIME,
                };
                new_leg_rewritten(
                    &msg,
                    rsip::Method::Message,
                    Bytes::from_static(b"sip:b@y"),
                    rules,
                    side,
                    Service::Pager,
                    &m,
                    &mut env,
                    if given { r.leg.as_ref() } else { None },
                )
                .map(|(out, device)| (out.finish().serialize(), device.is_some()))
                .map_err(|e| e.to_string())
            };
            assert_eq!(leg(true), leg(false), "{side:?} {:?}", rules.drop);
        }
    }
}
