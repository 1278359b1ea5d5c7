//! Property: a CPM pager message translated for SIMPLE IM and carried back towards CPM (as the
//! SIMPLE IM side would when the user answers from the same conversation) keeps its meaning:
//! the same text, the same imdn.Message-ID, the same notification requests, and the same
//! conversation (Conversation-ID kept, InReplyTo naming the original contribution).

use bytes::Bytes;
use proptest::prelude::*;

use cpm_iwf::correlate::{Millis, Table, TableLimits};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::translate::conversation::IdSource;
use cpm_iwf::translate::state::Side;
use cpm_iwf::translate::{Env, pager};
use cpm_iwf::wire::cpim::Cpim;
use cpm_iwf::wire::sip::{Limits, SipMessage, parse_datagram};

struct Counter(u32);
impl IdSource for Counter {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("gen-{}", self.0))
    }
}

fn message(
    text: &str,
    message_id: &str,
    dispositions: &[&str],
    conv: &str,
    contrib: &str,
) -> SipMessage {
    let mut cpim = String::from(
        "From: <sip:alice@cpm.example.net>\r\nTo: <sip:bob@simple.example.net>\r\nNS: imdn <urn:ietf:params:imdn>\r\n",
    );
    cpim.push_str(&format!("imdn.Message-ID: {message_id}\r\n"));
    if !dispositions.is_empty() {
        cpim.push_str(&format!(
            "imdn.Disposition-Notification: {}\r\n",
            dispositions.join(", ")
        ));
    }
    cpim.push_str(&format!(
        "\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n{text}"
    ));
    let wire = format!(
        "MESSAGE sip:bob@simple.example.net SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-p\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@cpm.example.net>;tag=a1\r\n\
         To: <sip:bob@simple.example.net>\r\n\
         Call-ID: prop-1\r\n\
         CSeq: 1 MESSAGE\r\n\
         P-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\n\
         Conversation-ID: {conv}\r\n\
         Contribution-ID: {contrib}\r\n\
         Content-Type: message/cpim\r\n\
         Content-Length: {}\r\n\r\n{cpim}",
        cpim.len()
    );
    parse_datagram(Bytes::from(wire), &Limits::default()).expect("valid generated message")
}

/// The translated request as the SIMPLE IM side sends it back: From and To swapped, the
/// Request-URI the CPM user, a Via of its own.
fn back_from_simple(out: &SipMessage) -> SipMessage {
    let mut m = out.clone();
    let from = out.header("From").unwrap_or_default().to_string();
    let to = out.header("To").unwrap_or_default().to_string();
    m.set_header("From", &format!("{to};tag=b1"))
        .expect("header");
    m.set_header("To", from.split(";tag=").next().unwrap_or_default())
        .expect("header");
    m.set_request_uri("sip:alice@cpm.example.net").expect("uri");
    m.insert_header(0, "Via", "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bK-back")
        .expect("via");
    parse_datagram(m.serialize(), &Limits::default()).expect("re-parses")
}

fn translate(
    m: &SipMessage,
    from: Side,
    table: &Table,
    ids: &mut Counter,
    mappings: &Mappings,
) -> SipMessage {
    let mut env = Env {
        now: Millis(0),
        ids,
        datetime: "2026-11-25T10:00:05.000Z",
    };
    let outcome = pager::message_request(m, from, &table.view(Millis(0)), mappings, &mut env)
        .expect("translates");
    table.apply(&outcome.changes, Millis(0)).expect("room");
    outcome.send.into_iter().next().expect("one message").1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn cpm_to_simple_and_back_keeps_the_meaning(
        text in "[ -~]{0,200}",
        message_id in "[A-Za-z0-9][A-Za-z0-9.+%=-]{3,31}",
        dispositions in proptest::sample::subsequence(vec!["positive-delivery", "negative-delivery", "display"], 0..=3),
        conv in "[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[a-f0-9]{4}-[a-f0-9]{12}",
        contrib in "[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[a-f0-9]{4}-[a-f0-9]{12}",
    ) {
        let mappings = Mappings::embedded().expect("mappings");
        let table = Table::new(TableLimits::default());
        let mut ids = Counter(0);
        let original = message(&text, &message_id, &dispositions, &conv, &contrib);
        let to_simple = translate(&original, Side::Cpm, &table, &mut ids, &mappings);
        let back = translate(&back_from_simple(&to_simple), Side::Simple, &table, &mut ids, &mappings);

        let cpim = Cpim::parse(back.body().clone()).expect("CPIM");
        prop_assert_eq!(&cpim.body[..], text.as_bytes());
        prop_assert_eq!(cpim.imdn_message_id().map(|b| b.to_vec()), Some(message_id.as_bytes().to_vec()));
        let got: Vec<String> = cpim
            .imdn_disposition_notification()
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        prop_assert_eq!(got, dispositions.iter().map(|d| d.to_string()).collect::<Vec<_>>());
        prop_assert_eq!(back.header("Conversation-ID"), Some(conv.as_str()));
        prop_assert_eq!(back.header("InReplyTo-Contribution-ID"), Some(contrib.as_str()));
        prop_assert_eq!(back.header("P-Asserted-Service"), Some("urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg"));
    }
}
