//! Recording to a real Message Storage Server (issue 8, "What it must show"): each test starts
//! its own Dovecot (tests/peers/dovecot.rs) and a real node with `[record]` on, drives SIP and
//! MSRP through it, and reads the objects back over IMAP (UID SEARCH + UID FETCH BODY.PEEK[]),
//! comparing headers and bodies. `#[ignore]`: they need `dovecot-imapd` and root; `.ci/test.sh`
//! installs it and runs them; without it they fail.

#[path = "peers/chat.rs"]
mod chat;
#[path = "peers/dovecot.rs"]
mod dovecot;
#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::time::Duration;

use bytes::Bytes;
use chat::*;
use cpm_iwf::config::{Config, RecordConfig};
use cpm_iwf::record::mss::{Mss, MssConfig};
use cpm_iwf::wire::msrp::{Continuation, Method as MsrpMethod};
use dovecot::Dovecot;
use gateway::{Bed, bounded};
use rsip::Method;
use sip_ua::Transport;

const MSG_ICSI: &str = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg";
const LARGE_ICSI: &str = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.largemsg";
const ALICE_BOX: &str = "alice@cpm.example.net";

fn prefs(dc: &Dovecot, text: &str) -> std::path::PathBuf {
    let p = dc.dir.path().join("prefs.toml");
    std::fs::write(&p, text).expect("prefs");
    p
}

fn record_config(dc: &Dovecot, prefs_text: &str) -> impl FnOnce(&mut Config) {
    let cfg = RecordConfig {
        enabled: true,
        preferences: Some(prefs(dc, prefs_text)),
        queue_path: dc.dir.path().join("queue.redb"),
        imap: dc.addr,
        master_user: Some(dovecot::MASTER.into()),
        password: dovecot::MASTER_PASSWORD.into(),
        upload_wait_ms: 3_000,
        imap_timeout_ms: 2_000,
        retry_base_ms: 100,
        retry_max_ms: 500,
        ..RecordConfig::default()
    };
    move |c: &mut Config| c.record = cfg
}

fn mss(dc: &Dovecot) -> Mss {
    Mss::new(MssConfig {
        addr: dc.addr,
        master_user: Some(dovecot::MASTER.into()),
        password: dovecot::MASTER_PASSWORD.into(),
        timeout: Duration::from_secs(3),
    })
}

/// Every object of a folder of Alice's (none when the folder does not exist).
async fn objects(dc: &Dovecot, folder: &str) -> Vec<String> {
    objects_of(dc, ALICE_BOX, folder).await
}

async fn objects_of(dc: &Dovecot, account: &str, folder: &str) -> Vec<String> {
    mss(dc)
        .fetch(account, folder, "ALL")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// Polls until `folder` holds `n` objects (bounded: 10 s).
async fn wait_objects(dc: &Dovecot, folder: &str, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let o = objects(dc, folder).await;
        if o.len() == n {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{folder}: not {n} objects: {:?}\n{}",
        objects(dc, folder).await,
        dc.log()
    );
}

/// The header block and the body of an RFC 5322 object.
fn split(o: &str) -> (&str, &str) {
    o.split_once("\r\n\r\n").expect("header block")
}

fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .find_map(|l| {
            l.split_once(": ")
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v)
}

fn cpim_message(to: &str, id: &str, text: &str) -> Bytes {
    Bytes::from(format!(
        "From: <sip:alice@cpm.example.net>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: {id}\r\nDateTime: 2026-11-25T10:00:00.000Z\r\n\
imdn.Disposition-Notification: positive-delivery\r\n\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n{text}"
    ))
}

/// Alice sends a pager MESSAGE to `to` in conversation `conv`; the SIMPLE side answers
/// `status` after `at_delivery` ran (what the MSS holds when the message is delivered).
async fn pager<F, Fut>(
    bed: &mut Bed,
    to: &str,
    conv: &str,
    id: &str,
    status: u16,
    at_delivery: F,
) -> (u16, Bytes)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let body = cpim_message(to, id, &format!("hello {id}"));
    let mut msg = bed
        .cpm
        .new_message(to, "message/cpim", body.clone())
        .expect("MESSAGE");
    msg.push_header("P-Preferred-Service", MSG_ICSI)
        .expect("header");
    msg.push_header("Conversation-ID", conv).expect("header");
    msg.push_header("Contribution-ID", &format!("contrib-{id}"))
        .expect("header");
    let node_cpm = bed.node_cpm();
    let (answer, ()) = tokio::join!(bed.cpm.request(node_cpm, msg), async {
        let tx = bed
            .simple
            .recv_method(Method::Message, None)
            .await
            .expect("MESSAGE at SIMPLE");
        at_delivery().await;
        let reason = if status == 200 { "OK" } else { "Not Found" };
        bed.simple
            .respond(&tx, status, reason, &[], None)
            .await
            .expect("answer");
    });
    (answer.expect("answer").status_code().unwrap_or(0), body)
}

const ALICE_RECORDS: &str = r#"
[users."sip:alice@cpm.example.net"]
standalone = true
session = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_standalone_message_is_recorded_before_it_is_delivered() {
    let dc = Dovecot::start();
    bounded(30, async {
        let mut bed = Bed::start_with(Transport::Udp, record_config(&dc, ALICE_RECORDS)).await;
        let bob = bed.simple.aor();
        let (status, body) = pager(&mut bed, &bob, "conv-pager-1", "Msg-1", 200, || async {
            // Already in the MSS when the SIMPLE side receives it (SD 5.2.1.2.1).
            assert_eq!(objects(&dc, "conv-pager-1").await.len(), 1);
        })
        .await;
        assert_eq!(status, 200);
        let o = wait_objects(&dc, "conv-pager-1", 1).await;
        let (head, rest) = split(&o[0]);
        assert!(
            field(head, "From")
                .expect("From")
                .contains("sip:alice@cpm.example.net")
        );
        assert!(field(head, "To").expect("To").contains(&bob));
        assert_eq!(field(head, "Conversation-ID"), Some("conv-pager-1"));
        assert_eq!(field(head, "Contribution-ID"), Some("contrib-Msg-1"));
        assert_eq!(field(head, "IMDN-Message-ID"), Some("Msg-1"));
        assert_eq!(field(head, "Message-Direction"), Some("sent"));
        assert_eq!(field(head, "Content-Type"), Some("message/cpim"));
        assert!(field(head, "Date").expect("Date").ends_with("+0000"));
        assert_eq!(rest.as_bytes(), body.as_ref());
        bed.stop().await;
    })
    .await;
}

/// SIMPLE -> CPM: the terminating user's preferences apply too (and the originator's, into
/// the originator's own mailbox); the Conversation-ID is the one the node generated for CPM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn both_users_preferences_apply_each_into_their_own_mailbox() {
    let dc = Dovecot::start();
    bounded(30, async {
        let prefs = r#"
[users."sip:alice@cpm.example.net"]
standalone = true
directions = ["incoming"]
[users."sip:bob@simple.example.net"]
standalone = true
account = "bob-box"
"#;
        let mut bed = Bed::start_with(Transport::Udp, record_config(&dc, prefs)).await;
        let (alice, bob) = (bed.cpm.aor(), bed.simple.aor());
        let body = Bytes::from(format!(
            "From: <{bob}>\r\nTo: <{alice}>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: Msg-S\r\nDateTime: 2026-11-25T10:00:00.000Z\r\n\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\r\nhello from SIMPLE"
        ));
        let msg = bed
            .simple
            .new_message(&alice, "message/cpim", body.clone())
            .expect("MESSAGE");
        let node_simple = bed.node_simple();
        let (answer, got) = tokio::join!(bed.simple.request(node_simple, msg), async {
            let tx = bed
                .cpm
                .recv_method(Method::Message, None)
                .await
                .expect("MESSAGE at CPM");
            bed.cpm
                .respond(&tx, 200, "OK", &[], None)
                .await
                .expect("200");
            tx.request
        });
        assert_eq!(answer.expect("answer").status_code(), Some(200));
        let conv = got
            .header("Conversation-ID")
            .expect("the node's Conversation-ID")
            .to_string();
        let folder = cpm_iwf::record::object::folder(Some(&conv));
        let o = wait_objects(&dc, &folder, 1).await;
        let (head, rest) = split(&o[0]);
        assert_eq!(field(head, "Conversation-ID"), Some(conv.as_str()));
        assert_eq!(field(head, "Message-Direction"), Some("received"));
        assert_eq!(field(head, "IMDN-Message-ID"), Some("Msg-S"));
        assert!(rest.contains("hello from SIMPLE"));
        let b = objects_of(&dc, "bob-box", &folder).await;
        assert_eq!(b.len(), 1, "the originator's own record");
        assert_eq!(field(split(&b[0]).0, "Message-Direction"), Some("sent"));
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_message_whose_delivery_fails_is_deleted_again() {
    let dc = Dovecot::start();
    bounded(30, async {
        let mut bed = Bed::start_with(Transport::Udp, record_config(&dc, ALICE_RECORDS)).await;
        let bob = bed.simple.aor();
        // 403: a final refusal (404 or 480 would be "not available": kept and delivered
        // later by store-and-forward, and the record stays).
        let (status, _) = pager(&mut bed, &bob, "conv-fail", "Msg-F", 403, || async {
            assert_eq!(objects(&dc, "conv-fail").await.len(), 1, "recorded first");
        })
        .await;
        assert_eq!(status, 403);
        wait_objects(&dc, "conv-fail", 0).await;
        // A delivered one in the same conversation stays.
        let (status, _) = pager(&mut bed, &bob, "conv-fail", "Msg-G", 200, || async {}).await;
        assert_eq!(status, 200);
        let o = wait_objects(&dc, "conv-fail", 1).await;
        assert_eq!(field(split(&o[0]).0, "IMDN-Message-ID"), Some("Msg-G"));
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn filter_criteria_exclude_a_peer() {
    let dc = Dovecot::start();
    bounded(30, async {
        let prefs = r#"
[users."sip:alice@cpm.example.net"]
standalone = true
exclude_peers = ["sip:bob@simple.example.net"]
"#;
        let mut bed = Bed::start_with(Transport::Udp, record_config(&dc, prefs)).await;
        let (status, _) = pager(
            &mut bed,
            "sip:bob@simple.example.net",
            "conv-excl",
            "Msg-B",
            200,
            || async {},
        )
        .await;
        assert_eq!(status, 200, "delivered, not recorded");
        let (status, _) = pager(
            &mut bed,
            "sip:carol@simple.example.net",
            "conv-excl",
            "Msg-C",
            200,
            || async {},
        )
        .await;
        assert_eq!(status, 200);
        // Carol's is recorded (the uploads are in order: Bob's would be there first).
        let o = wait_objects(&dc, "conv-excl", 1).await;
        let head = split(&o[0]).0;
        assert_eq!(field(head, "IMDN-Message-ID"), Some("Msg-C"));
        assert!(field(head, "To").expect("To").contains("carol"));
        bed.stop().await;
    })
    .await;
}

/// Alice's and Bob's messages, with Bob's delivery notifications: `n` messages each way.
async fn converse(chat: &mut Chat, n: usize) -> Vec<String> {
    let mut order = Vec::new();
    for i in 0..n {
        let (ar, aw) = (&mut chat.alice.0, &mut chat.alice.1);
        let (br, bw) = (&mut chat.bob.0, &mut chat.bob.1);
        let id = format!("A-{i:02}");
        let m = send(
            aw,
            &format!("msrp-a-{i}"),
            "message/cpim",
            cpim_text(&id, &format!("alice says {i}")),
        );
        aw.send(&m).await.expect("send");
        ok(ar).await;
        let got = next_request(br).await;
        bw.send(&bw.respond(&got, 200)).await.expect("200");
        order.push(format!("alice says {i}"));
        // Bob's delivery notification, then his own message.
        let m = send(
            bw,
            &format!("msrp-n-{i}"),
            "message/cpim",
            cpim_notification(&format!("N-{i:02}"), &id, "delivered"),
        );
        bw.send(&m).await.expect("send");
        ok(br).await;
        let got = next_request(ar).await;
        aw.send(&aw.respond(&got, 200)).await.expect("200");
        order.push(format!("<message-id>{id}</message-id>"));
        let body = Bytes::from(format!(
            "From: <sip:bob@simple.example.net>\r\nTo: <sip:alice@cpm.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: B-{i:02}\r\nDateTime: 2026-11-25T10:00:03.000Z\r\n\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\r\nbob says {i}"
        ));
        let m = send(bw, &format!("msrp-b-{i}"), "message/cpim", body);
        bw.send(&m).await.expect("send");
        ok(br).await;
        let got = next_request(ar).await;
        aw.send(&aw.respond(&got, 200)).await.expect("200");
        order.push(format!("bob says {i}"));
    }
    order
}

async fn hang_up(chat: &mut Chat) {
    let mut dialog = chat.cpm_dialog.clone();
    let (bye_ok, ()) = tokio::join!(chat.bed.cpm.bye(&mut dialog), async {
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
    });
    assert_eq!(bye_ok.expect("BYE answered").status_code(), Some(200));
}

fn check_session(o: &str, order: &[String]) {
    let (head, body) = split(o);
    assert_eq!(field(head, "Conversation-ID"), Some("conv-chat-1"));
    assert_eq!(field(head, "Contribution-ID"), Some("contrib-chat-1"));
    assert!(
        field(head, "From")
            .expect("From")
            .contains("sip:alice@cpm.example.net")
    );
    assert!(
        field(head, "To")
            .expect("To")
            .contains("sip:bob@simple.example.net")
    );
    assert!(
        field(head, "Content-Type")
            .expect("type")
            .starts_with("Multipart/Related;")
    );
    assert!(body.contains("Content-Type: Application/X-CPM-Session\r\n"));
    assert!(body.contains("<inviting>"), "{body}");
    let mut at = 0;
    for want in order {
        let pos = body[at..]
            .find(want.as_str())
            .unwrap_or_else(|| panic!("{want} missing or out of order"));
        at += pos + want.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_chat_session_of_20_messages_with_imdns_is_one_object_on_bye() {
    let dc = Dovecot::start();
    bounded(60, async {
        let mut chat = set_up_with(Transport::Udp, record_config(&dc, ALICE_RECORDS), None).await;
        let order = converse(&mut chat, 10).await;
        assert_eq!(order.len(), 30, "20 messages and 10 notifications");
        assert!(
            objects(&dc, "conv-chat-1").await.is_empty(),
            "nothing before the end"
        );
        hang_up(&mut chat).await;
        let o = wait_objects(&dc, "conv-chat-1", 1).await;
        check_session(&o[0], &order);
        let body = split(&o[0]).1;
        assert_eq!(body.matches("Content-Type: message/cpim\r\n").count(), 30);
        assert_eq!(body.matches("Message-Direction: sent\r\n").count(), 10);
        assert!(body.contains("IMDN-Message-ID: N-03\r\nMessage-Direction: received"));
        chat.bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_300_kib_message_in_chunks_is_recorded_whole() {
    let dc = Dovecot::start();
    bounded(60, async {
        let mut chat = set_up_with(Transport::Udp, record_config(&dc, ALICE_RECORDS), None).await;
        let text: String = (0..300 * 1024 / 64)
            .map(|i| format!("{i:062}\r\n"))
            .collect();
        let body = cpim_text("Big-1", &text);
        send_chunked(&mut chat, "big-msrp-1", &body).await;
        hang_up(&mut chat).await;
        let o = wait_objects(&dc, "conv-chat-1", 1).await;
        let part_body = split(&o[0]).1;
        // The whole CPIM body in one part, byte for byte.
        assert!(
            part_body.contains(std::str::from_utf8(&body).expect("text")),
            "the 300 KiB message is not whole in the object"
        );
        assert!(o[0].len() > 300 * 1024);
        chat.bed.stop().await;
    })
    .await;
}

/// Alice sends `body` in 32 KiB chunks of one MSRP message; Bob answers each chunk.
async fn send_chunked(chat: &mut Chat, msrp_id: &'static str, body: &Bytes) {
    let (ar, aw) = (&mut chat.alice.0, &mut chat.alice.1);
    let (br, bw) = (&mut chat.bob.0, &mut chat.bob.1);
    let (total, chunk) = (body.len(), 32 * 1024);
    let mut start = 0;
    while start < total {
        let end = (start + chunk).min(total);
        let mut m = aw.request(MsrpMethod::Send);
        m.set_header("Message-ID", Bytes::from_static(msrp_id.as_bytes()));
        m.set_header(
            "Byte-Range",
            Bytes::from(format!("{}-{}/{}", start + 1, end, total)),
        );
        m.set_body("message/cpim", body.slice(start..end));
        if end < total {
            m.continuation = Continuation::More;
        }
        aw.send(&m).await.expect("chunk");
        ok(ar).await;
        let got = next_request(br).await;
        bw.send(&bw.respond(&got, 200)).await.expect("200");
        start = end;
    }
}

/// A large message (CPM 2.0 large message mode: an MSRP session with the `cpm.largemsg`
/// ICSI) from Alice to Bob: the session as `chat::set_up_with` makes it, with that ICSI.
async fn set_up_large(dc: &Dovecot) -> Chat {
    let mut bed = Bed::start_with(Transport::Udp, record_config(dc, ALICE_RECORDS)).await;
    let bob_listener = msrp_endpoint::listen(None);
    let bob_uri = msrp_endpoint::uri(bob_listener.local_addr().expect("addr").port(), "boblarge7");
    let alice_uri = msrp_endpoint::uri(9, "alicelarge3");
    let bob_aor = bed.simple.aor();
    let mut invite = bed
        .cpm
        .new_invite(&bob_aor, offer(&alice_uri, "active"))
        .expect("INVITE");
    invite
        .push_header("P-Preferred-Service", LARGE_ICSI)
        .expect("header");
    invite
        .push_header("Conversation-ID", "conv-large-1")
        .expect("header");
    invite
        .push_header("Contribution-ID", "contrib-large-1")
        .expect("header");
    let node_cpm = bed.node_cpm();
    let mut tx = bed.cpm.send_request(node_cpm, invite).await.expect("sent");
    let inv = bed
        .simple
        .recv_method(Method::Invite, None)
        .await
        .expect("INVITE at SIMPLE");
    let node_simple_uri = sdp_path(&inv.request);
    let answer = offer(&bob_uri, "passive");
    let (simple_side, (ok200, cpm_dialog)) = tokio::join!(
        bed.simple
            .respond_until_ack(&inv, 200, &[], Some(("application/sdp", answer))),
        async {
            loop {
                let resp = bed.cpm.next_response(&mut tx, None).await.expect("answer");
                if resp.status_code() == Some(200) {
                    let mut dialog = bed.cpm.dialog_from_response(&tx, &resp).expect("dialog");
                    bed.cpm.ack(&mut dialog).await.expect("ACK");
                    return (resp, dialog);
                }
            }
        }
    );
    simple_side.expect("the node ACKs the callee's 200");
    let node_cpm_uri = sdp_path(&ok200);
    let mut bob = msrp_endpoint::accept(&bob_listener, bob_uri, node_simple_uri).await;
    let bind = next_request(&mut bob.0).await;
    let reply = bob.1.respond(&bind, 200);
    bob.1.send(&reply).await.expect("200");
    let mut alice =
        msrp_endpoint::connect(bed.node.listening.cpm_msrp, alice_uri, node_cpm_uri).await;
    let b = alice.1.bind();
    alice.1.send(&b).await.expect("bind");
    ok(&mut alice.0).await;
    Chat {
        bed,
        cpm_dialog,
        simple_dialog: None,
        alice,
        bob,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_300_kib_large_message_in_chunks_is_one_standalone_object() {
    let dc = Dovecot::start();
    bounded(60, async {
        let mut chat = set_up_large(&dc).await;
        let text: String = (0..300 * 1024 / 64)
            .map(|i| format!("{i:062}\r\n"))
            .collect();
        let body = cpim_text("Big-L", &text);
        send_chunked(&mut chat, "large-msrp-1", &body).await;
        hang_up(&mut chat).await;
        let o = wait_objects(&dc, "conv-large-1", 1).await;
        let (head, rest) = split(&o[0]);
        assert_eq!(field(head, "Content-Type"), Some("message/cpim"));
        assert_eq!(field(head, "Conversation-ID"), Some("conv-large-1"));
        assert_eq!(field(head, "Contribution-ID"), Some("contrib-large-1"));
        assert_eq!(field(head, "IMDN-Message-ID"), Some("Big-L"));
        assert_eq!(field(head, "Message-Direction"), Some("sent"));
        assert_eq!(rest.len(), body.len());
        assert!(
            rest.as_bytes() == body.as_ref(),
            "the reassembled body, byte for byte"
        );
        chat.bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn the_mss_down_at_session_end_gets_the_object_when_it_is_back() {
    let dc = Dovecot::start();
    bounded(60, async {
        let mut chat = set_up_with(Transport::Udp, record_config(&dc, ALICE_RECORDS), None).await;
        let first = converse(&mut chat, 3).await;
        dc.stop();
        let second = converse(&mut chat, 3).await;
        hang_up(&mut chat).await;
        // The upload fails (and is retried) while the MSS is down; the chat was not held up.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let admin = chat.bed.node.listening.admin;
        dc.restart();
        let o = wait_objects(&dc, "conv-chat-1", 1).await;
        let order: Vec<String> = first.into_iter().chain(second).collect();
        check_session(&o[0], &order);
        let metrics = http_get(admin, "/metrics").await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("cpm_iwf_record_failures_total{reason=\"connect\"}")),
            "{metrics}"
        );
        chat.bed.stop().await;
    })
    .await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// No MSS at all (a closed port): the message is delivered after the bounded wait, the upload
/// stays queued (queue depth 1) and the failure is counted. Needs no peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_mss_down_a_message_is_delivered_after_the_bounded_wait() {
    let dir = tempfile::tempdir().expect("dir");
    let prefs = dir.path().join("prefs.toml");
    std::fs::write(&prefs, ALICE_RECORDS).expect("prefs");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = closed.local_addr().expect("addr");
    drop(closed);
    let cfg = RecordConfig {
        enabled: true,
        preferences: Some(prefs),
        queue_path: dir.path().join("queue.redb"),
        imap: gone,
        upload_wait_ms: 1_000,
        retry_base_ms: 60_000,
        ..RecordConfig::default()
    };
    bounded(30, async {
        let mut bed = Bed::start_with(Transport::Udp, move |c| c.record = cfg).await;
        let bob = bed.simple.aor();
        let started = std::time::Instant::now();
        let (status, _) = pager(&mut bed, &bob, "conv-down", "Msg-D", 200, || async {}).await;
        assert_eq!(status, 200, "delivered although the MSS is down");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let metrics = http_get(bed.node.listening.admin, "/metrics").await;
        assert!(
            metrics.contains("cpm_iwf_record_queue_depth 1"),
            "{metrics}"
        );
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("cpm_iwf_record_failures_total{reason=\"connect\"}")),
            "{metrics}"
        );
        bed.stop().await;
    })
    .await;
}

/// A job queued while the MSS is down survives a node restart: the next node uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_queued_upload_survives_a_node_restart() {
    let dc = Dovecot::start();
    dc.stop();
    bounded(60, async {
        let mut bed = Bed::start_with(Transport::Udp, record_config(&dc, ALICE_RECORDS)).await;
        let bob = bed.simple.aor();
        let (status, body) = pager(&mut bed, &bob, "conv-restart", "Msg-R", 200, || async {}).await;
        assert_eq!(status, 200);
        // Not recorded: the upload waits in the durable queue.
        let metrics = http_get(bed.node.listening.admin, "/metrics").await;
        assert!(
            metrics.contains("cpm_iwf_record_queue_depth 1"),
            "{metrics}"
        );
        bed.stop().await;
        // The first node's tasks (and its queue file) are gone once aborted tasks are dropped.
        tokio::time::sleep(Duration::from_millis(500)).await;
        dc.restart();
        let bed = Bed::start_with(Transport::Udp, record_config(&dc, ALICE_RECORDS)).await;
        let o = wait_objects(&dc, "conv-restart", 1).await;
        let (head, rest) = split(&o[0]);
        assert_eq!(field(head, "IMDN-Message-ID"), Some("Msg-R"));
        assert_eq!(rest.as_bytes(), body.as_ref());
        bed.stop().await;
    })
    .await;
}

/// 100 recorded pager messages one after the other: every one in the MSS, in order, and how
/// long the node took per message with its upload before delivery (printed: the figure the
/// README quotes comes from this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dovecot-imapd (and root): .ci/test.sh installs it"]
async fn a_hundred_recorded_messages_arrive_in_order() {
    let dc = Dovecot::start();
    bounded(120, async {
        let mut bed = Bed::start_with(Transport::Udp, record_config(&dc, ALICE_RECORDS)).await;
        let bob = bed.simple.aor();
        let n = 100;
        let started = std::time::Instant::now();
        for i in 0..n {
            let (status, _) = pager(
                &mut bed,
                &bob,
                "conv-hundred",
                &format!("H-{i:03}"),
                200,
                || async {},
            )
            .await;
            assert_eq!(status, 200);
        }
        let elapsed = started.elapsed();
        let o = wait_objects(&dc, "conv-hundred", n).await;
        for (i, obj) in o.iter().enumerate() {
            assert_eq!(
                field(split(obj).0, "IMDN-Message-ID"),
                Some(format!("H-{i:03}").as_str())
            );
        }
        println!(
            "{n} recorded pager messages in {elapsed:?}: {:?} each (upload before delivery)",
            elapsed / n as u32
        );
        bed.stop().await;
    })
    .await;
}
