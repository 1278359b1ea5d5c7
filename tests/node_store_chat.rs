//! A chat session towards a user who is not available (issue 7): the node answers the INVITE
//! itself, keeps every chat message and disposition notification that follows (answering each
//! MSRP SEND 200 only once it is durable), drops isComposing, and when the user is back
//! delivers them in order as pager MESSAGEs; the callee's notification then reaches the
//! caller.

#[path = "peers/chat.rs"]
mod chat;
#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::time::Duration;

use bytes::Bytes;
use gateway::{Bed, bounded};
use rsip::Method;
use sip_ua::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_an_offline_callee_is_kept_and_delivered_later() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.availability.retry_initial_ms = 1_000;
            c.availability.retry_max_ms = 1_000;
        })
        .await;
        let bob = bed.simple.aor();
        let alice_uri = msrp_endpoint::uri(9, "alicesess5");
        let mut invite = bed
            .cpm
            .new_invite(&bob, chat::offer(&alice_uri, "active"))
            .expect("INVITE");
        invite
            .push_header("P-Preferred-Service", chat::SESSION_ICSI)
            .expect("header");
        invite
            .push_header("Conversation-ID", "conv-off-1")
            .expect("header");
        invite
            .push_header("Contribution-ID", "contrib-off-1")
            .expect("header");
        let node_cpm = bed.node_cpm();
        let mut tx = bed.cpm.send_request(node_cpm, invite).await.expect("sent");
        // Bob's network: not available.
        let inv = bed
            .simple
            .recv_method(Method::Invite, None)
            .await
            .expect("INVITE at SIMPLE");
        bed.simple
            .respond(&inv, 480, "Temporarily Unavailable", &[], None)
            .await
            .expect("480");
        // The node answers for Bob.
        let ok = chat::past_trying(&mut bed.cpm, &mut tx).await;
        assert_eq!(
            ok.status_code(),
            Some(200),
            "the node stands in for the callee"
        );
        let mut dialog = bed.cpm.dialog_from_response(&tx, &ok).expect("dialog");
        bed.cpm.ack(&mut dialog).await.expect("ACK");
        let node_cpm_uri = chat::sdp_path(&ok);
        let (mut ar, mut aw) =
            msrp_endpoint::connect(bed.node.listening.cpm_msrp, alice_uri, node_cpm_uri).await;
        let b = aw.bind();
        aw.send(&b).await.expect("bind");
        chat::ok(&mut ar).await;
        // Three messages and an isComposing; each SEND answered 200 once kept.
        for i in 0..3 {
            let m = chat::send(
                &mut aw,
                &format!("ch-{i}"),
                "message/cpim",
                chat::cpim_text(&format!("Off-{i}"), &format!("while you were away {i}")),
            );
            aw.send(&m).await.expect("SEND");
            chat::ok(&mut ar).await;
        }
        let m = chat::send(
            &mut aw,
            "typing",
            "application/im-iscomposing+xml",
            Bytes::from_static(chat::IS_COMPOSING.as_bytes()),
        );
        aw.send(&m).await.expect("SEND");
        chat::ok(&mut ar).await;
        // Alice hangs up: the node answers the BYE for Bob; nothing goes to Bob's network.
        let bye = bed.cpm.bye(&mut dialog).await.expect("BYE answered");
        assert_eq!(bye.status_code(), Some(200));

        // Bob is back: the three chat messages arrive as pager MESSAGEs, in order; nothing
        // else reaches Bob's network (no isComposing, no BYE).
        let ids = bed.receive_kept(3, Duration::from_millis(1_500)).await;
        assert_eq!(ids, ["Off-0", "Off-1", "Off-2"]);

        // Bob's delivered notification for Off-1 reaches Alice.
        let imdn = chat::cpim_notification("Imdn-off", "Off-1", "delivered");
        bed.delivered_reaches_alice(imdn, "Off-1", "conv-off-1")
            .await;
        bed.stop().await;
    })
    .await;
}
