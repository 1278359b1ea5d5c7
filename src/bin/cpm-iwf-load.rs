//! `cpm-iwf-load`: the load generator of the performance harness (issue 9, benches/load/).
//!
//! - `chat`: N concurrent chat sessions, each 1 KiB CPIM SENDs as fast as a window of
//!   outstanding transactions allows, for a fixed time; counts the SENDs delivered to the far
//!   endpoint and the 200s the sender got. `--via node` sets every session up through the
//!   node (CPM-side INVITE over UDP -> node -> SIMPLE-side UAS played here, then the MSRP legs:
//!   the sender connects to the node, the node connects to our SIMPLE-side listener);
//!   `--via relay` sends the same MSRP traffic through an RFC 4976 relay (each endpoint AUTHs,
//!   the sender SENDs along the receiver's Use-Path); `--via direct` connects the endpoints to
//!   each other (the ceiling).
//! - `hold`: sets N sessions up through the node and holds them, reading the node's RSS
//!   (`/proc/<pid>/status` VmRSS) and correlation table sizes (`/metrics`) before and after.
//!   `--conns K` multiplexes the sessions over K MSRP connections per side (RFC 4975 §5.4
//!   connection reuse): the CPM-side endpoint binds them on K connections to the node, the
//!   SIMPLE-side endpoint listens on K ports (so a node with `share_connections` dials K).
//! - `pager`: pager MESSAGEs over UDP at a fixed rate, UAC and UAS both played here, and the
//!   round-trip time of each (MESSAGE sent -> 200 received): p50/p99/p99.9. Against the node
//!   or straight to our own UAS (`--target` = `--uas`), to subtract.
//!
//! Output: a human line, then one `key=value ...` line (`RESULT ...`) the scripts parse.
//! Every wait is bounded; the process exits non-zero when a run broke (a session that did not
//! set up, a failed response, nothing delivered).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand, ValueEnum};
use cpm_iwf::wire::msrp::{Frame, Limits as MsrpLimits, Message, Method, MsrpCodec, MsrpUri};
use cpm_iwf::wire::sdp::Sdp;
use cpm_iwf::wire::sip::{self, SipMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::codec::Decoder;

/// Sessions whose INVITE was tried again (no final answer the first time).
static RETRIED: AtomicU64 = AtomicU64::new(0);

/// Longest wait on any single peer answer.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "cpm-iwf-load",
    about = "Load generator for the cpm-iwf benches"
)]
struct Cli {
    /// Runtime worker threads of the generator.
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    Node,
    Relay,
    Direct,
}

#[derive(clap::Args, Clone)]
struct Setup {
    /// The node's CPM-side SIP UDP address (`--via node`).
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// Where our SIMPLE-side UAS listens over UDP: the node's SIMPLE next hop.
    #[arg(long)]
    uas: Option<SocketAddr>,
    /// The MSRP relay's address (`--via relay`).
    #[arg(long)]
    relay: Option<SocketAddr>,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Sessions being set up at once.
    #[arg(long, default_value_t = 64)]
    setup_concurrency: usize,
    /// Spread the endpoints over 127.0.0.1 .. 127.0.0.K (source addresses of the sender,
    /// listen addresses of the receiver) against ephemeral port exhaustion.
    #[arg(long, default_value_t = 1)]
    addrs: u8,
    /// `hold` only: share K MSRP connections per side between the sessions (0: one
    /// connection per session and side).
    #[arg(long, default_value_t = 0)]
    conns: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// MSRP chat throughput.
    Chat {
        #[arg(long, value_enum)]
        via: Via,
        #[command(flatten)]
        setup: Setup,
        /// Seconds of traffic.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Size of each CPIM body in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Outstanding SENDs per session.
        #[arg(long, default_value_t = 8)]
        window: usize,
    },
    /// Sessions held open through the node; RSS and table sizes.
    Hold {
        #[command(flatten)]
        setup: Setup,
        /// The node's pid (for VmRSS).
        #[arg(long)]
        node_pid: u32,
        /// The node's admin address (for /metrics).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Seconds to hold the sessions after the last one is up.
        #[arg(long, default_value_t = 2.0)]
        hold_secs: f64,
    },
    /// Pager MESSAGE round-trip times at a fixed rate.
    Pager {
        /// Where MESSAGEs go: the node's CPM-side SIP UDP address, or `--uas` for direct.
        #[arg(long)]
        target: SocketAddr,
        /// Our UAS's UDP address.
        #[arg(long)]
        uas: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// The node's pid and admin address: report RSS and table entries before and after.
        #[arg(long)]
        node_pid: Option<u32>,
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cpm-iwf-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        match cli.cmd {
            Cmd::Chat {
                via,
                setup,
                secs,
                size,
                window,
            } => chat(via, setup, secs, size, window).await,
            Cmd::Hold {
                setup,
                node_pid,
                admin,
                hold_secs,
            } => hold(setup, node_pid, admin, hold_secs).await,
            Cmd::Pager {
                target,
                uas,
                rate,
                secs,
                node_pid,
                admin,
            } => pager(target, uas, rate, secs, node_pid, admin).await,
        }
    });
    // Connections are many; do not wait for their tasks on the way out.
    rt.shutdown_background();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cpm-iwf-load: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

/// 127.0.0.1, any port.
fn loopback0() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A UDP socket with the node's large kernel buffers: with the default (~208 KiB) a burst of
/// a few hundred answers overflows it, and each datagram lost there costs a retransmission
/// interval that the run would wrongly charge to the node.
fn udp_socket(addr: SocketAddr) -> Res<UdpSocket> {
    cpm_iwf::node::transport::bind_udp(addr, 4 << 20).map_err(|e| e.to_string())
}

fn loopback(k: usize, addrs: u8) -> Ipv4Addr {
    let n = addrs.max(1) as usize;
    Ipv4Addr::new(127, 0, 0, 1 + (k % n) as u8)
}

// ---------------------------------------------------------------------------------------------
// MSRP endpoint pieces (RFC 4975)

/// Counters shared by every receiving endpoint.
#[derive(Default)]
struct Sink {
    delivered: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    /// Bodiless SENDs (the node binding a session, RFC 4975 §5.4).
    binds: AtomicU64,
}

struct Reader {
    rd: OwnedReadHalf,
    codec: MsrpCodec,
    buf: BytesMut,
}

impl Reader {
    fn new(rd: OwnedReadHalf) -> Reader {
        Reader {
            rd,
            codec: MsrpCodec::new(MsrpLimits::default()),
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The next whole message; `None` at EOF or on a framing error.
    async fn next(&mut self) -> Option<Message> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(Frame::Message(m))) => return Some(m),
                Ok(Some(Frame::Rejected { .. })) => continue,
                Ok(None) => {}
                Err(_) => return None,
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn next_timed(&mut self) -> Res<Message> {
        match timeout(WAIT, self.next()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err("MSRP connection closed".into()),
            Err(_) => Err("no MSRP message in time".into()),
        }
    }
}

/// The receiving endpoint: answers 200 to every SEND and AUTH-less request, counts SENDs with
/// a body (a bodiless SEND only binds the connection, RFC 4975 §5.4).
async fn sink(stream: TcpStream, sink: Arc<Sink>) {
    let _ = stream.set_nodelay(true);
    sink.connections.fetch_add(1, Ordering::Relaxed);
    let (rd, mut wr) = stream.into_split();
    let mut rd = Reader::new(rd);
    let mut out = BytesMut::with_capacity(4096);
    while let Some(m) = rd.next().await {
        if m.method().is_none() {
            continue; // a response to us: we send none
        }
        if matches!(m.method(), Some(Method::Send)) {
            match m.body.as_ref().filter(|b| !b.is_empty()) {
                Some(b) => {
                    sink.delivered.fetch_add(1, Ordering::Relaxed);
                    sink.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                None => {
                    sink.binds.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Ok(resp) = Message::response_to(&m, 200, None) {
            out.clear();
            resp.encode(&mut out);
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
    }
}

/// A listener on `ip` (ephemeral port) whose connections go to [`sink`].
fn listen_sink(ip: Ipv4Addr, s: Arc<Sink>) -> Res<SocketAddr> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .map_err(|e| format!("bind {ip}: {e}"))?;
    let l: TcpListener = sock.listen(4096).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            match l.accept().await {
                Ok((c, _)) => {
                    tokio::spawn(sink(c, s.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    Ok(addr)
}

async fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> Res<TcpStream> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
        .map_err(|e| format!("bind {src}: {e}"))?;
    let s = timeout(WAIT, sock.connect(dst))
        .await
        .map_err(|_| format!("connect {dst}: timed out"))?
        .map_err(|e| format!("connect {dst}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A request frame with a fixed transaction-id form: `MSRP <tid> <METHOD>`.
fn frame(
    out: &mut BytesMut,
    tid: u64,
    method: &str,
    to: &str,
    from: &str,
    extra: &str,
    body: &[u8],
) {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "MSRP t{tid:08x} {method}\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n{extra}"
    );
    if !body.is_empty() {
        // Message-ID: an ident of 4 to 32 characters (RFC 4975 §9).
        let _ = write!(head, "Message-ID: m{tid:08x}\r\n");
    }
    out.extend_from_slice(head.as_bytes());
    if !body.is_empty() {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    head.clear();
    let _ = write!(head, "-------t{tid:08x}$\r\n");
    out.extend_from_slice(head.as_bytes());
}

/// Send one request and wait for its response (setup steps only).
async fn transact(rd: &mut Reader, wr: &mut OwnedWriteHalf, out: &[u8]) -> Res<Message> {
    timeout(WAIT, wr.write_all(out))
        .await
        .map_err(|_| "write stalled".to_string())?
        .map_err(|e| e.to_string())?;
    loop {
        let m = rd.next_timed().await?;
        if m.response_code().is_some() {
            return Ok(m);
        }
    }
}

/// A CPIM body (RFC 3862) of exactly `size` bytes when `size` allows: headers, then text.
fn cpim_body(size: usize) -> Bytes {
    let head = "From: <sip:alice@cpm.example.net>\r\nTo: <sip:bob@simple.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: load0001\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\n\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n";
    let mut b = head.as_bytes().to_vec();
    while b.len() < size {
        b.push(b'a' + (b.len() % 26) as u8);
    }
    Bytes::from(b)
}

/// One sending endpoint, bound and ready: what it writes to, its paths.
struct Sender {
    rd: Reader,
    wr: OwnedWriteHalf,
    to_path: String,
    from_path: String,
}

/// Counters of the senders.
#[derive(Default)]
struct Sent {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Write SENDs until `deadline`, keeping at most `window` without a response.
async fn drive(s: Sender, body: Bytes, window: usize, deadline: Instant, sent: Arc<Sent>) {
    let Sender {
        mut rd,
        mut wr,
        to_path,
        from_path,
    } = s;
    let sem = Arc::new(Semaphore::new(window.max(1)));
    let sem2 = sem.clone();
    let sent2 = sent.clone();
    let reader = tokio::spawn(async move {
        while let Some(m) = rd.next().await {
            match m.response_code() {
                Some(200) => {
                    sent2.ok.fetch_add(1, Ordering::Relaxed);
                    sem2.add_permits(1);
                }
                Some(_) => {
                    sent2.failed.fetch_add(1, Ordering::Relaxed);
                    sem2.add_permits(1);
                }
                None => {}
            }
        }
    });
    let mut out = BytesMut::with_capacity(body.len() + 512);
    let extra = format!(
        "Byte-Range: 1-{n}/{n}\r\nContent-Type: message/cpim\r\n",
        n = body.len()
    );
    let mut tid: u64 = 1;
    let end = tokio::time::Instant::from_std(deadline);
    loop {
        let permit = tokio::select! {
            p = sem.acquire() => p,
            _ = tokio::time::sleep_until(end) => break,
        };
        let Ok(permit) = permit else { break };
        permit.forget();
        if Instant::now() >= deadline {
            break;
        }
        out.clear();
        tid += 1;
        frame(&mut out, tid, "SEND", &to_path, &from_path, &extra, &body);
        match tokio::time::timeout_at(end, wr.write_all(&out)).await {
            Ok(Ok(())) => {
                sent.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ => break,
        }
    }
    reader.abort();
}

// ---------------------------------------------------------------------------------------------
// SIP: the CPM-side UAC and the SIMPLE-side UAS over UDP (RFC 3261), as small as the node needs

const SESSION_ICSI: &str = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session";
const SESSION_ICSI_ESC: &str = "urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session";

/// The UAC's table of answers awaited, by Call-ID.
type Waiting = Arc<Mutex<HashMap<String, mpsc::Sender<SipMessage>>>>;

struct Uac {
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    node: SocketAddr,
    waiting: Waiting,
}

impl Uac {
    async fn new(node: SocketAddr) -> Res<Uac> {
        let sock = Arc::new(udp_socket(loopback0())?);
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let waiting: Waiting = Arc::default();
        let (s, w) = (sock.clone(), waiting.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, _)) = s.recv_from(&mut buf).await else {
                    continue;
                };
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                let Ok(m) = sip::parse_datagram(data, &sip::Limits::default()) else {
                    continue;
                };
                let Some(cid) = m.call_id() else { continue };
                let tx = w.lock().ok().and_then(|t| t.get(cid).cloned());
                if let Some(tx) = tx {
                    let _ = tx.try_send(m);
                }
            }
        });
        Ok(Uac {
            sock,
            local,
            node,
            waiting,
        })
    }

    /// INVITE with an MSRP offer (a=setup:active, CPM session ICSI), 200, ACK; returns the
    /// node's CPM-side MSRP URI from the answer. INVITE retransmitted on T1 doubling (RFC 3261
    /// §17.1.1.2), 4 times at most (7.5 s in all: the caller tries a new INVITE after that).
    async fn invite(&self, i: usize, attempt: usize, alice: &str) -> Res<MsrpUri> {
        let pid = std::process::id();
        let cid = format!("load-{i}-{attempt}-{pid}@127.0.0.1");
        let sdp = format!(
            "v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=message 9 TCP/MSRP *\r\na=path:{alice}\r\na=setup:active\r\n\
a=accept-types:message/cpim application/im-iscomposing+xml\r\n\
a=accept-wrapped-types:text/plain message/imdn+xml\r\na=sendrecv\r\n"
        );
        let local = self.local;
        let invite = format!(
            "INVITE sip:+15551234567@ims.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-inv-{i}-{attempt}-{pid}\r\nMax-Forwards: 70\r\n\
From: <sip:+15557654321@ims.example.net>;tag=f{i}\r\nTo: <sip:+15551234567@ims.example.net>\r\n\
Call-ID: {cid}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:+15557654321@{local};transport=udp>;+g.3gpp.icsi-ref=\"{SESSION_ICSI_ESC}\"\r\n\
Accept-Contact: *;+g.3gpp.icsi-ref=\"{SESSION_ICSI_ESC}\";require;explicit\r\n\
P-Preferred-Service: {SESSION_ICSI}\r\nConversation-ID: conv-{i}-{pid}\r\n\
Contribution-ID: contrib-{i}-{pid}\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let (tx, mut rx) = mpsc::channel(8);
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(cid.clone(), tx);
        }
        let r = self.invite_inner(&invite, &mut rx, &cid, i).await;
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&cid);
        }
        r
    }

    async fn invite_inner(
        &self,
        invite: &str,
        rx: &mut mpsc::Receiver<SipMessage>,
        cid: &str,
        i: usize,
    ) -> Res<MsrpUri> {
        let mut t = Duration::from_millis(500);
        let mut provisional = false;
        let ok = 'outer: {
            for _ in 0..5 {
                if !provisional {
                    self.sock
                        .send_to(invite.as_bytes(), self.node)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let until = tokio::time::Instant::now() + t;
                loop {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(m)) => match m.status_code() {
                            Some(c) if c < 200 => provisional = true,
                            Some(200) => break 'outer m,
                            Some(c) => return Err(format!("INVITE answered {c}")),
                            None => {}
                        },
                        Ok(None) => return Err("UAC gone".into()),
                        Err(_) => break,
                    }
                }
                t = (t * 2).min(Duration::from_secs(4));
            }
            return Err("INVITE: no final answer".into());
        };
        let to = ok.header("To").ok_or("200 without To")?;
        let contact = ok
            .header("Contact")
            .and_then(|c| c.split('<').nth(1))
            .and_then(|c| c.split('>').next())
            .unwrap_or("sip:127.0.0.1");
        let local = self.local;
        let pid = std::process::id();
        let ack = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ack-{i}-{pid}\r\n\
Max-Forwards: 70\r\nFrom: <sip:+15557654321@ims.example.net>;tag=f{i}\r\nTo: {to}\r\n\
Call-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.sock
            .send_to(ack.as_bytes(), self.node)
            .await
            .map_err(|e| e.to_string())?;
        let sdp = Sdp::parse(ok.body().clone()).map_err(|e| format!("200 SDP: {e}"))?;
        let m = sdp.require_msrp().map_err(|e| format!("200 SDP: {e}"))?;
        let first = m.path.first().cloned().ok_or("200 SDP without a=path")?;
        MsrpUri::parse(first).map_err(|e| format!("200 a=path: {e}"))
    }
}

/// The SIMPLE-side UAS: 200 with an MSRP answer (a=setup:passive, our listener's URI) to each
/// INVITE, the same 200 to a retransmission, 200 to BYE and MESSAGE; ACK absorbed.
async fn uas(addr: SocketAddr, listeners: Vec<SocketAddr>) -> Res<()> {
    let sock = udp_socket(addr).map_err(|e| format!("UAS bind {addr}: {e}"))?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut answered: HashMap<String, Bytes> = HashMap::new();
        // RFC 3261 §13.3.1.4: a UAS resends its 2xx (T1 doubling to T2) until the ACK comes,
        // for 64*T1: a 2xx lost on the way is recovered by the node relaying the resent one.
        let mut resend: HashMap<String, (SocketAddr, Instant, Duration, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut n: usize = 0;
        loop {
            let (len, from) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(_) => continue,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    resend.retain(|_, (_, _, _, until)| *until > now);
                    answered.retain(|cid, _| resend.contains_key(cid));
                    for (cid, (to, next, every, _)) in resend.iter_mut() {
                        if *next <= now
                            && let Some(b) = answered.get(cid)
                        {
                            let _ = sock.send_to(b, *to).await;
                            *every = (*every * 2).min(Duration::from_secs(4));
                            *next = now + *every;
                        }
                    }
                    continue;
                }
            };
            let data = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
            let Ok(m) = sip::parse_datagram(data, &sip::Limits::default()) else {
                continue;
            };
            let Some(method) = m.method() else { continue };
            let cid = m.call_id().unwrap_or_default().to_string();
            let out = match method {
                rsip::Method::Invite => {
                    if let Some(again) = answered.get(&cid) {
                        again.clone()
                    } else {
                        n += 1;
                        let l = listeners
                            .get(n % listeners.len().max(1))
                            .copied()
                            .unwrap_or(addr);
                        let sdp = format!(
                            "v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=message {port} TCP/MSRP *\r\na=path:msrp://{l}/b{n};tcp\r\na=setup:passive\r\n\
a=accept-types:message/cpim application/im-iscomposing+xml\r\n\
a=accept-wrapped-types:text/plain message/imdn+xml\r\na=sendrecv\r\n",
                            ip = l.ip(),
                            port = l.port()
                        );
                        let mut r = m.response_to(200, "OK");
                        let to = format!("{};tag=u{n}", m.header("To").unwrap_or_default());
                        let _ = r.set_header("To", &to);
                        let _ = r.push_header("Contact", &format!("<sip:{addr}>;+g.oma.sip-im"));
                        r.set_body_with_type(Some("application/sdp"), Bytes::from(sdp))
                            .ok();
                        let b = r.serialize();
                        let now = Instant::now();
                        let t1 = Duration::from_millis(500);
                        resend.insert(cid.clone(), (from, now + t1, t1, now + t1 * 64));
                        answered.insert(cid, b.clone());
                        b
                    }
                }
                rsip::Method::Ack => {
                    answered.remove(&cid);
                    resend.remove(&cid);
                    continue;
                }
                _ => {
                    let mut r = m.response_to(200, "OK");
                    if m.to_tag().is_none() {
                        let to = format!("{};tag=u0", m.header("To").unwrap_or_default());
                        let _ = r.set_header("To", &to);
                    }
                    r.serialize()
                }
            };
            let _ = sock.send_to(&out, from).await;
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Session setup for the three ways

/// Set up `setup.sessions` senders; the receivers run as [`sink`]s counting into `s`. Any
/// session that fails fails the whole.
async fn set_up(via: Via, setup: &Setup, s: Arc<Sink>) -> Res<Vec<Sender>> {
    if setup.conns > 0 {
        return Err("--conns is for hold only".into());
    }
    let (out, failed, first_err, _) = set_up_some(via, setup, s).await?;
    if failed > 0 {
        return Err(format!(
            "{failed} of {} sessions failed to set up; first: {first_err}",
            setup.sessions
        ));
    }
    Ok(out)
}

/// Set up what can be: the senders, how many sessions failed and the first error.
/// What [`set_up_some`] set up: the senders (none with `--conns`: the sessions are bound on
/// the shared connections), how many sessions failed and the first error, the shared
/// connections (kept open while the sessions are held).
type SetUp = (Vec<Sender>, usize, String, Vec<Arc<Shared>>);

/// One CPM-side MSRP connection shared by several sessions (`--conns`): binds go one at a time
/// (a bind and its 200), so that responses are never mixed up.
#[derive(Default)]
struct Shared {
    conn: tokio::sync::Mutex<Option<(Reader, OwnedWriteHalf)>>,
    tid: AtomicU64,
}

impl Shared {
    /// Bind a session on this connection (connecting it first when it is not yet).
    async fn bind(&self, src: Ipv4Addr, dst: SocketAddr, to: &str, from: &str) -> Res<()> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            let (rd, wr) = connect_from(src, dst).await?.into_split();
            *conn = Some((Reader::new(rd), wr));
        }
        let (rd, wr) = conn.as_mut().ok_or("no connection")?;
        let tid = self.tid.fetch_add(1, Ordering::Relaxed) + 1;
        let mut out = BytesMut::with_capacity(256);
        frame(&mut out, tid, "SEND", to, from, "Message-ID: bind\r\n", &[]);
        let r = transact(rd, wr, &out).await?;
        match r.response_code() {
            Some(200) => Ok(()),
            c => Err(format!("shared bind answered {c:?}")),
        }
    }
}

async fn set_up_some(via: Via, setup: &Setup, s: Arc<Sink>) -> Res<SetUp> {
    let n = setup.sessions;
    let addrs = setup.addrs.max(1);
    let conns = if via == Via::Node { setup.conns } else { 0 };
    // Receivers' listeners (node: the node connects to them; direct: the senders do). Shared:
    // one per connection wanted, so that the node's shared links are that many.
    let mut listeners = Vec::new();
    if via != Via::Relay {
        let count = if conns > 0 { conns } else { addrs as usize };
        for k in 0..count {
            listeners.push(listen_sink(loopback(k, addrs), s.clone())?);
        }
    }
    let shared: Vec<Arc<Shared>> = (0..conns).map(|_| Arc::new(Shared::default())).collect();
    let uac = match via {
        Via::Node => {
            let sip = setup.sip.ok_or("--via node needs --sip")?;
            let ua = setup.uas.ok_or("--via node needs --uas")?;
            uas(ua, listeners.clone()).await?;
            Some(Arc::new(Uac::new(sip).await?))
        }
        _ => None,
    };
    let relay = setup.relay;
    if via == Via::Relay && relay.is_none() {
        return Err("--via relay needs --relay".into());
    }
    let gate = Arc::new(Semaphore::new(setup.setup_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let uac = uac.clone();
        let listeners = listeners.clone();
        let s = s.clone();
        let share = shared.get(i % conns.max(1)).cloned();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await.map_err(|e| e.to_string())?;
            let src = loopback(i, addrs);
            let alice = format!("msrp://{src}:9/a{i}x{};tcp", std::process::id());
            match via {
                Via::Node => {
                    let uac = uac.ok_or("no UAC")?;
                    // A datagram lost on a loaded machine (an INVITE's 200 that never came):
                    // try again with a new Call-ID, 3 times at most.
                    let mut tries = 0;
                    let node_uri = loop {
                        match uac.invite(i, tries, &alice).await {
                            Ok(u) => break u,
                            Err(e) if tries >= 2 || !e.contains("no final answer") => {
                                return Err(e);
                            }
                            Err(_) => {
                                tries += 1;
                                RETRIED.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    };
                    let host = std::str::from_utf8(&node_uri.host)
                        .map_err(|e| e.to_string())?
                        .parse::<IpAddr>()
                        .map_err(|e| format!("node MSRP host: {e}"))?;
                    let dst = SocketAddr::new(host, node_uri.port.unwrap_or(2855));
                    let to = node_uri.to_string();
                    if let Some(share) = share {
                        share.bind(src, dst, &to, &alice).await?;
                        return Ok(None);
                    }
                    bind_sender(connect_from(src, dst).await?, to, alice)
                        .await
                        .map(Some)
                }
                Via::Direct => {
                    let l = listeners
                        .get(i % listeners.len().max(1))
                        .copied()
                        .ok_or("no listener")?;
                    let to = format!("msrp://{l}/b{i};tcp");
                    bind_sender(connect_from(src, l).await?, to, alice)
                        .await
                        .map(Some)
                }
                Via::Relay => {
                    let relay = relay.ok_or("no relay")?;
                    let relay_uri = format!("msrp://{relay};tcp");
                    // The receiver AUTHs (RFC 4976 §5) and answers along its Use-Path.
                    let bob = format!("msrp://{src}:9/b{i}x{};tcp", std::process::id());
                    let bs = connect_from(src, relay).await?;
                    let (brd, mut bwr) = bs.into_split();
                    let mut brd = Reader::new(brd);
                    let bob_use = auth(&mut brd, &mut bwr, &relay_uri, &bob).await?;
                    let bs = brd.rd.reunite(bwr).map_err(|e| format!("reunite: {e}"))?;
                    tokio::spawn(sink(bs, s));
                    // The sender AUTHs too, then SENDs along the receiver's path.
                    let a = connect_from(src, relay).await?;
                    let (ard, mut awr) = a.into_split();
                    let mut ard = Reader::new(ard);
                    auth(&mut ard, &mut awr, &relay_uri, &alice).await?;
                    Ok(Some(Sender {
                        rd: ard,
                        wr: awr,
                        to_path: format!("{bob_use} {bob}"),
                        from_path: alice,
                    }))
                }
            }
        }));
    }
    let mut out = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => out.extend(s),
            Ok(Err(e)) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    Ok((out, failed, first_err.unwrap_or_default(), shared))
}

/// Bind the sender's connection with a bodiless SEND (RFC 4975 §5.4) and wait for its 200.
async fn bind_sender(c: TcpStream, to: String, from: String) -> Res<Sender> {
    let (rd, mut wr) = c.into_split();
    let mut rd = Reader::new(rd);
    let mut out = BytesMut::with_capacity(256);
    frame(&mut out, 1, "SEND", &to, &from, "Message-ID: bind\r\n", &[]);
    let r = transact(&mut rd, &mut wr, &out).await?;
    match r.response_code() {
        Some(200) => Ok(Sender {
            rd,
            wr,
            to_path: to,
            from_path: from,
        }),
        c => Err(format!("bind answered {c:?}")),
    }
}

/// AUTH to the relay (RFC 4976 §5.1; no credentials asked by the bench relay); its Use-Path.
async fn auth(rd: &mut Reader, wr: &mut OwnedWriteHalf, relay: &str, me: &str) -> Res<String> {
    let mut out = BytesMut::with_capacity(256);
    frame(&mut out, 1, "AUTH", relay, me, "", &[]);
    let r = transact(rd, wr, &out).await?;
    if r.response_code() != Some(200) {
        return Err(format!("AUTH answered {:?}", r.response_code()));
    }
    let u = r.header("Use-Path").ok_or("AUTH 200 without Use-Path")?;
    Ok(String::from_utf8_lossy(u).trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// The subcommands

fn cpu_secs_self() -> f64 {
    cpu_secs(std::process::id())
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sum of `cpm_iwf_table_entries` over its kinds, from the node's /metrics.
async fn table_entries(admin: Option<SocketAddr>) -> Option<f64> {
    let a = admin?;
    let mut c = timeout(WAIT, TcpStream::connect(a)).await.ok()?.ok()?;
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut body = Vec::new();
    timeout(WAIT, c.read_to_end(&mut body)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&body);
    Some(
        text.lines()
            .filter(|l| l.starts_with("cpm_iwf_table_entries"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

async fn chat(via: Via, setup: Setup, secs: f64, size: usize, window: usize) -> Res<()> {
    let s = Arc::new(Sink::default());
    let t0 = Instant::now();
    let senders = set_up(via, &setup, s.clone()).await?;
    let setup_s = t0.elapsed().as_secs_f64();
    let body = cpim_body(size);
    let sent = Arc::new(Sent::default());
    let d0 = s.delivered.load(Ordering::Relaxed);
    let b0 = s.bytes.load(Ordering::Relaxed);
    let cpu0 = cpu_secs_self();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for snd in senders {
        tasks.push(tokio::spawn(drive(
            snd,
            body.clone(),
            window,
            deadline,
            sent.clone(),
        )));
    }
    for t in tasks {
        let _ = timeout(Duration::from_secs_f64(secs) + WAIT, t).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_secs_self() - cpu0;
    let delivered = s.delivered.load(Ordering::Relaxed) - d0;
    let bytes = s.bytes.load(Ordering::Relaxed) - b0;
    let ok = sent.ok.load(Ordering::Relaxed);
    let failed = sent.failed.load(Ordering::Relaxed);
    let name = match via {
        Via::Node => "node",
        Via::Relay => "relay",
        Via::Direct => "direct",
    };
    println!(
        "chat via {name}: {} sessions set up in {setup_s:.2} s; {delivered} SENDs of {size} B delivered in {wall:.2} s = {:.0}/s, {:.1} MB/s; {ok} 200s, {failed} failures; generator CPU {cpu:.2} s",
        setup.sessions,
        delivered as f64 / wall,
        bytes as f64 / wall / 1e6
    );
    println!(
        "RESULT via={name} sessions={} delivered={delivered} ok={ok} failed={failed} wall={wall:.3} msg_per_s={:.0} mb_per_s={:.2} gen_cpu_s={cpu:.3}",
        setup.sessions,
        delivered as f64 / wall,
        bytes as f64 / wall / 1e6
    );
    let _ = std::io::stdout().flush();
    if delivered == 0 || failed > 0 {
        return Err("nothing delivered, or failed responses".into());
    }
    Ok(())
}

async fn hold(setup: Setup, pid: u32, admin: Option<SocketAddr>, hold_secs: f64) -> Res<()> {
    let s = Arc::new(Sink::default());
    let rss0 = rss_kib(pid);
    let e0 = table_entries(admin).await;
    let t0 = Instant::now();
    // Sessions held, not traffic: a handful lost on a loaded machine (1 % at most) is
    // reported, not fatal; the figures are per session actually up.
    let (senders, failed, first_err, shared) = set_up_some(Via::Node, &setup, s.clone()).await?;
    let n = setup.sessions - failed;
    if failed * 100 > setup.sessions {
        return Err(format!(
            "{failed} of {} sessions failed to set up; first: {first_err}",
            setup.sessions
        ));
    }
    let setup_s = t0.elapsed().as_secs_f64();
    // Wait (bounded) until the node has bound every session on its connections to our
    // listeners (one bodiless SEND each, RFC 4975 §5.4).
    for _ in 0..400 {
        if s.binds.load(Ordering::Relaxed) as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // RSS right after setup still counts the SIP transactions of the setup (the INVITE client
    // transaction lives 64*T1 after its 2xx, RFC 6026 Timer M); hold longer than that for
    // what a session costs while it lasts.
    let rss_up = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs_f64(hold_secs)).await;
    let rss1 = rss_kib(pid);
    let e1 = table_entries(admin).await;
    let legs = s.connections.load(Ordering::Relaxed);
    let binds = s.binds.load(Ordering::Relaxed);
    let per = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / n.max(1) as f64;
    let entries = match (e0, e1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    println!(
        "hold: {n} sessions up in {setup_s:.1} s ({legs} node->us MSRP connections); node VmRSS {rss0} KiB -> {rss1} KiB = {per:.0} B per session; table entries +{entries}"
    );
    let retried = RETRIED.load(Ordering::Relaxed);
    println!(
        "RESULT retried={retried} failed={failed} sessions={n} legs={legs} rss0_kib={rss0} rss_up_kib={rss_up} rss1_kib={rss1} bytes_per_session={per:.0} table_entries={entries} setup_s={setup_s:.2}"
    );
    let _ = std::io::stdout().flush();
    drop(senders);
    drop(shared);
    if binds < n as u64 {
        return Err(format!(
            "only {binds} of {n} sessions bound by the node ({legs} connections)"
        ));
    }
    Ok(())
}

async fn pager(
    target: SocketAddr,
    uas_addr: SocketAddr,
    rate: u32,
    secs: f64,
    pid: Option<u32>,
    admin: Option<SocketAddr>,
) -> Res<()> {
    uas(uas_addr, Vec::new()).await?;
    let sock = Arc::new(udp_socket(loopback0())?);
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let total = ((rate as f64) * secs).ceil() as usize;
    let rss0 = pid.map(rss_kib);
    let e0 = table_entries(admin).await;
    // Send times by message index; the receiver computes each round trip.
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let (done_tx, done_rx) = oneshot::channel::<(Vec<u64>, u64)>();
    let (r_sock, r_sent) = (sock.clone(), sent_at.clone());
    let recv_deadline = Instant::now() + Duration::from_secs_f64(secs) + Duration::from_secs(3);
    tokio::spawn(async move {
        let mut rtts = Vec::with_capacity(total);
        let mut failed = 0u64;
        let mut buf = vec![0u8; 65536];
        let end = tokio::time::Instant::from_std(recv_deadline);
        while rtts.len() + (failed as usize) < total {
            let Ok(Ok((n, _))) = tokio::time::timeout_at(end, r_sock.recv_from(&mut buf)).await
            else {
                break;
            };
            let now = Instant::now();
            let data = buf.get(..n).unwrap_or_default();
            // Status code and Call-ID read off the bytes: "SIP/2.0 200" and "Call-ID: pg-<i>-".
            let code = data.get(8..11).unwrap_or_default();
            if code.first() == Some(&b'1') {
                continue;
            }
            let idx = memchr::memmem::find(data, b"Call-ID: pg-")
                .and_then(|p| data.get(p + 12..))
                .and_then(|r| {
                    let end = r.iter().position(|b| !b.is_ascii_digit())?;
                    std::str::from_utf8(r.get(..end)?)
                        .ok()?
                        .parse::<usize>()
                        .ok()
                });
            let Some(idx) = idx else { continue };
            let at = r_sent
                .lock()
                .ok()
                .and_then(|mut v| v.get_mut(idx).and_then(|s| s.take()));
            let Some(at) = at else { continue };
            if code == b"200" || code == b"202" {
                rtts.push(now.duration_since(at).as_nanos() as u64);
            } else {
                failed += 1;
            }
        }
        let _ = done_tx.send((rtts, failed));
    });
    let pidn = std::process::id();
    let start = Instant::now();
    let mut i = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let cpim_tail =
        "Content-Type: text/plain;charset=UTF-8\r\n\r\npager message from the load generator";
    while i < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        while i < due {
            let body = format!(
                "From: <sip:+15557654321@ims.example.net>\r\nTo: <sip:+15551234567@ims.example.net>\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: pg{i}x{pidn}\r\nimdn.Disposition-Notification: positive-delivery, display\r\n\r\n{cpim_tail}"
            );
            let msg = format!(
                "MESSAGE sip:+15551234567@ims.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-pg-{i}-{pidn}\r\nMax-Forwards: 70\r\n\
From: <sip:+15557654321@ims.example.net>;tag=p{i}\r\nTo: <sip:+15551234567@ims.example.net>\r\n\
Call-ID: pg-{i}-{pidn}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\n\
Contact: <sip:+15557654321@{local};transport=udp>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"\r\n\
Accept-Contact: *;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\";require;explicit\r\n\
P-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\n\
Conversation-ID: conv-pg-{pidn}\r\nContribution-ID: {i}-{pidn}-contribution\r\n\
Content-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if let Ok(mut v) = sent_at.lock()
                && let Some(s) = v.get_mut(i)
            {
                *s = Some(Instant::now());
            }
            let _ = sock.send_to(msg.as_bytes(), target).await;
            i += 1;
        }
    }
    let send_wall = start.elapsed().as_secs_f64();
    let (mut rtts, failed) = timeout(Duration::from_secs(10), done_rx)
        .await
        .map_err(|_| "receiver did not finish".to_string())?
        .map_err(|_| "receiver gone".to_string())?;
    rtts.sort_unstable();
    let answered = rtts.len();
    let lost = total - answered - failed as usize;
    let pct = |p: f64| -> f64 {
        if rtts.is_empty() {
            return f64::NAN;
        }
        let k = ((p * rtts.len() as f64).ceil() as usize).clamp(1, rtts.len()) - 1;
        rtts.get(k).copied().unwrap_or(0) as f64 / 1000.0
    };
    let rss1 = pid.map(rss_kib);
    let e1 = table_entries(admin).await;
    let mem = match (rss0, rss1, e0, e1) {
        (Some(a), Some(b), Some(x), Some(y)) => format!(
            " rss0_kib={a} rss1_kib={b} entries0={x} entries1={y} bytes_per_entry={:.0}",
            (b as f64 - a as f64) * 1024.0 / (y - x).max(1.0)
        ),
        _ => String::new(),
    };
    println!(
        "pager -> {target}: {total} MESSAGEs at {rate}/s (sent in {send_wall:.2} s): {answered} answered 2xx, {failed} failed, {lost} unanswered; RTT p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    println!(
        "RESULT total={total} answered={answered} failed={failed} lost={lost} p50_us={:.1} p99_us={:.1} p999_us={:.1}{mem}",
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    let _ = std::io::stdout().flush();
    if answered == 0 || failed > 0 {
        return Err("pager run broke (no answer or failures)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpim_body_is_the_size_asked_and_parses() {
        let b = cpim_body(1024);
        assert_eq!(b.len(), 1024);
        assert!(cpm_iwf::wire::cpim::Cpim::parse(b).is_ok());
    }

    #[test]
    fn frames_decode_with_the_crates_codec() {
        let mut out = BytesMut::new();
        let body = cpim_body(1024);
        frame(
            &mut out,
            7,
            "SEND",
            "msrp://127.0.0.1:1/b;tcp",
            "msrp://127.0.0.1:9/a;tcp",
            "Byte-Range: 1-1024/1024\r\nContent-Type: message/cpim\r\n",
            &body,
        );
        frame(
            &mut out,
            8,
            "AUTH",
            "msrp://127.0.0.1:1;tcp",
            "msrp://127.0.0.1:9/a;tcp",
            "",
            &[],
        );
        let mut c = MsrpCodec::new(MsrpLimits::default());
        let Ok(Some(Frame::Message(m))) = c.decode(&mut out) else {
            panic!("SEND did not decode")
        };
        assert_eq!(m.body.as_ref().map(|b| b.len()), Some(1024));
        assert!(m.check_byte_range().is_ok());
        let Ok(Some(Frame::Message(a))) = c.decode(&mut out) else {
            panic!("AUTH did not decode")
        };
        assert_eq!(a.method(), Some(&Method::Auth));
        assert!(out.is_empty());
    }

    #[test]
    fn loopback_spreads_over_the_addresses() {
        assert_eq!(loopback(0, 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(loopback(5, 4), Ipv4Addr::new(127, 0, 0, 2));
    }
}
