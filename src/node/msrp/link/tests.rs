//! Relay tests of shared connections on loopback: every wait bounded by [`T`], every loop by a
//! count.

use std::sync::atomic::AtomicU64;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::super::{ChunkTranslator, LegSpec, MsrpRelay, RelayConfig, SessionSpec, Setup};
use super::*;

const T: Duration = Duration::from_secs(5);

/// Forwards a SEND as it came, re-addressed to the other leg's peer.
struct Fwd {
    local: [MsrpUri; 2],
    peer: [MsrpUri; 2],
    n: AtomicU64,
}

fn ix(side: Side) -> usize {
    match side {
        Side::Cpm => 0,
        Side::Simple => 1,
    }
}

impl ChunkTranslator for Fwd {
    fn send(&self, from: Side, msg: &Message) -> Result<Message, (u16, &'static str)> {
        let to = ix(from.other());
        let mut m = msg.clone();
        m.transaction_id = Bytes::from(format!("fwd-{}", self.n.fetch_add(1, Ordering::Relaxed)));
        m.set_to_path(std::slice::from_ref(&self.peer[to]));
        m.set_from_path(std::slice::from_ref(&self.local[to]));
        Ok(m)
    }
    fn report(&self, _: Side, _: &Message) -> Option<Message> {
        None
    }
}

/// A test MSRP peer on one connection.
struct Peer {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    codec: MsrpCodec,
    buf: BytesMut,
}

impl Peer {
    fn new(s: TcpStream) -> Peer {
        let (rd, wr) = s.into_split();
        Peer {
            rd,
            wr,
            codec: MsrpCodec::new(crate::wire::msrp::Limits::default()),
            buf: BytesMut::new(),
        }
    }

    /// The next message within `within`; `None` on EOF, error or timeout.
    async fn next_within(&mut self, within: Duration) -> Option<Message> {
        let until = Instant::now() + within;
        for _ in 0..10_000 {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(Frame::Message(m))) => return Some(m),
                Ok(Some(Frame::Rejected { .. })) => continue,
                Ok(None) => {}
                Err(_) => return None,
            }
            self.buf.reserve(16 * 1024);
            match tokio::time::timeout_at(until, self.rd.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
        None
    }

    async fn next(&mut self) -> Message {
        self.next_within(T).await.expect("a message in time")
    }

    async fn send(&mut self, m: &Message) {
        self.wr.write_all(&m.to_bytes()).await.expect("write");
    }

    /// A request and the response to it (other messages before it are returned too).
    async fn transact(&mut self, m: &Message) -> (u16, Vec<Message>) {
        self.send(m).await;
        let mut other = Vec::new();
        for _ in 0..64 {
            let r = self.next().await;
            if r.transaction_id == m.transaction_id && r.method().is_none() {
                return (r.response_code().unwrap_or(0), other);
            }
            other.push(r);
        }
        panic!("no response to {:?}", m.transaction_id);
    }

    /// EOF (or reset) within `T`.
    async fn closed(&mut self) -> bool {
        for _ in 0..1_000 {
            if self.next_within(T).await.is_none() {
                return true;
            }
        }
        false
    }
}

fn uri(port: u16, sid: &str) -> MsrpUri {
    MsrpUri::parse_str(&format!("msrp://127.0.0.1:{port}/{sid};tcp")).expect("uri")
}

fn req(tid: &str, to: &MsrpUri, from: &MsrpUri, body: Option<&str>) -> Message {
    // RFC 4975 §9 (transact-id = ident): 4 to 32 characters; a shorter one is a framing
    // error, which closes the whole connection.
    assert!((4..=32).contains(&tid.len()), "transaction-id {tid:?}");
    let mut m = Message::request(Bytes::from(tid.to_string()), Method::Send);
    m.set_to_path(std::slice::from_ref(to));
    m.set_from_path(std::slice::from_ref(from));
    m.set_header("Message-ID", Bytes::from(format!("m{tid}")));
    if let Some(b) = body {
        m.set_header(
            "Byte-Range",
            Bytes::from(format!("1-{}/{}", b.len(), b.len())),
        );
        m.set_body("text/plain", Bytes::from(b.to_string()));
    }
    m
}

fn lo() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// A relay with `n` sessions: the CPM leg passive (the test's A connects), the SIMPLE leg
/// active to the test's B listener, or passive.
struct Rig {
    relay: MsrpRelay,
    events: mpsc::Receiver<RelayEvent>,
    /// Per session: the node's CPM URI, A's URI, the node's SIMPLE URI, B's URI.
    node_cpm: Vec<MsrpUri>,
    a: Vec<MsrpUri>,
    b: Vec<MsrpUri>,
    b_listener: TcpListener,
}

async fn rig(cfg: RelayConfig, n: usize, simple: Setup) -> Rig {
    let (relay, events) = MsrpRelay::bind(lo(), lo(), cfg).await.expect("bind");
    let b_listener = TcpListener::bind(lo()).await.expect("listen");
    let b_port = b_listener.local_addr().expect("addr").port();
    let (mut node_cpm, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let (sc, ss) = (relay.new_session_id(), relay.new_session_id());
        let (au, bu) = (
            uri(9, &format!("alice{i}")),
            uri(b_port, &format!("bob{i}")),
        );
        let (lc, ls) = (
            relay.local_uri(Side::Cpm, &sc),
            relay.local_uri(Side::Simple, &ss),
        );
        relay
            .open(SessionSpec {
                id: i as u64,
                legs: [
                    LegSpec {
                        side: Side::Cpm,
                        local_session_id: sc,
                        remote_path: vec![au.clone()],
                        setup: Setup::Passive,
                        cema: false,
                    },
                    LegSpec {
                        side: Side::Simple,
                        local_session_id: ss,
                        remote_path: vec![bu.clone()],
                        setup: simple,
                        cema: false,
                    },
                ],
                translator: Arc::new(Fwd {
                    local: [lc.clone(), ls],
                    peer: [au.clone(), bu.clone()],
                    n: AtomicU64::new(0),
                }),
            })
            .expect("open");
        node_cpm.push(lc);
        a.push(au);
        b.push(bu);
    }
    Rig {
        relay,
        events,
        node_cpm,
        a,
        b,
        b_listener,
    }
}

impl Rig {
    /// A's one connection, with the first `k` sessions bound on it; their codes.
    async fn a_binds(&self, k: usize) -> (Peer, Vec<u16>) {
        let s = TcpStream::connect(self.relay.local_addr(Side::Cpm))
            .await
            .expect("connect");
        let mut a = Peer::new(s);
        let mut codes = Vec::new();
        for i in 0..k {
            let (code, _) = a
                .transact(&req(
                    &format!("bind{i}"),
                    &self.node_cpm[i],
                    &self.a[i],
                    None,
                ))
                .await;
            codes.push(code);
        }
        (a, codes)
    }

    /// B's connections accepted within `within`, each answering the binds on it.
    async fn b_accepts(&self, within: Duration, max: usize) -> Vec<Peer> {
        let mut out = Vec::new();
        let until = Instant::now() + within;
        for _ in 0..max {
            match tokio::time::timeout_at(until, self.b_listener.accept()).await {
                Ok(Ok((s, _))) => out.push(Peer::new(s)),
                _ => break,
            }
        }
        out
    }
}

fn shared_cfg() -> RelayConfig {
    RelayConfig {
        share_connections: true,
        share_wait: Duration::from_millis(50),
        connection_idle: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

fn sid_of(m: &Message) -> Bytes {
    to_session_id(m).expect("a session-id")
}

#[tokio::test]
async fn concurrent_dials_to_one_host_port_open_one_connection() {
    let n = 6;
    let rig = rig(shared_cfg(), n, Setup::Active).await;
    let mut conns = rig.b_accepts(Duration::from_millis(1_500), 8).await;
    assert_eq!(
        conns.len(),
        1,
        "one connection for {n} sessions dialing at once"
    );
    let b = conns.pop().expect("one");
    let mut b = b;
    let mut bound = Vec::new();
    for _ in 0..n {
        let m = b.next().await;
        assert_eq!(m.method(), Some(&Method::Send));
        assert!(m.body.is_none(), "a bodiless bind SEND (RFC 4975 §5.4)");
        bound.push(sid_of(&m));
        b.send(&Message::response_to(&m, 200, None).expect("200"))
            .await;
    }
    bound.sort();
    let mut want: Vec<Bytes> = rig.b.iter().filter_map(|u| u.session_id.clone()).collect();
    want.sort();
    assert_eq!(bound, want);
    assert_eq!(rig.relay.inner.dials.links(), 1);
}

#[tokio::test]
async fn frames_go_by_session_id_and_unknown_ones_get_481() {
    let n = 3;
    let rig = rig(shared_cfg(), n, Setup::Active).await;
    let (mut a, codes) = rig.a_binds(n).await;
    assert_eq!(
        codes,
        vec![200; n],
        "every session binds on A's one connection"
    );
    let mut b = rig
        .b_accepts(Duration::from_millis(1_000), 4)
        .await
        .pop()
        .expect("B's connection");
    for _ in 0..n {
        let m = b.next().await;
        b.send(&Message::response_to(&m, 200, None).expect("200"))
            .await;
    }
    // One SEND per session, last first: each reaches B addressed to its own session.
    for i in (0..n).rev() {
        let body = format!("hello {i}");
        let (code, _) = a
            .transact(&req(
                &format!("send{i}"),
                &rig.node_cpm[i],
                &rig.a[i],
                Some(&body),
            ))
            .await;
        assert_eq!(code, 200);
        let m = b.next().await;
        assert_eq!(Some(sid_of(&m)), rig.b[i].session_id.clone());
        assert_eq!(m.body.as_deref(), Some(body.as_bytes()));
        b.send(&Message::response_to(&m, 200, None).expect("200"))
            .await;
    }
    // And back: B's SEND for session 1 reaches A as session 1's.
    let sid_simple_1 = lock(&rig.relay.inner.sessions)
        .get(&1)
        .expect("session 1")
        .simple
        .local_sid
        .clone();
    let node_simple_1 = rig.relay.local_uri(Side::Simple, &sid_simple_1);
    let (code, _) = b
        .transact(&req("back1", &node_simple_1, &rig.b[1], Some("back")))
        .await;
    assert_eq!(code, 200);
    let m = a.next().await;
    assert_eq!(Some(sid_of(&m)), rig.a[1].session_id.clone());
    // A session-id not on the link (RFC 4975 §7.3): 481, and the link goes on.
    let stranger = uri(rig.relay.local_addr(Side::Cpm).port(), "nosuchsession");
    let (code, _) = a
        .transact(&req("unknown1", &stranger, &rig.a[0], Some("lost")))
        .await;
    assert_eq!(code, 481);
    let (code, _) = a
        .transact(&req("send0b", &rig.node_cpm[0], &rig.a[0], Some("still")))
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_full_link_answers_a_new_session_403() {
    let cfg = RelayConfig {
        max_sessions_per_connection: 2,
        ..shared_cfg()
    };
    let rig = rig(cfg, 3, Setup::Passive).await;
    let (_a, codes) = rig.a_binds(3).await;
    assert_eq!(codes, vec![200, 200, 403]);
}

#[tokio::test]
async fn a_full_target_queue_gets_413_after_share_wait_and_the_others_go_on() {
    // The SIMPLE legs are passive and never connected: what is forwarded to them waits in
    // their queue, one message deep.
    let cfg = RelayConfig {
        queue_depth: 1,
        ..shared_cfg()
    };
    let rig = rig(cfg, 2, Setup::Passive).await;
    let (mut a, codes) = rig.a_binds(2).await;
    assert_eq!(codes, vec![200, 200]);
    let (code, _) = a
        .transact(&req("queue1", &rig.node_cpm[0], &rig.a[0], Some("one")))
        .await;
    assert_eq!(code, 200, "queued");
    let t0 = Instant::now();
    let (code, _) = a
        .transact(&req("queue2", &rig.node_cpm[0], &rig.a[0], Some("two")))
        .await;
    assert_eq!(code, 413, "RFC 4975 §10.5: stop sending this message");
    assert!(t0.elapsed() >= Duration::from_millis(40));
    let (code, _) = a
        .transact(&req("queue3", &rig.node_cpm[1], &rig.a[1], Some("three")))
        .await;
    assert_eq!(code, 200, "another session on the link is not held up");
}

#[tokio::test]
async fn a_link_drop_ends_every_session_on_it() {
    let mut rig = rig(shared_cfg(), 3, Setup::Passive).await;
    let (a, codes) = rig.a_binds(3).await;
    assert_eq!(codes, vec![200; 3]);
    drop(a);
    let mut ended = Vec::new();
    for _ in 0..32 {
        match tokio::time::timeout(T, rig.events.recv()).await {
            Ok(Some(RelayEvent::SessionEnded { id, side, .. })) => {
                assert_eq!(side, Side::Cpm);
                ended.push(id);
                if ended.len() == 3 {
                    break;
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    ended.sort();
    assert_eq!(ended, vec![0, 1, 2]);
    assert_eq!(rig.relay.sessions(), 0);
}

#[tokio::test]
async fn one_session_closing_leaves_the_link_to_the_others_then_it_closes_idle() {
    let rig = rig(shared_cfg(), 2, Setup::Passive).await;
    let (mut a, codes) = rig.a_binds(2).await;
    assert_eq!(codes, vec![200; 2]);
    assert!(rig.relay.close(0));
    let (code, _) = a
        .transact(&req("after", &rig.node_cpm[1], &rig.a[1], Some("hi")))
        .await;
    assert_eq!(code, 200);
    assert!(rig.relay.close(1));
    // No session left: the link closes after `connection_idle` (100 ms) and a tick.
    assert!(a.closed().await, "the idle link closes");
}
