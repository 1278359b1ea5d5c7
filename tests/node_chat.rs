//! Chat sessions through a real node on loopback: INVITE with an MSRP offer from the CPM side,
//! the SIMPLE callee's answer, the node as MSRP endpoint of both legs; 100 messages with IMDN
//! requests, isComposing, delivered and displayed notifications back to the sender, BYE;
//! CANCEL before the answer; a second 2xx from another fork hung up.

#[path = "peers/chat.rs"]
mod chat;
#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use bytes::Bytes;
use chat::*;
use gateway::{Bed, bounded};
use rsip::Method;
use sip_ua::Transport;

async fn chat_session(transport: Transport) {
    let mut chat = set_up(transport).await;
    let (ar, aw) = (&mut chat.alice.0, &mut chat.alice.1);
    let (br, bw) = (&mut chat.bob.0, &mut chat.bob.1);

    // isComposing: wrapped in CPIM by Alice, bare for SIMPLE (mappings/content.toml).
    let cpim_iscomposing = format!(
        "From: <sip:alice@cpm.example.net>\r\nTo: <sip:bob@simple.example.net>\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\n\r\nContent-Type: application/im-iscomposing+xml\r\n\r\n{IS_COMPOSING}"
    );
    let m = send(
        aw,
        "typing-1",
        "message/cpim",
        Bytes::from(cpim_iscomposing),
    );
    aw.send(&m).await.expect("send");
    ok(ar).await;
    let got = next_request(br).await;
    assert_eq!(
        got.content_type().map(|c| c.as_ref()),
        Some(&b"application/im-iscomposing+xml"[..])
    );
    bw.send(&bw.respond(&got, 200)).await.expect("200");

    // 100 messages, in order, bodies intact, Message-IDs kept end to end.
    for i in 0..100 {
        let id = format!("chat-msg-{i:03}");
        let m = send(
            aw,
            &id,
            "message/cpim",
            cpim_text(&format!("Imdn-{i:03}"), &format!("message number {i}")),
        );
        aw.send(&m).await.expect("send");
        ok(ar).await;
        let got = next_request(br).await;
        assert_eq!(
            got.header("Message-ID").map(|v| v.as_ref()),
            Some(id.as_bytes())
        );
        let body = String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
        assert!(body.contains(&format!("message number {i}")), "{body}");
        assert!(
            body.contains(&format!("imdn.Message-ID: Imdn-{i:03}")),
            "{body}"
        );
        bw.send(&bw.respond(&got, 200)).await.expect("200");
    }

    // Bob's delivered and displayed notifications for a message reach Alice in the session.
    for (n, status) in ["delivered", "displayed"].iter().enumerate() {
        let m = send(
            bw,
            &format!("bob-imdn-{n}"),
            "message/cpim",
            cpim_notification(&format!("Bob-Imdn-{n}"), "Imdn-042", status),
        );
        bw.send(&m).await.expect("send");
        ok(br).await;
        let got = next_request(ar).await;
        let body = String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
        assert!(
            body.contains("<message-id>Imdn-042</message-id>")
                && body.contains(&format!("<{status}/>")),
            "{body}"
        );
        aw.send(&aw.respond(&got, 200)).await.expect("200");
    }

    // Alice hangs up: BYE through the node, the MSRP connections close.
    let mut dialog = chat.cpm_dialog.clone();
    let (bye_ok, bob_bye) = tokio::join!(chat.bed.cpm.bye(&mut dialog), async {
        let tx = chat
            .bed
            .simple
            .recv_method(Method::Bye, None)
            .await
            .expect("BYE at SIMPLE");
        chat.bed
            .simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
        tx.request
    });
    assert_eq!(bye_ok.expect("BYE answered").status_code(), Some(200));
    assert_eq!(bob_bye.header("CSeq"), Some("2 BYE"));
    assert!(br.closed(4).await, "the node closes Bob's MSRP connection");
    assert!(
        ar.closed(4).await,
        "the node closes Alice's MSRP connection"
    );
    assert_eq!(chat.bed.node.table().stats().dialogs.len, 0);
    chat.bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_session_with_100_messages_over_udp() {
    bounded(60, chat_session(Transport::Udp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_session_with_100_messages_over_tcp() {
    bounded(60, chat_session(Transport::Tcp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_the_answer() {
    bounded(30, async {
        let mut bed = Bed::start(Transport::Udp).await;
        let bob_aor = bed.simple.aor();
        let invite = bed
            .cpm
            .new_invite(&bob_aor, offer(&msrp_endpoint::uri(9, "a1"), "active"))
            .expect("INVITE");
        let node_cpm = bed.node_cpm();
        let mut tx = bed.cpm.send_request(node_cpm, invite).await.expect("sent");
        let inv = bed
            .simple
            .recv_method(Method::Invite, None)
            .await
            .expect("INVITE at SIMPLE");
        bed.simple
            .respond(&inv, 180, "Ringing", &[], None)
            .await
            .expect("180");
        let ringing = past_trying(&mut bed.cpm, &mut tx).await;
        assert_eq!(ringing.status_code(), Some(180));
        let mut cancel_tx = bed.cpm.cancel(&tx).await.expect("CANCEL");
        let cancelled = bed
            .cpm
            .final_response(&mut cancel_tx, None)
            .await
            .expect("200");
        assert_eq!(cancelled.status_code(), Some(200));
        let c = bed
            .simple
            .recv_method(Method::Cancel, None)
            .await
            .expect("CANCEL at SIMPLE");
        assert_eq!(c.request.call_id(), inv.request.call_id());
        assert_eq!(c.request.top_via_branch(), inv.request.top_via_branch());
        bed.simple
            .respond(&c, 200, "OK", &[], None)
            .await
            .expect("200");
        bed.simple
            .respond(&inv, 487, "Request Terminated", &[], None)
            .await
            .expect("487");
        let last = bed.cpm.final_response(&mut tx, None).await.expect("487");
        assert_eq!(last.status_code(), Some(487));
        // The node ACKs the 487 itself (§17.1.1.3); the test UA absorbs that ACK in its
        // transaction, as a UAS does.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(bed.node.table().stats().dialogs.len, 0);
        bed.stop().await;
    })
    .await;
}

/// Two devices of the callee answer (auto-answer, CPM 2.0 §4.2 "forking in case of
/// auto-answer"): the first 2xx wins, the second gets ACK and BYE from the node.
async fn second_fork_hung_up(callee_on_cpm: bool) {
    let mut bed = Bed::start(Transport::Udp).await;
    let (node_caller, caller_ua, callee_ua) = if callee_on_cpm {
        (bed.node_simple(), &mut bed.simple, &mut bed.cpm)
    } else {
        (bed.node_cpm(), &mut bed.cpm, &mut bed.simple)
    };
    let callee_listener = msrp_endpoint::listen(None);
    let callee_uri = msrp_endpoint::uri(callee_listener.local_addr().expect("addr").port(), "b1");
    let callee_aor = callee_ua.aor();
    let invite = caller_ua
        .new_invite(&callee_aor, offer(&msrp_endpoint::uri(9, "a1"), "active"))
        .expect("INVITE");
    let mut tx = caller_ua
        .send_request(node_caller, invite)
        .await
        .expect("sent");
    let inv = callee_ua
        .recv_method(Method::Invite, None)
        .await
        .expect("INVITE at the callee");
    let body = Some(("application/sdp", offer(&callee_uri, "passive")));
    let first = callee_ua
        .response(&inv, 200, "OK", &[], body.clone())
        .expect("200");
    let mut second = callee_ua.response(&inv, 200, "OK", &[], body).expect("200");
    let to = first
        .header("To")
        .unwrap_or_default()
        .replace(&inv.to_tag, "fork2");
    second.set_header("To", &to).expect("To");
    callee_ua
        .send_response(&inv, &first)
        .await
        .expect("first 200");
    let resp = past_trying(caller_ua, &mut tx).await;
    assert_eq!(resp.status_code(), Some(200));
    callee_ua
        .send_response(&inv, &second)
        .await
        .expect("second 200");
    // The node ACKs the second fork and hangs it up.
    let ack = callee_ua
        .recv_request_matching(None, "the ACK of fork2", |m| {
            m.method() == Some(&Method::Ack) && m.to_tag() == Some("fork2")
        })
        .await
        .expect("ACK for fork2");
    assert_eq!(ack.request.header("CSeq"), Some("1 ACK"));
    let bye = callee_ua
        .recv_request_matching(None, "the BYE of fork2", |m| {
            m.method() == Some(&Method::Bye) && m.to_tag() == Some("fork2")
        })
        .await
        .expect("BYE for fork2");
    callee_ua
        .respond(&bye, 200, "OK", &[], None)
        .await
        .expect("200");
    // The first fork's session stands: the caller's ACK reaches it.
    let mut dialog = caller_ua.dialog_from_response(&tx, &resp).expect("dialog");
    caller_ua.ack(&mut dialog).await.expect("ACK");
    let ack = callee_ua
        .recv_request_matching(None, "the ACK of the first fork", |m| {
            m.method() == Some(&Method::Ack) && m.to_tag() == Some(inv.to_tag.as_str())
        })
        .await
        .expect("ACK for the first fork");
    assert_eq!(ack.request.call_id(), inv.request.call_id());
    assert_eq!(bed.node.table().stats().dialogs.len, 2);
    drop(callee_listener);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_2xx_from_another_simple_fork_is_acked_and_hung_up() {
    bounded(30, second_fork_hung_up(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_2xx_from_another_cpm_device_is_acked_and_hung_up() {
    bounded(30, second_fork_hung_up(true)).await;
}

/// A chat session set up from the SIMPLE side: a legacy offer without `a=setup` (RFC 4975 §5.4:
/// the offerer connects), the node active towards the CPM callee, who listens.
async fn set_up_from_simple(transport: Transport) -> Chat {
    let mut bed = Bed::start(transport).await;
    let alice_listener = msrp_endpoint::listen(None);
    let alice_uri = msrp_endpoint::uri(alice_listener.local_addr().expect("addr").port(), "alice5");
    let bob_uri = msrp_endpoint::uri(9, "bob5");
    let alice_aor = bed.cpm.aor();
    let sdp = String::from_utf8_lossy(&offer(&bob_uri, "active")).replace("a=setup:active\r\n", "");
    let mut invite = bed
        .simple
        .new_invite(&alice_aor, Bytes::from(sdp))
        .expect("INVITE");
    let contact = format!("<{}>;+g.oma.sip-im", bed.simple.contact_uri());
    invite.set_header("Contact", &contact).expect("Contact");
    let node_simple = bed.node_simple();
    let mut tx = bed
        .simple
        .send_request(node_simple, invite)
        .await
        .expect("sent");
    let inv = bed
        .cpm
        .recv_method(Method::Invite, None)
        .await
        .expect("INVITE at CPM");
    assert_eq!(inv.request.header("P-Asserted-Service"), Some(SESSION_ICSI));
    assert!(
        inv.request.header("Conversation-ID").is_some(),
        "CPM identities generated"
    );
    assert!(inv.request.header("Contribution-ID").is_some());
    let node_cpm_uri = sdp_path(&inv.request);
    let answer = offer(&alice_uri, "passive");
    let (cpm_side, simple_side) = tokio::join!(
        bed.cpm
            .respond_until_ack(&inv, 200, &[], Some(("application/sdp", answer))),
        async {
            let resp = past_trying(&mut bed.simple, &mut tx).await;
            assert_eq!(resp.status_code(), Some(200));
            let mut dialog = bed.simple.dialog_from_response(&tx, &resp).expect("dialog");
            bed.simple.ack(&mut dialog).await.expect("ACK");
            (resp, dialog)
        }
    );
    let (cpm_dialog, _) = cpm_side.expect("the node ACKs the callee's 200");
    let (simple_side, simple_dialog) = simple_side;
    let node_simple_uri = sdp_path(&simple_side);
    let sdp_text = String::from_utf8_lossy(simple_side.body()).into_owned();
    assert!(sdp_text.contains("a=setup:passive"), "{sdp_text}");
    // The node connects to Alice; Bob connects to the node.
    let mut alice = msrp_endpoint::accept(&alice_listener, alice_uri, node_cpm_uri).await;
    let bind = next_request(&mut alice.0).await;
    let reply = alice.1.respond(&bind, 200);
    alice.1.send(&reply).await.expect("200");
    let mut bob =
        msrp_endpoint::connect(bed.node.listening.simple_msrp, bob_uri, node_simple_uri).await;
    let b = bob.1.bind();
    bob.1.send(&b).await.expect("bind");
    ok(&mut bob.0).await;
    Chat {
        bed,
        cpm_dialog,
        simple_dialog: Some(simple_dialog),
        alice,
        bob,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_session_from_simple_with_100_messages() {
    bounded(60, async {
        let mut chat = set_up_from_simple(Transport::Udp).await;
        let (ar, aw) = (&mut chat.alice.0, &mut chat.alice.1);
        let (br, bw) = (&mut chat.bob.0, &mut chat.bob.1);
        // Bob types (bare isComposing): Alice's side gets it as SIMPLE sent it or wrapped, as
        // the CPM mapping says; either way the state is there.
        let m = send(
            bw,
            "typing-b",
            "application/im-iscomposing+xml",
            Bytes::from_static(IS_COMPOSING.as_bytes()),
        );
        bw.send(&m).await.expect("send");
        ok(br).await;
        let got = next_request(ar).await;
        let body = String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
        assert!(body.contains("<state>active</state>"), "{body}");
        aw.send(&aw.respond(&got, 200)).await.expect("200");
        for i in 0..100 {
            let m = send(
                bw,
                &format!("smsg-{i:03}"),
                "text/plain",
                Bytes::from(format!("from SIMPLE {i}")),
            );
            bw.send(&m).await.expect("send");
            ok(br).await;
            let got = next_request(ar).await;
            let body =
                String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains(&format!("from SIMPLE {i}")), "{body}");
            aw.send(&aw.respond(&got, 200)).await.expect("200");
        }
        // Alice reads message 7: her displayed notification reaches Bob.
        let m = send(
            aw,
            "a-imdn",
            "message/cpim",
            cpim_notification("Alice-Imdn", "smsg-007", "displayed"),
        );
        aw.send(&m).await.expect("send");
        ok(ar).await;
        let got = next_request(br).await;
        assert!(
            String::from_utf8_lossy(got.body.as_deref().unwrap_or_default())
                .contains("<displayed/>")
        );
        bw.send(&bw.respond(&got, 200)).await.expect("200");
        // Bob hangs up: the BYE reaches Alice in her dialog with the node.
        let mut dialog = chat.simple_dialog.clone().expect("Bob's dialog");
        let (bye_ok, cpm_bye) = tokio::join!(chat.bed.simple.bye(&mut dialog), async {
            let tx = chat
                .bed
                .cpm
                .recv_method(Method::Bye, None)
                .await
                .expect("BYE at CPM");
            chat.bed
                .cpm
                .respond(&tx, 200, "OK", &[], None)
                .await
                .expect("200");
            tx.request
        });
        assert_eq!(bye_ok.expect("BYE answered").status_code(), Some(200));
        assert_eq!(cpm_bye.call_id(), Some(chat.cpm_dialog.call_id.as_str()));
        assert!(
            ar.closed(4).await && br.closed(4).await,
            "both MSRP connections closed"
        );
        assert_eq!(chat.bed.node.table().stats().dialogs.len, 0);
        chat.bed.stop().await;
    })
    .await;
}

/// Bob stops reading: Alice's chunks back up to the node's bounded queue, the relay cuts the
/// stalled leg off after `msrp_stall_ms`, and (with `on_msrp_drop = "end"`; the default keeps
/// the messages instead, tests/node_store_drop.rs) the node hangs up both dialogs (BYE to each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_msrp_peer_ends_the_session_with_bye_on_both_legs() {
    bounded(60, async {
        let mut chat = set_up_with(
            Transport::Udp,
            |c| {
                c.timers.msrp_stall_ms = 1_000;
                c.store.on_msrp_drop = cpm_iwf::config::MsrpDropPolicy::End;
            },
            Some(4096),
        )
        .await;
        let (mut ar, mut aw) = (chat.alice.0, chat.alice.1);
        // Alice writes 64 KiB chunks (25 MiB at most, more than every buffer on the way); her
        // writes block when the node stops reading her (flow control), and end when the node
        // closes her connection.
        let writer = tokio::spawn(async move {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let mut sent = 0u32;
            for i in 0..400u32 {
                let m = send(&mut aw, &format!("big-{i:04}"), "text/plain", chunk.clone());
                if aw.send(&m).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        let drain = tokio::spawn(async move { while ar.recv_any().await.is_some() {} });
        let (cpm_bye, simple_bye) = tokio::join!(
            async {
                let tx = chat
                    .bed
                    .cpm
                    .recv_method(Method::Bye, Some(std::time::Duration::from_secs(20)))
                    .await
                    .expect("BYE at CPM");
                chat.bed
                    .cpm
                    .respond(&tx, 200, "OK", &[], None)
                    .await
                    .expect("200");
                tx.request
            },
            async {
                let tx = chat
                    .bed
                    .simple
                    .recv_method(Method::Bye, Some(std::time::Duration::from_secs(20)))
                    .await
                    .expect("BYE at SIMPLE");
                chat.bed
                    .simple
                    .respond(&tx, 200, "OK", &[], None)
                    .await
                    .expect("200");
                tx.request
            }
        );
        let reason = cpm_bye.header("Reason").unwrap_or_default().to_string();
        assert!(reason.starts_with("SIP;cause="), "{reason}");
        assert_eq!(cpm_bye.call_id(), Some(chat.cpm_dialog.call_id.as_str()));
        assert!(simple_bye.header("Reason").is_some());
        let sent = tokio::time::timeout(std::time::Duration::from_secs(20), writer)
            .await
            .expect("the writer stops")
            .expect("writer task");
        assert!(
            sent < 400,
            "the node stopped taking chunks from Alice ({sent} written)"
        );
        drain.abort();
        assert_eq!(chat.bed.node.table().stats().dialogs.len, 0);
        chat.bed.stop().await;
    })
    .await;
}

/// An INVITE whose SDP has no MSRP stream is refused with 488 (RFC 3261 §21.4.26), and one
/// that finds the table full with 503 and Retry-After (§21.5.4): the node refuses rather than
/// grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_msrp_is_488_and_a_full_table_is_503_with_retry_after() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, |c| c.limits.table_cap = 16).await;
        let bob_aor = bed.simple.aor();
        let node_cpm = bed.node_cpm();
        let audio = Bytes::from_static(
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n",
        );
        let invite = bed.cpm.new_invite(&bob_aor, audio).expect("INVITE");
        let mut tx = bed.cpm.send_request(node_cpm, invite).await.expect("sent");
        let r = past_trying(&mut bed.cpm, &mut tx).await;
        assert_eq!(r.status_code(), Some(488));

        // Sessions the callee never answers hold their table entries: 16 dialog entries are 8
        // sessions; the next INVITE finds the table full.
        let mut refused = None;
        for i in 0..12 {
            let invite = bed
                .cpm
                .new_invite(&bob_aor, offer(&msrp_endpoint::uri(9, &format!("full{i}")), "active"))
                .expect("INVITE");
            let mut tx = bed.cpm.send_request(node_cpm, invite).await.expect("sent");
            let first = bed.cpm.next_response(&mut tx, None).await.expect("a response");
            assert_eq!(first.status_code(), Some(100), "100 Trying at once");
            // Accepted: nothing more until the callee answers (it never does here).
            let wait = Some(std::time::Duration::from_millis(500));
            if let Ok(next) = bed.cpm.next_response(&mut tx, wait).await {
                refused = Some((i, next));
                break;
            }
            let _ = bed.simple.recv_method(Method::Invite, None).await.expect("INVITE at SIMPLE");
        }
        let (i, resp) = refused.expect("a 503 once the table is full");
        assert_eq!(resp.status_code(), Some(503));
        assert_eq!(i, 8, "eight sessions fit in 16 dialog entries");
        assert_eq!(resp.header("Retry-After"), Some("5"));
        // The refused session left nothing behind: the eight sessions' legs only.
        assert_eq!(bed.node.table().stats().dialogs.len, 16);
        assert_eq!(bed.node.table().stats().msrp.len, 16);
        bed.stop().await;
    })
    .await;
}

/// Alice's chunk `id` through the node: its 200 to Alice, and the To-Path it reaches Bob with.
async fn relay_to_bob(chat: &mut Chat, id: &str) -> Bytes {
    let m = send(
        &mut chat.alice.1,
        id,
        "message/cpim",
        cpim_text(&format!("Imdn-{id}"), id),
    );
    chat.alice.1.send(&m).await.expect("send");
    ok(&mut chat.alice.0).await;
    let got = next_request(&mut chat.bob.0).await;
    assert_eq!(
        got.header("Message-ID").map(|v| v.as_ref()),
        Some(id.as_bytes())
    );
    let reply = chat.bob.1.respond(&got, 200);
    chat.bob.1.send(&reply).await.expect("200");
    got.header("To-Path").cloned().unwrap_or_default()
}

/// A re-INVITE whose answer gives Bob a new `a=path` (RFC 4975 §8.2, RFC 3261 §14): the chunks
/// after it go to the new path, though the session's route was derived (and kept) for the
/// chunks before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinvite_changing_the_path_routes_the_next_chunks_along_it() {
    bounded(60, async {
        let mut chat = set_up(Transport::Udp).await;
        let first = chat.bob.1.uri.to_string();
        for i in 0..3 {
            let to = relay_to_bob(&mut chat, &format!("before-{i}")).await;
            assert_eq!(&to[..], first.as_bytes());
        }
        // Bob answers Alice's re-INVITE from a new URI, on the same connection.
        let port = chat.bob.1.uri.port.unwrap_or(9);
        let moved = msrp_endpoint::uri(port, "bobsess8");
        let mut dialog = chat.cpm_dialog.clone();
        let mut reinvite = chat
            .bed
            .cpm
            .dialog_request(&mut dialog, Method::Invite)
            .expect("re-INVITE");
        let contact = format!("<{}>", chat.bed.cpm.contact_uri());
        reinvite.push_header("Contact", &contact).expect("Contact");
        reinvite
            .set_body_with_type(Some("application/sdp"), offer(&chat.alice.1.uri, "active"))
            .expect("SDP");
        dialog.invite_cseq = reinvite.cseq().map_or(1, |c| c.seq);
        let node_cpm = chat.bed.node_cpm();
        let mut tx = chat
            .bed
            .cpm
            .send_request(node_cpm, reinvite)
            .await
            .expect("sent");
        let (cpm, simple) = (&mut chat.bed.cpm, &mut chat.bed.simple);
        let (simple_side, answer) = tokio::join!(
            async {
                let inv = simple
                    .recv_method(Method::Invite, None)
                    .await
                    .expect("re-INVITE at SIMPLE");
                simple
                    .respond_until_ack(
                        &inv,
                        200,
                        &[],
                        Some(("application/sdp", offer(&moved, "passive"))),
                    )
                    .await
            },
            async {
                let resp = past_trying(cpm, &mut tx).await;
                assert_eq!(resp.status_code(), Some(200));
                cpm.ack(&mut dialog).await.expect("ACK");
                resp
            }
        );
        simple_side.expect("the node ACKs Bob's 200");
        assert_eq!(answer.status_code(), Some(200));
        let to = relay_to_bob(&mut chat, "after-0").await;
        assert_eq!(&to[..], moved.to_string().as_bytes(), "the new path");
        // And again once the route is kept.
        let to = relay_to_bob(&mut chat, "after-1").await;
        assert_eq!(&to[..], moved.to_string().as_bytes());
        chat.bed.stop().await;
    })
    .await;
}

/// RFC 3261 §13.2.2.4 and §13.3.1.4: a 2xx the callee sends again gets the node's ACK again
/// while the callee may still be retransmitting it (64*T1 from the answer); past that window
/// the node keeps no copy of the ACK (issue 9: a held session's memory), and the session goes
/// on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_of_a_session_2xx_is_kept_for_the_retransmission_window_only() {
    use std::time::Duration;
    bounded(30, async {
        // T1 = 20 ms: the window is 64*T1 = 1.28 s.
        let (mut chat, callee, ok200) =
            set_up_keeping_answer(Transport::Udp, |c| c.timers.t1_ms = 20, None).await;
        let call_id = String::from_utf8_lossy(&ok200)
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: ").map(str::to_owned))
            .expect("the 2xx has a Call-ID");
        let simple = &mut chat.bed.simple;
        // Within the window the node's INVITE transaction passes the 2xx up (RFC 6026 §8.4):
        // the node, the UAC of that leg, ACKs it again itself (RFC 3261 §13.2.2.4).
        simple
            .send_raw(callee, ok200.clone())
            .await
            .expect("2xx again");
        let ack = simple
            .recv_method(Method::Ack, Some(Duration::from_secs(2)))
            .await
            .expect("the retransmitted 2xx is ACKed again");
        assert_eq!(ack.request.call_id(), Some(call_id.as_str()));
        let relayed = chat
            .bed
            .cpm
            .recv_response(Some(Duration::from_millis(300)))
            .await;
        assert!(
            relayed.is_err(),
            "the caller, who has its 2xx, got the callee's again: {relayed:?}"
        );
        let simple = &mut chat.bed.simple;
        // Past the window (and past Timer M of the node's INVITE transaction, RFC 6026).
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        while simple
            .recv_method(Method::Ack, Some(Duration::from_millis(50)))
            .await
            .is_ok()
        {}
        simple.send_raw(callee, ok200).await.expect("2xx once more");
        let late = simple
            .recv_method(Method::Ack, Some(Duration::from_millis(800)))
            .await;
        assert!(
            late.is_err(),
            "the node still ACKed a 2xx 2 s (> 64*T1) after the answer: {late:?}"
        );
        relay_to_bob(&mut chat, "after-the-window").await;
        chat.bed.stop().await;
    })
    .await;
}
