use super::*;
use crate::store::Pending;

struct Seq(u32);
impl IdSource for Seq {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("id{}", self.0))
    }
}

const DEFERRED: &str = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.deferred";

fn policy() -> StorePolicy {
    StorePolicy {
        unavailable: vec![480, 408, 404],
        max_age_s: 60,
    }
}

fn config() -> ScheduleConfig {
    ScheduleConfig {
        retry: RetrySchedule {
            initial_ms: 1_000,
            max_ms: 8_000,
        },
        jitter: false,
        max_active: 2,
        max_users: 10,
        batch: 2,
    }
}

const PAGER: &str = "MESSAGE sip:bob@simple.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@cpm.example.net>;tag=t1\r\n\
To: <sip:bob@simple.example.net>\r\n\
Call-ID: c1\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: message/cpim\r\n";

fn pager(disposition: &str) -> SipMessage {
    let cpim = format!(
        "From: <sip:alice@cpm.example.net>\r\nTo: <sip:bob@simple.example.net>\r\n\
         NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: M1\r\n\
         DateTime: 2026-11-25T10:00:00Z\r\nimdn.Disposition-Notification: {disposition}\r\n\r\n\
         Content-Type: text/plain\r\n\r\nhello"
    );
    let raw = format!("{PAGER}Content-Length: {}\r\n\r\n{cpim}", cpim.len());
    sip::parse_message(Bytes::from(raw), &sip::Limits::default()).expect("pager")
}

fn pending(user: &str, seq: u64) -> Pending {
    let m = stored_message(
        &pager("positive-delivery"),
        Side::Simple,
        None,
        &pager(""),
        0,
        &policy(),
    );
    Pending {
        key: MessageKey {
            recipient: Bytes::from(user.to_string()),
            seq,
        },
        message: StoredMessage {
            recipient: Bytes::from(user.to_string()),
            ..m
        },
    }
}

fn sent_keys(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p.key.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn store_only_pager_messages_answered_unavailable() {
    let m = pager("positive-delivery");
    assert!(should_store(&m, 480, &policy()));
    assert!(should_store(&m, 404, &policy()));
    assert!(!should_store(&m, 486, &policy()), "busy is not unavailable");
    assert!(!should_store(&m, 200, &policy()));
    let mut in_dialog = m.clone();
    in_dialog
        .set_header("To", "<sip:bob@simple.example.net>;tag=x")
        .expect("To");
    assert!(
        !should_store(&in_dialog, 480, &policy()),
        "in a dialog: not a pager MESSAGE"
    );
    let mut composing = m.clone();
    composing
        .set_body_with_type(
            Some("application/im-iscomposing+xml"),
            Bytes::from_static(b"<isComposing/>"),
        )
        .expect("body");
    assert!(
        !should_store(&composing, 480, &policy()),
        "RFC 3994: stale later"
    );
}

#[test]
fn stored_record_keeps_ids() {
    let m = pager("positive-delivery, negative-delivery");
    let s = stored_message(&m, Side::Simple, None, &m, 1_000, &policy());
    assert_eq!(&s.recipient[..], b"sip:bob@simple.example.net");
    assert_eq!(s.message_id.as_deref(), Some(&b"M1"[..]));
    assert_eq!(s.date_time.as_deref(), Some(&b"2026-11-25T10:00:00Z"[..]));
    assert_eq!(s.kind, Kind::Pager);
    assert_eq!(s.expires_at_unix_ms, 61_000);
    assert_eq!(&s.sender.aor[..], b"sip:alice@cpm.example.net");
}

#[test]
fn delivery_request_is_a_new_transaction_with_the_same_message() {
    let m = pager("positive-delivery");
    let s = stored_message(&m, Side::Simple, None, &m, 0, &policy());
    let out =
        delivery_request(&s, &mut Seq(0), &sip::Limits::default(), DEFERRED).expect("request");
    assert_eq!(out.method(), Some(&rsip::Method::Message));
    assert_eq!(out.call_id(), Some("id1"));
    assert_eq!(
        out.from_tag(),
        Some("id2"),
        "a fresh From tag: not a merged request"
    );
    assert_eq!(
        out.body(),
        m.body(),
        "the body, with its Message-ID, as it was"
    );
    assert_eq!(out.header("Via"), None, "the sender writes its own Via");
    assert_eq!(
        out.header("P-Asserted-Service"),
        None,
        "towards SIMPLE: no ICSI"
    );
    let to_cpm = StoredMessage {
        to_side: Side::Cpm,
        ..s.clone()
    };
    let out =
        delivery_request(&to_cpm, &mut Seq(0), &sip::Limits::default(), DEFERRED).expect("request");
    assert_eq!(out.header("P-Asserted-Service"), Some(DEFERRED));
    let mut response = s.clone();
    response.payload = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(delivery_request(&response, &mut Seq(0), &sip::Limits::default(), DEFERRED).is_err());
    response.payload = Bytes::from_static(b"garbage");
    assert!(delivery_request(&response, &mut Seq(0), &sip::Limits::default(), DEFERRED).is_err());
}

#[test]
fn failed_notification_only_when_negative_delivery_was_asked() {
    let asked = pager("positive-delivery, negative-delivery");
    let s = stored_message(&asked, Side::Simple, None, &asked, 0, &policy());
    let n = failed_notification(
        &s,
        &mut Seq(0),
        "2026-11-26T10:00:00Z",
        "sip:iwf@127.0.0.1:5062",
    )
    .expect("owed");
    assert_eq!(n.request_uri(), Some(&b"sip:alice@cpm.example.net"[..]));
    let body = Cpim::parse(n.body().clone()).expect("cpim");
    let imdn = Imdn::parse(body.body.clone()).expect("imdn");
    assert_eq!(&imdn.message_id[..], b"M1");
    assert_eq!(
        imdn.notification,
        crate::wire::imdn::Notification::Delivery(DeliveryStatus::Failed)
    );
    assert_eq!(
        &imdn.datetime[..],
        b"2026-11-25T10:00:00Z",
        "the original DateTime"
    );
    let not_asked = pager("positive-delivery");
    let s = stored_message(&not_asked, Side::Simple, None, &not_asked, 0, &policy());
    assert!(failed_notification(&s, &mut Seq(0), "x", "sip:iwf@h").is_none());
}

#[test]
fn answers_by_status() {
    assert_eq!(Answer::of(202, &policy()), Answer::Delivered);
    assert_eq!(Answer::of(480, &policy()), Answer::Unavailable);
    assert_eq!(Answer::of(503, &policy()), Answer::Unavailable);
    assert_eq!(Answer::of(415, &policy()), Answer::Rejected);
}

#[test]
fn retries_are_jittered_per_user() {
    let mut s = Scheduler::new(ScheduleConfig {
        jitter: true,
        ..config()
    });
    let users: Vec<Bytes> = (0..8).map(|i| Bytes::from(format!("u{i}"))).collect();
    for u in &users {
        s.stored(u.clone(), Millis(0));
    }
    let mut due = Vec::new();
    while let Some(d) = s.next_due() {
        due.push(d.0);
        s.on_time(d);
        for u in &users {
            let _ = s.fetched(u, Err(()), d);
        }
        if due.len() > 64 {
            break;
        }
    }
    // Equal jitter: each first wait in [500, 1000] ms, and not all the same.
    let first: Vec<u64> = due.iter().copied().take(8).collect();
    assert!(first.iter().all(|d| (500..=1_000).contains(d)), "{first:?}");
    assert!(first.windows(2).any(|w| w[0] != w[1]), "spread: {first:?}");
}

#[test]
fn delivers_in_order_one_at_a_time_then_forgets_the_user() {
    let mut s = Scheduler::new(config());
    let bob = Bytes::from_static(b"bob");
    s.stored(bob.clone(), Millis(0));
    assert!(
        s.on_time(Millis(999)).is_empty(),
        "not before the first backoff"
    );
    let a = s.on_time(Millis(1_000));
    assert_eq!(
        a,
        vec![Action::Fetch {
            user: bob.clone(),
            after: 0,
            limit: 2
        }]
    );
    let a = s.fetched(
        &bob,
        Ok(vec![pending("bob", 3), pending("bob", 7)]),
        Millis(1_001),
    );
    assert_eq!(sent_keys(&a), vec![3]);
    let key3 = MessageKey {
        recipient: bob.clone(),
        seq: 3,
    };
    let a = s.answered(&bob, &key3, Answer::Delivered, Millis(1_002));
    assert_eq!(a, vec![Action::Ack(key3.clone())]);
    let a = s.acked(&bob, true, Millis(1_003));
    assert_eq!(
        sent_keys(&a),
        vec![7],
        "the next only after the first was removed"
    );
    let key7 = MessageKey {
        recipient: bob.clone(),
        seq: 7,
    };
    s.answered(&bob, &key7, Answer::Delivered, Millis(1_004));
    let a = s.acked(&bob, true, Millis(1_005));
    assert_eq!(
        a,
        vec![Action::Fetch {
            user: bob.clone(),
            after: 7,
            limit: 2
        }],
        "the next page after the last one read"
    );
    assert_eq!(
        s.fetched(&bob, Ok(vec![]), Millis(1_006)),
        vec![Action::Drained(bob.clone())]
    );
    assert_eq!(s.users(), 0);
}

#[test]
fn unavailable_backs_off_and_a_registration_cuts_the_wait() {
    let mut s = Scheduler::new(config());
    let bob = Bytes::from_static(b"bob");
    let a = s.available(bob.clone(), Millis(0));
    assert_eq!(a.len(), 1);
    let a = s.fetched(&bob, Ok(vec![pending("bob", 1)]), Millis(0));
    assert_eq!(sent_keys(&a), vec![1]);
    let key = MessageKey {
        recipient: bob.clone(),
        seq: 1,
    };
    assert!(
        s.answered(&bob, &key, Answer::Unavailable, Millis(10))
            .is_empty()
    );
    assert_eq!(s.next_due(), Some(Millis(1_010)));
    // Second failure in a row: twice the wait.
    s.on_time(Millis(1_010));
    s.fetched(&bob, Ok(vec![pending("bob", 1)]), Millis(1_010));
    s.answered(&bob, &key, Answer::Unavailable, Millis(1_020));
    assert_eq!(s.next_due(), Some(Millis(3_020)));
    // The user registers: at once.
    let a = s.available(bob.clone(), Millis(1_500));
    assert_eq!(a.len(), 1, "fetch now");
    // The stale wake-up does nothing.
    s.fetched(&bob, Ok(vec![pending("bob", 1)]), Millis(1_500));
    assert!(s.on_time(Millis(3_020)).is_empty());
}

#[test]
fn a_registration_during_an_attempt_retries_right_after_it() {
    let mut s = Scheduler::new(config());
    let bob = Bytes::from_static(b"bob");
    s.available(bob.clone(), Millis(0));
    s.fetched(&bob, Ok(vec![pending("bob", 1)]), Millis(0));
    assert!(
        s.available(bob.clone(), Millis(5)).is_empty(),
        "busy: noted"
    );
    let key = MessageKey {
        recipient: bob.clone(),
        seq: 1,
    };
    let a = s.answered(&bob, &key, Answer::Unavailable, Millis(10));
    assert!(matches!(a.as_slice(), [Action::Fetch { .. }]), "{a:?}");
}

#[test]
fn rejected_is_removed_and_given_up() {
    let mut s = Scheduler::new(config());
    let bob = Bytes::from_static(b"bob");
    s.available(bob.clone(), Millis(0));
    s.fetched(&bob, Ok(vec![pending("bob", 1)]), Millis(0));
    let key = MessageKey {
        recipient: bob.clone(),
        seq: 1,
    };
    let a = s.answered(&bob, &key, Answer::Rejected, Millis(1));
    assert!(matches!(a.as_slice(), [Action::Ack(_), Action::GiveUp(p)] if p.key == key));
    assert!(
        s.answered(&bob, &key, Answer::Rejected, Millis(1))
            .is_empty(),
        "once"
    );
}

#[test]
fn at_most_max_active_users_at_once() {
    let mut s = Scheduler::new(config());
    let users: Vec<Bytes> = (0..4).map(|i| Bytes::from(format!("u{i}"))).collect();
    let mut fetches = 0;
    for u in &users {
        fetches += s.available(u.clone(), Millis(0)).len();
    }
    assert_eq!(fetches, 2, "two active, two ready");
    let a = s.fetched(&users[0], Ok(vec![]), Millis(1));
    assert!(
        matches!(a.as_slice(), [Action::Drained(_), Action::Fetch { user, .. }] if *user == users[2])
    );
    let a = s.fetched(&users[1], Err(()), Millis(1));
    assert!(matches!(a.as_slice(), [Action::Fetch { user, .. }] if *user == users[3]));
}

#[test]
fn users_followed_are_bounded() {
    let mut s = Scheduler::new(ScheduleConfig {
        max_users: 2,
        ..config()
    });
    for i in 0..5 {
        s.stored(Bytes::from(format!("u{i}")), Millis(0));
    }
    assert_eq!(s.users(), 2);
}

#[test]
fn a_dropped_leg_keeps_its_messages_for_the_user_of_that_leg() {
    // The node's dialog towards Bob (it sent the INVITE): From is Alice as written in Bob's
    // network, To is Bob.
    let leg = LegDialog {
        local_tag: Bytes::from_static(b"n1"),
        remote_tag: Some(Bytes::from_static(b"b1")),
        local_uri: Bytes::from_static(b"\"Alice\" <sip:alice@cpm.example.net>"),
        remote_uri: Bytes::from_static(b"<sip:bob@simple.example.net;transport=tcp>"),
        remote_target: Bytes::from_static(b"sip:bob@192.0.2.9:5062"),
        route_set: None,
        local_cseq: 1,
        msrp_setup: None,
    };
    let ids = ConversationIds {
        conversation_id: Bytes::from_static(b"conv-1"),
        contribution_id: Bytes::from_static(b"contrib-1"),
        in_reply_to: None,
    };
    let s = MailboxSession::of_dialog(
        &leg,
        Side::Simple,
        "sip:iwf@127.0.0.1:5062",
        Some(&ids),
        &policy(),
    );
    assert_eq!(&s.recipient[..], b"sip:bob@simple.example.net");
    // The user, not the device whose connection dropped.
    assert_eq!(s.request_uri, "sip:bob@simple.example.net");
    assert!(s.from.contains("sip:alice@cpm.example.net") && !s.from.contains("tag="));
    assert_eq!(&s.sender.aor[..], b"sip:alice@cpm.example.net");
    assert_eq!(s.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(s.contribution_id.as_deref(), Some("contrib-1"));
    assert_eq!(s.max_age_ms, policy().max_age_s * 1000);
    // A chat message of the session becomes the pager MESSAGE that delivers it later, with
    // its own Message-ID; isComposing is not kept (RFC 3994 §4).
    let cpim = Bytes::from_static(
        b"From: <sip:alice@cpm.example.net>\r\nTo: <sip:bob@simple.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: Drop-1\r\nDateTime: 2026-11-25T10:00:00.000Z\r\n\r\n\
Content-Type: text/plain\r\n\r\nstill there?",
    );
    let m = session_message(&s, b"message/cpim", cpim, 1_000).expect("kept");
    assert_eq!(m.message_id.as_deref(), Some(&b"Drop-1"[..]));
    assert_eq!(m.to_side, Side::Simple);
    let sip = sip::parse_message(m.payload.clone(), &sip::Limits::default()).expect("SIP");
    assert_eq!(sip.request_uri(), Some(&b"sip:bob@simple.example.net"[..]));
    let typing = Bytes::from_static(b"<isComposing/>");
    assert!(session_message(&s, b"application/im-iscomposing+xml", typing, 1_000).is_none());
}
