//! A real node on loopback between a CPM-side and a SIMPLE-side user agent: pager MESSAGEs
//! with CPIM and an IMDN request one way, the delivery notification back to the device that
//! sent the message with its CPM conversation identities, over UDP and over TCP; garbage and
//! half messages between valid ones.

#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use bytes::Bytes;
use cpm_iwf::translate::state::Side;
use gateway::{Bed, bounded};
use rsip::Method;
use sip_ua::Transport;

const MSG_ICSI: &str = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg";

fn cpim_message(from: &str, to: &str, id: &str, text: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\nimdn.Disposition-Notification: positive-delivery, display\r\n\
\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n{text}"
    ))
}

fn cpim_delivered(from: &str, to: &str, id: &str, about: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\
DateTime: 2026-11-25T10:00:01.000Z\r\n\r\nContent-Type: message/imdn+xml\r\n\
Content-Disposition: notification\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>{about}</message-id>\
<datetime>2026-11-25T10:00:00.000Z</datetime><delivery-notification><status><delivered/></status>\
</delivery-notification></imdn>"
    ))
}

async fn pager_and_notification(transport: Transport) {
    let mut bed = Bed::start(transport).await;
    let (alice, bob) = (bed.cpm.aor(), bed.simple.aor());

    // CPM -> SIMPLE: a CPIM message asking for delivery and display notifications.
    let mut msg = bed
        .cpm
        .new_message(
            &bob,
            "message/cpim",
            cpim_message(&alice, &bob, "Msg-1", "Hello Bob"),
        )
        .expect("MESSAGE");
    msg.push_header("P-Preferred-Service", MSG_ICSI)
        .expect("header");
    msg.push_header(
        "Contact",
        &format!(
            "<{}>;+sip.instance=\"<urn:gsma:imei:35-209900-176148-1>\";+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"",
            bed.cpm.contact_uri()
        ),
    )
    .expect("header");
    msg.push_header("Conversation-ID", "conv-1")
        .expect("header");
    msg.push_header("Contribution-ID", "contrib-1")
        .expect("header");
    let (status, got) = bed.exchange(Side::Cpm, msg, 200, "OK").await;
    assert_eq!(status, 200);
    assert_eq!(got.request_uri(), Some(bob.as_bytes()));
    let contact = got.header("Contact").unwrap_or_default();
    assert!(
        contact.contains("+g.oma.sip-im") && !contact.contains("icsi-ref"),
        "{contact}"
    );
    assert_eq!(got.header("P-Preferred-Service"), None);
    assert_eq!(got.header("Conversation-ID"), None);
    let body = String::from_utf8_lossy(got.body()).into_owned();
    assert!(
        body.contains("imdn.Message-ID: Msg-1") && body.contains("Hello Bob"),
        "{body}"
    );

    // SIMPLE -> CPM: the delivery notification, back with the conversation identities and
    // restricted to the sending device (CPM 2.0 §4.2).
    let imdn = bed
        .simple
        .new_message(
            &alice,
            "message/cpim",
            cpim_delivered(&bob, &alice, "Imdn-1", "Msg-1"),
        )
        .expect("MESSAGE");
    let (status, got) = bed.exchange(Side::Simple, imdn, 200, "OK").await;
    assert_eq!(status, 200);
    assert_eq!(got.header("Conversation-ID"), Some("conv-1"));
    assert_eq!(got.header("Contribution-ID"), Some("contrib-1"));
    assert_eq!(
        got.header("Accept-Contact"),
        Some("*;+sip.instance=\"<urn:gsma:imei:35-209900-176148-1>\";require;explicit")
    );
    assert!(String::from_utf8_lossy(got.body()).contains("<delivered/>"));
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pager_with_imdn_both_ways_over_udp() {
    bounded(30, pager_and_notification(Transport::Udp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pager_with_imdn_both_ways_over_tcp() {
    bounded(30, pager_and_notification(Transport::Tcp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_from_the_far_side_reaches_the_sender() {
    bounded(30, async {
        let mut bed = Bed::start(Transport::Udp).await;
        let bob = bed.simple.aor();
        let msg = bed
            .cpm
            .new_message(
                &bob,
                "message/cpim",
                cpim_message("sip:a@x", &bob, "M-2", "hi"),
            )
            .expect("MESSAGE");
        let node_cpm = bed.node_cpm();
        let (answer, _) = tokio::join!(bed.cpm.request(node_cpm, msg), async {
            let tx = bed
                .simple
                .recv_method(Method::Message, None)
                .await
                .expect("MESSAGE");
            bed.simple
                .respond(
                    &tx,
                    415,
                    "Unsupported Media Type",
                    &[("Accept", "text/plain")],
                    None,
                )
                .await
                .expect("415");
        });
        let answer = answer.expect("answer");
        assert_eq!(answer.status_code(), Some(415));
        assert_eq!(answer.header("Accept"), Some("text/plain"));
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_messages_between_valid_ones_lose_nothing() {
    bounded(40, async {
        let mut bed = Bed::start(Transport::Udp).await;
        let bob = bed.simple.aor();
        let node_cpm = bed.node_cpm();
        for i in 0..20 {
            // Garbage, a truncated request, then a valid MESSAGE: the valid one goes through.
            bed.cpm
                .send_raw(node_cpm, Bytes::from_static(b"\x00\xffgarbage\r\n\r\n"))
                .await
                .expect("send");
            bed.cpm
                .send_raw(
                    node_cpm,
                    Bytes::from_static(b"MESSAGE sip:bob@simple.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKhalf\r\n"),
                )
                .await
                .expect("send");
            let msg = bed
                .cpm
                .new_message(&bob, "text/plain", Bytes::from(format!("message {i}")))
                .expect("MESSAGE");
            let (answer, got) = tokio::join!(bed.cpm.request(node_cpm, msg), async {
                let tx = bed.simple.recv_method(Method::Message, None).await.expect("MESSAGE");
                bed.simple.respond(&tx, 200, "OK", &[], None).await.expect("200");
                tx.request
            });
            assert_eq!(answer.expect("answer").status_code(), Some(200));
            assert!(String::from_utf8_lossy(got.body()).contains(&format!("message {i}")));
        }
        bed.stop().await;
    })
    .await;
}

/// GET `path` from the node's admin server (HTTP/1.1, connection closed after).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

fn has_sample(text: &str, name: &str, labels: &[&str]) -> bool {
    text.lines()
        .any(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_counts_what_it_does_on_metrics() {
    bounded(30, async {
        let mut bed = Bed::start(Transport::Udp).await;
        let bob = bed.simple.aor();
        let node_cpm = bed.node_cpm();
        let msg = bed
            .cpm
            .new_message(&bob, "text/plain", Bytes::from_static(b"count me"))
            .expect("MESSAGE");
        let (answer, _) = tokio::join!(bed.cpm.request(node_cpm, msg), async {
            let tx = bed.simple.recv_method(Method::Message, None).await.expect("MESSAGE");
            bed.simple.respond(&tx, 200, "OK", &[], None).await.expect("200");
        });
        assert_eq!(answer.expect("answer").status_code(), Some(200));
        bed.cpm
            .send_raw(node_cpm, Bytes::from_static(b"MESSAGE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKm\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 MESSAGE\r\n\r\n"))
            .await
            .expect("send");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let text = http_get(bed.node.listening.admin, "/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            has_sample(&text, "cpm_iwf_sip_requests_total", &["side=\"cpm\"", "direction=\"in\"", "method=\"MESSAGE\""]),
            "{text}"
        );
        assert!(
            has_sample(&text, "cpm_iwf_sip_requests_total", &["side=\"simple\"", "direction=\"out\"", "method=\"MESSAGE\""]),
            "{text}"
        );
        assert!(
            has_sample(&text, "cpm_iwf_sip_responses_total", &["side=\"cpm\"", "direction=\"out\""]),
            "{text}"
        );
        assert!(has_sample(&text, "cpm_iwf_translations_total", &["kind=\"pager\""]), "{text}");
        assert!(has_sample(&text, "cpm_iwf_sip_parse_errors_total", &["side=\"cpm\"", "status=\"400\""]), "{text}");
        let ready = http_get(bed.node.listening.admin, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        bed.stop().await;
    })
    .await;
}

/// `/readyz` answers 503 once a side's SIP listeners are down (and 200 before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_a_listener_is_down() {
    bounded(30, async {
        let bed = Bed::start(Transport::Udp).await;
        let admin = bed.node.listening.admin;
        assert!(http_get(admin, "/readyz").await.starts_with("HTTP/1.1 200"));
        bed.node
            .transport(cpm_iwf::translate::state::Side::Simple)
            .shutdown(std::time::Duration::from_millis(100))
            .await;
        let mut ready = String::new();
        for _ in 0..50 {
            ready = http_get(admin, "/readyz").await;
            if ready.starts_with("HTTP/1.1 503") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        assert!(
            http_get(admin, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        bed.stop().await;
    })
    .await;
}

/// With probing on, a next hop that answers OPTIONS keeps the node ready; one that stays
/// silent past the transaction timeout (64*T1) makes `/readyz` 503, and an answer later makes
/// it ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_next_hops_answering_options() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.timers.probe_interval_ms = 500;
            c.timers.t1_ms = 50;
        })
        .await;
        let admin = bed.node.listening.admin;
        // The SIMPLE next hop answers its probes; the CPM one does not (yet).
        let tx = bed
            .simple
            .recv_method(Method::Options, None)
            .await
            .expect("OPTIONS probe");
        assert_eq!(tx.request.header("CSeq"), Some("1 OPTIONS"));
        bed.simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
        let mut ready = String::new();
        for _ in 0..100 {
            ready = http_get(admin, "/readyz").await;
            if ready.starts_with("HTTP/1.1 503") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            ready.starts_with("HTTP/1.1 503"),
            "silent CPM next hop: {ready}"
        );
        // The CPM next hop comes back: it answers the probes (405 is an answer too); older,
        // timed-out probes in its inbox get answers the node no longer waits for.
        for _ in 0..50 {
            let wait = Some(std::time::Duration::from_millis(200));
            if let Ok(tx) = bed.cpm.recv_method(Method::Options, wait).await {
                bed.cpm
                    .respond(&tx, 405, "Method Not Allowed", &[], None)
                    .await
                    .expect("405");
            }
            ready = http_get(admin, "/readyz").await;
            if ready.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(ready.starts_with("HTTP/1.1 200"), "answered again: {ready}");
        bed.stop().await;
    })
    .await;
}

/// Requests from an RFC 2543 client (a Via without the `z9hG4bK` branch) are told apart by
/// Call-ID, CSeq and From tag (RFC 3261 §17.2.3): two of them from one address both go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_magic_cookie_branch_are_not_merged() {
    bounded(30, async {
        let mut bed = Bed::start(Transport::Udp).await;
        let bob = bed.simple.aor();
        let node_cpm = bed.node_cpm();
        let via = format!("SIP/2.0/UDP {}", bed.cpm.local_addr());
        for i in 0..2 {
            let mut msg = bed
                .cpm
                .new_message(&bob, "text/plain", Bytes::from(format!("old client {i}")))
                .expect("MESSAGE");
            msg.set_header("Via", &via).expect("Via");
            bed.cpm
                .send_raw(node_cpm, msg.serialize())
                .await
                .expect("send");
        }
        for _ in 0..2 {
            let tx = bed
                .simple
                .recv_method(Method::Message, None)
                .await
                .expect("MESSAGE");
            bed.simple
                .respond(&tx, 200, "OK", &[], None)
                .await
                .expect("200");
        }
        bed.stop().await;
    })
    .await;
}

/// Answered pager transactions (kept 32 s for Timer J, RFC 3261 §17.2.2) do not count against
/// the cap on requests waiting for their answer: with room for 1,024 waiting, 1,100 MESSAGEs
/// one after the other all go through (the 1,025th was refused with 503 when they counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_transactions_do_not_fill_the_transaction_cap() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, |c| c.limits.max_sessions = 1).await;
        let bob = bed.simple.aor();
        for i in 0..1_100 {
            let msg = bed
                .cpm
                .new_message(&bob, "text/plain", Bytes::from(format!("message {i}")))
                .expect("MESSAGE");
            let (status, got) = bed.exchange(Side::Cpm, msg, 200, "OK").await;
            assert_eq!(status, 200, "message {i}");
            let body = String::from_utf8_lossy(got.body()).into_owned();
            assert!(body.ends_with(&format!("\r\n\r\nmessage {i}")), "{body}");
        }
        bed.stop().await;
    })
    .await;
}
