//! A chat session whose callee's MSRP connection drops mid-session (issue 7: "... or an MSRP
//! leg that dropped mid-session"): the node ends the callee's dialog with BYE, the caller's
//! session goes on with the node as its peer, every message the caller sends afterwards is
//! answered 200 only once durably kept, the rest of a message half-sent when the leg dropped
//! is refused (413), isComposing is dropped; when the callee is back (a third-party REGISTER)
//! the kept messages reach them in order, exactly once, with their Message-IDs, and their
//! delivered notification reaches the caller. The same when the callee stalls (stops
//! finishing a message for `msrp_stall_ms`) and when the caller drops; and a message the
//! dropped peer read but never answered 200 is kept, once.

#[path = "peers/chat.rs"]
mod chat;
#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;
#[path = "peers/registrar.rs"]
mod registrar;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::translate::state::Side;
use cpm_iwf::wire::msrp::Message;
use gateway::bounded;
use rsip::Method;
use sip_ua::Transport;

/// The node's response to Alice's request `tid` (REPORTs and other requests skipped, at most
/// a few).
async fn response_to(r: &mut msrp_endpoint::Reader, tid: &Bytes) -> u16 {
    for _ in 0..8 {
        let m = r.message().await;
        if m.method().is_none() && m.transaction_id == tid {
            return m.response_code().unwrap_or(0);
        }
    }
    panic!("no response to {tid:?}");
}

/// `m` sent on `w`: the node's answer read on `r`.
async fn sent(w: &mut msrp_endpoint::Writer, r: &mut msrp_endpoint::Reader, m: &Message) -> u16 {
    w.send(m).await.expect("SEND");
    response_to(r, &m.transaction_id).await
}

/// The next request relayed to `r`, checked to carry `text`.
async fn relayed(r: &mut msrp_endpoint::Reader, text: &str) -> Message {
    let got = chat::next_request(r).await;
    let body = String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains(text), "{text} not in {body}");
    got
}

/// `got` answered 200 on `w`.
async fn answer(w: &mut msrp_endpoint::Writer, got: &Message) {
    let ok = w.respond(got, 200);
    w.send(&ok).await.expect("200");
}

/// A third-party REGISTER of `aor` to the node at `node` (TS 24.229 §5.4.1.7), answered 200.
async fn registers(registrar: &registrar::Registrar, node: std::net::SocketAddr, aor: &str) {
    let status = registrar
        .third_party_register(node, aor, 3600)
        .await
        .expect("REGISTER");
    assert_eq!(status, 200);
}

/// A node with the store, delivery started only by a third-party REGISTER (no retry before
/// it), and `tweak`; the chat set up.
async fn chat_with_store(tweak: impl FnOnce(&mut cpm_iwf::config::Config)) -> chat::Chat {
    chat::set_up_with(
        Transport::Udp,
        |c| {
            c.availability.third_party_register = true;
            c.availability.retry_initial_ms = 600_000;
            c.availability.retry_max_ms = 600_000;
            tweak(c);
        },
        None,
    )
    .await
}

/// A chat message `id` from Alice.
fn from_alice(aw: &mut msrp_endpoint::Writer, id: &str) -> Message {
    chat::send(
        aw,
        &format!("msrp-{id}"),
        "message/cpim",
        chat::cpim_text(id, &format!("text of {id}")),
    )
}

/// A chat message `id` from Bob (CPIM From Bob, To Alice), with MSRP Message-ID `msrp_id`.
fn from_bob(bw: &mut msrp_endpoint::Writer, id: &str) -> Message {
    let cpim = format!(
        "From: <sip:bob@simple.example.net>\r\nTo: <sip:alice@cpm.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nDateTime: 2026-11-25T10:00:01.000Z\r\n\
imdn.Disposition-Notification: positive-delivery\r\n\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\r\ntext of {id}"
    );
    chat::send(bw, &format!("msrp-{id}"), "message/cpim", Bytes::from(cpim))
}

/// The node's BYE on `ua` (the dropped user's dialog), with `Reason: SIP;cause=480`, answered.
async fn bye_for_dropped(ua: &mut sip_ua::SipUa) {
    let bye = ua
        .recv_method(Method::Bye, Some(Duration::from_secs(10)))
        .await
        .expect("BYE to the dropped user");
    let reason = bye.request.header("Reason").unwrap_or_default().to_string();
    assert!(reason.starts_with("SIP;cause=480"), "{reason}");
    ua.respond(&bye, 200, "OK", &[], None).await.expect("200");
}

/// `n` kept messages delivered to Alice (CPM side) answered 200, then nothing else for
/// `quiet`: their imdn.Message-IDs in arrival order.
async fn alice_receives_kept(bed: &mut gateway::Bed, n: usize, quiet: Duration) -> Vec<String> {
    let alice = bed.cpm.aor();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let tx = bed
            .cpm
            .recv_method(Method::Message, Some(Duration::from_secs(10)))
            .await
            .expect("kept message delivered to Alice");
        ids.push(gateway::imdn_message_id(&tx.request));
        assert_eq!(tx.request.request_uri(), Some(alice.as_bytes()));
        bed.cpm
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
    }
    assert!(
        bed.cpm.recv_request(Some(quiet)).await.is_err(),
        "nothing else reaches Alice after {ids:?}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_whose_msrp_drops_gets_the_rest_of_the_chat_later() {
    bounded(90, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig::default())
            .await
            .expect("S-CSCF");
        let chat = chat_with_store(|_| {}).await;
        let mut bed = chat.bed;
        let mut cpm_dialog = chat.cpm_dialog;
        let (mut ar, mut aw) = chat.alice;
        let (mut br, mut bw) = chat.bob;

        // Two messages reach Bob as usual.
        for i in 0..2 {
            let m = chat::send(
                &mut aw,
                &format!("pre-{i}"),
                "message/cpim",
                chat::cpim_text(&format!("Pre-{i}"), &format!("hello {i}")),
            );
            assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
            let got = relayed(&mut br, &format!("Pre-{i}")).await;
            answer(&mut bw, &got).await;
        }
        // The first half of a message reaches Bob too, then his connection drops.
        let half = aw.chunk("half-1", 1, 6, Bytes::from_static(b"abc"), false);
        assert_eq!(sent(&mut aw, &mut ar, &half).await, 200);
        let got = chat::next_request(&mut br).await;
        answer(&mut bw, &got).await;
        drop((br, bw));

        // The node ends Bob's dialog; Alice's stays.
        bye_for_dropped(&mut bed.simple).await;

        // The rest of the half-sent message cannot be kept whole: refused, not 200.
        let rest = aw.chunk("half-1", 4, 6, Bytes::from_static(b"def"), true);
        assert_eq!(sent(&mut aw, &mut ar, &rest).await, 413);

        // Alice goes on: each message answered 200 once kept; isComposing answered, dropped.
        for i in 0..3 {
            let m = chat::send(
                &mut aw,
                &format!("post-{i}"),
                "message/cpim",
                chat::cpim_text(&format!("Post-{i}"), &format!("are you there {i}")),
            );
            assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
            if i == 1 {
                let t = chat::send(
                    &mut aw,
                    "typing-1",
                    "application/im-iscomposing+xml",
                    Bytes::from_static(chat::IS_COMPOSING.as_bytes()),
                );
                assert_eq!(sent(&mut aw, &mut ar, &t).await, 200);
            }
        }
        assert!(
            bed.cpm
                .recv_request(Some(Duration::from_millis(500)))
                .await
                .is_err(),
            "Alice's session is not ended"
        );

        // Alice hangs up: the node answers for Bob; nothing reaches Bob's network.
        let bye = bed.cpm.bye(&mut cpm_dialog).await.expect("BYE answered");
        assert_eq!(bye.status_code(), Some(200));
        assert!(
            ar.closed(4).await,
            "the node closes Alice's MSRP connection"
        );

        // Bob registers (TS 24.229 §5.4.1.7): the three messages, in order, exactly once.
        let bob = bed.simple.aor();
        registers(&registrar, bed.node_simple(), &bob).await;
        // Then nothing else reaches Bob (no copy, no isComposing, no half message).
        let ids = bed.receive_kept(3, Duration::from_millis(1_500)).await;
        assert_eq!(ids, ["Post-0", "Post-1", "Post-2"]);

        // Bob's delivered notification for Post-1 reaches Alice with her conversation.
        let imdn = chat::cpim_notification("Imdn-drop", "Post-1", "delivered");
        bed.delivered_reaches_alice(imdn, "Post-1", "conv-chat-1")
            .await;
        bed.stop().await;
    })
    .await;
}

/// With `on_msrp_drop = "end"` a dropped leg ends the session as before: BYE on both legs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_msrp_drop_end_the_session_ends() {
    bounded(60, async {
        let chat = chat::set_up_with(
            Transport::Udp,
            |c| c.store.on_msrp_drop = cpm_iwf::config::MsrpDropPolicy::End,
            None,
        )
        .await;
        let mut bed = chat.bed;
        let (mut ar, _aw) = chat.alice;
        drop(chat.bob);
        for ua in [Side::Cpm, Side::Simple] {
            let ua = match ua {
                Side::Cpm => &mut bed.cpm,
                Side::Simple => &mut bed.simple,
            };
            let tx = ua
                .recv_method(Method::Bye, Some(Duration::from_secs(10)))
                .await
                .expect("BYE");
            ua.respond(&tx, 200, "OK", &[], None).await.expect("200");
        }
        assert!(ar.closed(4).await, "Alice's MSRP connection closes");
        bed.stop().await;
    })
    .await;
}

/// The callee stops finishing a message (half a SEND, then silence) for `msrp_stall_ms`: a
/// stall is a drop (issue 7). Bob's dialog ends, the caller's messages from then on are kept
/// and reach Bob, in order, once, when he is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_stalls_is_taken_over() {
    bounded(90, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig::default())
            .await
            .expect("S-CSCF");
        let chat = chat_with_store(|c| c.timers.msrp_stall_ms = 300).await;
        let mut bed = chat.bed;
        let mut cpm_dialog = chat.cpm_dialog;
        let (mut ar, mut aw) = chat.alice;
        let (mut br, mut bw) = chat.bob;

        // One message reaches Bob as usual.
        let m = from_alice(&mut aw, "Stall-0");
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
        let got = chat::next_request(&mut br).await;
        answer(&mut bw, &got).await;

        // Bob begins a request and never finishes it; his connection stays open.
        let mut half = bw.request(cpm_iwf::wire::msrp::Method::Send);
        half.set_header("Message-ID", Bytes::from_static(b"bob-half"));
        let wire = half.to_bytes();
        bw.raw(&wire[..wire.len() / 2]).await.expect("half a SEND");
        bye_for_dropped(&mut bed.simple).await;
        assert!(
            br.closed(4).await,
            "the node closes Bob's stalled connection"
        );

        // Alice goes on: kept, each answered 200.
        for id in ["Stall-1", "Stall-2"] {
            let m = from_alice(&mut aw, id);
            assert_eq!(sent(&mut aw, &mut ar, &m).await, 200, "{id}");
        }
        let bye = bed.cpm.bye(&mut cpm_dialog).await.expect("BYE answered");
        assert_eq!(bye.status_code(), Some(200));

        let bob = bed.simple.aor();
        registers(&registrar, bed.node_simple(), &bob).await;
        let ids = bed.receive_kept(2, Duration::from_millis(1_500)).await;
        assert_eq!(ids, ["Stall-1", "Stall-2"]);
        bed.stop().await;
    })
    .await;
}

/// The caller's MSRP connection drops; the callee keeps writing: the node ends Alice's
/// dialog, answers Bob for her once each message is kept, and delivers them to Alice's
/// network, in order, once, when she is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_whose_msrp_drops_gets_the_rest_of_the_chat_later() {
    bounded(90, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig::default())
            .await
            .expect("S-CSCF");
        let chat = chat_with_store(|_| {}).await;
        let mut bed = chat.bed;
        let (mut ar, mut aw) = chat.alice;
        let (mut br, mut bw) = chat.bob;

        // Bob's first message reaches Alice as usual.
        let m = from_bob(&mut bw, "Back-0");
        assert_eq!(sent(&mut bw, &mut br, &m).await, 200);
        let got = relayed(&mut ar, "Back-0").await;
        answer(&mut aw, &got).await;
        drop((ar, aw));

        bye_for_dropped(&mut bed.cpm).await;

        // Bob goes on: each answered 200 once kept for Alice.
        for id in ["Back-1", "Back-2", "Back-3"] {
            let m = from_bob(&mut bw, id);
            assert_eq!(sent(&mut bw, &mut br, &m).await, 200, "{id}");
        }
        assert!(
            bed.simple
                .recv_request(Some(Duration::from_millis(300)))
                .await
                .is_err(),
            "Bob's session is not ended"
        );

        let alice = bed.cpm.aor();
        registers(&registrar, bed.node_cpm(), &alice).await;
        let ids = alice_receives_kept(&mut bed, 3, Duration::from_millis(1_500)).await;
        assert_eq!(ids, ["Back-1", "Back-2", "Back-3"]);
        bed.stop().await;
    })
    .await;
}

/// Bob reads a message and answers 200 (it is his), reads the next and drops without answering
/// it: that one may never have reached him (RFC 4975 §7.1.1), so it is kept, not failed. Alice
/// sending it again (same imdn.Message-ID), before or after its delivery, does not keep it
/// twice; when Bob is back he gets the unanswered one and what followed, in order, exactly
/// once, and not the answered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_but_never_answered_is_kept_once() {
    bounded(90, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig::default())
            .await
            .expect("S-CSCF");
        let chat = chat_with_store(|_| {}).await;
        let mut bed = chat.bed;
        let mut cpm_dialog = chat.cpm_dialog;
        let (mut ar, mut aw) = chat.alice;
        let (mut br, mut bw) = chat.bob;

        // Answered by Bob just before he drops: delivered, not kept.
        let m = from_alice(&mut aw, "Unans-0");
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
        let got = relayed(&mut br, "Unans-0").await;
        answer(&mut bw, &got).await;
        // Read by Bob, never answered.
        let m = from_alice(&mut aw, "Unans-1");
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
        relayed(&mut br, "Unans-1").await;
        drop((br, bw));
        bye_for_dropped(&mut bed.simple).await;

        // Alice goes on, then sends Unans-1 again (a new MSRP message, the same imdn one).
        let m = from_alice(&mut aw, "Unans-2");
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
        let again = |aw: &mut msrp_endpoint::Writer, n: u32| {
            chat::send(
                aw,
                &format!("msrp-Unans-1-again-{n}"),
                "message/cpim",
                chat::cpim_text("Unans-1", "text of Unans-1"),
            )
        };
        let m = again(&mut aw, 1);
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);

        let bob = bed.simple.aor();
        registers(&registrar, bed.node_simple(), &bob).await;
        let ids = bed.receive_kept(2, Duration::from_millis(1_500)).await;
        assert_eq!(ids, ["Unans-1", "Unans-2"]);

        // Still in the same takeover, after the delivery: Unans-1 once more, then a new one.
        // Only the new one is kept (the store forgot Unans-1 once delivered; the takeover
        // did not).
        let m = again(&mut aw, 2);
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
        let m = from_alice(&mut aw, "Unans-3");
        assert_eq!(sent(&mut aw, &mut ar, &m).await, 200);
        let bye = bed.cpm.bye(&mut cpm_dialog).await.expect("BYE answered");
        assert_eq!(bye.status_code(), Some(200));
        registers(&registrar, bed.node_simple(), &bob).await;
        let ids = bed.receive_kept(1, Duration::from_millis(1_500)).await;
        assert_eq!(ids, ["Unans-3"]);
        bed.stop().await;
    })
    .await;
}
