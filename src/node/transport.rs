//! SIP transports (RFC 3261 §18): UDP and TCP listeners for one side of the node, TCP
//! connection reuse, framing by [`crate::wire::sip`], source ACL, bounded queues everywhere.
//!
//! One [`SipTransport`] per side. [`SipTransport::bind`] opens the listen sockets and returns
//! the receiving end of a bounded channel of [`Inbound`] messages.
//! [`SipTransport::bind_for_caller`] (the node) leaves the UDP sockets to be read by the caller
//! through a [`UdpReceiver`], in batches, in its own task; the channel then carries TCP only.
//! Sending:
//! - [`SipTransport::send`] (async): UDP from the listen socket (so that the source port is the
//!   listen port, §18.1.1); TCP on an open connection to that address (inbound or outbound:
//!   §18.2.2, RFC 5923 style reuse), else a new connection (connect timeout);
//! - [`SipTransport::send_on`] (non-blocking): on one connection, for responses (§18.2.2);
//! - [`SipTransport::send_udp_from`] (async): from a given UDP listen socket.
//! - [`SipTransport::send_response`] (async): along the [`ResponseRoute`] of a request
//!   ([`Inbound::response_route`]): its connection while open, else RFC 3261 §18.2.2's
//!   `received` + sent-by port; over UDP from the socket it came on to `received`:`rport`.
//!
//! Inbound requests get `received`/`rport` on their top Via before delivery (§18.2.1,
//! RFC 3581 §4). Malformed requests are answered here (400/413/415/501/505 with the fault as
//! reason phrase); malformed responses and unreadable input are dropped and counted.
//!
//! Every TCP connection has a reader task (framing, keep-alives, stall and idle timeouts) and a
//! writer task fed by a bounded queue; a full queue is [`SendError::Busy`], never growth.
//!
//! Pure helpers, tested without sockets: [`parse_via`], [`response_target`] (§18.2.2 +
//! RFC 3581 §4), [`stamp_via`] / [`stamp_received`] (§18.2.1, RFC 3581 §4), [`request_via`],
//! [`allowed`].

use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

pub use crate::config::Transport;
use crate::config::{self, Cidr};
use crate::wire::sip::{
    self, Limits, SipError, SipFrame, SipMessage, SipStreamCodec, StreamError, Text,
};

/// RFC 3261 §8.1.1.7: every branch the node creates starts with this.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// RFC 3261 §18.2.2 / §19.1.2: the port when a Via names none (SIP over UDP and TCP).
pub const DEFAULT_PORT: u16 = 5060;

/// The pong answering a CRLFCRLF ping (RFC 5626 §4.4.1).
const PONG: &[u8] = b"\r\n";

// ---------------------------------------------------------------------------------------------
// Configuration, messages, errors, counters.

/// One side's transport settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// UDP listen addresses (port 0: any free port, read back with [`SipTransport::udp_addrs`]).
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// Sizes a message may use.
    pub limits: Limits,
    /// Sources allowed to send; empty allows all.
    pub allow: Vec<Cidr>,
    /// Most TCP connections open at once, inbound and outbound. Default 1 024.
    pub max_connections: usize,
    /// Messages queued towards one connection before [`SendError::Busy`]. Default 1 024.
    pub queue_depth: usize,
    /// Messages waiting for the node in the inbound channel. Default 4 096.
    pub inbound_depth: usize,
    /// A TCP connection with no traffic either way for this long is closed. Default 5 min.
    pub idle_timeout: Duration,
    /// A started message (or a keep-alive) not complete within this is a stalled peer: the
    /// connection is closed. Also bounds one write to a peer that does not read. Default 10 s.
    pub stall_timeout: Duration,
    /// Outbound TCP connect. Default 5 s.
    pub connect_timeout: Duration,
    /// The network this transport serves, for the metrics' `side` label; `None` records no
    /// metrics (a transport used alone, in tests).
    pub side: Option<crate::translate::state::Side>,
    /// SO_RCVBUF and SO_SNDBUF asked for on each UDP socket. A burst of requests (a few
    /// hundred INVITEs at once) overflows the kernel's default (~208 KiB) and a datagram lost
    /// there costs a retransmission interval (RFC 3261 §17.1.1.2). The kernel caps it at
    /// `net.core.rmem_max`/`wmem_max`. Default 4 MiB.
    pub udp_buffer_bytes: usize,
}

impl TransportConfig {
    /// Defaults for everything but the listen addresses.
    pub fn new(udp: Vec<SocketAddr>, tcp: Vec<SocketAddr>) -> Self {
        TransportConfig {
            udp,
            tcp,
            limits: Limits::default(),
            allow: Vec::new(),
            max_connections: 1_024,
            queue_depth: 1_024,
            inbound_depth: 4_096,
            idle_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            side: None,
            udp_buffer_bytes: 4 << 20,
        }
    }

    /// The settings of one side of the node's configuration.
    pub fn for_side(side: &config::SideConfig, limits: &config::Limits) -> Self {
        Self::for_side_named(side, limits, None)
    }

    /// [`for_side`](Self::for_side), labelled as the network `name` in the metrics.
    pub fn for_side_named(
        side: &config::SideConfig,
        limits: &config::Limits,
        name: Option<crate::translate::state::Side>,
    ) -> Self {
        let mut cfg = Self::new(side.sip_udp.clone(), side.sip_tcp.clone());
        cfg.limits = Limits {
            max_message: limits.sip_max_message,
            max_headers: limits.sip_max_headers,
            max_line: limits.sip_max_line,
        };
        cfg.allow = side.allow.clone();
        cfg.queue_depth = limits.queue_depth;
        cfg.side = name;
        cfg
    }
}

/// Where [`SipTransport::try_send`] sends: a request to a target, or a response back along a
/// request's route.
#[derive(Debug, Clone, Copy)]
pub enum TryRoute {
    /// To a next hop.
    To(Target),
    /// Back where a request came from.
    Back(ResponseRoute),
}

/// Identity of one TCP connection for the life of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A message received and parsed.
#[derive(Debug)]
pub struct Inbound {
    /// The message; for a request, its top Via already carries `received`/`rport` (§18.2.1).
    pub message: SipMessage,
    /// Where it came from.
    pub source: SocketAddr,
    /// Over what.
    pub transport: Transport,
    /// The local socket address it arrived on.
    pub local: SocketAddr,
    /// The TCP connection (responses go back on it, §18.2.2); `None` for UDP.
    pub connection: Option<ConnectionId>,
}

impl Inbound {
    /// Where this request's responses go (RFC 3261 §18.2.2), to keep in its server
    /// transaction for every response and retransmission.
    pub fn response_route(&self) -> ResponseRoute {
        let via = self.message.header("Via").and_then(parse_via);
        self.response_route_from(via.as_ref())
    }

    /// [`response_route`](Self::response_route) from the top Via already read (`None`: none
    /// or unreadable, the source address is used).
    pub fn response_route_from(&self, via: Option<&ViaParts<'_>>) -> ResponseRoute {
        let reliable = self.transport == Transport::Tcp;
        let addr = via
            .and_then(|via| response_target(via, reliable))
            .unwrap_or(self.source);
        ResponseRoute {
            transport: self.transport,
            local: self.local,
            connection: self.connection,
            addr,
        }
    }
}

/// Where the responses to one request go (RFC 3261 §18.2.2): over TCP the connection the
/// request came on, else a new connection to `addr`; over UDP from the socket it came on to
/// `addr` (the `received`/`rport` of its top Via, RFC 3581 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseRoute {
    /// The request's transport.
    pub transport: Transport,
    /// The local socket the request arrived on.
    pub local: SocketAddr,
    /// The request's connection (TCP).
    pub connection: Option<ConnectionId>,
    /// From the top Via; the source address when the Via names only a host name.
    pub addr: SocketAddr,
}

/// Where to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The peer.
    pub addr: SocketAddr,
    /// Over what.
    pub transport: Transport,
}

/// Why a message was not handed to the network.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection's outbound queue is full: the peer does not read fast enough.
    #[error("outbound queue full")]
    Busy,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
    /// No UDP socket of the target's address family.
    #[error("no UDP socket to reach {0}")]
    NoSocket(SocketAddr),
    /// [`TransportConfig::max_connections`] reached.
    #[error("connection limit reached")]
    TooManyConnections,
    /// The connect did not finish within [`TransportConfig::connect_timeout`].
    #[error("connect to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// The connect failed.
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    /// A UDP send failed.
    #[error("send to {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    /// [`SipTransport::shutdown`] was called.
    #[error("transport is shutting down")]
    ShuttingDown,
}

/// Counters the node (and the metrics module) reads. All monotonic.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// UDP datagrams received (any content, before the ACL).
    pub udp_datagrams: AtomicU64,
    /// Complete messages framed on TCP connections.
    pub tcp_messages: AtomicU64,
    /// Messages handed to the inbound channel.
    pub delivered: AtomicU64,
    /// UDP messages dropped because the inbound channel was full.
    pub inbound_full_drops: AtomicU64,
    /// Datagrams the kernel dropped because a UDP socket's receive buffer was full (read by
    /// [`SipTransport::update_kernel_drops`]).
    pub udp_buffer_drops: AtomicU64,
    /// Datagrams and TCP connections refused by the source ACL.
    pub acl_refused: AtomicU64,
    /// Malformed requests answered with an error status.
    pub parse_errors_answered: AtomicU64,
    /// Malformed messages dropped without answer (responses, unreadable, ACK).
    pub parse_errors_dropped: AtomicU64,
    /// CRLFCRLF pings received (TCP) and CRLF-only datagrams ignored (UDP).
    pub keepalives: AtomicU64,
    /// TCP connections accepted.
    pub connections_accepted: AtomicU64,
    /// TCP connections opened by the node.
    pub connections_opened: AtomicU64,
    /// TCP connections refused at accept or connect because of `max_connections`.
    pub connections_refused: AtomicU64,
    /// TCP connections closed, for any reason.
    pub connections_closed: AtomicU64,
    /// Closed because a started message did not complete within the stall timeout.
    pub stall_timeouts: AtomicU64,
    /// Closed because idle.
    pub idle_timeouts: AtomicU64,
    /// Closed because framing was lost (garbage, headers over the limits).
    pub framing_errors: AtomicU64,
    /// Sends refused with [`SendError::Busy`].
    pub send_busy: AtomicU64,
    /// Other failed sends (closed, connect failure, socket error).
    pub send_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Pure helpers.

/// Whether `ip` may use this side: inside one of `allow`, or `allow` is empty.
pub fn allowed(allow: &[Cidr], ip: IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|n| n.contains(ip))
}

/// The first value of a Via header field (RFC 3261 §20.42), read for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaParts<'a> {
    /// `UDP`, `TCP`, ... (the last part of sent-protocol).
    pub transport: &'a str,
    /// sent-by host, without the brackets of an IPv6 reference.
    pub host: &'a str,
    /// sent-by port.
    pub port: Option<u16>,
    /// Everything after the first `;` of this Via value.
    pub params: &'a str,
}

impl<'a> ViaParts<'a> {
    /// `Some(value)` when the parameter is present (`Some("")` for a flag such as `rport`).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.split(';').find_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim_matches([' ', '\t', '"']))
        })
    }

    /// `received`, `maddr` and `rport` (as [`param`](Self::param) gives each; the first of a
    /// repeated one), read in one pass: every response's route needs all three.
    pub fn route_params(&self) -> [Option<&'a str>; 3] {
        let mut found = [None; 3];
        for p in self.params.split(';') {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let n = n.trim();
            let slot = if n.eq_ignore_ascii_case("received") {
                0
            } else if n.eq_ignore_ascii_case("maddr") {
                1
            } else if n.eq_ignore_ascii_case("rport") {
                2
            } else {
                continue;
            };
            if let Some(f) = found.get_mut(slot)
                && f.is_none()
            {
                *f = Some(v.trim_matches([' ', '\t', '"']));
            }
        }
        found
    }

    /// The sent-by host as an IP address, when it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Length of the first element of a comma-separated header value (commas inside quotes
/// ignored).
fn first_item_len(value: &str) -> usize {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => return i,
            _ => {}
        }
    }
    value.len()
}

/// Read the first via-parm of a Via value: `SIP/2.0/UDP host[:port];params` (RFC 3261 §25.1).
pub fn parse_via(value: &str) -> Option<ViaParts<'_>> {
    let item = value.get(..first_item_len(value))?;
    let (head, params) = item.split_once(';').unwrap_or((item, ""));
    let head = head.trim();
    // sent-protocol LWS sent-by: the sent-by is the last white-space separated word.
    let split = head.rfind([' ', '\t'])?;
    let protocol = head.get(..split)?.trim();
    let sent_by = head.get(split..)?.trim();
    let transport = protocol.rsplit('/').next()?.trim();
    if transport.is_empty() || !protocol.contains('/') {
        return None;
    }
    let (host, port) = if let Some(rest) = sent_by.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        match sent_by.split_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (sent_by, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(ViaParts {
        transport,
        host,
        port,
        params,
    })
}

/// Compare addresses with IPv4-mapped IPv6 seen as IPv4.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Where a response goes, from the top Via of its request as the transport stamped it
/// (RFC 3261 §18.2.2, RFC 3581 §4). `reliable`: the request came over TCP; the caller tries the
/// connection it came on first, and this is where to open a new one when it is gone (the
/// `received` address, the sent-by port). `None` when the sent-by is a host name that only
/// RFC 3263 §5 resolution can turn into an address.
pub fn response_target(via: &ViaParts<'_>, reliable: bool) -> Option<SocketAddr> {
    let port = via.port.unwrap_or(DEFAULT_PORT);
    let [received, maddr, rport] = via.route_params();
    let received = received.and_then(|r| r.parse::<IpAddr>().ok());
    if reliable {
        let ip = received.or_else(|| via.host_ip())?;
        return Some(SocketAddr::new(ip, port));
    }
    if let Some(maddr) = maddr.and_then(|m| m.parse::<IpAddr>().ok()) {
        return Some(SocketAddr::new(maddr, port));
    }
    // RFC 3581 §4: the received address and the rport port.
    if let Some(rport) = rport.and_then(|p| p.parse::<u16>().ok()) {
        let ip = received.or_else(|| via.host_ip())?;
        return Some(SocketAddr::new(ip, rport));
    }
    let ip = received.or_else(|| via.host_ip())?;
    Some(SocketAddr::new(ip, port))
}

/// The top Via value with `received=` (when the sent-by is not the source IP, RFC 3261
/// §18.2.1, or whenever `rport` is present, RFC 3581 §4) and `rport=<source port>` (when the
/// request asked for it). `None` when nothing changes or the Via cannot be read.
pub fn stamp_via(value: &str, source: SocketAddr) -> Option<String> {
    let via = parse_via(value)?;
    let rport = via.param("rport").is_some();
    let host_matches = via.host_ip().is_some_and(|ip| same_ip(ip, source.ip()));
    if host_matches && !rport {
        return None;
    }
    let item_len = first_item_len(value);
    let item = value.get(..item_len)?;
    let rest = value.get(item_len..)?;
    let (head, params) = item.split_once(';').unwrap_or((item, ""));
    let mut out = String::with_capacity(value.len() + 48);
    out.push_str(head.trim_end());
    for p in params.split(';') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let name = p.split_once('=').map_or(p, |(n, _)| n).trim();
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        out.push(';');
        if name.eq_ignore_ascii_case("rport") {
            out.push_str("rport=");
            push_decimal(&mut out, u32::from(source.port()));
        } else {
            out.push_str(p);
        }
    }
    out.push_str(";received=");
    push_ip(&mut out, source.ip().to_canonical());
    out.push_str(rest);
    Some(out)
}

/// Apply [`stamp_via`] to the top Via of a request; whether it changed.
pub fn stamp_received(message: &mut SipMessage, source: SocketAddr) -> bool {
    let Some((index, stamped)) = message
        .headers()
        .enumerate()
        .find(|(_, (name, _))| *name == "Via")
        .map(|(i, (_, via))| (i, stamp_via(via, source)))
    else {
        return false;
    };
    match stamped {
        Some(new) => message.set_value_at(index, Text::from(new)).is_ok(),
        None => false,
    }
}

/// The Via the node puts on a request it sends (RFC 3261 §8.1.1.7, §18.1.1; RFC 3581 §3):
/// `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...;rport`. `branch` gets the magic cookie when
/// it lacks it.
pub fn request_via(transport: Transport, sent_by: SocketAddr, branch: &str) -> String {
    let proto = match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    let cookie = if branch.starts_with(BRANCH_MAGIC) {
        ""
    } else {
        BRANCH_MAGIC
    };
    // Written piece by piece: `format!` with SocketAddr's Display was ~2.5 k instructions, and
    // the node writes one for every request it sends.
    let mut out = String::with_capacity(40 + cookie.len() + branch.len());
    out.push_str("SIP/2.0/");
    out.push_str(proto);
    out.push(' ');
    push_socket_addr(&mut out, sent_by);
    out.push_str(";branch=");
    out.push_str(cookie);
    out.push_str(branch);
    out.push_str(";rport");
    out
}

/// `addr` as a sent-by (RFC 3261 §25.1: an IPv6 host in brackets), as SocketAddr's Display
/// writes it; IPv4 without the formatting machinery.
pub fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => push_ip(out, IpAddr::V4(*v4.ip())),
        SocketAddr::V6(v6) => {
            out.push('[');
            push_ip(out, IpAddr::V6(*v6.ip()));
            out.push(']');
        }
    }
    out.push(':');
    push_decimal(out, u32::from(addr.port()));
}

/// `ip` as its Display writes it; IPv4 without the formatting machinery.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u32::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// `v` in decimal, no leading zeros.
pub fn push_decimal(out: &mut String, mut v: u32) {
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + (v % 10) as u8;
        }
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in digits.iter().take(n).rev() {
        out.push(char::from(d));
    }
}

/// Whether a TCP peer is in the middle of a message, from what the stream decoder consumed
/// (its own state is private): the stall timeout runs while it is (RFC 3261 §18.3 framing).
#[derive(Debug, Default)]
struct Progress {
    /// Body bytes of a rejected message the decoder still skips.
    discard: usize,
}

impl Progress {
    /// The decoder yielded a frame; after a `Rejected` one it skips `skip` body bytes.
    fn frame(&mut self, skip: usize) {
        self.discard = skip;
    }

    /// The decoder yielded nothing, the buffer went from `before` to `after` bytes: is a
    /// message under way (bytes left, a head consumed that waits for its body, or a rejected
    /// body still being skipped)?
    fn under_way(&mut self, before: usize, after: usize) -> bool {
        let consumed = before.saturating_sub(after);
        let skipped = consumed.min(self.discard);
        self.discard -= skipped;
        self.discard > 0 || after > 0 || consumed > skipped
    }
}

/// The Content-Length of a raw header block (long or compact name, RFC 3261 §7.3.3), for the
/// body the stream decoder skips after a rejected head. `None` when absent or unreadable.
fn raw_content_length(head: &[u8]) -> Option<usize> {
    head.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        let name = line.get(..colon)?.trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            return None;
        }
        std::str::from_utf8(line.get(colon + 1..)?.trim_ascii())
            .ok()?
            .parse()
            .ok()
    })
}

/// `t + d`, saturating far in the future instead of panicking on a huge configured timeout.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(t)
}

/// The error answer to a request that failed to parse, or `None` (a response, unreadable, or
/// an ACK, which is never answered: RFC 3261 §17.2.1).
fn error_answer(raw: &[u8], error: &SipError, tags: &TagSource) -> Option<Bytes> {
    error.status()?;
    if raw.starts_with(b"ACK ") {
        return None;
    }
    let tag = tags.next();
    sip::error_response(raw, error, Some(&tag))
}

/// To tags for error answers (RFC 3261 §8.2.6.2): unique, not secret.
struct TagSource {
    keys: std::hash::RandomState,
    counter: AtomicU64,
}

impl TagSource {
    fn new() -> Self {
        TagSource {
            keys: std::hash::RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", self.keys.hash_one(n))
    }
}

// ---------------------------------------------------------------------------------------------
// The tokio part.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stop reading, let queues drain.
    Draining,
    /// Drop what is left.
    Abort,
}

struct Conn {
    tx: mpsc::Sender<Bytes>,
    /// The peer's address and its RFC 5923 aliases: the `by_peer` keys that name it.
    peers: Vec<SocketAddr>,
}

struct Inner {
    cfg: TransportConfig,
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    tcp_local: Vec<SocketAddr>,
    conns: DashMap<ConnectionId, Conn>,
    by_peer: DashMap<SocketAddr, ConnectionId>,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    stats: Arc<TransportStats>,
    phase: watch::Sender<Phase>,
    inbound: mpsc::Sender<Inbound>,
    tags: TagSource,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    epoch: Instant,
}

/// The SIP transports of one side. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SipTransport {
    inner: Arc<Inner>,
}

impl fmt::Debug for SipTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipTransport")
            .field("udp", &self.udp_addrs())
            .field("tcp", &self.inner.tcp_local)
            .finish_non_exhaustive()
    }
}

/// A UDP socket bound to `addr` with `buffer` bytes of kernel buffer asked for each way (the
/// kernel may grant less: a smaller buffer is not an error).
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if buffer > 0 {
        let _ = sock.set_recv_buffer_size(buffer);
        let _ = sock.set_send_buffer_size(buffer);
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

impl SipTransport {
    /// Bind every listen socket and start serving. Must run inside a tokio runtime.
    pub async fn bind(cfg: TransportConfig) -> io::Result<(SipTransport, mpsc::Receiver<Inbound>)> {
        let (transport, rx, _) = Self::bind_reading(cfg, UdpReading::Task).await?;
        Ok((transport, rx))
    }

    /// As [`bind`](Self::bind), but the UDP sockets are read by the caller through the returned
    /// [`UdpReceiver`] (the node's core reads them in its own loop: no hand-over to another task
    /// per datagram). The channel then carries what the TCP connections receive.
    pub async fn bind_for_caller(
        cfg: TransportConfig,
    ) -> io::Result<(SipTransport, mpsc::Receiver<Inbound>, UdpReceiver)> {
        let (transport, rx, udp) = Self::bind_reading(cfg, UdpReading::Caller).await?;
        let udp = udp.ok_or_else(|| io::Error::other("no UDP receiver"))?;
        Ok((transport, rx, udp))
    }

    async fn bind_reading(
        cfg: TransportConfig,
        reading: UdpReading,
    ) -> io::Result<(SipTransport, mpsc::Receiver<Inbound>, Option<UdpReceiver>)> {
        let mut udp = Vec::with_capacity(cfg.udp.len());
        for addr in &cfg.udp {
            let sock = bind_udp(*addr, cfg.udp_buffer_bytes)?;
            udp.push((sock.local_addr()?, Arc::new(sock)));
        }
        let mut listeners = Vec::with_capacity(cfg.tcp.len());
        for addr in &cfg.tcp {
            let l = TcpListener::bind(addr).await?;
            listeners.push((l.local_addr()?, l));
        }
        let (tx, rx) = mpsc::channel(cfg.inbound_depth.max(1));
        let max = cfg.max_connections.clamp(1, u32::MAX as usize);
        let inner = Arc::new(Inner {
            udp,
            tcp_local: listeners.iter().map(|(a, _)| *a).collect(),
            conns: DashMap::new(),
            by_peer: DashMap::new(),
            next_id: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(max)),
            stats: Arc::new(TransportStats::default()),
            phase: watch::Sender::new(Phase::Running),
            inbound: tx,
            tags: TagSource::new(),
            tasks: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            cfg,
        });
        let mut tasks = Vec::new();
        let receiver = match reading {
            UdpReading::Task => {
                for (local, sock) in &inner.udp {
                    tasks.push(tokio::spawn(udp_loop(inner.clone(), sock.clone(), *local)));
                }
                None
            }
            UdpReading::Caller => Some(UdpReceiver::new(inner.clone())),
        };
        for (local, listener) in listeners {
            tasks.push(tokio::spawn(accept_loop(inner.clone(), listener, local)));
        }
        if let Ok(mut t) = inner.tasks.lock() {
            t.extend(tasks);
        }
        Ok((SipTransport { inner }, rx, receiver))
    }

    /// Read the kernel's count of datagrams dropped on each UDP socket because its receive
    /// buffer was full (`SO_MEMINFO`), and add what is new since the last call to
    /// [`TransportStats::udp_buffer_drops`] and to the side's inbound-drops metric. Where the
    /// caller reads the sockets ([`bind_for_caller`](Self::bind_for_caller)) the buffer is the
    /// node's only inbound queue, so this is how its overload shows. Returns the new drops.
    pub fn update_kernel_drops(&self) -> u64 {
        let inner = &self.inner;
        let total: u64 = inner.udp.iter().filter_map(|(_, s)| socket_drops(s)).sum();
        let before = inner
            .stats
            .udp_buffer_drops
            .fetch_max(total, Ordering::Relaxed);
        let new = total.saturating_sub(before);
        if new > 0
            && let Some(side) = inner.cfg.side
        {
            crate::metrics::sip_inbound_drops(side, new);
        }
        new
    }

    /// The bound UDP addresses, in configuration order.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.inner.udp.iter().map(|(a, _)| *a).collect()
    }

    /// The bound TCP listen addresses, in configuration order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.inner.tcp_local.clone()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.inner.stats
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.conns.len()
    }

    /// The open connection to `addr` a send would reuse, if any.
    pub fn connection_to(&self, addr: SocketAddr) -> Option<ConnectionId> {
        let id = self.inner.by_peer.get(&addr).map(|e| *e.value())?;
        if self.inner.conns.contains_key(&id) {
            return Some(id);
        }
        // Raced with the connection's close (an alias added meanwhile): drop the stale name.
        self.inner.by_peer.remove_if(&addr, |_, v| *v == id);
        None
    }

    /// Use connection `id` for sends to `addr` too (RFC 5923 §5 alias: a peer that asked for
    /// its connection to be reused for requests to its sent-by). `false` when `id` is gone.
    pub fn alias(&self, id: ConnectionId, addr: SocketAddr) -> bool {
        let Some(mut conn) = self.inner.conns.get_mut(&id) else {
            return false;
        };
        if !conn.peers.contains(&addr) {
            conn.peers.push(addr);
        }
        self.inner.by_peer.insert(addr, id);
        true
    }

    /// Send `bytes` (one serialized message) to `target`. UDP: from the first listen socket of
    /// the target's address family. TCP: queued on the open connection to `target.addr`, or on
    /// a new one. Waits only for a UDP send or a TCP connect (bounded by `connect_timeout`).
    pub async fn send(&self, target: Target, bytes: Bytes) -> Result<(), SendError> {
        let result = match target.transport {
            Transport::Udp => self.send_udp(None, target.addr, bytes).await,
            Transport::Tcp => self.send_tcp(target.addr, bytes).await,
        };
        if let Err(e) = &result
            && !matches!(e, SendError::Busy)
        {
            bump(&self.inner.stats.send_errors);
        }
        result
    }

    /// Send from the UDP listen socket bound to `local` (the one a request arrived on), or the
    /// first one of `dest`'s family when none is.
    pub async fn send_udp_from(
        &self,
        local: SocketAddr,
        dest: SocketAddr,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        self.send_udp(Some(local), dest, bytes).await
    }

    /// Send a response along `route` (RFC 3261 §18.2.2): the request's connection while it is
    /// open, else a connection to `route.addr` (reused or new); over UDP from the socket the
    /// request came on.
    pub async fn send_response(
        &self,
        route: &ResponseRoute,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        match (route.transport, route.connection) {
            (Transport::Tcp, Some(id)) => match self.send_on(id, bytes.clone()) {
                Err(SendError::Closed) => {}
                other => return other,
            },
            (Transport::Udp, _) => return self.send_udp_from(route.local, route.addr, bytes).await,
            (Transport::Tcp, None) => {}
        }
        self.send(
            Target {
                addr: route.addr,
                transport: Transport::Tcp,
            },
            bytes,
        )
        .await
    }

    /// Queue `bytes` on connection `id` without waiting (RFC 3261 §18.2.2: a response goes back
    /// on the connection its request came on).
    pub fn send_on(&self, id: ConnectionId, bytes: Bytes) -> Result<(), SendError> {
        let inner = &self.inner;
        let tx = match inner.conns.get(&id) {
            Some(c) => c.tx.clone(),
            None => return Err(SendError::Closed),
        };
        match tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&inner.stats.send_busy);
                Err(SendError::Busy)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                inner.forget(id);
                Err(SendError::Closed)
            }
        }
    }

    /// Send without waiting when that is possible: a datagram the socket takes at once, or a
    /// TCP message queued on an open connection. `Ok(false)`: it would have to wait (a full
    /// socket buffer, no connection yet): use [`send`](Self::send) or
    /// [`send_response`](Self::send_response).
    pub fn try_send(&self, route: TryRoute, bytes: &Bytes) -> Result<bool, SendError> {
        let (transport, addr, local, connection) = match route {
            TryRoute::To(t) => (t.transport, t.addr, None, None),
            TryRoute::Back(r) => (r.transport, r.addr, Some(r.local), r.connection),
        };
        match transport {
            Transport::Udp => {
                let sock = local
                    .and_then(|l| self.inner.udp.iter().find(|(a, _)| *a == l))
                    .or_else(|| {
                        self.inner
                            .udp
                            .iter()
                            .find(|(a, _)| a.is_ipv4() == addr.is_ipv4())
                    })
                    .map(|(_, s)| s)
                    .ok_or(SendError::NoSocket(addr))?;
                match sock.try_send_to(bytes, addr) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
                    Err(source) => {
                        bump(&self.inner.stats.send_errors);
                        Err(SendError::Io { addr, source })
                    }
                }
            }
            Transport::Tcp => {
                let Some(id) = connection.or_else(|| self.connection_to(addr)) else {
                    return Ok(false);
                };
                match self.send_on(id, bytes.clone()) {
                    Ok(()) => Ok(true),
                    Err(SendError::Closed) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn send_udp(
        &self,
        local: Option<SocketAddr>,
        dest: SocketAddr,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        let sock = local
            .and_then(|l| self.inner.udp.iter().find(|(a, _)| *a == l))
            .or_else(|| {
                self.inner
                    .udp
                    .iter()
                    .find(|(a, _)| a.is_ipv4() == dest.is_ipv4())
            })
            .map(|(_, s)| s)
            .ok_or(SendError::NoSocket(dest))?;
        sock.send_to(&bytes, dest)
            .await
            .map(|_| ())
            .map_err(|source| SendError::Io { addr: dest, source })
    }

    async fn send_tcp(&self, addr: SocketAddr, bytes: Bytes) -> Result<(), SendError> {
        if let Some(id) = self.connection_to(addr) {
            match self.send_on(id, bytes.clone()) {
                Err(SendError::Closed) => {}
                other => return other,
            }
        }
        if *self.inner.phase.borrow() != Phase::Running {
            return Err(SendError::ShuttingDown);
        }
        let id = self.connect(addr).await?;
        self.send_on(id, bytes)
    }

    async fn connect(&self, addr: SocketAddr) -> Result<ConnectionId, SendError> {
        let inner = &self.inner;
        let Ok(permit) = inner.permits.clone().try_acquire_owned() else {
            bump(&inner.stats.connections_refused);
            return Err(SendError::TooManyConnections);
        };
        let stream =
            match tokio::time::timeout(inner.cfg.connect_timeout, TcpStream::connect(addr)).await {
                Err(_) => return Err(SendError::ConnectTimeout(addr)),
                Ok(Err(source)) => return Err(SendError::Connect { addr, source }),
                Ok(Ok(s)) => s,
            };
        // Another send may have connected meanwhile: use one connection per peer.
        if let Some(id) = self.connection_to(addr) {
            return Ok(id);
        }
        let local = stream
            .local_addr()
            .map_err(|source| SendError::Connect { addr, source })?;
        bump(&inner.stats.connections_opened);
        Ok(start_connection(inner.clone(), stream, addr, local, permit))
    }

    /// Stop accepting (UDP reception and TCP accept end), stop reading connections, let their
    /// outbound queues drain for at most `drain`, then drop what is left. UDP sends keep
    /// working; new TCP connects are refused.
    /// Whether the transport still listens and reads (not shut down).
    pub fn is_listening(&self) -> bool {
        matches!(*self.inner.phase.borrow(), Phase::Running)
    }

    /// Stop: no new datagrams or connections, open connections drained for at most `drain`.
    pub async fn shutdown(&self, drain: Duration) {
        let inner = &self.inner;
        inner.phase.send_replace(Phase::Draining);
        if let Ok(mut tasks) = inner.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        // The writers end when their queue is empty and every sender is gone: the table's go
        // now, the readers' when they see the phase.
        inner.conns.clear();
        inner.by_peer.clear();
        let all = u32::try_from(inner.cfg.max_connections.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, inner.permits.acquire_many(all))
            .await
            .is_err()
        {
            inner.phase.send_replace(Phase::Abort);
            let _ =
                tokio::time::timeout(Duration::from_secs(1), inner.permits.acquire_many(all)).await;
        }
    }
}

impl Inner {
    /// Remove connection `id` from the tables.
    fn forget(&self, id: ConnectionId) {
        if let Some((_, conn)) = self.conns.remove(&id) {
            for peer in &conn.peers {
                self.by_peer.remove_if(peer, |_, v| *v == id);
            }
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The kernel's count of datagrams dropped on `sock` since it was opened (a full receive
/// buffer, mostly): `SO_MEMINFO`'s `SK_MEMINFO_DROPS` (Linux 4.12).
#[cfg(target_os = "linux")]
fn socket_drops(sock: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // asm-generic/socket.h (x86, arm, riscv...); the `libc` crate does not export it here.
    const SO_MEMINFO: libc::c_int = 55;
    // SK_MEMINFO_VARS is 9 today; room for more the kernel may add (it fills what fits).
    let mut info = [0u32; 16];
    let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&info)).ok()?;
    // SAFETY: `info` is a valid, writable buffer of `len` bytes, and `len` a valid in/out length;
    // the descriptor belongs to `sock`, alive for the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = usize::try_from(libc::SK_MEMINFO_DROPS).ok()?;
    let filled = usize::try_from(len).ok()? / std::mem::size_of::<u32>();
    (rc == 0 && drops < filled)
        .then(|| info.get(drops).copied())
        .flatten()
        .map(u64::from)
}

#[cfg(not(target_os = "linux"))]
fn socket_drops(_sock: &UdpSocket) -> Option<u64> {
    None
}

/// Who reads a transport's UDP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpReading {
    /// A task per socket, delivering through the inbound channel.
    Task,
    /// The caller, through a [`UdpReceiver`].
    Caller,
}

/// The receive buffer of a UDP reader: one byte more than a message may have, so that an
/// oversized datagram is seen as such (413); never below what one datagram can carry, so none
/// is cut short.
fn udp_buffer(limits: &Limits) -> Box<[u8]> {
    let want = limits.max_message.saturating_add(1).clamp(2_048, 65_536);
    vec![0u8; want].into_boxed_slice()
}

/// What one received datagram comes to.
enum Datagram {
    /// A message for the node.
    Message(Inbound),
    /// Not for the node: this answer goes back to where it came from (a request that did not
    /// parse, RFC 3261 §21.4.1).
    Answer(Bytes),
    /// Nothing to do (a source outside the allow list, a keep-alive, an unreadable datagram):
    /// counted.
    Nothing,
}

/// Everything between a datagram's bytes and the node: the ACL, CRLF keep-alives, parsing, the
/// received/rport stamp (§18.2.1). The same for both [`UdpReading`]s.
fn on_datagram(inner: &Inner, received: &[u8], source: SocketAddr, local: SocketAddr) -> Datagram {
    bump(&inner.stats.udp_datagrams);
    if !allowed(&inner.cfg.allow, source.ip()) {
        bump(&inner.stats.acl_refused);
        if let Some(side) = inner.cfg.side {
            crate::metrics::acl_drop(side, crate::metrics::AclTransport::SipUdp);
        }
        return Datagram::Nothing;
    }
    if received.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        // CRLF keep-alives some UAs send over UDP: nothing to answer.
        bump(&inner.stats.keepalives);
        return Datagram::Nothing;
    }
    // A copy of exactly the datagram: the message slices the node keeps (a stored body, say)
    // then pin only their own datagram, not a shared receive buffer.
    let data = Bytes::copy_from_slice(received);
    match sip::parse_datagram(data, &inner.cfg.limits) {
        Ok(mut message) => {
            if message.is_request() {
                stamp_received(&mut message, source);
            }
            Datagram::Message(Inbound {
                message,
                source,
                transport: Transport::Udp,
                local,
                connection: None,
            })
        }
        Err(error) => match parse_failure(inner, received, &error) {
            Some(answer) => {
                bump(&inner.stats.parse_errors_answered);
                Datagram::Answer(answer)
            }
            None => {
                bump(&inner.stats.parse_errors_dropped);
                Datagram::Nothing
            }
        },
    }
}

/// A receive error that is not the socket's fault: ICMP errors of earlier sends surface on a
/// UDP socket's next receive (ECONNREFUSED). Anything else pauses the reading a little.
fn transient_udp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// Receive datagrams until aborted ([`UdpReading::Task`]).
async fn udp_loop(inner: Arc<Inner>, sock: Arc<UdpSocket>, local: SocketAddr) {
    let mut buf = udp_buffer(&inner.cfg.limits);
    loop {
        let (n, source) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%local, error = %e, "udp receive error");
                if !transient_udp_error(&e) {
                    tokio::time::sleep(UDP_ERROR_PAUSE).await;
                }
                continue;
            }
        };
        match on_datagram(&inner, buf.get(..n).unwrap_or_default(), source, local) {
            Datagram::Message(msg) => match inner.inbound.try_send(msg) {
                Ok(()) => bump(&inner.stats.delivered),
                // UDP: the peer retransmits (RFC 3261 §17.1.2.2); better than growing.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    bump(&inner.stats.inbound_full_drops);
                    if let Some(side) = inner.cfg.side {
                        crate::metrics::sip_inbound_drop(side);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Datagram::Answer(answer) => {
                if let Err(e) = sock.send_to(&answer, source).await {
                    tracing::debug!(%source, error = %e, "udp error answer not sent");
                }
            }
            Datagram::Nothing => {}
        }
    }
}

/// How long reading pauses after a receive error that is not transient (ENOMEM, say), so
/// that an error that persists does not spin the reader.
const UDP_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The UDP sockets of one side, read by their caller ([`SipTransport::bind_for_caller`]): the
/// caller waits with [`ready`](Self::ready) (or `poll_ready`) and then takes what the socket
/// holds with [`drain`](Self::drain), a bounded batch at a time, in its own task. The kernel's
/// receive buffer (`udp_buffer_bytes`) is then the only queue in front of the node.
pub struct UdpReceiver {
    inner: Arc<Inner>,
    buf: Box<[u8]>,
    /// After an error that is not transient: reading waits until this fires.
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The socket polled first next time, so that a busy socket does not starve the others.
    next: usize,
}

impl fmt::Debug for UdpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpReceiver")
            .field("sockets", &self.inner.udp.len())
            .finish_non_exhaustive()
    }
}

impl UdpReceiver {
    fn new(inner: Arc<Inner>) -> Self {
        UdpReceiver {
            buf: udp_buffer(&inner.cfg.limits),
            inner,
            pause: None,
            next: 0,
        }
    }

    /// Ready with the index of a socket that has something to read. Pending forever once the
    /// transport stops listening, or when it has no UDP socket.
    pub fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<usize> {
        use std::task::Poll;
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        if *self.inner.phase.borrow() != Phase::Running {
            return Poll::Pending;
        }
        let n = self.inner.udp.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some((_, sock)) = self.inner.udp.get(i)
                && sock.poll_recv_ready(cx).is_ready()
            {
                self.next = (i + 1) % n;
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    }

    /// Wait until socket [`poll_ready`](Self::poll_ready) names has something to read.
    pub async fn ready(&mut self) -> usize {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Read at most `max` datagrams from socket `i` without waiting, giving each message to
    /// `deliver` as it comes; answers to requests that did not parse are sent from here (a
    /// full socket buffer drops one, as the network could). Returns how many datagrams were
    /// read. When the socket is left empty its readiness is cleared, so that `poll_ready`
    /// waits again.
    pub fn drain(&mut self, i: usize, max: usize, mut deliver: impl FnMut(Inbound)) -> usize {
        let Some((local, sock)) = self.inner.udp.get(i) else {
            return 0;
        };
        let local = *local;
        let mut read = 0;
        // Errors count against `max` too: each ICMP error is read once, but none may spin.
        for _ in 0..max {
            let (n, source) = match sock.try_recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(%local, error = %e, "udp receive error");
                    if transient_udp_error(&e) {
                        continue;
                    }
                    self.pause = Some(Box::pin(tokio::time::sleep(UDP_ERROR_PAUSE)));
                    break;
                }
            };
            read += 1;
            match on_datagram(
                &self.inner,
                self.buf.get(..n).unwrap_or_default(),
                source,
                local,
            ) {
                Datagram::Message(msg) => {
                    bump(&self.inner.stats.delivered);
                    deliver(msg);
                }
                Datagram::Answer(answer) => {
                    if let Err(e) = sock.try_send_to(&answer, source) {
                        tracing::debug!(%source, error = %e, "udp error answer not sent");
                    }
                }
                Datagram::Nothing => {}
            }
        }
        read
    }
}

/// A datagram that did not parse: counted, and the answer it deserves, if any.
fn parse_failure(inner: &Inner, data: &[u8], error: &SipError) -> Option<Bytes> {
    if let Some(side) = inner.cfg.side {
        crate::metrics::sip_parse_error(side, crate::wire::WireError::answer(error));
    }
    error_answer(data, error, &inner.tags)
}

/// Accept connections until aborted.
async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, local: SocketAddr) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !allowed(&inner.cfg.allow, peer.ip()) {
            bump(&inner.stats.acl_refused);
            if let Some(side) = inner.cfg.side {
                crate::metrics::acl_drop(side, crate::metrics::AclTransport::SipTcp);
            }
            continue;
        }
        let Ok(permit) = inner.permits.clone().try_acquire_owned() else {
            bump(&inner.stats.connections_refused);
            continue;
        };
        if *inner.phase.borrow() != Phase::Running {
            return;
        }
        bump(&inner.stats.connections_accepted);
        start_connection(inner.clone(), stream, peer, local, permit);
    }
}

/// Register a connection and start its reader and writer.
fn start_connection(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    permit: OwnedSemaphorePermit,
) -> ConnectionId {
    let _ = stream.set_nodelay(true);
    let id = ConnectionId(inner.next_id.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = mpsc::channel(inner.cfg.queue_depth.max(1));
    inner.conns.insert(
        id,
        Conn {
            tx: tx.clone(),
            peers: vec![peer],
        },
    );
    inner.by_peer.insert(peer, id);
    let (rd, wr) = stream.into_split();
    let permit = Arc::new(permit);
    let activity = Arc::new(AtomicU64::new(inner.millis()));
    let writer = Writer {
        phase: inner.phase.subscribe(),
        write_timeout: inner.cfg.stall_timeout,
        activity: activity.clone(),
        epoch: inner.epoch,
        _permit: permit.clone(),
    };
    tokio::spawn(writer.run(wr, rx));
    let reader = Reader {
        inner,
        id,
        peer,
        local,
        tx,
        activity,
        _permit: permit,
    };
    tokio::spawn(reader.run(rd));
    id
}

struct Writer {
    phase: watch::Receiver<Phase>,
    write_timeout: Duration,
    activity: Arc<AtomicU64>,
    epoch: Instant,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Writer {
    /// Write what is queued until every sender is gone (then close our direction) or the
    /// transport aborts.
    async fn run(self, mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
        let mut phase = self.phase.clone();
        let abort = async move {
            if phase.wait_for(|p| *p == Phase::Abort).await.is_err() {
                // The transport is gone without an abort: keep draining.
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(abort);
        loop {
            let bytes = tokio::select! {
                biased;
                _ = &mut abort => return,
                next = rx.recv() => match next {
                    Some(b) => b,
                    None => break,
                },
            };
            // A peer that does not read for a stall timeout is stuck (the queue behind fills).
            let written = tokio::select! {
                _ = &mut abort => return,
                r = tokio::time::timeout(self.write_timeout, wr.write_all(&bytes)) => r,
            };
            match written {
                Ok(Ok(())) => {
                    let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.activity.store(now, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "tcp write failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("tcp write stalled");
                    return;
                }
            }
        }
        let _ = tokio::time::timeout(self.write_timeout, wr.shutdown()).await;
    }
}

/// Why a reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Eof,
    Stall,
    Idle,
    Framing,
    Io,
    WriterGone,
    Shutdown,
}

struct Reader {
    inner: Arc<Inner>,
    id: ConnectionId,
    peer: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    activity: Arc<AtomicU64>,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Reader {
    async fn run(self, rd: OwnedReadHalf) {
        let close = self.read_loop(rd).await;
        let stats = &self.inner.stats;
        match close {
            Close::Stall => bump(&stats.stall_timeouts),
            Close::Idle => bump(&stats.idle_timeouts),
            Close::Framing => bump(&stats.framing_errors),
            _ => {}
        }
        bump(&stats.connections_closed);
        tracing::debug!(conn = %self.id, peer = %self.peer, ?close, "tcp connection closed");
        self.inner.forget(self.id);
        // Dropping `self.tx` (the last sender once the table forgot it) lets the writer finish
        // what is queued (each write bounded by the stall timeout) and close the socket.
    }

    /// Queue bytes for the peer without waiting; dropped when the queue is full.
    fn reply(&self, bytes: Bytes) {
        if self.tx.try_send(bytes).is_err() {
            bump(&self.inner.stats.send_busy);
        }
    }

    fn answer(&self, raw: &[u8], error: &SipError) {
        if let Some(side) = self.inner.cfg.side {
            crate::metrics::sip_parse_error(side, crate::wire::WireError::answer(error));
        }
        match error_answer(raw, error, &self.inner.tags) {
            Some(answer) => {
                bump(&self.inner.stats.parse_errors_answered);
                self.reply(answer);
            }
            None => bump(&self.inner.stats.parse_errors_dropped),
        }
    }

    async fn read_loop(&self, mut rd: OwnedReadHalf) -> Close {
        let cfg = &self.inner.cfg;
        let mut phase = self.inner.phase.subscribe();
        let mut codec = SipStreamCodec::new(cfg.limits);
        let mut buf = BytesMut::with_capacity(8 * 1024);
        // RFC 3261 §18.3 framing: a message has started and not yet ended since this instant.
        let mut started: Option<Instant> = None;
        let mut progress = Progress::default();
        let mut eof = false;
        loop {
            // Everything complete in the buffer first.
            loop {
                let before = buf.len();
                let decoded = if eof {
                    codec.decode_eof(&mut buf)
                } else {
                    codec.decode(&mut buf)
                };
                match decoded {
                    Ok(Some(frame)) => {
                        started = None;
                        progress.frame(match &frame {
                            SipFrame::Rejected { head, .. } => {
                                raw_content_length(head).unwrap_or(0)
                            }
                            _ => 0,
                        });
                        if let Some(close) = self.frame(frame, &mut phase).await {
                            return close;
                        }
                    }
                    Ok(None) => {
                        if eof {
                            return Close::Eof;
                        }
                        if !progress.under_way(before, buf.len()) {
                            started = None;
                        } else if started.is_none() {
                            started = Some(Instant::now());
                        }
                        break;
                    }
                    Err(StreamError::Framing(error)) => {
                        // The bytes that lost the framing are still at the front of `buf`.
                        self.answer(&buf, &error);
                        tracing::debug!(conn = %self.id, %error, "sip framing lost");
                        return Close::Framing;
                    }
                    Err(StreamError::Truncated(_)) => return Close::Eof,
                    Err(StreamError::Io(_)) => return Close::Io,
                }
            }
            let deadline = match started {
                Some(t) => later(t, cfg.stall_timeout),
                None => self.idle_until(),
            };
            if buf.capacity().saturating_sub(buf.len()) < 4 * 1024 {
                buf.reserve(16 * 1024);
            }
            tokio::select! {
                read = tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)) => match read {
                    Err(_) if started.is_some() => return Close::Stall,
                    Err(_) => {
                        // The writer may have been busy meanwhile: idle means both ways.
                        if Instant::now() >= self.idle_until() {
                            return Close::Idle;
                        }
                    }
                    Ok(Ok(0)) => eof = true,
                    Ok(Ok(_)) => self.activity.store(self.inner.millis(), Ordering::Relaxed),
                    Ok(Err(_)) => return Close::Io,
                },
                _ = phase.wait_for(|p| *p != Phase::Running) => return Close::Shutdown,
                _ = self.tx.closed() => return Close::WriterGone,
            }
        }
    }

    /// When the connection counts as idle: no traffic either way for the idle timeout.
    fn idle_until(&self) -> Instant {
        let last = Duration::from_millis(self.activity.load(Ordering::Relaxed));
        later(later(self.inner.epoch, last), self.inner.cfg.idle_timeout)
    }

    /// Act on one frame; `Some` to close.
    async fn frame(&self, frame: SipFrame, phase: &mut watch::Receiver<Phase>) -> Option<Close> {
        match frame {
            SipFrame::Message(mut message) => {
                bump(&self.inner.stats.tcp_messages);
                if message.is_request() {
                    stamp_received(&mut message, self.peer);
                }
                let msg = Inbound {
                    message,
                    source: self.peer,
                    transport: Transport::Tcp,
                    local: self.local,
                    connection: Some(self.id),
                };
                // A full channel stops reading this connection (TCP flow control pushes back
                // on the peer) instead of buffering.
                tokio::select! {
                    sent = self.inner.inbound.send(msg) => {
                        if sent.is_err() {
                            return Some(Close::Shutdown);
                        }
                        bump(&self.inner.stats.delivered);
                    }
                    _ = phase.wait_for(|p| *p != Phase::Running) => return Some(Close::Shutdown),
                }
            }
            SipFrame::KeepAlivePing => {
                bump(&self.inner.stats.keepalives);
                self.reply(Bytes::from_static(PONG));
            }
            SipFrame::KeepAlivePong => {}
            SipFrame::Rejected { error, head } => self.answer(&head, &error),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn via_parts() {
        let v =
            parse_via("SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "pc33.example.com");
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.param("branch"), Some("z9hG4bK776asdhds"));
        assert_eq!(v.param("rport"), Some(""));
        assert_eq!(v.param("received"), None);

        let v = parse_via("SIP / 2.0 / TCP [2001:db8::9]:5070 ;received=192.0.2.1, SIP/2.0/UDP x")
            .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "2001:db8::9");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.param("received"), Some("192.0.2.1"));

        let v = parse_via("SIP/2.0/UDP 192.0.2.4").unwrap();
        assert_eq!((v.host, v.port, v.params), ("192.0.2.4", None, ""));

        for bad in [
            "",
            "SIP/2.0/UDP",
            "garbage",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP [::1]x",
        ] {
            assert_eq!(parse_via(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn response_targets_rfc3261_18_2_2_and_rfc3581() {
        let target = |via: &str, reliable| response_target(&parse_via(via).unwrap(), reliable);
        // sent-by, default port.
        assert_eq!(
            target("SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKa", false),
            Some(sa("192.0.2.4:5060"))
        );
        // received wins over the sent-by host, sent-by port kept.
        assert_eq!(
            target(
                "SIP/2.0/UDP host.example:5070;branch=z9hG4bKa;received=198.51.100.7",
                false
            ),
            Some(sa("198.51.100.7:5070"))
        );
        // RFC 3581 §4: received address, rport port.
        assert_eq!(
            target(
                "SIP/2.0/UDP 10.0.0.1:5070;rport=40000;branch=z9hG4bKa;received=198.51.100.7",
                false
            ),
            Some(sa("198.51.100.7:40000"))
        );
        // maddr.
        assert_eq!(
            target("SIP/2.0/UDP 10.0.0.1:5070;maddr=239.1.1.1;ttl=1", false),
            Some(sa("239.1.1.1:5070"))
        );
        // Reliable: received address, sent-by port; rport does not apply.
        assert_eq!(
            target(
                "SIP/2.0/TCP 10.0.0.1:5070;rport=40000;received=198.51.100.7",
                true
            ),
            Some(sa("198.51.100.7:5070"))
        );
        // A host name without received needs RFC 3263 §5.
        assert_eq!(target("SIP/2.0/UDP proxy.example:5060", false), None);
        // IPv6 sent-by.
        assert_eq!(
            target("SIP/2.0/UDP [2001:db8::1]:5080", false),
            Some(sa("[2001:db8::1]:5080"))
        );
    }

    #[test]
    fn stamping_received_and_rport() {
        let src = sa("198.51.100.7:40000");
        // Sent-by is the source address, no rport: unchanged (RFC 3261 §18.2.1).
        assert_eq!(
            stamp_via(
                "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKa",
                sa("198.51.100.7:5060")
            ),
            None
        );
        // A host name: received added.
        assert_eq!(
            stamp_via("SIP/2.0/UDP pc.example:5060;branch=z9hG4bKa", src).as_deref(),
            Some("SIP/2.0/UDP pc.example:5060;branch=z9hG4bKa;received=198.51.100.7")
        );
        // rport asked for: filled in, received added even when equal (RFC 3581 §4), the rest of
        // the list kept, an old received replaced.
        assert_eq!(
            stamp_via(
                "SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bKa;received=1.2.3.4, SIP/2.0/UDP p2;branch=z9hG4bKb",
                src
            )
            .as_deref(),
            Some(
                "SIP/2.0/UDP 198.51.100.7:5060;rport=40000;branch=z9hG4bKa;received=198.51.100.7, SIP/2.0/UDP p2;branch=z9hG4bKb"
            )
        );
        // What was stamped routes the response back to the source (NAT case).
        let stamped = stamp_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport", src).unwrap();
        assert_eq!(
            response_target(&parse_via(&stamped).unwrap(), false),
            Some(src)
        );
        assert_eq!(stamp_via("not a via", src), None);
    }

    #[test]
    fn route_params_equal_param_by_param() {
        for v in [
            "SIP/2.0/UDP a;branch=z9hG4bKa",
            "SIP/2.0/UDP a;rport;received=1.2.3.4;maddr=239.1.1.1",
            "SIP/2.0/UDP a; RPORT = 5 ;Received=\"1.2.3.4\";rport=6;maddr",
            "SIP/2.0/UDP a;;=;received",
        ] {
            let via = parse_via(v).unwrap();
            assert_eq!(
                via.route_params(),
                [
                    via.param("received"),
                    via.param("maddr"),
                    via.param("rport")
                ],
                "{v:?}"
            );
        }
    }

    #[test]
    fn socket_addr_text_equals_display() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:5060",
            "255.255.255.255:65535",
            "10.20.3.4:9",
            "192.0.2.10:10000",
            "[::1]:5060",
            "[2001:db8::1]:5062",
        ] {
            let addr = sa(a);
            let mut out = String::new();
            push_socket_addr(&mut out, addr);
            assert_eq!(out, addr.to_string());
            let mut ip = String::new();
            push_ip(&mut ip, addr.ip());
            assert_eq!(ip, addr.ip().to_string());
        }
        for v in [0, 7, 10, 99, 100, 65_535, 4_294_967_295] {
            let mut out = String::new();
            push_decimal(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn stamping_a_message() {
        let raw = "MESSAGE sip:b@example.net SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport\r\n\
                   Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKy\r\n\
                   From: <sip:a@example.net>;tag=1\r\nTo: <sip:b@example.net>\r\n\
                   Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let mut m = sip::parse_datagram(Bytes::from(raw), &Limits::default()).unwrap();
        assert!(stamp_received(&mut m, sa("192.0.2.9:1234")));
        let vias: Vec<&str> = m.header_all("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport=1234;received=192.0.2.9",
                "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKy"
            ]
        );
        assert_eq!(m.top_via_branch(), Some("z9hG4bKx"));
    }

    #[test]
    fn request_vias() {
        assert_eq!(
            request_via(Transport::Udp, sa("192.0.2.1:5060"), "abc"),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport"
        );
        assert_eq!(
            request_via(Transport::Tcp, sa("[2001:db8::1]:5062"), "z9hG4bKq"),
            "SIP/2.0/TCP [2001:db8::1]:5062;branch=z9hG4bKq;rport"
        );
        let v = request_via(Transport::Udp, sa("192.0.2.1:5060"), "abc");
        let p = parse_via(&v).unwrap();
        assert_eq!(p.param("branch"), Some("z9hG4bKabc"));
    }

    #[test]
    fn acl() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(&[], ip("203.0.113.1")));
        let nets: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        assert!(allowed(&nets, ip("10.2.3.4")));
        assert!(allowed(&nets, ip("::1")));
        assert!(!allowed(&nets, ip("11.0.0.1")));
    }

    const HEAD: &str = "MESSAGE sip:b@example.net SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\
                        From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\n\
                        CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 5\r\n\r\n";

    /// Run the decoder over `buf` as the reader does; whether a message is under way after.
    fn drive(codec: &mut SipStreamCodec, p: &mut Progress, buf: &mut BytesMut) -> (usize, bool) {
        let mut frames = 0;
        loop {
            let before = buf.len();
            match codec.decode(buf).unwrap() {
                Some(frame) => {
                    frames += 1;
                    p.frame(match &frame {
                        SipFrame::Rejected { head, .. } => raw_content_length(head).unwrap_or(0),
                        _ => 0,
                    });
                }
                None => return (frames, p.under_way(before, buf.len())),
            }
        }
    }

    #[test]
    fn stall_clock_runs_exactly_while_a_message_is_under_way() {
        let mut codec = SipStreamCodec::new(Limits::default());
        let mut p = Progress::default();
        // The head alone: consumed by the decoder, the buffer empty, yet under way.
        let mut buf = BytesMut::from(HEAD);
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (0, true));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"hello");
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (1, false));
        // Half a line.
        buf.extend_from_slice(b"MESS");
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (0, true));
        buf.clear();
        let mut codec = SipStreamCodec::new(Limits::default());
        // A rejected head (CSeq mismatch) whose body is all there: done, nothing under way.
        let bad = HEAD.replace("1 MESSAGE", "1 INVITE");
        let mut buf = BytesMut::from(format!("{bad}hello").as_str());
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (1, false));
        // ... and whose body is still to come: under way until the last byte is skipped.
        let mut buf = BytesMut::from(format!("{bad}he").as_str());
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (1, true));
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (0, true));
        buf.extend_from_slice(b"llo");
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (0, false));
        // Keep-alives are complete frames.
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(drive(&mut codec, &mut p, &mut buf), (1, false));
    }

    #[test]
    fn content_length_of_a_raw_head() {
        assert_eq!(raw_content_length(HEAD.as_bytes()), Some(5));
        assert_eq!(
            raw_content_length(b"INVITE x SIP/2.0\r\nl :  12\r\n\r\n"),
            Some(12)
        );
        assert_eq!(
            raw_content_length(b"INVITE x SIP/2.0\r\nl: x\r\n\r\n"),
            None
        );
        assert_eq!(raw_content_length(b"Content-Length: 3\r\n\r\n"), None);
    }

    #[test]
    fn error_answers_carry_a_tag_and_skip_ack() {
        let tags = TagSource::new();
        let raw = b"MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
                    From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCSeq: 1 MESSAGE\r\n\r\n";
        let err = sip::parse_datagram(Bytes::from_static(raw), &Limits::default()).unwrap_err();
        let answer = error_answer(raw, &err, &tags).unwrap();
        let text = std::str::from_utf8(&answer).unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Bad Request: missing Call-ID"),
            "{text}"
        );
        assert!(text.contains("To: <sip:b@x>;tag="), "{text}");
        let ack = b"ACK sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n";
        let err = sip::parse_datagram(Bytes::from_static(ack), &Limits::default()).unwrap_err();
        assert!(err.status().is_some());
        assert_eq!(error_answer(ack, &err, &tags), None);
        assert_ne!(tags.next(), tags.next());
    }
}
