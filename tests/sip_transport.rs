//! SIP transports on 127.0.0.1 with ephemeral ports: what arrives, what is answered, what is
//! refused, what is closed, and that nothing grows without bound. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::config::Cidr;
use cpm_iwf::node::transport::{
    Inbound, SendError, SipTransport, Target, Transport, TransportConfig,
};
use cpm_iwf::wire::sip::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

const WAIT: Duration = Duration::from_secs(5);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config() -> TransportConfig {
    TransportConfig::new(vec![any()], vec![any()])
}

async fn start(cfg: TransportConfig) -> (SipTransport, mpsc::Receiver<Inbound>) {
    SipTransport::bind(cfg).await.expect("bind")
}

/// A valid MESSAGE with `body`.
fn message(call_id: &str, body: &str) -> String {
    format!(
        "MESSAGE sip:bob@simple.example.net SIP/2.0\r\n\
         Via: SIP/2.0/TCP 10.9.9.9:5060;branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@cpm.example.net>;tag=a1\r\n\
         To: <sip:bob@simple.example.net>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn next(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("an inbound message in time")
        .expect("channel open")
}

/// Nothing more arrives within a short while.
async fn nothing_more(rx: &mut mpsc::Receiver<Inbound>) {
    if let Ok(Some(m)) = timeout(Duration::from_millis(200), rx.recv()).await {
        panic!("unexpected message {:?}", m.message.call_id());
    }
}

async fn udp_answer(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 70_000];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Read from `s` until `want` bytes came or the peer closed; bounded by WAIT.
async fn read_some(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("timed out with {} of {want} bytes", out.len()),
        }
    }
    out
}

/// The peer closed (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn udp_request_is_delivered_with_received_and_rport() {
    let (t, mut rx) = start(config()).await;
    let server = t.udp_addrs()[0];
    let client = UdpSocket::bind(any()).await.unwrap();
    client
        .send_to(message("u1", "hi").as_bytes(), server)
        .await
        .unwrap();
    let m = next(&mut rx).await;
    assert_eq!(m.transport, Transport::Udp);
    assert_eq!(m.source, client.local_addr().unwrap());
    assert_eq!(m.local, server);
    assert_eq!(m.connection, None);
    assert_eq!(m.message.call_id(), Some("u1"));
    assert_eq!(m.message.body().as_ref(), b"hi");
    let via = m.message.header("Via").unwrap();
    let port = client.local_addr().unwrap().port();
    assert!(
        via.ends_with(&format!(";rport={port};received=127.0.0.1")),
        "{via}"
    );

    // A response goes out from the listen socket (RFC 3261 §18.1.1 source port).
    let answer = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    t.send(
        Target {
            addr: m.source,
            transport: Transport::Udp,
        },
        answer.clone(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &answer[..]);
    assert_eq!(from, server);
    t.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn malformed_datagram_gets_400_with_a_reason() {
    let (t, mut rx) = start(config()).await;
    let client = UdpSocket::bind(any()).await.unwrap();
    let bad = message("x", "").replace("Call-ID: x\r\n", "");
    client
        .send_to(bad.as_bytes(), t.udp_addrs()[0])
        .await
        .unwrap();
    let answer = udp_answer(&client).await;
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request: missing Call-ID\r\n"),
        "{answer}"
    );
    assert!(answer.contains("CSeq: 1 MESSAGE\r\n"), "{answer}");
    assert!(answer.contains("To: <sip:bob@simple.example.net>;tag="));
    nothing_more(&mut rx).await;

    // A malformed response and plain garbage get nothing.
    client
        .send_to(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", t.udp_addrs()[0])
        .await
        .unwrap();
    client
        .send_to(b"\x00\x01garbage", t.udp_addrs()[0])
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        timeout(Duration::from_millis(300), client.recv_from(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(t.stats().parse_errors_answered.load(Ordering::Relaxed), 1);
    assert_eq!(t.stats().parse_errors_dropped.load(Ordering::Relaxed), 2);
}

/// The node's core reads the UDP sockets itself (`bind_for_caller`): the same delivery, answers
/// and counts as the reading task's, a bounded batch per `drain`, and `ready` waits again once
/// the socket is empty.
#[tokio::test]
async fn udp_read_by_the_caller_delivers_answers_and_batches() {
    let (t, _rx, mut udp) = SipTransport::bind_for_caller(config()).await.expect("bind");
    let server = t.udp_addrs()[0];
    let client = UdpSocket::bind(any()).await.unwrap();
    for i in 0..5 {
        client
            .send_to(message(&format!("c{i}"), "hi").as_bytes(), server)
            .await
            .unwrap();
    }
    client.send_to(b"\r\n\r\n", server).await.unwrap();
    let bad = message("x", "").replace("Call-ID: x\r\n", "");
    client.send_to(bad.as_bytes(), server).await.unwrap();

    // 7 datagrams; batches of at most 3; every message in order, with its Via stamped.
    let mut got = Vec::new();
    let mut batches = 0;
    while got.len() < 5 || batches < 3 {
        let i = timeout(WAIT, udp.ready()).await.expect("readable in time");
        assert_eq!(i, 0);
        let read = udp.drain(i, 3, |m| got.push(m));
        assert!(read <= 3, "{read}");
        batches += 1;
        assert!(
            batches < 20,
            "{} messages after {batches} batches",
            got.len()
        );
    }
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.message.call_id().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(
        got.iter()
            .all(|m| m.transport == Transport::Udp && m.local == server)
    );
    let port = client.local_addr().unwrap().port();
    assert!(
        got[0]
            .message
            .header("Via")
            .unwrap()
            .contains(&format!("rport={port}"))
    );
    // The request without Call-ID was answered from the drain.
    let answer = udp_answer(&client).await;
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request: missing Call-ID\r\n"),
        "{answer}"
    );
    assert_eq!(t.stats().keepalives.load(Ordering::Relaxed), 1);
    assert_eq!(t.stats().delivered.load(Ordering::Relaxed), 5);

    // Empty now: `ready` waits until the next datagram.
    assert_eq!(udp.drain(0, 3, |m| got.push(m)), 0);
    assert!(
        timeout(Duration::from_millis(200), udp.ready())
            .await
            .is_err()
    );
    client
        .send_to(message("c5", "").as_bytes(), server)
        .await
        .unwrap();
    assert_eq!(timeout(WAIT, udp.ready()).await.expect("readable again"), 0);
    assert_eq!(udp.drain(0, 3, |m| got.push(m)), 1);
    assert_eq!(got.last().unwrap().message.call_id(), Some("c5"));

    // A transport that stopped listening is never ready.
    t.shutdown(Duration::from_secs(1)).await;
    client
        .send_to(message("c6", "").as_bytes(), server)
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(200), udp.ready())
            .await
            .is_err()
    );
}

/// Where the caller reads the UDP sockets, a full receive buffer is the node's only place to
/// drop: the kernel's count is read back and counted once.
#[tokio::test]
async fn kernel_drops_of_an_unread_udp_socket_are_counted() {
    let mut cfg = config();
    cfg.udp_buffer_bytes = 4_096; // the kernel rounds it up to its minimum
    let (t, _rx, _udp) = SipTransport::bind_for_caller(cfg).await.expect("bind");
    let server = t.udp_addrs()[0];
    let client = UdpSocket::bind(any()).await.unwrap();
    assert_eq!(t.update_kernel_drops(), 0);
    let m = message("d", &"x".repeat(900));
    for _ in 0..400 {
        client.send_to(m.as_bytes(), server).await.unwrap();
    }
    let dropped = t.update_kernel_drops();
    assert!(dropped > 0, "nothing dropped");
    assert!(dropped < 400, "{dropped}");
    assert_eq!(t.stats().udp_buffer_drops.load(Ordering::Relaxed), dropped);
    // Counted once: nothing new since.
    assert_eq!(t.update_kernel_drops(), 0);
}

#[tokio::test]
async fn oversized_datagram_gets_413() {
    let mut cfg = config();
    cfg.limits = Limits {
        max_message: 2048,
        ..Limits::default()
    };
    let (t, mut rx) = start(cfg).await;
    let client = UdpSocket::bind(any()).await.unwrap();
    let big = message("big", &"x".repeat(3000));
    client
        .send_to(big.as_bytes(), t.udp_addrs()[0])
        .await
        .unwrap();
    let answer = udp_answer(&client).await;
    assert!(
        answer.starts_with("SIP/2.0 413 Request Entity Too Large"),
        "{answer}"
    );
    nothing_more(&mut rx).await;
}

#[tokio::test]
async fn full_inbound_channel_drops_datagrams_and_counts_them() {
    // The drops are also the operator's metric (only this test in this binary installs the
    // recorder or names a side, so the count is this test's own).
    let handle = cpm_iwf::metrics::install().expect("metrics recorder");
    let mut cfg = config();
    cfg.inbound_depth = 1;
    cfg.side = Some(cpm_iwf::translate::state::Side::Simple);
    let (t, mut rx) = start(cfg).await;
    let client = UdpSocket::bind(any()).await.unwrap();
    for i in 0..5 {
        client
            .send_to(message(&format!("d{i}"), "").as_bytes(), t.udp_addrs()[0])
            .await
            .unwrap();
    }
    let stats = t.stats().clone();
    let deadline = Instant::now() + WAIT;
    while stats.delivered.load(Ordering::Relaxed) + stats.inbound_full_drops.load(Ordering::Relaxed)
        < 5
    {
        assert!(Instant::now() < deadline, "datagrams not all handled");
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
    assert_eq!(stats.inbound_full_drops.load(Ordering::Relaxed), 4);
    let text = handle.render();
    assert!(
        text.lines()
            .any(|l| l == r#"cpm_iwf_sip_inbound_drops_total{side="simple"} 4"#),
        "{text}"
    );
    assert_eq!(next(&mut rx).await.message.call_id(), Some("d0"));
    nothing_more(&mut rx).await;
}

#[tokio::test]
async fn tcp_message_split_across_writes_arrives_once() {
    let (t, mut rx) = start(config()).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.set_nodelay(true).unwrap();
    let m = message("split", "hello world");
    let bytes = m.as_bytes();
    for piece in [
        &bytes[..20],
        &bytes[20..150],
        &bytes[150..bytes.len() - 3],
        &bytes[bytes.len() - 3..],
    ] {
        c.write_all(piece).await.unwrap();
        sleep(Duration::from_millis(20)).await;
    }
    let got = next(&mut rx).await;
    assert_eq!(got.transport, Transport::Tcp);
    assert_eq!(got.message.call_id(), Some("split"));
    assert_eq!(got.message.body().as_ref(), b"hello world");
    assert_eq!(got.source, c.local_addr().unwrap());
    assert!(got.connection.is_some());
    nothing_more(&mut rx).await;
}

#[tokio::test]
async fn two_messages_in_one_write_arrive_as_two() {
    let (t, mut rx) = start(config()).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    let both = format!("{}{}", message("one", "1"), message("two", "22"));
    c.write_all(both.as_bytes()).await.unwrap();
    let a = next(&mut rx).await;
    let b = next(&mut rx).await;
    assert_eq!(a.message.call_id(), Some("one"));
    assert_eq!(b.message.call_id(), Some("two"));
    assert_eq!(a.connection, b.connection);
    nothing_more(&mut rx).await;
}

#[tokio::test]
async fn full_inbound_channel_pauses_a_tcp_connection_without_loss() {
    let mut cfg = config();
    cfg.inbound_depth = 1;
    let (t, mut rx) = start(cfg).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    let all: String = (0..4).map(|i| message(&format!("p{i}"), "x")).collect();
    c.write_all(all.as_bytes()).await.unwrap();
    sleep(Duration::from_millis(100)).await;
    for i in 0..4 {
        assert_eq!(
            next(&mut rx).await.message.call_id(),
            Some(format!("p{i}").as_str())
        );
    }
    assert_eq!(t.stats().inbound_full_drops.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn tcp_bad_request_with_known_length_is_answered_and_the_connection_kept() {
    let mut cfg = config();
    cfg.stall_timeout = Duration::from_millis(200);
    let (t, mut rx) = start(cfg).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    let bad = message("bad", "abc").replace("CSeq: 1 MESSAGE", "CSeq: 1 INVITE");
    c.write_all(bad.as_bytes()).await.unwrap();
    let answer = read_some(&mut c, 20).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("SIP/2.0 400 Bad Request: CSeq method"),
        "{text}"
    );
    // Its body was skipped whole: a quiet peer now is idle, not stalled.
    sleep(Duration::from_millis(500)).await;
    c.write_all(message("good", "ok").as_bytes()).await.unwrap();
    assert_eq!(next(&mut rx).await.message.call_id(), Some("good"));
}

#[tokio::test]
async fn tcp_keepalive_ping_gets_a_pong() {
    let (t, _rx) = start(config()).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_some(&mut c, 2).await, b"\r\n");
    assert_eq!(t.stats().keepalives.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn garbage_closes_its_connection_and_a_new_one_works() {
    let (t, mut rx) = start(config()).await;
    let mut bad = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    bad.write_all(b"\x16\x03\x01 this is not SIP\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut bad, WAIT).await);
    let mut good = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    good.write_all(message("after", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.message.call_id(), Some("after"));
    assert_eq!(t.stats().framing_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn stalled_half_message_is_cut_off_while_others_keep_working() {
    let mut cfg = config();
    cfg.stall_timeout = Duration::from_millis(300);
    let (t, mut rx) = start(cfg).await;
    let mut stalled = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    let mut other = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    let m = message("half", "body");
    let began = Instant::now();
    stalled.write_all(&m.as_bytes()[..60]).await.unwrap();

    other.write_all(message("o1", "").as_bytes()).await.unwrap();
    assert_eq!(next(&mut rx).await.message.call_id(), Some("o1"));

    assert!(
        closed_within(&mut stalled, WAIT).await,
        "stalled peer not cut off"
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );

    // A head whose body never comes stalls too (the head was consumed by the decoder).
    let mut body_stall = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    body_stall
        .write_all(&m.as_bytes()[..m.len() - 2])
        .await
        .unwrap();
    assert!(closed_within(&mut body_stall, WAIT).await);

    other.write_all(message("o2", "").as_bytes()).await.unwrap();
    assert_eq!(next(&mut rx).await.message.call_id(), Some("o2"));
    assert_eq!(t.stats().stall_timeouts.load(Ordering::Relaxed), 2);
    nothing_more(&mut rx).await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(300);
    let (t, mut rx) = start(cfg).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.write_all(message("i1", "").as_bytes()).await.unwrap();
    next(&mut rx).await;
    assert!(closed_within(&mut c, WAIT).await);
    assert_eq!(t.stats().idle_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn outbound_tcp_reuses_the_inbound_connection() {
    let (t, mut rx) = start(config()).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.write_all(message("r1", "").as_bytes()).await.unwrap();
    let m = next(&mut rx).await;
    let conn = m.connection.unwrap();
    assert_eq!(t.connection_to(c.local_addr().unwrap()), Some(conn));

    let resp = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    t.send_on(conn, resp.clone()).unwrap();
    assert_eq!(read_some(&mut c, resp.len()).await, resp);

    // A request to the peer's address goes on the same connection, none is opened.
    let req = Bytes::from(message("r2", "back"));
    t.send(
        Target {
            addr: m.source,
            transport: Transport::Tcp,
        },
        req.clone(),
    )
    .await
    .unwrap();
    assert_eq!(read_some(&mut c, req.len()).await, req);

    // RFC 5923: the connection also serves the peer's advertised sent-by.
    let sent_by: SocketAddr = "127.0.0.1:5999".parse().unwrap();
    assert!(t.alias(conn, sent_by));
    t.send(
        Target {
            addr: sent_by,
            transport: Transport::Tcp,
        },
        req.clone(),
    )
    .await
    .unwrap();
    assert_eq!(read_some(&mut c, req.len()).await, req);
    assert_eq!(t.open_connections(), 1);
    assert_eq!(t.stats().connections_opened.load(Ordering::Relaxed), 0);

    // Once the peer closes, neither name leads to it any more.
    drop(c);
    let deadline = Instant::now() + WAIT;
    while t.open_connections() > 0 {
        assert!(Instant::now() < deadline, "close not noticed");
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.connection_to(sent_by), None);
    assert_eq!(t.connection_to(m.source), None);
}

#[tokio::test]
async fn outbound_tcp_connects_once_and_reads_answers_on_it() {
    let (t, mut rx) = start(config()).await;
    let peer = TcpListener::bind(any()).await.unwrap();
    let target = Target {
        addr: peer.local_addr().unwrap(),
        transport: Transport::Tcp,
    };
    let req = Bytes::from(message("o1", "x"));
    t.send(target, req.clone()).await.unwrap();
    let (mut s, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    assert_eq!(read_some(&mut s, req.len()).await, req);
    t.send(target, req.clone()).await.unwrap();
    assert_eq!(read_some(&mut s, req.len()).await, req);
    assert_eq!(t.stats().connections_opened.load(Ordering::Relaxed), 1);
    // The peer answers on the connection the node opened.
    s.write_all(message("o1-back", "").as_bytes())
        .await
        .unwrap();
    let m = next(&mut rx).await;
    assert_eq!(m.message.call_id(), Some("o1-back"));
    assert_eq!(m.connection, t.connection_to(target.addr));
}

#[tokio::test]
async fn acl_drops_datagrams_and_closes_connections() {
    let mut cfg = config();
    cfg.allow = vec!["10.0.0.0/8".parse::<Cidr>().unwrap()];
    let (t, mut rx) = start(cfg).await;
    let client = UdpSocket::bind(any()).await.unwrap();
    client
        .send_to(message("acl", "").as_bytes(), t.udp_addrs()[0])
        .await
        .unwrap();
    client
        .send_to(b"MESSAGE broken\r\n\r\n", t.udp_addrs()[0])
        .await
        .unwrap();
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    let _ = c.write_all(message("acl2", "").as_bytes()).await;
    assert!(closed_within(&mut c, WAIT).await);
    let mut buf = [0u8; 512];
    assert!(
        timeout(Duration::from_millis(200), client.recv_from(&mut buf))
            .await
            .is_err(),
        "refused source got an answer"
    );
    nothing_more(&mut rx).await;
    assert_eq!(t.stats().acl_refused.load(Ordering::Relaxed), 3);
    assert_eq!(t.open_connections(), 0);
}

#[tokio::test]
async fn full_outbound_queue_is_busy_not_growth() {
    let mut cfg = config();
    cfg.queue_depth = 2;
    let (t, _rx) = start(cfg).await;
    // A peer that accepts and never reads.
    let peer = TcpListener::bind(any()).await.unwrap();
    let target = Target {
        addr: peer.local_addr().unwrap(),
        transport: Transport::Tcp,
    };
    let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
    t.send(target, chunk.clone()).await.unwrap();
    let (_held, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    let mut busy = false;
    let deadline = Instant::now() + WAIT;
    // The kernel buffers fill first, then the writer blocks, then the 2-deep queue fills.
    for _ in 0..10_000 {
        match t.send(target, chunk.clone()).await {
            Ok(()) => sleep(Duration::from_millis(1)).await,
            Err(SendError::Busy) => {
                busy = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(Instant::now() < deadline, "never busy");
    }
    assert!(busy);
    assert!(t.stats().send_busy.load(Ordering::Relaxed) >= 1);
    assert_eq!(t.open_connections(), 1);
}

#[tokio::test]
async fn connection_limit_refuses_more() {
    let mut cfg = config();
    cfg.max_connections = 1;
    let (t, mut rx) = start(cfg).await;
    let mut first = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    first.write_all(message("c1", "").as_bytes()).await.unwrap();
    next(&mut rx).await;
    let mut second = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    assert!(closed_within(&mut second, WAIT).await);
    assert_eq!(t.stats().connections_refused.load(Ordering::Relaxed), 1);
    let peer = TcpListener::bind(any()).await.unwrap();
    let r = t
        .send(
            Target {
                addr: peer.local_addr().unwrap(),
                transport: Transport::Tcp,
            },
            Bytes::from_static(b"x"),
        )
        .await;
    assert!(matches!(r, Err(SendError::TooManyConnections)), "{r:?}");
}

#[tokio::test]
async fn shutdown_drains_queues_then_closes() {
    let (t, mut rx) = start(config()).await;
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.write_all(message("s1", "").as_bytes()).await.unwrap();
    let conn = next(&mut rx).await.connection.unwrap();
    let resp = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    t.send_on(conn, resp.clone()).unwrap();
    timeout(WAIT, t.shutdown(Duration::from_secs(2)))
        .await
        .expect("shutdown in bounded time");
    let got = read_some(&mut c, usize::MAX).await;
    assert_eq!(got, resp, "queued answer delivered, then EOF");
    // No longer accepting.
    if let Ok(mut late) = TcpStream::connect(t.tcp_addrs()[0]).await {
        assert!(closed_within(&mut late, WAIT).await);
    }
    let peer = TcpListener::bind(any()).await.unwrap();
    let r = t
        .send(
            Target {
                addr: peer.local_addr().unwrap(),
                transport: Transport::Tcp,
            },
            resp,
        )
        .await;
    assert!(matches!(r, Err(SendError::ShuttingDown)), "{r:?}");
}

#[tokio::test]
async fn responses_follow_the_via_over_udp_and_the_connection_over_tcp() {
    let (t, mut rx) = start(config()).await;
    let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");

    // UDP: the Via names 10.9.9.9:5060 with rport; the answer goes to the real source.
    let client = UdpSocket::bind(any()).await.unwrap();
    client
        .send_to(message("v1", "").as_bytes(), t.udp_addrs()[0])
        .await
        .unwrap();
    let m = next(&mut rx).await;
    let route = m.response_route();
    assert_eq!(route.addr, client.local_addr().unwrap());
    t.send_response(&route, ok.clone()).await.unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&ok[..], t.udp_addrs()[0]));

    // TCP: on the request's connection.
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.write_all(message("v2", "").as_bytes()).await.unwrap();
    let route = next(&mut rx).await.response_route();
    assert!(route.connection.is_some());
    t.send_response(&route, ok.clone()).await.unwrap();
    assert_eq!(read_some(&mut c, ok.len()).await, ok);
    drop(c);

    // TCP, connection gone: a new connection to received + sent-by port (§18.2.2).
    let peer = TcpListener::bind(any()).await.unwrap();
    let port = peer.local_addr().unwrap().port();
    let req = message("v3", "").replace("10.9.9.9:5060", &format!("127.0.0.1:{port}"));
    let mut c = TcpStream::connect(t.tcp_addrs()[0]).await.unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    let route = next(&mut rx).await.response_route();
    assert_eq!(route.addr, peer.local_addr().unwrap());
    drop(c);
    let deadline = Instant::now() + WAIT;
    while t.open_connections() > 0 {
        assert!(Instant::now() < deadline, "close not noticed");
        sleep(Duration::from_millis(10)).await;
    }
    t.send_response(&route, ok.clone()).await.unwrap();
    let (mut s, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    assert_eq!(read_some(&mut s, ok.len()).await, ok);
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_peer_does_not_read() {
    let (t, _rx) = start(config()).await;
    let peer = TcpListener::bind(any()).await.unwrap();
    let target = Target {
        addr: peer.local_addr().unwrap(),
        transport: Transport::Tcp,
    };
    let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
    t.send(target, chunk.clone()).await.unwrap();
    let (_held, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    for _ in 0..64 {
        if t.send(target, chunk.clone()).await.is_err() {
            break;
        }
    }
    let began = Instant::now();
    timeout(WAIT, t.shutdown(Duration::from_millis(200)))
        .await
        .expect("shutdown bounded");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}
