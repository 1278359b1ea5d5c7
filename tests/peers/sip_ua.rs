//! A small test-only SIP user agent on tokio, UDP or TCP, that integration tests use to play
//! either network around the node (and that `tests/sip_ua_selftest.rs` proves against itself).
//!
//! Include it with `#[path = "peers/sip_ua.rs"] mod sip_ua;`.
//!
//! What it does, with `cpm_iwf::wire::sip` for every parse and serialize:
//! - **UAC**: build a request ([`SipUa::new_request`]), send it ([`SipUa::send_request`]) and
//!   await its responses ([`SipUa::next_response`], [`SipUa::final_response`]), retransmitting
//!   over UDP per RFC 3261 §17.1.1.2 / §17.1.2.2 (Timer A/E from T1, doubling, capped at T2 for
//!   non-INVITE; Timer B/F at 64·T1). A non-2xx final answer to an INVITE is ACKed at once with
//!   the INVITE's branch (§17.1.1.3). A 2xx makes a [`Dialog`] (§12.1.2) for ACK, BYE and any
//!   in-dialog request; CANCEL is built from the INVITE as §9.1 says.
//! - **UAS**: await a request ([`SipUa::recv_request`]) and answer it ([`SipUa::respond`]) with a
//!   status, header fields and a body; a 2xx to an INVITE can be retransmitted until its ACK
//!   arrives ([`SipUa::respond_until_ack`], §13.3.1.4).
//! - **Absorbed, never shown to the test**: a retransmitted request (same top Via branch and
//!   method) gets the last response sent for it again, or nothing when it is still unanswered
//!   (§17.2.1, §17.2.2); the ACK of a non-2xx final response (§17.2.1); a retransmitted 2xx to
//!   an INVITE already ACKed gets that ACK again (§13.2.2.4), a retransmitted non-2xx final
//!   response its ACK again (§17.1.1.2); a late copy of a non-INVITE final response (§17.1.2.2).
//! - Responses go back where the request came from: the datagram's source over UDP, the same
//!   connection over TCP (§18.2.2). TCP connections are reused per peer address, framed by
//!   `SipStreamCodec`, CRLF keep-alive pings answered (RFC 5626 §4.4.1).
//!
//! The transaction layer runs inside the UA's async methods: while a test awaits any of them
//! (a `recv_*`, `next_response`, `request`, ...), what arrives is absorbed or kept; between
//! awaits it waits in the inbox. A test that must keep answering retransmissions while it
//! does something else awaits the UA concurrently (`tokio::join!`).
//!
//! Bounds: every wait has a deadline ([`UaConfig::wait`] unless given), the inbox is a bounded
//! channel, the backlog of messages received while waiting for something else and the
//! retransmission memory are capped, each TCP connection has a bounded write queue.
//! Background tasks stop when the [`SipUa`] is dropped.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cpm_iwf::wire::sip::{
    Limits, SipError, SipFrame, SipMessage, SipStreamCodec, method_name, parse_datagram,
};
use rsip::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

/// The transport a [`SipUa`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The Via transport token (RFC 3261 §20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The `transport=` URI parameter value (RFC 3261 §19.1.1).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Settings of one UA.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// User part of From and Contact.
    pub user: String,
    /// Host part of the From URI (the address of record's domain).
    pub domain: String,
    /// RFC 3261 T1 (RTT estimate): first retransmission interval over UDP. Default 500 ms.
    pub t1: Duration,
    /// RFC 3261 T2: cap of the non-INVITE retransmission interval. Default 4 s.
    pub t2: Duration,
    /// How long a wait lasts when the caller gives no deadline. Default 5 s.
    pub wait: Duration,
    /// Capacity of the inbox channel (messages parsed and not yet looked at). Default 1024.
    pub inbox: usize,
    /// Most messages kept aside while waiting for another one; older ones are dropped and
    /// counted. Default 4096.
    pub backlog: usize,
    /// Limits for parsing what arrives.
    pub limits: Limits,
}

impl Default for UaConfig {
    fn default() -> Self {
        UaConfig {
            user: "ua".to_owned(),
            domain: "ims.example.net".to_owned(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            wait: Duration::from_secs(5),
            inbox: 1024,
            backlog: 4096,
            limits: Limits::default(),
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { waited: Duration, what: String },
    #[error("transaction timed out (RFC 3261 Timer {timer}) after {waited:?}")]
    TransactionTimeout { timer: char, waited: Duration },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("SIP: {0}")]
    Sip(#[from] SipError),
    #[error("the UA's receive tasks are gone")]
    Closed,
    #[error("{0}")]
    Protocol(String),
}

/// A message as received, with where it came from (for TCP: the connection's peer).
#[derive(Debug, Clone)]
pub struct Received {
    pub msg: SipMessage,
    pub source: SocketAddr,
}

/// A client transaction (RFC 3261 §17.1): the request, where it went, and its timers.
#[derive(Debug, Clone)]
pub struct ClientTx {
    pub request: SipMessage,
    pub dest: SocketAddr,
    pub branch: String,
    pub method: Method,
    bytes: Bytes,
    started: Instant,
    /// Next retransmission (UDP only), and the interval after it.
    next_retransmit: Option<Instant>,
    interval: Duration,
    /// Timer B (INVITE) or F (non-INVITE).
    timeout_at: Instant,
    /// A final response was received.
    pub completed: bool,
}

/// A server transaction handed to the test: the request, where to answer, and the To tag
/// this UA answers with (one per transaction, so 1xx and 2xx agree; RFC 3261 §8.2.6.2).
#[derive(Debug, Clone)]
pub struct ServerTx {
    pub request: SipMessage,
    pub source: SocketAddr,
    pub to_tag: String,
}

impl ServerTx {
    pub fn method(&self) -> Option<&Method> {
        self.request.method()
    }
}

/// Dialog state (RFC 3261 §12): enough for ACK, BYE and other in-dialog requests.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our From/To value (name-addr with tag) as written in requests we send.
    pub local: String,
    /// The peer's From/To value (name-addr with tag) as written in requests we send.
    pub remote: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The peer's Contact URI (§12.1.1, §12.1.2).
    pub remote_target: String,
    /// Route set, in the order Route header fields are written (§12.1.2: reversed
    /// Record-Route for the UAC, as received for the UAS).
    pub route_set: Vec<String>,
    /// Next CSeq number we use (§12.2.1.1).
    pub local_cseq: u32,
    /// CSeq of the INVITE that made the dialog (the ACK reuses it, §13.2.2.4).
    pub invite_cseq: u32,
    /// Where in-dialog requests are sent: the peer address (the node), whatever the URIs say.
    pub peer: SocketAddr,
}

/// Shared with the receive tasks.
struct Shared {
    transport: Transport,
    limits: Limits,
    /// TCP: the write queue of each open connection, by peer address.
    conns: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    inbox: mpsc::Sender<Received>,
    /// Bytes that did not parse as SIP (or rejected stream messages).
    invalid: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn track(&self, handle: AbortHandle) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(handle);
        }
    }
}

/// Capacity of each TCP connection's write queue.
const CONN_QUEUE: usize = 256;
/// How long a TCP connect or a queued write may take.
const IO_DEADLINE: Duration = Duration::from_secs(5);
/// Server transactions remembered for retransmission absorption, and 2xx ACKs remembered.
const MEMORY: usize = 8192;

/// A SIP user agent bound to one loopback socket (UDP) or listener (TCP).
pub struct SipUa {
    cfg: UaConfig,
    shared: Arc<Shared>,
    local: SocketAddr,
    udp: Option<Arc<UdpSocket>>,
    inbox: mpsc::Receiver<Received>,
    backlog: VecDeque<Received>,
    dropped: u64,
    counter: u64,
    /// (branch, method) of each request received -> the last response sent to it.
    answered: Memory<(String, String), Option<Bytes>>,
    /// Branch of each INVITE received -> the To tag we answer it with (a CANCEL's response
    /// carries the same, RFC 3261 §9.2).
    invite_tags: Memory<String, String>,
    /// (Call-ID, CSeq number, To tag) of each 2xx we ACKed -> the ACK, and where it went.
    acks: Memory<(String, u32, String), (SocketAddr, Bytes)>,
    /// Branch of each INVITE whose non-2xx final we ACKed -> that ACK, and where it went.
    non_2xx_acks: Memory<String, (SocketAddr, Bytes)>,
    /// (branch, method) of each non-INVITE client transaction that got its final response.
    completed: Memory<(String, String), ()>,
}

impl Drop for SipUa {
    fn drop(&mut self) {
        if let Ok(tasks) = self.shared.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl SipUa {
    /// A UA on `127.0.0.1:0` (an ephemeral port) with default settings and `user`.
    pub async fn bind(transport: Transport, user: &str) -> Result<SipUa, UaError> {
        let cfg = UaConfig {
            user: user.to_owned(),
            ..UaConfig::default()
        };
        Self::bind_with(transport, "127.0.0.1:0".parse().map_err(proto)?, cfg).await
    }

    /// A UA bound to `addr` (port 0 for an ephemeral one).
    pub async fn bind_with(
        transport: Transport,
        addr: SocketAddr,
        cfg: UaConfig,
    ) -> Result<SipUa, UaError> {
        let (tx, rx) = mpsc::channel(cfg.inbox.max(1));
        let shared = Arc::new(Shared {
            transport,
            limits: cfg.limits,
            conns: Mutex::new(HashMap::new()),
            inbox: tx,
            invalid: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let (local, udp) = match transport {
            Transport::Udp => {
                let sock = Arc::new(UdpSocket::bind(addr).await?);
                let local = sock.local_addr()?;
                let task = tokio::spawn(udp_reader(sock.clone(), shared.clone()));
                shared.track(task.abort_handle());
                (local, Some(sock))
            }
            Transport::Tcp => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                let task = tokio::spawn(tcp_acceptor(listener, shared.clone()));
                shared.track(task.abort_handle());
                (local, None)
            }
        };
        Ok(SipUa {
            cfg,
            shared,
            local,
            udp,
            inbox: rx,
            backlog: VecDeque::new(),
            dropped: 0,
            counter: 0,
            answered: Memory::default(),
            invite_tags: Memory::default(),
            acks: Memory::default(),
            non_2xx_acks: Memory::default(),
            completed: Memory::default(),
        })
    }

    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// Change T1 (and T2 = 8·T1), e.g. to make UDP retransmission tests fast.
    pub fn set_t1(&mut self, t1: Duration) {
        self.cfg.t1 = t1;
        self.cfg.t2 = t1 * 8;
    }

    /// Change the default wait.
    pub fn set_wait(&mut self, wait: Duration) {
        self.cfg.wait = wait;
    }

    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// The bound address (UDP socket or TCP listener).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `sip:user@domain`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    /// This UA's Contact URI (RFC 3261 §8.1.1.8).
    pub fn contact_uri(&self) -> String {
        format!(
            "sip:{}@{};transport={}",
            self.cfg.user,
            self.local,
            self.shared.transport.uri_param()
        )
    }

    /// TCP: is a connection with `peer` open (opened by either side)?
    pub fn connected(&self, peer: SocketAddr) -> bool {
        self.shared
            .conns
            .lock()
            .ok()
            .is_some_and(|c| c.get(&peer).is_some_and(|q| !q.is_closed()))
    }

    /// How many received byte runs did not parse as SIP.
    pub fn invalid_count(&self) -> u64 {
        self.shared.invalid.load(Ordering::Relaxed)
    }

    /// Messages dropped from the backlog because it was full.
    pub fn dropped_count(&self) -> u64 {
        self.dropped
    }

    /// Unique among the UAs of one test run: transport, port, counter.
    fn next_id(&mut self) -> String {
        self.counter += 1;
        let t = match self.shared.transport {
            Transport::Udp => 'u',
            Transport::Tcp => 't',
        };
        format!("{t}{}x{}", self.local.port(), self.counter)
    }

    /// A fresh Via branch (RFC 3261 §8.1.1.7: starts with the magic cookie).
    pub fn new_branch(&mut self) -> String {
        format!("z9hG4bK-ua{}", self.next_id())
    }

    /// A fresh tag (RFC 3261 §19.3).
    pub fn new_tag(&mut self) -> String {
        format!("t{}", self.next_id())
    }

    /// Our Via value with `branch`.
    pub fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.shared.transport.via_token(),
            self.local
        )
    }

    /// A new out-of-dialog request: Via (new branch), Max-Forwards, From (our AOR, new tag),
    /// To `<to_uri>`, a new Call-ID, `CSeq: 1 METHOD`, and Contact for INVITE (RFC 3261 §8.1.1).
    /// Add header fields and a body with `SipMessage`'s setters.
    pub fn new_request(
        &mut self,
        method: Method,
        request_uri: &str,
        to_uri: &str,
    ) -> Result<SipMessage, UaError> {
        let mut req = SipMessage::request(method, request_uri)?;
        let branch = self.new_branch();
        let tag = self.new_tag();
        let call_id = format!("ua-{}@127.0.0.1", self.next_id());
        req.push_header("Via", &self.via(&branch))?;
        req.push_header("Max-Forwards", "70")?;
        req.push_header("From", &format!("<{}>;tag={tag}", self.aor()))?;
        req.push_header("To", &format!("<{to_uri}>"))?;
        req.push_header("Call-ID", &call_id)?;
        req.push_header("CSeq", &format!("1 {}", method_name(&method)))?;
        if method == Method::Invite {
            req.push_header("Contact", &format!("<{}>", self.contact_uri()))?;
        }
        Ok(req)
    }

    /// A pager-mode MESSAGE (RFC 3428) to `uri` (also the To URI) with a body.
    pub fn new_message(
        &mut self,
        uri: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<SipMessage, UaError> {
        let mut msg = self.new_request(Method::Message, uri, uri)?;
        msg.set_body_with_type(Some(content_type), body)?;
        Ok(msg)
    }

    /// An INVITE to `uri` (also the To URI) with an SDP offer.
    pub fn new_invite(&mut self, uri: &str, sdp: Bytes) -> Result<SipMessage, UaError> {
        let mut msg = self.new_request(Method::Invite, uri, uri)?;
        msg.set_body_with_type(Some("application/sdp"), sdp)?;
        Ok(msg)
    }

    // --- sending -------------------------------------------------------------------------------

    /// Send bytes as they are (garbage, half messages): a datagram, or on the TCP connection to
    /// `dest` (opened when there is none).
    pub async fn send_raw(&self, dest: SocketAddr, bytes: Bytes) -> Result<(), UaError> {
        match &self.udp {
            Some(sock) => {
                sock.send_to(&bytes, dest).await?;
                Ok(())
            }
            None => {
                let queue = self.connection(dest).await?;
                tokio::time::timeout(IO_DEADLINE, queue.send(bytes))
                    .await
                    .map_err(|_| timeout(IO_DEADLINE, "a TCP write queue slot"))?
                    .map_err(|_| UaError::Closed)
            }
        }
    }

    /// Serialize and send a message without any transaction.
    pub async fn send_message(&self, dest: SocketAddr, msg: &SipMessage) -> Result<(), UaError> {
        self.send_raw(dest, msg.serialize()).await
    }

    /// The write queue of the TCP connection to `dest`, connecting when there is none.
    async fn connection(&self, dest: SocketAddr) -> Result<mpsc::Sender<Bytes>, UaError> {
        let existing = self
            .shared
            .conns
            .lock()
            .ok()
            .and_then(|c| c.get(&dest).filter(|q| !q.is_closed()).cloned());
        if let Some(queue) = existing {
            return Ok(queue);
        }
        let stream = tokio::time::timeout(IO_DEADLINE, TcpStream::connect(dest))
            .await
            .map_err(|_| timeout(IO_DEADLINE, "a TCP connection"))??;
        Ok(start_connection(stream, dest, &self.shared))
    }

    /// Send a request and start its client transaction. A request without Via gets ours
    /// (new branch) on top.
    pub async fn send_request(
        &mut self,
        dest: SocketAddr,
        mut request: SipMessage,
    ) -> Result<ClientTx, UaError> {
        let method = *request
            .method()
            .ok_or_else(|| UaError::Protocol("send_request needs a request".into()))?;
        let branch = match request.top_via_branch() {
            Some(b) => b.to_owned(),
            None => {
                let b = self.new_branch();
                request.insert_header(0, "Via", &self.via(&b))?;
                b
            }
        };
        let bytes = request.serialize();
        self.send_raw(dest, bytes.clone()).await?;
        let now = Instant::now();
        let udp = self.shared.transport == Transport::Udp;
        Ok(ClientTx {
            request,
            dest,
            branch,
            method,
            bytes,
            started: now,
            // §17.1.1.2 Timer A / §17.1.2.2 Timer E: UDP only. ACK has no transaction.
            next_retransmit: (udp && method != Method::Ack).then(|| now + self.cfg.t1),
            interval: self.cfg.t1,
            timeout_at: now + self.cfg.t1 * 64,
            completed: false,
        })
    }

    /// The next response of `tx` (provisional or final), retransmitting the request over UDP
    /// meanwhile. Waits at most `wait` (default [`UaConfig::wait`]) and never past Timer B/F.
    /// A non-2xx final response to an INVITE is ACKed here (§17.1.1.3). After a final response
    /// an INVITE transaction still reports further 2xx (forking, RFC 6026 §7.2).
    pub async fn next_response(
        &mut self,
        tx: &mut ClientTx,
        wait: Option<Duration>,
    ) -> Result<SipMessage, UaError> {
        let wait = wait.unwrap_or(self.cfg.wait);
        let deadline = Instant::now() + wait;
        let branch = tx.branch.clone();
        let method = method_name(&tx.method).to_owned();
        loop {
            let retransmit_at = tx.next_retransmit.filter(|_| !tx.completed);
            let until = [Some(deadline), Some(tx.timeout_at), retransmit_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            let got = self
                .poll_until(until, |r| {
                    !r.msg.is_request()
                        && r.msg.top_via_branch() == Some(branch.as_str())
                        && r.msg.cseq().map(|c| c.method) == Some(method.as_str())
                })
                .await?;
            if let Some(r) = got {
                let code = r.msg.status_code().unwrap_or(0);
                if tx.method == Method::Invite {
                    // §17.1.1.2: any response stops Timer A.
                    tx.next_retransmit = None;
                } else if code < 200 {
                    // §17.1.2.2: after a provisional response, retransmit every T2.
                    tx.interval = self.cfg.t2;
                    if let Some(at) = tx.next_retransmit.as_mut() {
                        *at = (*at).max(Instant::now() + self.cfg.t2);
                    }
                }
                if code >= 200 {
                    tx.completed = true;
                    if tx.method == Method::Invite && code >= 300 {
                        self.ack_non_2xx(tx, &r.msg).await?;
                    } else if tx.method != Method::Invite {
                        // §17.1.2.2 Completed: later copies of the final response are absorbed.
                        self.completed.insert((branch.clone(), method.clone()), ());
                    }
                }
                return Ok(r.msg);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(timeout(
                    wait,
                    &format!("a response to {method} (branch {branch})"),
                ));
            }
            if now >= tx.timeout_at && !tx.completed {
                return Err(UaError::TransactionTimeout {
                    timer: if tx.method == Method::Invite {
                        'B'
                    } else {
                        'F'
                    },
                    waited: now - tx.started,
                });
            }
            if let Some(at) = tx.next_retransmit
                && now >= at
                && !tx.completed
            {
                self.send_raw(tx.dest, tx.bytes.clone()).await?;
                tx.interval = if tx.method == Method::Invite {
                    tx.interval * 2
                } else {
                    (tx.interval * 2).min(self.cfg.t2)
                };
                tx.next_retransmit = Some(now + tx.interval);
            }
        }
    }

    /// The final response of `tx`, skipping provisional ones.
    pub async fn final_response(
        &mut self,
        tx: &mut ClientTx,
        wait: Option<Duration>,
    ) -> Result<SipMessage, UaError> {
        let wait = wait.unwrap_or(self.cfg.wait);
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let resp = self
                .next_response(tx, Some(left))
                .await
                .map_err(|e| match e {
                    UaError::Timeout { .. } => timeout(wait, "a final response"),
                    other => other,
                })?;
            if resp.status_code().unwrap_or(0) >= 200 {
                return Ok(resp);
            }
        }
    }

    /// Send a non-INVITE request (MESSAGE, OPTIONS, ...) and await its final response.
    pub async fn request(
        &mut self,
        dest: SocketAddr,
        request: SipMessage,
    ) -> Result<SipMessage, UaError> {
        let mut tx = self.send_request(dest, request).await?;
        self.final_response(&mut tx, None).await
    }

    /// §17.1.1.3: ACK for a non-2xx final response, in the INVITE's transaction: same
    /// Request-URI, top Via (branch), Call-ID, From, CSeq number; To from the response.
    async fn ack_non_2xx(&mut self, tx: &ClientTx, resp: &SipMessage) -> Result<(), UaError> {
        let uri =
            String::from_utf8_lossy(tx.request.request_uri().unwrap_or_default()).into_owned();
        let mut ack = SipMessage::request(Method::Ack, &uri)?;
        if let Some(via) = tx.request.header("Via") {
            ack.push_header("Via", first_item(via))?;
        }
        ack.push_header("Max-Forwards", "70")?;
        for name in ["From", "Call-ID"] {
            if let Some(v) = tx.request.header(name) {
                ack.push_header(name, v)?;
            }
        }
        if let Some(to) = resp.header("To") {
            ack.push_header("To", to)?;
        }
        let seq = tx.request.cseq().map_or(1, |c| c.seq);
        ack.push_header("CSeq", &format!("{seq} ACK"))?;
        for route in tx.request.header_all("Route") {
            ack.push_header("Route", route)?;
        }
        let bytes = ack.serialize();
        self.send_raw(tx.dest, bytes.clone()).await?;
        // §17.1.1.2 Completed: a retransmitted final response gets this ACK again.
        self.non_2xx_acks
            .insert(tx.branch.clone(), (tx.dest, bytes));
        Ok(())
    }

    // --- INVITE, dialogs, CANCEL ---------------------------------------------------------------

    /// The dialog a 2xx response to `tx` (an INVITE we sent) creates (RFC 3261 §12.1.2).
    pub fn dialog_from_response(
        &self,
        tx: &ClientTx,
        resp: &SipMessage,
    ) -> Result<Dialog, UaError> {
        let req = &tx.request;
        let call_id = req.call_id().ok_or_else(|| missing("Call-ID"))?.to_owned();
        let local = req
            .header("From")
            .ok_or_else(|| missing("From"))?
            .to_owned();
        let remote = resp.header("To").ok_or_else(|| missing("To"))?.to_owned();
        let local_tag = req
            .from_tag()
            .ok_or_else(|| missing("From tag"))?
            .to_owned();
        let remote_tag = resp.to_tag().ok_or_else(|| missing("To tag"))?.to_owned();
        let remote_target = resp
            .header("Contact")
            .and_then(uri_of)
            .ok_or_else(|| missing("Contact in the 2xx"))?
            .to_owned();
        let mut route_set: Vec<String> = resp
            .header_all("Record-Route")
            .flat_map(split_list)
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        let seq = req.cseq().map_or(1, |c| c.seq);
        Ok(Dialog {
            call_id,
            local,
            remote,
            local_tag,
            remote_tag,
            remote_target,
            route_set,
            local_cseq: seq + 1,
            invite_cseq: seq,
            peer: tx.dest,
        })
    }

    /// A request inside `dialog` (§12.2.1.1): Request-URI the remote target, Route set, From/To
    /// with tags, the dialog's Call-ID, the next CSeq (ACK reuses the INVITE's), a new branch.
    pub fn dialog_request(
        &mut self,
        dialog: &mut Dialog,
        method: Method,
    ) -> Result<SipMessage, UaError> {
        let mut req = SipMessage::request(method, &dialog.remote_target)?;
        let branch = self.new_branch();
        req.push_header("Via", &self.via(&branch))?;
        req.push_header("Max-Forwards", "70")?;
        for route in &dialog.route_set {
            req.push_header("Route", route)?;
        }
        req.push_header("From", &dialog.local)?;
        req.push_header("To", &dialog.remote)?;
        req.push_header("Call-ID", &dialog.call_id)?;
        let seq = if method == Method::Ack {
            dialog.invite_cseq
        } else {
            let s = dialog.local_cseq;
            dialog.local_cseq += 1;
            s
        };
        req.push_header("CSeq", &format!("{seq} {}", method_name(&method)))?;
        Ok(req)
    }

    /// ACK a 2xx (§13.2.2.4): a new transaction-less request in the dialog. It is remembered,
    /// and sent again when the 2xx is retransmitted.
    pub async fn ack(&mut self, dialog: &mut Dialog) -> Result<SipMessage, UaError> {
        let ack = self.dialog_request(dialog, Method::Ack)?;
        let bytes = ack.serialize();
        self.send_raw(dialog.peer, bytes.clone()).await?;
        let key = (
            dialog.call_id.clone(),
            dialog.invite_cseq,
            dialog.remote_tag.clone(),
        );
        self.acks.insert(key, (dialog.peer, bytes));
        Ok(ack)
    }

    /// Send a request in the dialog and await its final response (BYE, MESSAGE, UPDATE...).
    pub async fn dialog_transaction(
        &mut self,
        dialog: &mut Dialog,
        method: Method,
    ) -> Result<SipMessage, UaError> {
        let req = self.dialog_request(dialog, method)?;
        let peer = dialog.peer;
        self.request(peer, req).await
    }

    /// BYE the dialog and await the final response (§15.1.1).
    pub async fn bye(&mut self, dialog: &mut Dialog) -> Result<SipMessage, UaError> {
        self.dialog_transaction(dialog, Method::Bye).await
    }

    /// Send an INVITE, await its final response; on 2xx build the dialog and ACK it.
    /// Returns the provisional responses seen, the final one, and the dialog (2xx only).
    pub async fn call(
        &mut self,
        dest: SocketAddr,
        invite: SipMessage,
    ) -> Result<(Vec<SipMessage>, SipMessage, Option<Dialog>), UaError> {
        let mut tx = self.send_request(dest, invite).await?;
        let deadline = Instant::now() + self.cfg.wait;
        let mut provisional = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let resp = self.next_response(&mut tx, Some(left)).await?;
            let code = resp.status_code().unwrap_or(0);
            if code < 200 {
                provisional.push(resp);
                continue;
            }
            if code >= 300 {
                return Ok((provisional, resp, None));
            }
            let mut dialog = self.dialog_from_response(&tx, &resp)?;
            self.ack(&mut dialog).await?;
            return Ok((provisional, resp, Some(dialog)));
        }
    }

    /// CANCEL a pending INVITE (§9.1): same Request-URI, Call-ID, To, From, CSeq number and
    /// the INVITE's top Via (branch); its own non-INVITE transaction. Returns that
    /// transaction; the INVITE's 487 comes on `tx` and is ACKed by [`Self::next_response`].
    pub async fn cancel(&mut self, tx: &ClientTx) -> Result<ClientTx, UaError> {
        let inv = &tx.request;
        let uri = String::from_utf8_lossy(inv.request_uri().unwrap_or_default()).into_owned();
        let mut cancel = SipMessage::request(Method::Cancel, &uri)?;
        let via = inv.header("Via").ok_or_else(|| missing("Via"))?;
        cancel.push_header("Via", first_item(via))?;
        cancel.push_header("Max-Forwards", "70")?;
        for route in inv.header_all("Route") {
            cancel.push_header("Route", route)?;
        }
        for name in ["From", "To", "Call-ID"] {
            let v = inv.header(name).ok_or_else(|| missing(name))?;
            cancel.push_header(name, v)?;
        }
        let seq = inv.cseq().map_or(1, |c| c.seq);
        cancel.push_header("CSeq", &format!("{seq} CANCEL"))?;
        self.send_request(tx.dest, cancel).await
    }

    // --- UAS -----------------------------------------------------------------------------------

    /// The next request (any method), waiting at most `wait` (default [`UaConfig::wait`]).
    pub async fn recv_request(&mut self, wait: Option<Duration>) -> Result<ServerTx, UaError> {
        self.recv_request_matching(wait, "a request", |_| true)
            .await
    }

    /// The next request with `method`.
    pub async fn recv_method(
        &mut self,
        method: Method,
        wait: Option<Duration>,
    ) -> Result<ServerTx, UaError> {
        let what = format!("a {} request", method_name(&method));
        self.recv_request_matching(wait, &what, move |m| m.method() == Some(&method))
            .await
    }

    /// The next request `pick` accepts; other messages stay in the backlog.
    pub async fn recv_request_matching(
        &mut self,
        wait: Option<Duration>,
        what: &str,
        mut pick: impl FnMut(&SipMessage) -> bool,
    ) -> Result<ServerTx, UaError> {
        let wait = wait.unwrap_or(self.cfg.wait);
        let deadline = Instant::now() + wait;
        match self
            .poll_until(deadline, |r| r.msg.is_request() && pick(&r.msg))
            .await?
        {
            Some(r) => {
                let branch = r.msg.top_via_branch().unwrap_or_default().to_owned();
                let known = match r.msg.method() {
                    Some(Method::Cancel) => self.invite_tags.get(&branch).cloned(),
                    _ => None,
                };
                let to_tag = match (r.msg.to_tag(), known) {
                    (Some(t), _) => t.to_owned(),
                    (None, Some(t)) => t,
                    (None, None) => self.new_tag(),
                };
                if r.msg.method() == Some(&Method::Invite) {
                    self.invite_tags.insert(branch, to_tag.clone());
                }
                Ok(ServerTx {
                    request: r.msg,
                    source: r.source,
                    to_tag,
                })
            }
            None => Err(timeout(wait, what)),
        }
    }

    /// The next response of any transaction (for tests that look at raw traffic).
    pub async fn recv_response(&mut self, wait: Option<Duration>) -> Result<Received, UaError> {
        let wait = wait.unwrap_or(self.cfg.wait);
        let deadline = Instant::now() + wait;
        self.poll_until(deadline, |r| !r.msg.is_request())
            .await?
            .ok_or_else(|| timeout(wait, "a response"))
    }

    /// Build the response to `tx`: Via, From, To (with our tag unless the request had one),
    /// Call-ID, CSeq copied (§8.2.6.2); for a 2xx/1xx to INVITE, Record-Route copied and our
    /// Contact added (§12.1.1) unless `headers` has one; then `headers`, then the body.
    pub fn response(
        &self,
        tx: &ServerTx,
        code: u16,
        reason: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<SipMessage, UaError> {
        let mut resp = tx.request.response_to(code, reason);
        if code != 100 && tx.request.to_tag().is_none() {
            let to = tx.request.header("To").ok_or_else(|| missing("To"))?;
            resp.set_header("To", &format!("{to};tag={}", tx.to_tag))?;
        }
        let dialog_creating = tx.method() == Some(&Method::Invite) && (101..300).contains(&code);
        if dialog_creating {
            for rr in tx.request.header_all("Record-Route") {
                resp.push_header("Record-Route", rr)?;
            }
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Contact"))
            {
                resp.push_header("Contact", &format!("<{}>", self.contact_uri()))?;
            }
        }
        for (name, value) in headers {
            resp.push_header(name, value)?;
        }
        if let Some((ct, b)) = body {
            resp.set_body_with_type(Some(ct), b)?;
        }
        Ok(resp)
    }

    /// Answer `tx` (see [`Self::response`]) where the request came from (§18.2.2). The
    /// response is remembered: a retransmission of the request gets it again.
    pub async fn respond(
        &mut self,
        tx: &ServerTx,
        code: u16,
        reason: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<SipMessage, UaError> {
        let resp = self.response(tx, code, reason, headers, body)?;
        self.send_response(tx, &resp).await?;
        Ok(resp)
    }

    /// Send a response built by the test (any status, any To tag: e.g. forking 2xx).
    pub async fn send_response(&mut self, tx: &ServerTx, resp: &SipMessage) -> Result<(), UaError> {
        let bytes = resp.serialize();
        let dest = self.response_destination(tx);
        self.send_raw(dest, bytes.clone()).await?;
        if let (Some(branch), Some(method)) = (tx.request.top_via_branch(), tx.method()) {
            let key = (branch.to_owned(), method_name(method).to_owned());
            if let Some(slot) = self.answered.get_mut(&key) {
                *slot = Some(bytes);
            }
        }
        Ok(())
    }

    /// Where a response to `tx` goes (RFC 3261 §18.2.2): where the request came from; over
    /// TCP, when that connection is gone, a new one to the top Via's sent-by.
    fn response_destination(&self, tx: &ServerTx) -> SocketAddr {
        if self.shared.transport == Transport::Udp {
            return tx.source;
        }
        if self.connected(tx.source) {
            return tx.source;
        }
        tx.request
            .header("Via")
            .and_then(via_sent_by)
            .unwrap_or(tx.source)
    }

    /// Answer an INVITE with a 2xx and retransmit it over UDP (T1 doubling to T2, for 64·T1,
    /// §13.3.1.4) until its ACK arrives; returns the UAS dialog and the ACK.
    pub async fn respond_until_ack(
        &mut self,
        tx: &ServerTx,
        code: u16,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<(Dialog, SipMessage), UaError> {
        let resp = self.response(tx, code, "OK", headers, body)?;
        let dialog = self.dialog_from_request(tx)?;
        let ack = self.send_response_until_ack(tx, &resp).await?;
        Ok((dialog, ack))
    }

    /// Send a 2xx built by the test (e.g. a translated one) to an INVITE and retransmit it over
    /// UDP until its ACK (same Call-ID and CSeq number) arrives (§13.3.1.4); returns the ACK.
    pub async fn send_response_until_ack(
        &mut self,
        tx: &ServerTx,
        resp: &SipMessage,
    ) -> Result<SipMessage, UaError> {
        self.send_response(tx, resp).await?;
        let call_id = tx
            .request
            .call_id()
            .ok_or_else(|| missing("Call-ID"))?
            .to_owned();
        let seq = tx.request.cseq().map_or(1, |c| c.seq);
        let bytes = resp.serialize();
        let started = Instant::now();
        let give_up = started + self.cfg.t1 * 64;
        let mut interval = self.cfg.t1;
        let udp = self.shared.transport == Transport::Udp;
        loop {
            let next = if udp {
                Instant::now() + interval
            } else {
                give_up
            };
            let got = self
                .poll_until(next.min(give_up), |r| {
                    r.msg.method() == Some(&Method::Ack)
                        && r.msg.call_id() == Some(call_id.as_str())
                        && r.msg.cseq().map(|c| c.seq) == Some(seq)
                })
                .await?;
            if let Some(r) = got {
                return Ok(r.msg);
            }
            if Instant::now() >= give_up {
                return Err(UaError::TransactionTimeout {
                    timer: 'H',
                    waited: started.elapsed(),
                });
            }
            self.send_raw(tx.source, bytes.clone()).await?;
            interval = (interval * 2).min(self.cfg.t2);
        }
    }

    /// The dialog an INVITE we answer with 2xx creates (§12.1.1).
    pub fn dialog_from_request(&self, tx: &ServerTx) -> Result<Dialog, UaError> {
        let req = &tx.request;
        let call_id = req.call_id().ok_or_else(|| missing("Call-ID"))?.to_owned();
        let remote = req
            .header("From")
            .ok_or_else(|| missing("From"))?
            .to_owned();
        let to = req.header("To").ok_or_else(|| missing("To"))?;
        let local = if req.to_tag().is_some() {
            to.to_owned()
        } else {
            format!("{to};tag={}", tx.to_tag)
        };
        let remote_tag = req
            .from_tag()
            .ok_or_else(|| missing("From tag"))?
            .to_owned();
        let remote_target = req
            .header("Contact")
            .and_then(uri_of)
            .ok_or_else(|| missing("Contact in the request"))?
            .to_owned();
        let route_set = req
            .header_all("Record-Route")
            .flat_map(split_list)
            .map(str::to_owned)
            .collect();
        let seq = req.cseq().map_or(1, |c| c.seq);
        Ok(Dialog {
            call_id,
            local,
            remote,
            local_tag: tx.to_tag.clone(),
            remote_tag,
            remote_target,
            route_set,
            local_cseq: 1,
            invite_cseq: seq,
            peer: tx.source,
        })
    }

    // --- the inbox ------------------------------------------------------------------------------

    /// The first message `pick` accepts, from the backlog or the inbox, until `deadline`
    /// (`None` then). Messages handled automatically (retransmissions) are never picked;
    /// the others not picked go to the backlog.
    async fn poll_until(
        &mut self,
        deadline: Instant,
        mut pick: impl FnMut(&Received) -> bool,
    ) -> Result<Option<Received>, UaError> {
        if let Some(i) = self.backlog.iter().position(&mut pick) {
            return Ok(self.backlog.remove(i));
        }
        loop {
            let r = match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(UaError::Closed),
                Ok(Some(r)) => r,
            };
            if self.absorb(&r).await? {
                continue;
            }
            if pick(&r) {
                return Ok(Some(r));
            }
            if self.backlog.len() >= self.cfg.backlog {
                self.backlog.pop_front();
                self.dropped += 1;
            }
            self.backlog.push_back(r);
        }
    }

    /// Handle what the transaction layer handles by itself; `true` when `r` was absorbed.
    async fn absorb(&mut self, r: &Received) -> Result<bool, UaError> {
        let msg = &r.msg;
        if let Some(method) = msg.method() {
            let Some(branch) = msg.top_via_branch() else {
                return Ok(false);
            };
            if *method == Method::Ack {
                // §17.2.1: the ACK of a non-2xx final response ends that INVITE transaction.
                let key = (branch.to_owned(), "INVITE".to_owned());
                let non_2xx = self
                    .answered
                    .get(&key)
                    .and_then(|last: &Option<Bytes>| last.as_ref())
                    .is_some_and(|b| !b.starts_with(b"SIP/2.0 2"));
                return Ok(non_2xx);
            }
            let key = (branch.to_owned(), method_name(method).to_owned());
            if let Some(last) = self.answered.get(&key) {
                // §17.2.1, §17.2.2: a retransmission gets the last response again.
                if let Some(bytes) = last.clone() {
                    self.send_raw(r.source, bytes).await?;
                }
                return Ok(true);
            }
            self.answered.insert(key, None);
            return Ok(false);
        }
        let code = msg.status_code().unwrap_or(0);
        let (Some(branch), Some(cseq)) = (msg.top_via_branch(), msg.cseq()) else {
            return Ok(false);
        };
        if cseq.method == "INVITE" && code >= 300 {
            // §17.1.1.2: a retransmitted non-2xx final response gets the ACK again.
            if let Some((peer, bytes)) = self.non_2xx_acks.get(&branch.to_owned()).cloned() {
                self.send_raw(peer, bytes).await?;
                return Ok(true);
            }
        }
        if cseq.method != "INVITE"
            && self
                .completed
                .get(&(branch.to_owned(), cseq.method.to_owned()))
                .is_some()
        {
            return Ok(true);
        }
        // §13.2.2.4: a retransmitted 2xx to an INVITE we ACKed gets the ACK again.
        if (200..300).contains(&code)
            && let (Some(cseq), Some(call_id), Some(tag)) =
                (msg.cseq(), msg.call_id(), msg.to_tag())
            && cseq.method == "INVITE"
        {
            let key = (call_id.to_owned(), cseq.seq, tag.to_owned());
            if let Some((peer, bytes)) = self.acks.get(&key).cloned() {
                self.send_raw(peer, bytes).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A map that forgets its oldest keys beyond [`MEMORY`] entries.
struct Memory<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K, V> Default for Memory<K, V> {
    fn default() -> Self {
        Memory {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Memory<K, V> {
    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > MEMORY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }
}

fn timeout(waited: Duration, what: &str) -> UaError {
    UaError::Timeout {
        waited,
        what: what.to_owned(),
    }
}

fn missing(what: &str) -> UaError {
    UaError::Protocol(format!("missing {what}"))
}

fn proto(e: impl std::fmt::Display) -> UaError {
    UaError::Protocol(e.to_string())
}

/// The URI in a name-addr or addr-spec header value (`"Bob" <sip:b@h>;p`, `sip:b@h;p`).
pub fn uri_of(value: &str) -> Option<&str> {
    let value = value.trim();
    if let Some(start) = value.find('<') {
        let rest = value.get(start + 1..)?;
        let end = rest.find('>')?;
        return rest.get(..end);
    }
    let end = value.find([';', ' ']).unwrap_or(value.len());
    value.get(..end).filter(|u| !u.is_empty())
}

/// The elements of a comma-separated header value (commas inside `<>` or quotes kept).
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut items = Vec::new();
    let (mut angle, mut quote, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !quote && !angle => {
                items.push(value.get(start..i).unwrap_or_default().trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(value.get(start..).unwrap_or_default().trim());
    items.into_iter().filter(|s| !s.is_empty())
}

/// The sent-by of the first Via value as a socket address (`SIP/2.0/TCP 127.0.0.1:5060;...`),
/// when it is a literal address with a port.
pub fn via_sent_by(value: &str) -> Option<SocketAddr> {
    let first = first_item(value);
    let after_protocol = first.trim_start().split_once(char::is_whitespace)?.1;
    let sent_by = after_protocol.trim_start().split(';').next()?.trim();
    sent_by.parse().ok()
}

fn first_item(value: &str) -> &str {
    split_list(value).next().unwrap_or(value)
}

// --- receive tasks ----------------------------------------------------------------------------

async fn udp_reader(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, source)) = sock.recv_from(&mut buf).await else {
            // Do not spin on a socket error.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
        // RFC 5626 §4.4.2 STUN keep-alives and stray CRLFs are not SIP; ignore them.
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            continue;
        }
        match parse_datagram(data, &shared.limits) {
            Ok(msg) => {
                if shared.inbox.send(Received { msg, source }).await.is_err() {
                    return;
                }
            }
            Err(_) => {
                shared.invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        start_connection(stream, peer, &shared);
    }
}

/// Register a connection under `peer` and start its reader and writer tasks.
fn start_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> mpsc::Sender<Bytes> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let (queue, mut rx) = mpsc::channel::<Bytes>(CONN_QUEUE);
    if let Ok(mut conns) = shared.conns.lock() {
        conns.insert(peer, queue.clone());
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let write = tokio::time::timeout(IO_DEADLINE, write.write_all(&bytes)).await;
            if !matches!(write, Ok(Ok(()))) {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    shared.track(writer.abort_handle());
    let reader_shared = shared.clone();
    let pong = queue.clone();
    let reader = tokio::spawn(async move {
        read_frames(read, peer, &reader_shared, &pong).await;
        if let Ok(mut conns) = reader_shared.conns.lock()
            && conns.get(&peer).is_some_and(|q| q.same_channel(&pong))
        {
            conns.remove(&peer);
        }
    });
    shared.track(reader.abort_handle());
    queue
}

/// Decode SIP frames from one connection until it closes or framing is lost (the codec bounds
/// the buffer: a message over the limit is an error or skipped, never buffered whole).
async fn read_frames(
    mut read: tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    shared: &Shared,
    pong: &mpsc::Sender<Bytes>,
) {
    let mut codec = SipStreamCodec::new(shared.limits);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(SipFrame::Message(msg))) => {
                    let r = Received { msg, source: peer };
                    if shared.inbox.send(r).await.is_err() {
                        return;
                    }
                }
                Ok(Some(SipFrame::KeepAlivePing)) => {
                    let _ = pong.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(Some(SipFrame::KeepAlivePong)) => {}
                Ok(Some(SipFrame::Rejected { .. })) => {
                    shared.invalid.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => break,
                Err(_) => {
                    shared.invalid.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
