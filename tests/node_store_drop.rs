//! A chat session whose callee's MSRP connection drops mid-session (issue 7: "... or an MSRP
//! leg that dropped mid-session"): the node ends the callee's dialog with BYE, the caller's
//! session goes on with the node as its peer, every message the caller sends afterwards is
//! answered 200 only once durably kept, the rest of a message half-sent when the leg dropped
//! is refused (413), isComposing is dropped; when the callee is back (a third-party REGISTER)
//! the kept messages reach them in order, exactly once, with their Message-IDs, and their
//! delivered notification reaches the caller.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_whose_msrp_drops_gets_the_rest_of_the_chat_later() {
    bounded(90, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig::default())
            .await
            .expect("S-CSCF");
        let chat = chat::set_up_with(
            Transport::Udp,
            |c| {
                c.availability.third_party_register = true;
                // No retry before the REGISTER: delivery is what the registration starts.
                c.availability.retry_initial_ms = 600_000;
                c.availability.retry_max_ms = 600_000;
            },
            None,
        )
        .await;
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
            aw.send(&m).await.expect("SEND");
            assert_eq!(response_to(&mut ar, &m.transaction_id).await, 200);
            let got = chat::next_request(&mut br).await;
            assert!(
                String::from_utf8_lossy(got.body.as_deref().unwrap_or_default())
                    .contains(&format!("Pre-{i}"))
            );
            let ok = bw.respond(&got, 200);
            bw.send(&ok).await.expect("200");
        }
        // The first half of a message reaches Bob too, then his connection drops.
        let half = aw.chunk("half-1", 1, 6, Bytes::from_static(b"abc"), false);
        aw.send(&half).await.expect("SEND");
        assert_eq!(response_to(&mut ar, &half.transaction_id).await, 200);
        let got = chat::next_request(&mut br).await;
        let ok = bw.respond(&got, 200);
        bw.send(&ok).await.expect("200");
        drop((br, bw));

        // The node ends Bob's dialog; Alice's stays.
        let bye = bed
            .simple
            .recv_method(Method::Bye, Some(Duration::from_secs(10)))
            .await
            .expect("BYE to Bob");
        let reason = bye.request.header("Reason").unwrap_or_default().to_string();
        assert!(reason.starts_with("SIP;cause=480"), "{reason}");
        bed.simple
            .respond(&bye, 200, "OK", &[], None)
            .await
            .expect("200");

        // The rest of the half-sent message cannot be kept whole: refused, not 200.
        let rest = aw.chunk("half-1", 4, 6, Bytes::from_static(b"def"), true);
        aw.send(&rest).await.expect("SEND");
        assert_eq!(response_to(&mut ar, &rest.transaction_id).await, 413);

        // Alice goes on: each message answered 200 once kept; isComposing answered, dropped.
        for i in 0..3 {
            let m = chat::send(
                &mut aw,
                &format!("post-{i}"),
                "message/cpim",
                chat::cpim_text(&format!("Post-{i}"), &format!("are you there {i}")),
            );
            aw.send(&m).await.expect("SEND");
            assert_eq!(response_to(&mut ar, &m.transaction_id).await, 200);
            if i == 1 {
                let t = chat::send(
                    &mut aw,
                    "typing-1",
                    "application/im-iscomposing+xml",
                    Bytes::from_static(chat::IS_COMPOSING.as_bytes()),
                );
                aw.send(&t).await.expect("SEND");
                assert_eq!(response_to(&mut ar, &t.transaction_id).await, 200);
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
        let status = registrar
            .third_party_register(bed.node_simple(), &bob, 3600)
            .await
            .expect("REGISTER");
        assert_eq!(status, 200);
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
