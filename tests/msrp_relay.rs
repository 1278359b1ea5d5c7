//! The back-to-back MSRP relay on 127.0.0.1 with two test endpoints, one per side: the CPM
//! peer connects to the node (the node's leg is passive), the node connects to the SIMPLE peer
//! (active). Every wait is bounded by a timeout, every loop by a count.

#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::mapping::Mappings;
use cpm_iwf::node::ids::RandomIds;
use cpm_iwf::node::msrp::{
    ChunkTranslator, EndReason, LegSpec, MsrpRelay, RelayConfig, RelayEvent, SessionSpec, Setup,
};
use cpm_iwf::time::Millis;
use cpm_iwf::translate::Env;
use cpm_iwf::translate::chat::{ChatLeg, ChatParties, chat_report, chat_send};
use cpm_iwf::translate::state::{Device, Side};
use cpm_iwf::wire::msrp::{Continuation, Message, Method, ReportRequest};
use msrp_endpoint::{Read, Reader, WAIT, Writer};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

/// The translator the B2BUA would provide: `translate::chat` with a real `ChatLeg` per leg.
struct ChatTranslator {
    cpm: ChatLeg,
    simple: ChatLeg,
    mappings: Mappings,
    ids: Mutex<RandomIds>,
}

impl ChatTranslator {
    fn out(&self, to: Side) -> &ChatLeg {
        match to {
            Side::Cpm => &self.cpm,
            Side::Simple => &self.simple,
        }
    }
}

impl ChunkTranslator for ChatTranslator {
    fn send(&self, from: Side, msg: &Message) -> Result<Message, (u16, &'static str)> {
        let parties = ChatParties {
            sender: Device {
                aor: Bytes::from_static(b"sip:alice@cpm.example.net"),
                gruu: None,
                instance: None,
            },
            recipient: Bytes::from_static(b"sip:bob@simple.example.net"),
            conversation: None,
        };
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut env = Env {
            now: Millis(0),
            ids: &mut *ids,
            datetime: "2026-11-25T12:00:00.000Z",
        };
        chat_send(
            msg,
            from,
            self.out(from.other()),
            &parties,
            &self.mappings,
            &mut env,
        )
        .map(|o| o.send)
        .map_err(|e| (e.status(), "not translatable"))
    }

    fn report(&self, from: Side, msg: &Message) -> Option<Message> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut env = Env {
            now: Millis(0),
            ids: &mut *ids,
            datetime: "2026-11-25T12:00:00.000Z",
        };
        Some(chat_report(msg, self.out(from.other()), &mut env))
    }
}

fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

const ID: u64 = 7;

/// A relay and one established session: A is the CPM peer, B the SIMPLE peer.
struct Harness {
    relay: MsrpRelay,
    events: mpsc::Receiver<RelayEvent>,
    a_r: Reader,
    a_w: Writer,
    b_r: Reader,
    b_w: Writer,
}

async fn harness(cfg: RelayConfig, b_recv_buffer: Option<u32>) -> Harness {
    let (relay, events) = MsrpRelay::bind(lo(), lo(), cfg).await.expect("bind");
    let sid_cpm = relay.new_session_id();
    let sid_simple = relay.new_session_id();
    let node_cpm = relay.local_uri(Side::Cpm, &sid_cpm);
    let node_simple = relay.local_uri(Side::Simple, &sid_simple);
    let b_listener = msrp_endpoint::listen(b_recv_buffer);
    let b_port = b_listener.local_addr().expect("addr").port();
    // A connects (a=setup:active, port 9 in its SDP); B waits on its port.
    let a_uri = msrp_endpoint::uri(9, "alicesess1");
    let b_uri = msrp_endpoint::uri(b_port, "bobsess1");
    let translator = Arc::new(ChatTranslator {
        cpm: ChatLeg {
            local: node_cpm.clone(),
            remote_path: vec![a_uri.clone()],
        },
        simple: ChatLeg {
            local: node_simple.clone(),
            remote_path: vec![b_uri.clone()],
        },
        mappings: Mappings::embedded().expect("mappings"),
        ids: Mutex::new(RandomIds::new()),
    });
    relay
        .open(SessionSpec {
            id: ID,
            legs: [
                LegSpec {
                    side: Side::Cpm,
                    local_session_id: sid_cpm,
                    remote_path: vec![a_uri.clone()],
                    setup: Setup::Passive,
                    cema: false,
                },
                LegSpec {
                    side: Side::Simple,
                    local_session_id: sid_simple,
                    remote_path: vec![b_uri.clone()],
                    setup: Setup::Active,
                    cema: false,
                },
            ],
            translator,
        })
        .expect("open");
    // The node binds the SIMPLE leg with a bodiless SEND (RFC 4975 §5.4).
    let (mut b_r, b_w) = msrp_endpoint::accept(&b_listener, b_uri, node_simple.clone()).await;
    let bind = b_r.message().await;
    assert_eq!(bind.method(), Some(&Method::Send));
    assert_eq!(bind.body, None);
    assert_eq!(bind.to_path().expect("to").last(), Some(&b_w.uri));
    assert_eq!(bind.from_path().expect("from"), vec![node_simple]);
    let mut b_w = b_w;
    b_w.send(&b_w.respond(&bind, 200)).await.expect("200");
    // A binds the CPM leg the same way.
    let (mut a_r, mut a_w) =
        msrp_endpoint::connect(relay.local_addr(Side::Cpm), a_uri, node_cpm).await;
    let bind = a_w.bind();
    a_w.send(&bind).await.expect("bind");
    let ok = a_r.message().await;
    assert_eq!(ok.response_code(), Some(200));
    assert_eq!(ok.transaction_id, bind.transaction_id);
    Harness {
        relay,
        events,
        a_r,
        a_w,
        b_r,
        b_w,
    }
}

/// The next SessionEnded event (LegConnected ones skipped, at most 8).
async fn ended(events: &mut mpsc::Receiver<RelayEvent>) -> (u64, Side, EndReason) {
    for _ in 0..8 {
        match timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
        {
            Some(RelayEvent::SessionEnded { id, side, reason }) => return (id, side, reason),
            Some(RelayEvent::LegConnected { .. }) => {}
            None => panic!("event channel closed"),
        }
    }
    panic!("no SessionEnded event");
}

fn body_of(msg: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|k| b'a' + ((msg * 31 + k) % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn chunks_reports_and_failures_are_relayed() {
    let mut h = harness(RelayConfig::default(), None).await;
    // 10 messages of 10 chunks each: 100 SENDs.
    const MESSAGES: usize = 10;
    const CHUNKS: usize = 10;
    const CHUNK: usize = 100;
    let mut sent = Vec::new();
    for m in 0..MESSAGES {
        let body = body_of(m, CHUNKS * CHUNK);
        for c in 0..CHUNKS {
            let part = body.slice(c * CHUNK..(c + 1) * CHUNK);
            let chunk = h.a_w.chunk(
                &format!("msg{m:04}"),
                (c * CHUNK + 1) as u64,
                (CHUNKS * CHUNK) as u64,
                part,
                c + 1 == CHUNKS,
            );
            h.a_w.send(&chunk).await.expect("send");
            sent.push(chunk);
        }
    }
    for orig in &sent {
        let got = h.b_r.message().await;
        assert_eq!(got.method(), Some(&Method::Send));
        assert_eq!(got.body, orig.body, "body intact, in order");
        assert_eq!(got.message_id(), orig.message_id());
        assert_eq!(got.header("Byte-Range"), orig.header("Byte-Range"));
        assert_eq!(got.continuation, orig.continuation);
        assert_eq!(got.to_path().expect("to"), vec![h.b_w.uri.clone()]);
        assert_eq!(got.from_path().expect("from"), vec![h.b_w.node.clone()]);
        h.b_w.send(&h.b_w.respond(&got, 200)).await.expect("200");
    }
    for orig in &sent {
        let ok = h.a_r.message().await;
        assert_eq!(ok.response_code(), Some(200));
        assert_eq!(ok.transaction_id, orig.transaction_id, "200s in order");
    }

    // A success REPORT from B reaches A with its Message-ID, Byte-Range and Status.
    let mut report = h.b_w.request(Method::Report);
    report.set_header("Message-ID", "msg0000");
    report.set_header("Byte-Range", "1-1000/1000");
    report.set_header("Status", "000 200 OK");
    h.b_w.send(&report).await.expect("report");
    let got = h.a_r.message().await;
    assert_eq!(got.method(), Some(&Method::Report));
    assert_eq!(got.message_id().map(|v| &v[..]), Some(&b"msg0000"[..]));
    assert_eq!(
        got.header("Byte-Range").map(|v| &v[..]),
        Some(&b"1-1000/1000"[..])
    );
    assert_eq!(got.status().expect("status").map(|s| s.code), Some(200));
    assert_eq!(got.to_path().expect("to"), vec![h.a_w.uri.clone()]);
    assert_eq!(got.from_path().expect("from"), vec![h.a_w.node.clone()]);

    // B refuses a chunk: A has its 200 from the node, then a REPORT with B's status.
    let chunk = h
        .a_w
        .chunk("msgfail1", 1, 5, Bytes::from_static(b"hello"), true);
    h.a_w.send(&chunk).await.expect("send");
    let ok = h.a_r.message().await;
    assert_eq!(ok.response_code(), Some(200));
    let got = h.b_r.message().await;
    assert_eq!(got.message_id().map(|v| &v[..]), Some(&b"msgfail1"[..]));
    h.b_w.send(&h.b_w.respond(&got, 481)).await.expect("481");
    let rep = h.a_r.message().await;
    assert_eq!(rep.method(), Some(&Method::Report));
    let status = rep.status().expect("status").expect("a Status");
    assert_eq!((status.namespace, status.code), (0, 481));
    assert_eq!(
        rep.header("Byte-Range").map(|v| &v[..]),
        Some(&b"1-5/5"[..])
    );
    assert_eq!(rep.message_id().map(|v| &v[..]), Some(&b"msgfail1"[..]));
    assert_eq!(rep.to_path().expect("to"), vec![h.a_w.uri.clone()]);

    // And the other way: B to A.
    let chunk = h
        .b_w
        .chunk("bobmsg01", 1, 3, Bytes::from_static(b"yo!"), true);
    h.b_w.send(&chunk).await.expect("send");
    let got = h.a_r.message().await;
    assert_eq!(got.body.as_deref(), Some(&b"yo!"[..]));
    assert_eq!(got.to_path().expect("to"), vec![h.a_w.uri.clone()]);
    h.a_w.send(&h.a_w.respond(&got, 200)).await.expect("200");
    let ok = h.b_r.message().await;
    assert_eq!(ok.response_code(), Some(200));
    assert_eq!(ok.transaction_id, chunk.transaction_id);
    assert_eq!(h.relay.sessions(), 1);
}

#[tokio::test]
async fn a_chunk_never_answered_becomes_a_408_report() {
    let cfg = RelayConfig {
        transaction_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let mut h = harness(cfg, None).await;
    let chunk = h
        .a_w
        .chunk("msglost1", 1, 4, Bytes::from_static(b"lost"), true);
    h.a_w.send(&chunk).await.expect("send");
    assert_eq!(h.a_r.message().await.response_code(), Some(200));
    // B reads the chunk and stays silent.
    let got = h.b_r.message().await;
    assert_eq!(got.body.as_deref(), Some(&b"lost"[..]));
    let rep = h.a_r.message().await;
    assert_eq!(rep.method(), Some(&Method::Report));
    assert_eq!(rep.status().expect("status").map(|s| s.code), Some(408));
    assert_eq!(
        rep.header("Byte-Range").map(|v| &v[..]),
        Some(&b"1-4/4"[..])
    );
    assert_eq!(rep.message_id().map(|v| &v[..]), Some(&b"msglost1"[..]));
    // A late 200 is absorbed; the session goes on.
    h.b_w.send(&h.b_w.respond(&got, 200)).await.expect("200");
    let chunk = h
        .a_w
        .chunk("msgnext1", 1, 2, Bytes::from_static(b"ok"), true);
    h.a_w.send(&chunk).await.expect("send");
    assert_eq!(h.a_r.message().await.response_code(), Some(200));
    assert_eq!(h.b_r.message().await.body.as_deref(), Some(&b"ok"[..]));
    assert_eq!(h.relay.sessions(), 1);
}

#[tokio::test]
async fn an_unknown_session_gets_481_and_a_wrong_peer_does_not_bind() {
    let (relay, mut events) = MsrpRelay::bind(lo(), lo(), RelayConfig::default())
        .await
        .expect("bind");
    let addr = relay.local_addr(Side::Cpm);
    let stranger = msrp_endpoint::uri(9, "nobody1");
    let nowhere = relay.local_uri(Side::Cpm, &Bytes::from_static(b"nosuchsession"));
    let (mut r, mut w) = msrp_endpoint::connect(addr, stranger.clone(), nowhere).await;
    let req = w.chunk("m0000001", 1, 2, Bytes::from_static(b"hi"), true);
    w.send(&req).await.expect("send");
    let resp = r.message().await;
    assert_eq!(resp.response_code(), Some(481));
    assert_eq!(resp.transaction_id, req.transaction_id);
    assert!(r.closed(4).await, "closed after the 481");

    // A session whose CPM peer is alicesess1: a connection from another peer is refused, and
    // the leg still binds for the right one.
    let sid = relay.new_session_id();
    let node = relay.local_uri(Side::Cpm, &sid);
    let alice = msrp_endpoint::uri(9, "alicesess1");
    let echo = Arc::new(ChatTranslator {
        cpm: ChatLeg {
            local: node.clone(),
            remote_path: vec![alice.clone()],
        },
        simple: ChatLeg {
            local: relay.local_uri(Side::Simple, &sid),
            remote_path: vec![alice.clone()],
        },
        mappings: Mappings::embedded().expect("mappings"),
        ids: Mutex::new(RandomIds::new()),
    });
    relay
        .open(SessionSpec {
            id: 1,
            legs: [
                LegSpec {
                    side: Side::Cpm,
                    local_session_id: sid.clone(),
                    remote_path: vec![alice.clone()],
                    setup: Setup::Passive,
                    cema: false,
                },
                LegSpec {
                    side: Side::Simple,
                    local_session_id: sid.clone(),
                    remote_path: vec![msrp_endpoint::uri(9, "bobsess1")],
                    setup: Setup::Passive,
                    cema: false,
                },
            ],
            translator: echo,
        })
        .expect("open");
    let (mut r, mut w) = msrp_endpoint::connect(addr, stranger, node.clone()).await;
    let bind = w.bind();
    w.send(&bind).await.expect("send");
    assert_eq!(r.message().await.response_code(), Some(481));
    assert!(r.closed(4).await);
    let (mut r, mut w) = msrp_endpoint::connect(addr, alice, node).await;
    let bind = w.bind();
    w.send(&bind).await.expect("send");
    assert_eq!(r.message().await.response_code(), Some(200));
    match timeout(WAIT, events.recv()).await.expect("event") {
        Some(RelayEvent::LegConnected {
            id: 1,
            side: Side::Cpm,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_frame_gets_400_and_garbage_closes_the_session() {
    let mut h = harness(RelayConfig::default(), None).await;
    // Framed but malformed (no From-Path): 400, the connection stays usable.
    let node = h.a_w.node.to_string();
    let bad = format!(
        "MSRP bad00001 SEND\r\nTo-Path: {node}\r\nMessage-ID: x1234\r\n-------bad00001$\r\n"
    );
    h.a_w.raw(bad.as_bytes()).await.expect("send");
    let resp = h.a_r.message().await;
    assert_eq!(resp.response_code(), Some(400));
    assert_eq!(&resp.transaction_id[..], b"bad00001");
    assert_eq!(resp.to_path().expect("to"), vec![h.a_w.uri.clone()]);
    let chunk = h
        .a_w
        .chunk("msgafter", 1, 2, Bytes::from_static(b"ok"), true);
    h.a_w.send(&chunk).await.expect("send");
    assert_eq!(h.a_r.message().await.response_code(), Some(200));
    let got = h.b_r.message().await;
    assert_eq!(got.body.as_deref(), Some(&b"ok"[..]));
    h.b_w.send(&h.b_w.respond(&got, 200)).await.expect("200");

    // Not MSRP at all: the stream cannot be framed; both connections close, the B2BUA hears.
    h.a_w.raw(b"HELLO WORLD\r\n\r\n").await.expect("send");
    assert!(h.a_r.closed(4).await, "A closed");
    assert!(h.b_r.closed(4).await, "B closed");
    let (id, side, reason) = ended(&mut h.events).await;
    assert_eq!((id, side), (ID, Side::Cpm));
    assert!(matches!(reason, EndReason::Framing(_)), "{reason:?}");
    assert_eq!(h.relay.sessions(), 0);
}

#[tokio::test]
async fn a_connection_drop_ends_the_session() {
    let mut h = harness(RelayConfig::default(), None).await;
    drop(h.b_r);
    drop(h.b_w);
    let (id, side, reason) = ended(&mut h.events).await;
    assert_eq!(
        (id, side, reason),
        (ID, Side::Simple, EndReason::PeerClosed)
    );
    assert!(h.a_r.closed(4).await, "the other leg is closed too");
    assert_eq!(h.relay.sessions(), 0);
}

#[tokio::test]
async fn a_passive_leg_whose_peer_never_connects_ends_the_session() {
    let cfg = RelayConfig {
        connect_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let (relay, mut events) = MsrpRelay::bind(lo(), lo(), cfg).await.expect("bind");
    let sid = relay.new_session_id();
    let peer = msrp_endpoint::uri(9, "peer0001");
    let t = Arc::new(ChatTranslator {
        cpm: ChatLeg {
            local: relay.local_uri(Side::Cpm, &sid),
            remote_path: vec![peer.clone()],
        },
        simple: ChatLeg {
            local: relay.local_uri(Side::Simple, &sid),
            remote_path: vec![peer.clone()],
        },
        mappings: Mappings::embedded().expect("mappings"),
        ids: Mutex::new(RandomIds::new()),
    });
    let leg = |side| LegSpec {
        side,
        local_session_id: sid.clone(),
        remote_path: vec![peer.clone()],
        setup: Setup::Passive,
        cema: false,
    };
    relay
        .open(SessionSpec {
            id: 3,
            legs: [leg(Side::Cpm), leg(Side::Simple)],
            translator: t,
        })
        .expect("open");
    let (id, _, reason) = ended(&mut events).await;
    assert_eq!((id, reason), (3, EndReason::ConnectTimeout));
    assert_eq!(relay.sessions(), 0);
}

/// A writes `n` chunks of `size` bytes (Failure-Report: no, so nothing comes back) and counts
/// the writes that completed; the task gives the writer back (its drop would close A).
fn flood(
    mut w: Writer,
    n: usize,
    size: usize,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<Writer>) {
    let done = Arc::new(AtomicUsize::new(0));
    let count = done.clone();
    let task = tokio::spawn(async move {
        let total = (n * size) as u64;
        for i in 0..n {
            let mut c = w.chunk(
                "bigmsg01",
                (i * size + 1) as u64,
                total,
                body_of(i, size),
                i + 1 == n,
            );
            c.set_header("Failure-Report", "no");
            if w.send(&c).await.is_err() {
                return w;
            }
            count.fetch_add(1, Ordering::Relaxed);
        }
        w
    });
    (done, task)
}

#[tokio::test]
async fn a_stalled_receiver_slows_the_sender_and_nothing_is_lost() {
    const N: usize = 2_000;
    const SIZE: usize = 16 * 1024;
    let cfg = RelayConfig {
        queue_depth: 4,
        queue_bytes: 64 * 1024,
        stall_timeout: Duration::from_secs(20),
        ..RelayConfig::default()
    };
    let h = harness(cfg, Some(16 * 1024)).await;
    let Harness {
        relay,
        mut events,
        a_r,
        a_w,
        mut b_r,
        b_w: _b_w,
    } = h;
    // B does not read: A's writes stop progressing (its TCP window fills), well before the
    // 32 MiB it wants to send.
    let (done, task) = flood(a_w, N, SIZE);
    let start = Instant::now();
    // Progress must stop and stay stopped for a whole second (4 windows of 250 ms), within
    // 60 windows.
    let mut last = usize::MAX;
    let mut still = 0;
    let mut plateau = false;
    for _ in 0..60 {
        sleep(Duration::from_millis(250)).await;
        let now = done.load(Ordering::Relaxed);
        still = if now == last && now > 0 { still + 1 } else { 0 };
        last = now;
        if still == 4 {
            plateau = true;
            break;
        }
    }
    assert!(
        plateau,
        "the sender was not slowed down ({last} chunks written)"
    );
    assert!(
        last < N,
        "everything was buffered somewhere ({last} chunks)"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    // B reads again: every chunk arrives, in order, intact.
    for i in 0..N {
        let got = b_r.message().await;
        assert_eq!(got.body, Some(body_of(i, SIZE)), "chunk {i}");
        assert_eq!(
            got.failure_report().expect("Failure-Report"),
            ReportRequest::No
        );
        let expect_flag = if i + 1 == N {
            Continuation::Complete
        } else {
            Continuation::More
        };
        assert_eq!(got.continuation, expect_flag);
    }
    let _a_w = timeout(WAIT, task)
        .await
        .expect("sender done")
        .expect("join");
    assert_eq!(done.load(Ordering::Relaxed), N);
    eprintln!("sender stopped after {last} of {N} chunks while B did not read");
    assert_eq!(relay.sessions(), 1);
    assert!(
        events
            .try_recv()
            .map_or(true, |e| !matches!(e, RelayEvent::SessionEnded { .. }))
    );
    drop(a_r);
}

#[tokio::test]
async fn a_receiver_that_does_not_read_for_the_stall_timeout_is_cut_off() {
    let cfg = RelayConfig {
        queue_depth: 4,
        queue_bytes: 64 * 1024,
        stall_timeout: Duration::from_secs(1),
        ..RelayConfig::default()
    };
    let h = harness(cfg, Some(16 * 1024)).await;
    let Harness {
        relay,
        mut events,
        mut a_r,
        a_w,
        b_r: _b_r,
        b_w: _b_w,
    } = h;
    let (_done, task) = flood(a_w, 2_000, 16 * 1024);
    let (id, side, reason) = ended(&mut events).await;
    assert_eq!((id, side, reason), (ID, Side::Simple, EndReason::Stalled));
    assert_eq!(relay.sessions(), 0);
    // A is cut off with the session (its writes fail or finish; it sees the close).
    assert!(matches!(a_r.recv().await, Read::Closed | Read::Error(_)));
    timeout(WAIT, task)
        .await
        .expect("sender stops")
        .expect("join");
}

#[tokio::test]
async fn a_peer_that_refuses_the_first_send_ends_the_session() {
    let (relay, mut events) = MsrpRelay::bind(lo(), lo(), RelayConfig::default())
        .await
        .expect("bind");
    let sid = relay.new_session_id();
    let b_listener = msrp_endpoint::listen(None);
    let b_uri = msrp_endpoint::uri(b_listener.local_addr().expect("addr").port(), "bobsess9");
    let a_uri = msrp_endpoint::uri(9, "alicesess9");
    let node_simple = relay.local_uri(Side::Simple, &sid);
    let t = Arc::new(ChatTranslator {
        cpm: ChatLeg {
            local: relay.local_uri(Side::Cpm, &sid),
            remote_path: vec![a_uri.clone()],
        },
        simple: ChatLeg {
            local: node_simple.clone(),
            remote_path: vec![b_uri.clone()],
        },
        mappings: Mappings::embedded().expect("mappings"),
        ids: Mutex::new(RandomIds::new()),
    });
    relay
        .open(SessionSpec {
            id: 9,
            legs: [
                LegSpec {
                    side: Side::Simple,
                    local_session_id: sid.clone(),
                    remote_path: vec![b_uri.clone()],
                    setup: Setup::Active,
                    cema: false,
                },
                LegSpec {
                    side: Side::Cpm,
                    local_session_id: sid.clone(),
                    remote_path: vec![a_uri],
                    setup: Setup::Passive,
                    cema: false,
                },
            ],
            translator: t,
        })
        .expect("open");
    let (mut b_r, mut b_w) = msrp_endpoint::accept(&b_listener, b_uri, node_simple).await;
    let bind = b_r.message().await;
    b_w.send(&b_w.respond(&bind, 481)).await.expect("481");
    let (id, side, reason) = ended(&mut events).await;
    assert_eq!(
        (id, side, reason),
        (9, Side::Simple, EndReason::BindRefused(481))
    );
    assert!(b_r.closed(4).await);
    assert_eq!(relay.sessions(), 0);
}

#[tokio::test]
async fn a_half_sent_message_is_cut_off_after_the_stall_timeout() {
    let cfg = RelayConfig {
        stall_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let mut h = harness(cfg, None).await;
    let node = h.a_w.node.to_string();
    let head = format!("MSRP half0001 SEND\r\nTo-Path: {node}\r\nFrom-Path: ");
    h.a_w.raw(head.as_bytes()).await.expect("send");
    let started = Instant::now();
    let (id, side, reason) = ended(&mut h.events).await;
    assert_eq!((id, side, reason), (ID, Side::Cpm, EndReason::Stalled));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(h.b_r.closed(4).await);
}

#[tokio::test]
async fn a_silent_session_ends_after_the_idle_timeout() {
    let cfg = RelayConfig {
        idle_timeout: Duration::from_millis(1_500),
        ..RelayConfig::default()
    };
    let mut h = harness(cfg, None).await;
    let (id, _, reason) = ended(&mut h.events).await;
    assert_eq!((id, reason), (ID, EndReason::Idle));
    assert!(h.a_r.closed(4).await);
    assert!(h.b_r.closed(4).await);
}
