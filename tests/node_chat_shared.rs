//! Several chat sessions through a real node on loopback sharing one MSRP connection each way
//! (RFC 4975 §5.4 connection reuse): Alice binds every session on her one connection to the
//! node; the node, with `[msrp] share_connections`, dials Bob's listener once for all of them.
//! Messages and notifications reach the session they name; one session's BYE leaves the others
//! working on the same connections. Every wait is bounded, every loop by a count.

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
use chat::*;
use cpm_iwf::wire::msrp::{Message, MsrpUri};
use gateway::{Bed, bounded};
use msrp_endpoint::{Reader, Writer};
use rsip::Method;
use sip_ua::Transport;

const SESSIONS: usize = 3;

/// One session's SIP side, set up through the node: Alice's dialog and the node's MSRP URIs.
struct Leg {
    dialog: sip_ua::Dialog,
    alice: MsrpUri,
    bob: MsrpUri,
    node_cpm: MsrpUri,
    node_simple: MsrpUri,
}

/// INVITE from Alice, Bob answers with his `a=path` on the shared listener (passive: the node
/// connects), Alice ACKs.
async fn invite(bed: &mut Bed, i: usize, bob_port: u16) -> Leg {
    let alice = msrp_endpoint::uri(9, &format!("alicesh{i}"));
    let bob = msrp_endpoint::uri(bob_port, &format!("bobsh{i}"));
    let bob_aor = bed.simple.aor();
    let mut inv = bed
        .cpm
        .new_invite(&bob_aor, offer(&alice, "active"))
        .expect("INVITE");
    inv.push_header("P-Preferred-Service", SESSION_ICSI)
        .expect("header");
    inv.push_header("Conversation-ID", &format!("conv-shared-{i}"))
        .expect("header");
    inv.push_header("Contribution-ID", &format!("contrib-shared-{i}"))
        .expect("header");
    let node_cpm = bed.node_cpm();
    let mut tx = bed.cpm.send_request(node_cpm, inv).await.expect("sent");
    let at_simple = bed
        .simple
        .recv_method(Method::Invite, None)
        .await
        .expect("INVITE at SIMPLE");
    let node_simple = sdp_path(&at_simple.request);
    let callee_ok = bed
        .simple
        .response(
            &at_simple,
            200,
            "OK",
            &[],
            Some(("application/sdp", offer(&bob, "passive"))),
        )
        .expect("200");
    let (simple_side, cpm_side) = tokio::join!(
        bed.simple.send_response_until_ack(&at_simple, &callee_ok),
        async {
            for _ in 0..8 {
                let resp = bed.cpm.next_response(&mut tx, None).await.expect("answer");
                if resp.status_code() == Some(200) {
                    let mut dialog = bed.cpm.dialog_from_response(&tx, &resp).expect("dialog");
                    bed.cpm.ack(&mut dialog).await.expect("ACK");
                    return (resp, dialog);
                }
            }
            panic!("no 200 for session {i}");
        }
    );
    simple_side.expect("the node ACKs the callee's 200");
    let (ok200, dialog) = cpm_side;
    Leg {
        dialog,
        alice,
        bob,
        node_cpm: sdp_path(&ok200),
        node_simple,
    }
}

/// Point a shared connection's writer at one session's URIs.
fn on(w: &mut Writer, me: &MsrpUri, node: &MsrpUri) {
    w.uri = me.clone();
    w.node = node.clone();
}

fn sid(m: &Message) -> Option<Bytes> {
    m.to_path_uris().filter_map(Result::ok).last()?.session_id
}

/// Alice's message on session `i` reaches Bob on session `i`, his delivered notification
/// reaches Alice on session `i`.
async fn round_trip(
    legs: &[Leg],
    i: usize,
    round: usize,
    alice: &mut (Reader, Writer),
    bob: &mut (Reader, Writer),
) {
    let leg = &legs[i];
    let (ar, aw) = (&mut alice.0, &mut alice.1);
    let (br, bw) = (&mut bob.0, &mut bob.1);
    let imdn = format!("Imdn-sh-{round}-{i}");
    on(aw, &leg.alice, &leg.node_cpm);
    let m = send(
        aw,
        &format!("msg-{round}-{i}"),
        "message/cpim",
        cpim_text(&imdn, &format!("for session {i} round {round}")),
    );
    aw.send(&m).await.expect("send");
    ok(ar).await;
    let got = next_request(br).await;
    assert_eq!(sid(&got), leg.bob.session_id, "to Bob's session {i}");
    let body = String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains(&format!("for session {i} round {round}")),
        "{body}"
    );
    bw.send(&bw.respond(&got, 200)).await.expect("200");

    on(bw, &leg.bob, &leg.node_simple);
    let n = send(
        bw,
        &format!("bob-{round}-{i}"),
        "message/cpim",
        cpim_notification(&format!("Bob-{round}-{i}"), &imdn, "delivered"),
    );
    bw.send(&n).await.expect("send");
    ok(br).await;
    let got = next_request(ar).await;
    assert_eq!(sid(&got), leg.alice.session_id, "to Alice's session {i}");
    let body = String::from_utf8_lossy(got.body.as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains(&format!("<message-id>{imdn}</message-id>")),
        "{body}"
    );
    aw.send(&aw.respond(&got, 200)).await.expect("200");
}

async fn shared_sessions() {
    let mut bed = Bed::start_with(Transport::Udp, |c| {
        c.msrp.share_connections = true;
    })
    .await;
    let bob_listener = msrp_endpoint::listen(None);
    let bob_port = bob_listener.local_addr().expect("addr").port();
    let mut legs = Vec::new();
    let mut bob: Option<(Reader, Writer)> = None;
    for i in 0..SESSIONS {
        let leg = invite(&mut bed, i, bob_port).await;
        // The node dials Bob once; later sessions bind on that connection.
        if bob.is_none() {
            bob = Some(
                msrp_endpoint::accept(&bob_listener, leg.bob.clone(), leg.node_simple.clone())
                    .await,
            );
        }
        let b = bob.as_mut().expect("Bob's connection");
        let bind = next_request(&mut b.0).await;
        assert_eq!(sid(&bind), leg.bob.session_id, "session {i} binds on it");
        let reply = b.1.respond(&bind, 200);
        b.1.send(&reply).await.expect("200");
        legs.push(leg);
    }
    let mut bob = bob.expect("Bob's connection");
    // No second connection from the node.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob_listener.accept())
            .await
            .is_err(),
        "one node->Bob connection for {SESSIONS} sessions"
    );
    // Alice binds every session on her one connection.
    let first = &legs[0];
    let mut alice = msrp_endpoint::connect(
        bed.node.listening.cpm_msrp,
        first.alice.clone(),
        first.node_cpm.clone(),
    )
    .await;
    for leg in &legs {
        on(&mut alice.1, &leg.alice, &leg.node_cpm);
        let b = alice.1.bind();
        alice.1.send(&b).await.expect("bind");
        ok(&mut alice.0).await;
    }
    // Last session first, so that nothing depends on the order of setup.
    for i in (0..SESSIONS).rev() {
        round_trip(&legs, i, 0, &mut alice, &mut bob).await;
    }

    // Alice hangs up session 0: its BYE reaches Bob; the connections stay up for the others.
    let mut dialog = legs[0].dialog.clone();
    let (bye_ok, _) = tokio::join!(bed.cpm.bye(&mut dialog), async {
        let tx = bed
            .simple
            .recv_method(Method::Bye, None)
            .await
            .expect("BYE at SIMPLE");
        bed.simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
    });
    assert_eq!(bye_ok.expect("BYE answered").status_code(), Some(200));
    for i in 1..SESSIONS {
        round_trip(&legs, i, 1, &mut alice, &mut bob).await;
    }
    // Session 0 is gone from the shared connection: a SEND for it gets 481 (RFC 4975 §7.3).
    let leg = &legs[0];
    on(&mut alice.1, &leg.alice, &leg.node_cpm);
    let m = send(
        &mut alice.1,
        "late-0",
        "message/cpim",
        cpim_text("Imdn-late", "too late"),
    );
    alice.1.send(&m).await.expect("send");
    let r = alice.0.message().await;
    assert_eq!(r.response_code(), Some(481), "{r:?}");
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_one_msrp_connection_each_way() {
    bounded(60, shared_sessions()).await;
}
