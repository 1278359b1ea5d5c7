//! Store-and-forward through a real node on loopback (issue 7): pager MESSAGEs to a SIMPLE IM
//! user who is not available are answered 202 once stored, delivered in order when the user is
//! back (learnt from a retry, an RFC 3680 reg event NOTIFY of a test registrar, or a 3GPP
//! third-party REGISTER), and the delivery notification finds the device that sent the
//! message; a message kept past its maximum age earns its sender a `failed` notification (RFC
//! 5438 §7.2.1.1).

#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/redis_server.rs"]
mod redis_server;
#[path = "peers/registrar.rs"]
mod registrar;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::translate::state::Side;
use gateway::{Bed, bounded};
use rsip::Method;
use sip_ua::Transport;

const DEVICE: &str = "<urn:gsma:imei:35-209900-176148-1>";

fn cpim_message(from: &str, to: &str, id: &str, text: &str, disposition: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\nimdn.Disposition-Notification: {disposition}\r\n\
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

/// Alice (CPM, one device of several) sends `id` to Bob; Bob's network answers `status`;
/// returns what Alice got.
async fn send_while_bob_answers(
    bed: &mut Bed,
    id: &str,
    text: &str,
    disposition: &str,
    status: u16,
) -> u16 {
    let (alice, bob) = (bed.cpm.aor(), bed.simple.aor());
    let mut msg = bed
        .cpm
        .new_message(
            &bob,
            "message/cpim",
            cpim_message(&alice, &bob, id, text, disposition),
        )
        .expect("MESSAGE");
    msg.push_header(
        "Contact",
        &format!("<{}>;+sip.instance=\"{DEVICE}\"", bed.cpm.contact_uri()),
    )
    .expect("Contact");
    msg.push_header("Conversation-ID", "conv-s")
        .expect("header");
    msg.push_header("Contribution-ID", &format!("contrib-{id}"))
        .expect("header");
    bed.exchange(Side::Cpm, msg, status, "Not Available")
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_user_gets_messages_in_order_and_the_notification_reaches_the_device() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.availability.retry_initial_ms = 500;
            c.availability.retry_max_ms = 1_000;
        })
        .await;
        let (alice, bob) = (bed.cpm.aor(), bed.simple.aor());
        // Bob is offline: his network answers 480 (and 404, 408 through the policy).
        for (i, status) in [480u16, 404, 480].into_iter().enumerate() {
            let id = format!("S-{i}");
            let got = send_while_bob_answers(
                &mut bed,
                &id,
                &format!("text {i}"),
                "positive-delivery",
                status,
            )
            .await;
            assert_eq!(got, 202, "message {i} kept: 202 Accepted (RFC 3428 §7)");
        }
        // A refusal that is not "unavailable" is relayed as it came.
        let got = send_while_bob_answers(&mut bed, "S-x", "no", "positive-delivery", 403).await;
        assert_eq!(got, 403);

        // Bob is back: the retry delivers the three, one after the other, in order.
        let mut ids = Vec::new();
        for _ in 0..3 {
            let tx = bed
                .simple
                .recv_method(Method::Message, Some(Duration::from_secs(10)))
                .await
                .expect("stored MESSAGE delivered");
            ids.push(gateway::imdn_message_id(&tx.request));
            assert_eq!(tx.request.request_uri(), Some(bob.as_bytes()));
            bed.simple
                .respond(&tx, 200, "OK", &[], None)
                .await
                .expect("200");
        }
        assert_eq!(ids, ["S-0", "S-1", "S-2"]);
        // Nothing delivered twice.
        assert!(
            bed.simple
                .recv_method(Method::Message, Some(Duration::from_millis(1_500)))
                .await
                .is_err(),
            "a message delivered again"
        );

        // Bob's device says delivered: the notification reaches Alice's sending device.
        let imdn = bed
            .simple
            .new_message(
                &alice,
                "message/cpim",
                cpim_delivered(&bob, &alice, "Imdn-S1", "S-1"),
            )
            .expect("MESSAGE");
        let (status, got) = bed.exchange(Side::Simple, imdn, 200, "OK").await;
        assert_eq!(status, 200);
        assert_eq!(
            got.header("Accept-Contact"),
            Some(format!("*;+sip.instance=\"{DEVICE}\";require;explicit").as_str())
        );
        assert_eq!(got.header("Conversation-ID"), Some("conv-s"));
        assert_eq!(got.header("Contribution-ID"), Some("contrib-S-1"));
        assert!(String::from_utf8_lossy(got.body()).contains("<delivered/>"));
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_kept_past_its_age_earns_a_failed_notification() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.store.simple.max_age_s = 1;
            c.store.expiry_check_ms = 100;
            // No retry within the test.
            c.availability.retry_initial_ms = 600_000;
            c.availability.retry_max_ms = 600_000;
        })
        .await;
        let got = send_while_bob_answers(
            &mut bed,
            "E-1",
            "too late",
            "positive-delivery, negative-delivery",
            480,
        )
        .await;
        assert_eq!(got, 202);
        let got = send_while_bob_answers(&mut bed, "E-2", "quiet", "positive-delivery", 480).await;
        assert_eq!(got, 202);
        let tx = bed
            .cpm
            .recv_method(Method::Message, Some(Duration::from_secs(10)))
            .await
            .expect("failed notification at CPM");
        bed.cpm
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
        let body = String::from_utf8_lossy(tx.request.body()).into_owned();
        assert!(body.contains("<message-id>E-1</message-id>"), "{body}");
        assert!(body.contains("<failed/>"), "{body}");
        assert_eq!(
            tx.request.header("Accept-Contact"),
            Some(format!("*;+sip.instance=\"{DEVICE}\";require;explicit").as_str()),
            "to the device that sent it"
        );
        assert_eq!(tx.request.header("Contribution-ID"), Some("contrib-E-1"));
        // E-2 did not ask for negative notifications: nothing more.
        assert!(
            bed.cpm
                .recv_method(Method::Message, Some(Duration::from_millis(1_500)))
                .await
                .is_err()
        );
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_cpm_user_gets_the_message_as_a_deferred_message() {
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Tcp, |c| {
            c.availability.retry_initial_ms = 300;
        })
        .await;
        let (alice, bob) = (bed.cpm.aor(), bed.simple.aor());
        let msg = bed
            .simple
            .new_message(
                &alice,
                "message/cpim",
                cpim_message(&bob, &alice, "D-1", "are you there?", "positive-delivery"),
            )
            .expect("MESSAGE");
        let (status, _) = bed
            .exchange(Side::Simple, msg, 408, "Request Timeout")
            .await;
        assert_eq!(status, 202);
        let tx = bed
            .cpm
            .recv_method(Method::Message, Some(Duration::from_secs(10)))
            .await
            .expect("delivered later");
        bed.cpm
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
        assert_eq!(gateway::imdn_message_id(&tx.request), "D-1");
        assert_eq!(
            tx.request.header("P-Asserted-Service"),
            Some("urn:urn-7:3gpp-service.ims.icsi.oma.cpm.deferred"),
            "CPM: a stored message is a deferred message"
        );
        assert!(tx.request.header("Conversation-ID").is_some());
        bed.stop().await;
    })
    .await;
}

/// Bob's network gets the kept messages `ids` in order (answering 200), then Bob's delivered
/// notification for the first reaches Alice's sending device.
async fn bob_gets_them_and_notifies(bed: &mut Bed, ids: &[&str]) {
    let (alice, bob) = (bed.cpm.aor(), bed.simple.aor());
    let mut got = Vec::new();
    for _ in ids {
        let tx = bed
            .simple
            .recv_method(Method::Message, Some(Duration::from_secs(10)))
            .await
            .expect("kept MESSAGE delivered");
        got.push(gateway::imdn_message_id(&tx.request));
        bed.simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
    }
    assert_eq!(got, ids);
    let imdn = bed
        .simple
        .new_message(
            &alice,
            "message/cpim",
            cpim_delivered(&bob, &alice, "Imdn-R", ids[0]),
        )
        .expect("MESSAGE");
    let (status, got) = bed.exchange(Side::Simple, imdn, 200, "OK").await;
    assert_eq!(status, 200);
    assert_eq!(
        got.header("Accept-Contact"),
        Some(format!("*;+sip.instance=\"{DEVICE}\";require;explicit").as_str())
    );
    assert!(String::from_utf8_lossy(got.body()).contains("<delivered/>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reg_event_notify_from_the_registrar_triggers_delivery() {
    bounded(60, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig {
            uri: "sip:registrar@127.0.0.1".into(),
            ..Default::default()
        })
        .await
        .expect("registrar");
        let uri = format!("sip:registrar@{}", registrar.addr());
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.availability.reg_event = cpm_iwf::config::RegEventMode::List;
            c.availability.registrar = Some(uri);
            c.availability.registrar_on_cpm = false;
            // No retry within the test: only the NOTIFY can bring Bob back.
            c.availability.retry_initial_ms = 600_000;
            c.availability.retry_max_ms = 600_000;
        })
        .await;
        // The node subscribes to the registrar's reg event list at start (RFC 3680 §4).
        let started = std::time::Instant::now();
        while !registrar.subscribes().iter().any(|s| s.status == 200) {
            assert!(started.elapsed() < Duration::from_secs(10), "no SUBSCRIBE");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for id in ["R-1", "R-2"] {
            let got = send_while_bob_answers(&mut bed, id, "later", "positive-delivery", 480).await;
            assert_eq!(got, 202);
        }
        assert!(
            bed.simple
                .recv_method(Method::Message, Some(Duration::from_millis(800)))
                .await
                .is_err(),
            "nothing before Bob registers"
        );
        // Bob registers: the registrar NOTIFYs the node, which answers 200 and delivers.
        let bob = bed.simple.aor();
        let contact = bed.simple.contact_uri();
        let statuses = registrar.register(&bob, &contact).await.expect("NOTIFY");
        assert_eq!(statuses, vec![200], "the node accepts the NOTIFY");
        bob_gets_them_and_notifies(&mut bed, &["R-1", "R-2"]).await;
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_register_triggers_delivery() {
    bounded(60, async {
        let registrar = registrar::Registrar::start(registrar::RegistrarConfig::default())
            .await
            .expect("S-CSCF");
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.availability.third_party_register = true;
            c.availability.retry_initial_ms = 600_000;
            c.availability.retry_max_ms = 600_000;
        })
        .await;
        for id in ["T-1", "T-2", "T-3"] {
            let got = send_while_bob_answers(&mut bed, id, "later", "positive-delivery", 404).await;
            assert_eq!(got, 202);
        }
        // The S-CSCF tells the node (an AS) that Bob registered (TS 24.229 §5.4.1.7).
        let bob = bed.simple.aor();
        let status = registrar
            .third_party_register(bed.node_simple(), &bob, 3600)
            .await
            .expect("REGISTER");
        assert_eq!(status, 200);
        bob_gets_them_and_notifies(&mut bed, &["T-1", "T-2", "T-3"]).await;
        bed.stop().await;
    })
    .await;
}

/// The status of `GET /readyz` on the node's admin server.
async fn readyz(bed: &Bed) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(bed.node.listening.admin).await else {
        return 0;
    };
    let req = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (installed by .ci/test.sh)"]
async fn a_redis_down_at_start_is_waited_for_not_ready_meanwhile() {
    bounded(60, async {
        let dir = tempfile::tempdir().expect("dir");
        let port = redis_server::free_port();
        let url = format!("redis://127.0.0.1:{port}/");
        let mut bed = Bed::start_with(Transport::Udp, |c| {
            c.store.location = Some(url);
        })
        .await;
        // The node serves, is not ready, and answers what it cannot store 503.
        assert_eq!(readyz(&bed).await, 503);
        let got =
            send_while_bob_answers(&mut bed, "Down-1", "no store", "positive-delivery", 480).await;
        assert_eq!(got, 503, "not stored: the sender is told to retry later");
        // Redis comes up: the node opens its store and becomes ready.
        let _server = redis_server::RedisServer::start_on(dir.path(), "always", port);
        let started = std::time::Instant::now();
        while readyz(&bed).await != 200 {
            assert!(started.elapsed() < Duration::from_secs(30), "never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got =
            send_while_bob_answers(&mut bed, "Down-2", "kept", "positive-delivery", 480).await;
        assert_eq!(got, 202);
        bed.stop().await;
    })
    .await;
}
