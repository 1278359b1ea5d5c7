//! Target mode: the conformance cases played against a live node, the runner acting as both
//! networks' peers (`cpm-iwf conformance run --target <cpm-sip>,<simple-sip>`).
//!
//! - The runner binds one UDP socket per side: the node's next hops (`--peers`, default
//!   `127.0.0.1:5070,127.0.0.1:5072`, the default configuration's). A SIP request step from
//!   side X goes from X's socket to the node's X address with the runner's own Via on top (a
//!   fresh branch per transaction; a CANCEL or a non-2xx ACK that shares its INVITE's branch in
//!   the case shares it on the wire, RFC 3261 §9.1, §17.1.1.3). A response step answers the
//!   request the node sent to X with the same Call-ID and CSeq: its Via lines become that
//!   request's (§8.2.6.2), so the node's client transaction matches it (§17.1.3).
//! - After each step the runner collects, within a bounded wait, what the node sends: its
//!   answer to the step's request (100 Trying skipped) and the messages to either side, checked
//!   like the offline runner's `send`/`sent`/headers/body.
//! - A request the node sends is answered by a later response step of the case from that side
//!   with the same CSeq; when the case has none, the runner answers it at once: 200 for
//!   non-INVITE, 480 for an INVITE (so no transaction or half-open session is left; the node's
//!   ACK for that 480 is absorbed). A non-2xx final response to the runner's INVITE is ACKed.
//! - Identities: the node draws random ids; `gen-N` in an expected value is a variable bound to
//!   the actual token at its first match; later uses must be the same token and different N
//!   different tokens. The wall-clock time [`super::DATETIME`] matches any RFC 3339 time.
//! - Fixed addresses in the cases are mapped to the actual ones, in inputs and expectations
//!   alike: the node's SIP and MSRP addresses (`127.0.0.1:5060/5062`, `2855/2856`) to the ones
//!   given, the peers' MSRP `a=path`/`From-Path` authorities to the runner's MSRP listener of
//!   that side. Literal Call-IDs of a case get a per-run, per-case suffix, so a case never meets
//!   a dialog a previous case (or run) left in the node.
//! - Not checked from outside: the table (`remembered`, `forgotten`, `conversations`,
//!   `messages`, `dialogs`) and `absent = ["Via"]` (the node's transport writes a Via on every
//!   request it sends); they are counted as "not checked", never as passed.
//! - A case with an `msrp_leg` step (a lone chunk with no session) cannot be played against a
//!   node: it is skipped, whole.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::{CaseFile, DATETIME, Expect, Sent, Step, wire_bytes};
use crate::tomlfile::{FileError, parse_toml};
use crate::translate::state::Side;
use crate::wire::msrp::{self, Frame, Method, MsrpCodec};
use crate::wire::sip::{Limits, SipMessage, parse_datagram};

/// The node under test: its SIP (UDP) and MSRP addresses on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddrs {
    /// CPM side SIP.
    pub cpm_sip: SocketAddr,
    /// SIMPLE side SIP.
    pub simple_sip: SocketAddr,
    /// CPM side MSRP listener.
    pub cpm_msrp: SocketAddr,
    /// SIMPLE side MSRP listener.
    pub simple_msrp: SocketAddr,
}

impl NodeAddrs {
    /// The node's MSRP listeners by default: the SIP host, ports 2855 and 2856 (the default
    /// configuration's).
    pub fn with_default_msrp(cpm_sip: SocketAddr, simple_sip: SocketAddr) -> NodeAddrs {
        NodeAddrs {
            cpm_sip,
            simple_sip,
            cpm_msrp: SocketAddr::new(cpm_sip.ip(), 2855),
            simple_msrp: SocketAddr::new(simple_sip.ip(), 2856),
        }
    }
    fn sip(&self, side: Side) -> SocketAddr {
        match side {
            Side::Cpm => self.cpm_sip,
            Side::Simple => self.simple_sip,
        }
    }
}

/// Waits of a target run.
#[derive(Debug, Clone, Copy)]
pub struct TargetOptions {
    /// The longest a step waits for what the node sends. Default 2 s.
    pub wait: Duration,
    /// Once a step has what it expects, how long more it listens for extra messages.
    /// Default 100 ms.
    pub settle: Duration,
    /// The whole run; cases not started by then fail. Default 600 s.
    pub run_timeout: Duration,
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            wait: Duration::from_secs(2),
            settle: Duration::from_millis(100),
            run_timeout: Duration::from_secs(600),
        }
    }
}

/// How a case ended in target mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation that can be seen from outside held.
    Passed,
    /// What went wrong, and at which step.
    Failed(String),
    /// Not playable against a node (why).
    Skipped(String),
}

/// The result of one case in target mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    /// The case file's name.
    pub name: String,
    /// The clause it checks.
    pub clause: String,
    /// Passed, failed or skipped.
    pub outcome: Outcome,
    /// Expectations that cannot be seen from outside the node (`step N: dialogs`, ...).
    pub not_checked: Vec<String>,
}

/// Most Call-IDs of finished cases remembered, to recognise late messages of earlier cases.
const MAX_OLD_CALL_IDS: usize = 100_000;
/// Capacity of the runner's event queue.
const EVENT_QUEUE: usize = 1024;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Most MSRP connections open at once (the node opens one per session leg; a case has at
/// most two): more are closed at once.
const MAX_MSRP_CONNECTIONS: usize = 256;

// ---------------------------------------------------------------------------------------------
// Pure parts: variables, address mapping, text edits.

/// `gen-N` variables bound to the node's actual tokens (unification).
#[derive(Debug, Default, Clone)]
pub(crate) struct Bindings {
    vars: HashMap<u32, String>,
}

impl Bindings {
    fn bind(&mut self, n: u32, value: &str) -> bool {
        if let Some(v) = self.vars.get(&n) {
            return v == value;
        }
        // Different N, different tokens.
        if self.vars.values().any(|v| v == value) {
            return false;
        }
        self.vars.insert(n, value.to_string());
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(u32),
    Time,
}

fn is_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Where `gen-N` tokens are in `text`: (start, end, N).
fn gen_tokens(text: &str) -> Vec<(usize, usize, u32)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text.get(i..).and_then(|r| r.find("gen-")) {
        let start = i + off;
        let digits_start = start + 4;
        let mut end = digits_start;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let before_ok = start == 0
            || text
                .get(..start)
                .and_then(|s| s.chars().next_back())
                .is_none_or(|c| !is_token(c));
        let after_ok = text
            .get(end..)
            .and_then(|s| s.chars().next())
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if end > digits_start
            && before_ok
            && after_ok
            && let Some(n) = text.get(digits_start..end).and_then(|d| d.parse().ok())
        {
            out.push((start, end, n));
        }
        i = end.max(start + 1);
    }
    out
}

fn pattern(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    for (start, end, n) in gen_tokens(text) {
        lit.push_str(text.get(i..start).unwrap_or_default());
        split_time(&lit, &mut out);
        lit.clear();
        out.push(Piece::Var(n));
        i = end;
    }
    lit.push_str(text.get(i..).unwrap_or_default());
    split_time(&lit, &mut out);
    out
}

fn split_time(lit: &str, out: &mut Vec<Piece>) {
    let mut parts = lit.split(DATETIME).peekable();
    while let Some(p) = parts.next() {
        if !p.is_empty() {
            out.push(Piece::Lit(p.to_string()));
        }
        if parts.peek().is_some() {
            out.push(Piece::Time);
        }
    }
}

/// Match `pieces` at the start of `text`; `Some(end)` with `b` extended.
fn match_here(pieces: &[Piece], text: &str, b: &mut Bindings) -> Option<usize> {
    let Some((first, rest)) = pieces.split_first() else {
        return Some(0);
    };
    match first {
        Piece::Lit(l) => {
            let after = text.strip_prefix(l.as_str())?;
            match_here(rest, after, b).map(|e| e + l.len())
        }
        Piece::Time | Piece::Var(_) => {
            let accept = |c: char| match first {
                Piece::Time => c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 'Z' | '+'),
                _ => is_token(c),
            };
            if let Piece::Var(n) = first
                && let Some(v) = b.vars.get(n).cloned()
            {
                let after = text.strip_prefix(v.as_str())?;
                return match_here(rest, after, b).map(|e| e + v.len());
            }
            let max = text
                .char_indices()
                .find(|(_, c)| !accept(*c))
                .map_or(text.len(), |(i, _)| i);
            // Longest token first, backtracking to shorter ones.
            for len in (1..=max).rev() {
                let (token, after) = (text.get(..len)?, text.get(len..)?);
                let mut trial = b.clone();
                if let Piece::Var(n) = first
                    && !trial.bind(*n, token)
                {
                    continue;
                }
                if let Some(e) = match_here(rest, after, &mut trial) {
                    *b = trial;
                    return Some(e + len);
                }
            }
            None
        }
    }
}

/// Does `actual` equal `expected`, `gen-N` being variables? Binds on success only.
pub(crate) fn match_exact(expected: &str, actual: &str, b: &mut Bindings) -> bool {
    let pieces = pattern(expected);
    let mut trial = b.clone();
    if exact_backtrack(&pieces, actual, &mut trial) {
        *b = trial;
        true
    } else {
        false
    }
}

fn exact_backtrack(pieces: &[Piece], text: &str, b: &mut Bindings) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return text.is_empty();
    };
    match first {
        Piece::Lit(l) => text
            .strip_prefix(l.as_str())
            .is_some_and(|after| exact_backtrack(rest, after, b)),
        Piece::Var(n) if b.vars.contains_key(n) => {
            let v = b.vars.get(n).cloned().unwrap_or_default();
            text.strip_prefix(v.as_str())
                .is_some_and(|after| exact_backtrack(rest, after, b))
        }
        Piece::Time | Piece::Var(_) => {
            let accept = |c: char| match first {
                Piece::Time => c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 'Z' | '+'),
                _ => is_token(c),
            };
            let max = text
                .char_indices()
                .find(|(_, c)| !accept(*c))
                .map_or(text.len(), |(i, _)| i);
            for len in (1..=max).rev() {
                let (Some(token), Some(after)) = (text.get(..len), text.get(len..)) else {
                    continue;
                };
                let mut trial = b.clone();
                if let Piece::Var(n) = first
                    && !trial.bind(*n, token)
                {
                    continue;
                }
                if exact_backtrack(rest, after, &mut trial) {
                    *b = trial;
                    return true;
                }
            }
            false
        }
    }
}

/// Does `actual` contain `expected` somewhere, `gen-N` being variables? Binds on success.
pub(crate) fn match_contains(expected: &str, actual: &str, b: &mut Bindings) -> bool {
    let pieces = pattern(expected);
    for (i, _) in actual.char_indices() {
        let mut trial = b.clone();
        if let Some(rest) = actual.get(i..)
            && match_here(&pieces, rest, &mut trial).is_some()
        {
            *b = trial;
            return true;
        }
    }
    pieces.is_empty()
}

/// `gen-N` in an input replaced by its bound token; an unbound one is an error.
pub(crate) fn substitute_vars(text: &str, b: &Bindings) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    for (start, end, n) in gen_tokens(text) {
        out.push_str(text.get(i..start).unwrap_or_default());
        let v = b
            .vars
            .get(&n)
            .ok_or_else(|| format!("gen-{n} used in an input before the node showed it"))?;
        out.push_str(v);
        i = end;
    }
    out.push_str(text.get(i..).unwrap_or_default());
    Ok(out)
}

/// Fixed strings of the cases (addresses, Call-IDs) and what they are on the wire. Applied in
/// one pass, whole tokens only, longest key first.
#[derive(Debug, Default, Clone)]
pub(crate) struct TextMap {
    pairs: Vec<(String, String)>,
}

impl TextMap {
    pub(crate) fn insert(&mut self, from: String, to: String) {
        if from == to || self.pairs.iter().any(|(f, _)| *f == from) {
            return;
        }
        self.pairs.push((from, to));
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut prev: Option<char> = None;
        'scan: while let Some(rest) = text.get(i..) {
            let Some(c) = rest.chars().next() else { break };
            if prev.is_none_or(|p| !is_token(p)) {
                for (from, to) in &self.pairs {
                    if let Some(after) = rest.strip_prefix(from.as_str())
                        && after
                            .chars()
                            .next()
                            .is_none_or(|n| !(n.is_ascii_alphanumeric() || n == '_'))
                    {
                        out.push_str(to);
                        i += from.len();
                        prev = from.chars().next_back();
                        continue 'scan;
                    }
                }
            }
            out.push(c);
            prev = Some(c);
            i += c.len_utf8();
        }
        out
    }
}

/// The value of the first header line named `name` (or its compact form) in message text.
fn header_line<'a>(text: &'a str, names: &[&str]) -> Option<&'a str> {
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            return None;
        }
        if let Some((n, v)) = line.split_once(':')
            && names.iter().any(|x| n.trim().eq_ignore_ascii_case(x))
        {
            return Some(v.trim());
        }
    }
    None
}

/// `(number, method)` of the CSeq line.
fn cseq_of(text: &str) -> Option<(u32, String)> {
    let v = header_line(text, &["CSeq"])?;
    let (n, m) = v.split_once(char::is_whitespace)?;
    Some((n.trim().parse().ok()?, m.trim().to_string()))
}

/// The branch of the first Via line.
fn first_branch(text: &str) -> String {
    header_line(text, &["Via", "v"])
        .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("branch=")))
        .unwrap_or_default()
        .to_string()
}

/// The text with every Via line removed and `vias` written right after the start line.
fn set_vias(text: &str, vias: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut in_head = true;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i == 0 {
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
            for v in vias {
                out.push_str("Via: ");
                out.push_str(v);
                out.push('\n');
            }
            continue;
        }
        if in_head && line.trim().is_empty() {
            in_head = false;
        }
        let is_via = in_head
            && line.split_once(':').is_some_and(|(n, _)| {
                matches!(n.trim().to_ascii_lowercase().as_str(), "via" | "v")
            });
        if !is_via {
            out.push_str(line);
        }
    }
    out
}

/// The text with `via` written above the Via lines it has.
fn push_via(text: &str, via: &str) -> String {
    match text.split_once('\n') {
        Some((start, rest)) => format!("{start}\nVia: {via}\n{rest}"),
        None => format!("{text}\nVia: {via}\n"),
    }
}

/// `host:port` of every `msrp://` URI in `text` (a=path lines, From-Path).
fn msrp_authorities(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("msrp://") {
        let rest = text.get(i + 7..).unwrap_or_default();
        let end = rest.find(['/', ';', ' ', '\r', '\n']).unwrap_or(rest.len());
        let auth = rest.get(..end).unwrap_or_default();
        if !auth.is_empty() && !out.iter().any(|a| a == auth) {
            out.push(auth.to_string());
        }
    }
    out
}

/// Literal Call-IDs of a step's input (not `{{last.…}}` nor `gen-N`).
fn literal_call_id(text: &str) -> Option<String> {
    let v = header_line(text, &["Call-ID", "i"])?;
    (!v.contains("{{") && gen_tokens(v).is_empty() && !v.is_empty()).then(|| v.to_string())
}

/// A Call-ID made unique for this run and case.
fn suffixed_call_id(id: &str, tag: &str) -> String {
    match id.split_once('@') {
        Some((local, host)) => format!("{local}.{tag}@{host}"),
        None => format!("{id}.{tag}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The runtime: sockets, events, the case runner.

/// Something that arrived from the node.
enum Event {
    Sip(Side, Bytes),
    MsrpConn(Side, u64, OwnedWriteHalf),
    Msrp(Side, u64, Frame),
    MsrpClosed(Side, u64),
}

/// The runner's sockets: the node's next hop on each side (SIP over UDP) and an MSRP listener
/// per side for the sessions the node connects to.
pub struct Peers {
    sip: [Arc<UdpSocket>; 2],
    msrp: [TcpListener; 2],
}

impl Peers {
    /// Bind the CPM and SIMPLE peers' SIP sockets, and an MSRP listener on an ephemeral port of
    /// each one's address.
    pub async fn bind(cpm: SocketAddr, simple: SocketAddr) -> io::Result<Peers> {
        let c = UdpSocket::bind(cpm).await?;
        let s = UdpSocket::bind(simple).await?;
        let mc = TcpListener::bind(SocketAddr::new(cpm.ip(), 0)).await?;
        let ms = TcpListener::bind(SocketAddr::new(simple.ip(), 0)).await?;
        Ok(Peers {
            sip: [Arc::new(c), Arc::new(s)],
            msrp: [mc, ms],
        })
    }

    /// The SIP addresses (CPM, SIMPLE): the node's next hops.
    pub fn sip_addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.sip[0].local_addr()?, self.sip[1].local_addr()?))
    }
}

fn idx(side: Side) -> usize {
    match side {
        Side::Cpm => 0,
        Side::Simple => 1,
    }
}

fn side_of(i: usize) -> Side {
    if i == 0 { Side::Cpm } else { Side::Simple }
}

/// Background tasks of a run, aborted when it ends.
#[derive(Clone, Default)]
struct Tasks(Arc<Mutex<Vec<AbortHandle>>>);

impl Tasks {
    fn push(&self, h: AbortHandle) {
        if let Ok(mut v) = self.0.lock() {
            v.push(h);
        }
    }
    fn abort_all(&self) {
        if let Ok(mut v) = self.0.lock() {
            for h in v.drain(..) {
                h.abort();
            }
        }
    }
}

fn spawn_reader(
    side: Side,
    id: u64,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<Event>,
    tasks: &Tasks,
    open: Arc<AtomicUsize>,
) {
    open.fetch_add(1, Ordering::AcqRel);
    let h = tokio::spawn(async move {
        let _open = OpenGuard(open);
        let mut codec = MsrpCodec::new(msrp::Limits::default());
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => {
                    if tx.send(Event::Msrp(side, id, f)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => break,
            }
            buf.reserve(16 * 1024);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = tx.send(Event::MsrpClosed(side, id)).await;
    });
    tasks.push(h.abort_handle());
}

/// Counts a connection as open until its reader ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// State of the case being played.
#[derive(Default)]
struct CaseState {
    bindings: Bindings,
    map: TextMap,
    last_sent: [Option<SipMessage>; 2],
    /// Requests the node sent, by side, for response steps to answer.
    pending: Vec<(Side, SipMessage)>,
    /// (case branch, Call-ID, CSeq number) -> branch on the wire.
    branches: HashMap<(String, String, u32), String>,
    call_ids: HashSet<String>,
    msrp: [Option<(u64, OwnedWriteHalf)>; 2],
    /// Requests from the node already seen: (side, branch, method).
    seen_requests: HashSet<(usize, String, String)>,
    /// Our answers to them, resent on a retransmission.
    answers: HashMap<(usize, String, String), Bytes>,
    seen_responses: HashSet<(usize, String, String, u16, String)>,
    /// Branches of INVITEs the runner answered with a non-2xx: their ACK is absorbed.
    auto_rejected: HashSet<String>,
    /// What the node sent in this case, as text, by side.
    history: Vec<(Side, String)>,
    /// The runner's own `a=path` on each side (from the case's SDP it sent).
    our_path: [Option<String>; 2],
    not_checked: Vec<String>,
}

struct Runner {
    sip: [Arc<UdpSocket>; 2],
    sip_addr: [SocketAddr; 2],
    msrp_addr: [SocketAddr; 2],
    node: NodeAddrs,
    opts: TargetOptions,
    events: mpsc::Receiver<Event>,
    tx: mpsc::Sender<Event>,
    tasks: Tasks,
    conn_ids: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
    nonce: String,
    counter: u64,
    old_call_ids: HashSet<String>,
}

/// What one step expects of the node, for knowing when it has seen enough.
struct Want {
    n_sent: usize,
    answer: bool,
}

impl Runner {
    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}{}x{}", self.nonce, self.counter)
    }

    async fn send_sip(&self, side: Side, bytes: &[u8]) -> Result<(), String> {
        let sock = self.sip.get(idx(side)).ok_or("no socket")?;
        sock.send_to(bytes, self.node.sip(side))
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot send to the node: {e}"))
    }

    /// Answer a request of the node (with a To tag when it has none).
    async fn answer(
        &mut self,
        cs: &mut CaseState,
        side: Side,
        req: &SipMessage,
        code: u16,
        reason: &str,
    ) {
        let mut resp = req.response_to(code, reason);
        if req.to_tag().is_none()
            && let Some(to) = req.header("To")
        {
            let tag = self.fresh("cr");
            let _ = resp.set_header("To", &format!("{to};tag={tag}"));
        }
        let _ = resp.push_header("Content-Length", "0");
        let bytes = resp.serialize();
        let key = (
            idx(side),
            req.top_via_branch().unwrap_or_default().to_string(),
            req.header("CSeq").unwrap_or_default().to_string(),
        );
        cs.answers.insert(key, bytes.clone());
        let _ = self.send_sip(side, &bytes).await;
    }

    /// Handle a stray message (a late one of an earlier case): answer a request, drop the rest.
    async fn stray(&mut self, side: Side, msg: &SipMessage) {
        if !msg.is_request() || matches!(msg.method(), Some(rsip::Method::Ack)) {
            return;
        }
        let code = if matches!(msg.method(), Some(rsip::Method::Invite)) {
            481
        } else {
            200
        };
        let mut resp = msg.response_to(code, if code == 200 { "OK" } else { "Gone" });
        let _ = resp.push_header("Content-Length", "0");
        let _ = self.send_sip(side, &resp.serialize()).await;
    }

    /// Next event before `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Event> {
        tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Handle an MSRP event that is not the step's business: store a connection the node
    /// opened, answer a request with 200 (a bodiless SEND binds a connection, RFC 4975 §5.4).
    /// Returns the request for the step to record when it is one.
    async fn on_msrp(
        &mut self,
        cs: &mut CaseState,
        ev: Event,
    ) -> Option<(Side, u64, msrp::Message)> {
        match ev {
            Event::MsrpConn(side, id, wr) => {
                if let Some(slot) = cs.msrp.get_mut(idx(side)) {
                    *slot = Some((id, wr));
                }
                None
            }
            Event::Msrp(side, id, Frame::Message(m)) => {
                let current = cs
                    .msrp
                    .get(idx(side))
                    .and_then(|c| c.as_ref())
                    .is_some_and(|(cid, _)| *cid == id);
                if !current || m.response_code().is_some() {
                    return current.then_some((side, id, m));
                }
                if matches!(m.method(), Some(Method::Send))
                    && let Ok(resp) =
                        msrp::Message::response_to(&m, 200, Some(Bytes::from_static(b"OK")))
                    && let Some(Some((_, wr))) = cs.msrp.get_mut(idx(side))
                {
                    let _ = wr.write_all(&resp.to_bytes()).await;
                }
                let binding = matches!(m.method(), Some(Method::Send))
                    && m.body.as_ref().is_none_or(|b| b.is_empty());
                (!binding).then_some((side, id, m))
            }
            Event::Msrp(..) | Event::MsrpClosed(..) | Event::Sip(..) => None,
        }
    }

    /// Handle a SIP datagram from the node. Returns what the step should record: `Ok(true)` if
    /// it is the answer to `ours` (the branch of the step's request), with the message.
    async fn on_sip(
        &mut self,
        cs: &mut CaseState,
        side: Side,
        data: Bytes,
        ours: Option<&str>,
        later: &[(Side, u32, String)],
    ) -> Option<(bool, bool, SipMessage)> {
        let msg = parse_datagram(data, &Limits::default()).ok()?;
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let branch = msg.top_via_branch().unwrap_or_default().to_string();
        let cseq = msg.header("CSeq").unwrap_or_default().to_string();
        // Late messages of earlier cases or runs (a BYE when an unused MSRP leg timed out, a
        // retransmitted 200): a Call-ID this case has not seen, on a response or an in-dialog
        // request (To tag, RFC 3261 §12.2), or one an earlier case used.
        let foreign = !cs.call_ids.contains(&call_id)
            && (self.old_call_ids.contains(&call_id)
                || !msg.is_request()
                || msg.to_tag().is_some());
        if foreign {
            self.stray(side, &msg).await;
            return None;
        }
        if msg.is_request() {
            let method = msg
                .method()
                .map(|m| crate::wire::sip::method_name(m).to_string())
                .unwrap_or_default();
            let key = (idx(side), branch.clone(), method.clone());
            if !cs.seen_requests.insert(key) {
                // A retransmission: the same answer again (RFC 3261 §17.2.1, §17.2.2).
                let akey = (idx(side), branch, cseq);
                if let Some(a) = cs.answers.get(&akey).cloned() {
                    let _ = self.send_sip(side, &a).await;
                }
                return None;
            }
            if method == "ACK" && cs.auto_rejected.contains(&branch) {
                return None;
            }
            cs.call_ids.insert(call_id);
            cs.last_sent[idx(side)] = Some(msg.clone());
            cs.history
                .push((side, String::from_utf8_lossy(&msg.serialize()).into_owned()));
            if method != "ACK" {
                cs.pending.push((side, msg.clone()));
                let n = msg.cseq().map(|c| c.seq).unwrap_or_default();
                let left = later
                    .iter()
                    .any(|(s, ln, lm)| *s == side && *ln == n && lm.eq_ignore_ascii_case(&method));
                if left {
                    return Some((false, true, msg));
                } else {
                    if method == "INVITE" {
                        cs.auto_rejected.insert(branch);
                        self.answer(cs, side, &msg, 480, "Temporarily Unavailable")
                            .await;
                    } else {
                        self.answer(cs, side, &msg, 200, "OK").await;
                    }
                }
            }
            return Some((false, false, msg));
        }
        let status = msg.status_code().unwrap_or_default();
        let key = (
            idx(side),
            call_id.clone(),
            cseq.clone(),
            status,
            msg.to_tag().unwrap_or_default().to_string(),
        );
        if status < 200 || !cs.seen_responses.insert(key) {
            return None;
        }
        cs.call_ids.insert(call_id);
        cs.last_sent[idx(side)] = Some(msg.clone());
        cs.history
            .push((side, String::from_utf8_lossy(&msg.serialize()).into_owned()));
        let is_ours = ours.is_some_and(|b| b == branch);
        Some((is_ours, false, msg))
    }

    /// ACK a non-2xx final response to the runner's INVITE (RFC 3261 §17.1.1.3).
    async fn ack(&self, side: Side, uri: &str, resp: &SipMessage) {
        let mut text = format!("ACK {uri} SIP/2.0\r\n");
        for v in resp.header_all("Via").take(1) {
            text.push_str(&format!("Via: {v}\r\n"));
        }
        for name in ["From", "To", "Call-ID"] {
            if let Some(v) = resp.header(name) {
                text.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        let n = resp.cseq().map(|c| c.seq).unwrap_or(1);
        text.push_str(&format!(
            "CSeq: {n} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ));
        let _ = self.send_sip(side, text.as_bytes()).await;
    }

    async fn run_case(&mut self, path: &Path, case_no: usize) -> Result<TargetResult, FileError> {
        let text = crate::tomlfile::read(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let case: CaseFile = parse_toml((&path.display().to_string(), &text))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut result = TargetResult {
            name,
            clause: case.clause.clone(),
            outcome: Outcome::Passed,
            not_checked: Vec::new(),
        };
        if case.steps.iter().any(|s| s.msrp_leg.is_some()) {
            result.outcome = Outcome::Skipped(
                "offline only: an msrp_leg step (a lone MSRP chunk with no session) cannot be \
                 sent to a node"
                    .into(),
            );
            return Ok(result);
        }
        let mut inputs = Vec::with_capacity(case.steps.len());
        for step in &case.steps {
            let t = match (&step.input, &step.input_file) {
                (Some(t), None) => t.clone(),
                (None, Some(f)) => match std::fs::read_to_string(base.join(f)) {
                    Ok(t) => t,
                    Err(e) => {
                        result.outcome =
                            Outcome::Failed(format!("cannot read input_file {f}: {e}"));
                        return Ok(result);
                    }
                },
                _ => {
                    result.outcome =
                        Outcome::Failed("a step needs exactly one of input and input_file".into());
                    return Ok(result);
                }
            };
            inputs.push(t.replace("\r\n", "\n"));
        }
        let mut cs = CaseState::default();
        self.case_map(&mut cs, &case, &inputs, case_no);
        // Drop what is left of earlier cases: stale MSRP connections are not this case's.
        self.drain(&mut cs).await;
        cs.msrp = [None, None];
        for (i, step) in case.steps.iter().enumerate() {
            // Response steps after this one: (side, CSeq number, method).
            let later: Vec<(Side, u32, String)> = case
                .steps
                .iter()
                .zip(&inputs)
                .skip(i + 1)
                .filter(|(_, t)| t.starts_with("SIP/2.0"))
                .filter_map(|(s, t)| cseq_of(t).map(|(n, m)| (Side::from(s.from), n, m)))
                .collect();
            let r = self
                .run_step(
                    &mut cs,
                    step,
                    inputs.get(i).map(String::as_str).unwrap_or_default(),
                    &later,
                )
                .await;
            if let Err(why) = r {
                result.outcome = Outcome::Failed(format!("step {}: {why}", i + 1));
                break;
            }
            let e = &step.expect;
            let mut nc = |what: &str| cs.not_checked.push(format!("step {}: {what}", i + 1));
            if !e.remembered.is_empty() {
                nc("remembered");
            }
            if !e.forgotten.is_empty() {
                nc("forgotten");
            }
            for (what, v) in [
                ("conversations", e.conversations),
                ("messages", e.messages),
                ("dialogs", e.dialogs),
            ] {
                if v.is_some() {
                    nc(what);
                }
            }
            if e.absent.iter().any(|a| a.eq_ignore_ascii_case("Via")) {
                nc("absent Via");
            }
        }
        result.not_checked = std::mem::take(&mut cs.not_checked);
        if self.old_call_ids.len() + cs.call_ids.len() > MAX_OLD_CALL_IDS {
            self.old_call_ids.clear();
        }
        self.old_call_ids.extend(cs.call_ids.drain());
        Ok(result)
    }

    /// The case's fixed strings and what they are on the wire.
    fn case_map(&mut self, cs: &mut CaseState, case: &CaseFile, inputs: &[String], case_no: usize) {
        let n = &self.node;
        let lo = |p: u16| format!("127.0.0.1:{p}");
        cs.map.insert(lo(5060), n.cpm_sip.to_string());
        cs.map.insert(lo(5062), n.simple_sip.to_string());
        cs.map.insert(lo(2855), n.cpm_msrp.to_string());
        cs.map.insert(lo(2856), n.simple_msrp.to_string());
        // The MSRP port in the node's m= lines (RFC 4975 §8.1).
        cs.map.insert(
            "m=message 2855".into(),
            format!("m=message {}", n.cpm_msrp.port()),
        );
        cs.map.insert(
            "m=message 2856".into(),
            format!("m=message {}", n.simple_msrp.port()),
        );
        let node_msrp = [lo(2855), lo(2856)];
        let tag = format!("{}c{case_no}", self.nonce);
        for (step, text) in case.steps.iter().zip(inputs) {
            let side = Side::from(step.from);
            for auth in msrp_authorities(text) {
                if !node_msrp.contains(&auth) {
                    let to = self
                        .msrp_addr
                        .get(idx(side))
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    cs.map.insert(auth, to);
                }
            }
            if let Some(id) = literal_call_id(text) {
                let s = suffixed_call_id(&id, &tag);
                cs.map.insert(id, s);
            }
        }
    }

    /// Take in what is queued without waiting (late messages of earlier cases).
    async fn drain(&mut self, cs: &mut CaseState) {
        let deadline = Instant::now() + Duration::from_millis(20);
        while let Some(ev) = self.next(deadline).await {
            match ev {
                Event::Sip(side, data) => {
                    if let Ok(m) = parse_datagram(data, &Limits::default()) {
                        self.stray(side, &m).await;
                    }
                }
                other => {
                    let _ = self.on_msrp(cs, other).await;
                }
            }
        }
    }

    async fn run_step(
        &mut self,
        cs: &mut CaseState,
        step: &Step,
        template: &str,
        later: &[(Side, u32, String)],
    ) -> Result<(), String> {
        let from = Side::from(step.from);
        let text = cs.map.apply(template);
        bind_from_history(&text, from, cs);
        let text = substitute_vars(&text, &cs.bindings)?;
        let text = fill(&text, from, cs)?;
        if text.starts_with("MSRP ") {
            return self.msrp_step(cs, step, &text).await;
        }
        let e = &step.expect;
        let is_response = text.starts_with("SIP/2.0");
        let (wire, ours, invite_uri) = if is_response {
            let parsed = parse_datagram(wire_bytes(&text), &Limits::default())
                .map_err(|err| format!("the case's response does not parse: {err}"))?;
            let call_id = parsed.call_id().unwrap_or_default();
            let cseq = parsed.header("CSeq").unwrap_or_default();
            let Some((_, req)) = cs.pending.iter().rev().find(|(s, r)| {
                *s == from && r.call_id() == Some(call_id) && r.header("CSeq") == Some(cseq)
            }) else {
                return Err(format!(
                    "no request sent to {from:?} with Call-ID {call_id} and CSeq {cseq}"
                ));
            };
            let vias: Vec<String> = req.header_all("Via").map(str::to_string).collect();
            // The node ACKs a non-2xx final response to its INVITE itself (§17.1.1.3): that
            // ACK is the transaction's, not a message the case checks.
            if parsed.status_code().is_some_and(|c| c >= 300)
                && matches!(req.method(), Some(rsip::Method::Invite))
                && let Some(b) = req.top_via_branch()
            {
                cs.auto_rejected.insert(b.to_string());
            }
            (wire_bytes(&set_vias(&text, &vias)), None, None)
        } else {
            let call_id = header_line(&text, &["Call-ID", "i"])
                .unwrap_or_default()
                .to_string();
            let (n, _) = cseq_of(&text).unwrap_or((0, String::new()));
            let key = (first_branch(&text), call_id.clone(), n);
            // Only a CANCEL and a non-2xx ACK share their INVITE's branch (RFC 3261 §9.1,
            // §17.1.1.3); every other request of a case is a new transaction on the wire even
            // when the case reuses a branch.
            let shares = text.starts_with("CANCEL ") || text.starts_with("ACK ");
            let branch = match cs.branches.get(&key).filter(|_| shares) {
                Some(b) => b.clone(),
                None => {
                    let b = format!("z9hG4bK-{}", self.fresh("cr"));
                    if !shares {
                        cs.branches.insert(key, b.clone());
                    }
                    b
                }
            };
            if !call_id.is_empty() {
                cs.call_ids.insert(call_id);
            }
            let me = self.sip_addr.get(idx(from)).copied().ok_or("no socket")?;
            let via = format!("SIP/2.0/UDP {me};branch={branch};rport");
            let uri = text
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or_default()
                .to_string();
            let invite = text.starts_with("INVITE ").then_some(uri);
            (wire_bytes(&push_via(&text, &via)), Some(branch), invite)
        };
        if let Some(p) = sdp_path(&text)
            && let Some(slot) = cs.our_path.get_mut(idx(from))
        {
            *slot = Some(p);
        }
        let sent_body = parse_datagram(wire.clone(), &Limits::default())
            .map(|m| m.body().clone())
            .unwrap_or_default();
        let method_ack = text.starts_with("ACK ");
        self.send_sip(from, &wire).await?;

        let want = Want {
            n_sent: if !e.sent.is_empty() {
                e.sent.len()
            } else {
                usize::from(e.send.is_some())
            },
            answer: ours.is_some() && !method_ack,
        };
        let mut answer: Option<SipMessage> = None;
        let mut answer_raw: Option<u16> = None;
        let mut got: Vec<(Side, Sent)> = Vec::new();
        let mut left_for_later = false;
        let mut deadline = Instant::now() + self.opts.wait;
        let mut settling = false;
        loop {
            let done = got.len() >= want.n_sent
                && (!want.answer || answer.is_some() || answer_raw.is_some() || left_for_later);
            if done && !settling {
                settling = true;
                deadline = deadline.min(Instant::now() + self.opts.settle);
            }
            let Some(ev) = self.next(deadline).await else {
                break;
            };
            match ev {
                Event::Sip(side, data) => {
                    // An answer the codec cannot parse (a 400 to a request without Call-ID
                    // has none either): matched by its Via branch.
                    if parse_datagram(data.clone(), &Limits::default()).is_err() {
                        let t = String::from_utf8_lossy(&data);
                        if side == from
                            && answer_raw.is_none()
                            && ours.as_deref() == Some(first_branch(&t).as_str())
                        {
                            answer_raw = t
                                .strip_prefix("SIP/2.0 ")
                                .and_then(|r| r.get(..3))
                                .and_then(|c| c.parse::<u16>().ok());
                        }
                        continue;
                    }
                    let Some((is_ours, left, msg)) =
                        self.on_sip(cs, side, data, ours.as_deref(), later).await
                    else {
                        continue;
                    };
                    if is_ours && side == from {
                        if let (Some(uri), Some(code)) = (&invite_uri, msg.status_code())
                            && code >= 300
                        {
                            self.ack(from, uri, &msg).await;
                        }
                        if answer.is_none() {
                            answer = Some(msg);
                        }
                        continue;
                    }
                    left_for_later |= left;
                    got.push((side, Sent::Sip(msg)));
                }
                other => {
                    if let Some((side, _, m)) = self.on_msrp(cs, other).await
                        && m.response_code().is_none()
                    {
                        got.push((side, Sent::Msrp(m)));
                    }
                }
            }
        }
        let answer_status = answer
            .as_ref()
            .and_then(SipMessage::status_code)
            .or(answer_raw);
        check_step(e, cs, answer_status, &got, &sent_body)
    }

    async fn msrp_step(
        &mut self,
        cs: &mut CaseState,
        step: &Step,
        text: &str,
    ) -> Result<(), String> {
        let e = &step.expect;
        let from = Side::from(step.from);
        let wire = Bytes::from(text.replace('\n', "\r\n"));
        // A case may send a malformed request on purpose (the node must answer it 400, RFC
        // 4975 §7.3): it goes as written, its transaction-id read from the start line.
        let parsed = msrp::parse(wire.clone(), &msrp::Limits::default()).ok();
        let tid = match &parsed {
            Some(p) => p.transaction_id.clone(),
            None => Bytes::copy_from_slice(
                text.lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .ok_or("the case's MSRP request has no transaction-id")?
                    .as_bytes(),
            ),
        };
        let to_addr = parsed
            .as_ref()
            .and_then(|p| p.to_path().ok())
            .and_then(|p| p.into_iter().next())
            .and_then(|u| uri_addr(&u));
        self.ensure_conn(cs, from, to_addr).await?;
        // The other leg must be up for the node to relay (the runner plays its peer too).
        self.ensure_conn(cs, from.other(), None).await?;
        if let Some(Some((_, wr))) = cs.msrp.get_mut(idx(from)) {
            wr.write_all(&wire)
                .await
                .map_err(|err| format!("MSRP write: {err}"))?;
        }
        let my_conn = cs
            .msrp
            .get(idx(from))
            .and_then(|c| c.as_ref())
            .map(|(id, _)| *id);
        let want_answer = parsed
            .as_ref()
            .is_none_or(|p| matches!(p.method(), Some(Method::Send)));
        let n_sent = if !e.sent.is_empty() {
            e.sent.len()
        } else {
            usize::from(e.send.is_some())
        };
        let mut answer: Option<u16> = None;
        let mut got: Vec<(Side, Sent)> = Vec::new();
        let mut deadline = Instant::now() + self.opts.wait;
        let mut settling = false;
        let mut closed = false;
        loop {
            if got.len() >= n_sent && (!want_answer || answer.is_some() || closed) && !settling {
                settling = true;
                deadline = deadline.min(Instant::now() + self.opts.settle);
            }
            let Some(ev) = self.next(deadline).await else {
                break;
            };
            match ev {
                Event::Sip(side, data) => {
                    if let Some((_, _, m)) = self.on_sip(cs, side, data, None, &[]).await {
                        got.push((side, Sent::Sip(m)));
                    }
                }
                Event::MsrpClosed(side, id) if Some(id) == my_conn && side == from => {
                    closed = true;
                }
                Event::Msrp(side, id, Frame::Message(m))
                    if Some(id) == my_conn
                        && side == from
                        && m.response_code().is_some()
                        && m.transaction_id == tid =>
                {
                    answer = m.response_code();
                }
                Event::Msrp(side, id, Frame::Rejected { .. })
                    if Some(id) == my_conn && side == from => {}
                other => {
                    if let Some((side, _, m)) = self.on_msrp(cs, other).await
                        && m.response_code().is_none()
                    {
                        got.push((side, Sent::Msrp(m)));
                    }
                }
            }
        }
        let body = parsed
            .as_ref()
            .and_then(|p| p.body.clone())
            .unwrap_or_default();
        if let Some(code) = e.error {
            check(answer == Some(code), || {
                format!("expected the node to refuse with {code}, got {answer:?}")
            })?;
        }
        check_step_sent(e, cs, &got, &body)
    }
}

/// A `gen-N` an input uses that no expectation has bound yet: bound from what the node sent
/// to that side (newest first), by the input line around it: the whole line as a header line
/// of the node's message (`Call-ID: gen-4`), else its value anywhere in it (an MSRP To-Path
/// naming the node's `a=path`).
fn bind_from_history(text: &str, from: Side, cs: &mut CaseState) {
    for line in text.lines() {
        if gen_tokens(line)
            .iter()
            .all(|(_, _, n)| cs.bindings.vars.contains_key(n))
        {
            continue;
        }
        let line = line.trim_end();
        let value = line.split_once(':').map_or(line, |(_, v)| v.trim());
        'found: for pat in [line, value] {
            for (side, msg) in cs.history.iter().rev() {
                if *side != from {
                    continue;
                }
                for l in msg.lines() {
                    let mut trial = cs.bindings.clone();
                    let hit = if std::ptr::eq(pat, line) {
                        match_exact(pat, l.trim_end(), &mut trial)
                    } else {
                        match_contains(pat, l, &mut trial)
                    };
                    if hit {
                        cs.bindings = trial;
                        break 'found;
                    }
                }
            }
        }
    }
}

fn uri_addr(u: &msrp::MsrpUri) -> Option<SocketAddr> {
    format!("{}:{}", String::from_utf8_lossy(&u.host), u.port?)
        .parse()
        .ok()
}

/// The first `a=path:` URI in an SDP text.
fn sdp_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=path:"))
        .map(|p| p.split_whitespace().next().unwrap_or_default().to_string())
}

impl Runner {
    /// The MSRP connection of `side` (RFC 4975 §5.4, RFC 6135): the one the node opened when
    /// its SDP to that side says `a=setup:active` (waited for), else one the runner opens to
    /// the node's `a=path` (or `own`, the To-Path of the step's request), bound by a bodiless
    /// SEND when the step's request does not bind it.
    async fn ensure_conn(
        &mut self,
        cs: &mut CaseState,
        side: Side,
        own: Option<SocketAddr>,
    ) -> Result<(), String> {
        if cs.msrp.get(idx(side)).is_some_and(Option::is_some) {
            return Ok(());
        }
        let sdp = cs
            .history
            .iter()
            .rev()
            .find(|(s, t)| *s == side && t.contains("a=path:"))
            .map(|(_, t)| t.clone());
        let node_active = sdp.as_deref().is_some_and(|t| t.contains("a=setup:active"));
        if node_active {
            let deadline = Instant::now() + self.opts.wait;
            while cs.msrp.get(idx(side)).is_some_and(Option::is_none) {
                let Some(ev) = self.next(deadline).await else {
                    return Err(format!(
                        "the node did not open its MSRP connection on {side:?}"
                    ));
                };
                match ev {
                    Event::Sip(s, data) => {
                        let _ = self.on_sip(cs, s, data, None, &[]).await;
                    }
                    other => {
                        let _ = self.on_msrp(cs, other).await;
                    }
                }
            }
            return Ok(());
        }
        let node_path = sdp.as_deref().and_then(sdp_path);
        let addr = match own {
            Some(a) => a,
            None => match node_path
                .as_deref()
                .and_then(|p| msrp::MsrpUri::parse_str(p).ok())
                .and_then(|u| uri_addr(&u))
            {
                Some(a) => a,
                None => return Ok(()),
            },
        };
        let stream = tokio::time::timeout(self.opts.wait, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("MSRP connect to {addr} timed out"))?
            .map_err(|err| format!("MSRP connect to {addr}: {err}"))?;
        let (rd, mut wr) = stream.into_split();
        let id = self.conn_ids.fetch_add(1, Ordering::Relaxed);
        spawn_reader(
            side,
            id,
            rd,
            self.tx.clone(),
            &self.tasks,
            self.open.clone(),
        );
        if own.is_none()
            && let (Some(to), Some(from)) =
                (node_path, cs.our_path.get(idx(side)).cloned().flatten())
        {
            let tid = self.fresh("b");
            let bind = format!(
                "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: {tid}\r\nByte-Range: 1-0/0\r\n-------{tid}$\r\n"
            );
            wr.write_all(bind.as_bytes())
                .await
                .map_err(|err| format!("MSRP write: {err}"))?;
        }
        if let Some(slot) = cs.msrp.get_mut(idx(side)) {
            *slot = Some((id, wr));
        }
        Ok(())
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// `{{last.Header}}`: that header of the last SIP message the node sent to `from`.
fn fill(text: &str, from: Side, cs: &CaseState) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{last.") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 7..).unwrap_or_default();
        let end = after.find("}}").ok_or("unclosed {{last.")?;
        let name = after.get(..end).unwrap_or_default();
        let value = cs
            .last_sent
            .get(idx(from))
            .and_then(|m| m.as_ref())
            .and_then(|m| m.header(name))
            .ok_or_else(|| {
                format!("{{{{last.{name}}}}}: the node sent nothing to {from:?} with {name}")
            })?;
        out.push_str(value);
        rest = after.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

fn check_step(
    e: &Expect,
    cs: &mut CaseState,
    answer: Option<u16>,
    got: &[(Side, Sent)],
    sent_body: &Bytes,
) -> Result<(), String> {
    if let Some(code) = e.error {
        check(answer == Some(code), || {
            format!("expected the node to refuse with {code}, got {answer:?}")
        })?;
    }
    if let Some(code) = e.reply {
        check(answer == Some(code), || {
            format!("expected the node to answer {code}, got {answer:?}")
        })?;
    }
    check_step_sent(e, cs, got, sent_body)
}

fn check_step_sent(
    e: &Expect,
    cs: &mut CaseState,
    got: &[(Side, Sent)],
    sent_body: &Bytes,
) -> Result<(), String> {
    let what: Vec<String> = got.iter().map(|(_, m)| m.what()).collect();
    if !e.sent.is_empty() {
        check(what == e.sent, || {
            format!("the node sent {what:?}, expected {:?}", e.sent)
        })?;
    }
    match (e.send, got) {
        (None, []) => Ok(()),
        (Some(side), [(to, out), more @ ..]) if more.is_empty() || !e.sent.is_empty() => {
            check(Side::from(side) == *to, || {
                format!("sent to {to:?}, expected {side:?}")
            })?;
            if let Some(status) = e.status {
                check(what.first() == Some(&status.to_string()), || {
                    format!("sent {what:?}, expected status {status}")
                })?;
            }
            check_message(e, cs, sent_body, out)
        }
        (want, got) => Err(format!(
            "expected {} message(s) sent, got {} ({what:?})",
            usize::from(want.is_some()),
            got.len()
        )),
    }
}

fn check_message(
    e: &Expect,
    cs: &mut CaseState,
    sent_body: &Bytes,
    out: &Sent,
) -> Result<(), String> {
    let map = cs.map.clone();
    let b = &mut cs.bindings;
    if let Some(uri) = &e.request_uri {
        let want = map.apply(uri);
        let got = out.request_uri();
        check(
            got.as_deref().is_some_and(|g| match_exact(&want, g, b)),
            || format!("Request-URI {got:?}, expected {want}"),
        )?;
    }
    for (name, want) in &e.headers {
        let want = map.apply(want);
        let got = out.header(name);
        check(
            got.as_deref().is_some_and(|g| match_exact(&want, g, b)),
            || format!("{name}: {got:?}, expected {want:?}"),
        )?;
    }
    for (name, part) in &e.header_contains {
        let part = map.apply(part);
        let got = out.header_all(name);
        check(got.iter().any(|v| match_contains(&part, v, b)), || {
            format!("{name}: {got:?} does not contain {part:?}")
        })?;
    }
    for name in &e.absent {
        if name.eq_ignore_ascii_case("Via") {
            continue;
        }
        check(out.header(name).is_none(), || {
            format!("{name} present: {:?}", out.header(name))
        })?;
    }
    if let Some(ct) = &e.content_type {
        let got = out.header("Content-Type");
        check(got.as_deref() == Some(ct.as_str()), || {
            format!("Content-Type {got:?}, expected {ct}")
        })?;
    }
    let body_bytes = out.body();
    let body = String::from_utf8_lossy(&body_bytes);
    for part in &e.body_contains {
        let part = map.apply(part);
        check(match_contains(&part, &body, b), || {
            format!("body lacks {part:?}:\n{body}")
        })?;
    }
    for part in &e.body_lacks {
        let part = map.apply(part);
        let mut trial = b.clone();
        check(!match_contains(&part, &body, &mut trial), || {
            format!("body contains {part:?}:\n{body}")
        })?;
    }
    if let Some(unchanged) = e.body_unchanged {
        check((body_bytes == sent_body) == unchanged, || {
            format!("body_unchanged = {unchanged} does not hold")
        })?;
    }
    Ok(())
}

/// The `*.toml` case files of `dir`, in name order.
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| FileError {
            file: dir.display().to_string(),
            line: 1,
            column: 1,
            reason: format!("cannot read directory: {e}"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The runner of a target run: the peers' sockets serving, cases played one after the other.
pub struct TargetRunner {
    runner: Runner,
    end: Instant,
    cases: usize,
}

impl TargetRunner {
    /// Start serving the peers' sockets (within a tokio runtime) for the node at `node`; the
    /// node's next hops must be `peers.sip_addrs()`.
    pub fn start(peers: Peers, node: NodeAddrs, opts: TargetOptions) -> io::Result<TargetRunner> {
        let (cpm_addr, simple_addr) = peers.sip_addrs()?;
        let [mc, ms] = &peers.msrp;
        let msrp_addr = [mc.local_addr()?, ms.local_addr()?];
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let tasks = Tasks::default();
        let conn_ids = Arc::new(AtomicU64::new(1));
        let open = Arc::new(AtomicUsize::new(0));
        let Peers {
            sip,
            msrp: listeners,
        } = peers;
        for (i, sock) in sip.iter().enumerate() {
            let sock = sock.clone();
            let tx = tx.clone();
            let side = side_of(i);
            let h = tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                    let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if tx.send(Event::Sip(side, data)).await.is_err() {
                        break;
                    }
                }
            });
            tasks.push(h.abort_handle());
        }
        for (i, listener) in listeners.into_iter().enumerate() {
            let tx = tx.clone();
            let side = side_of(i);
            let t = tasks.clone();
            let ids = conn_ids.clone();
            let open = open.clone();
            let h = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    if open.load(Ordering::Acquire) >= MAX_MSRP_CONNECTIONS {
                        continue;
                    }
                    let (rd, wr) = stream.into_split();
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    if tx.send(Event::MsrpConn(side, id, wr)).await.is_err() {
                        break;
                    }
                    spawn_reader(side, id, rd, tx.clone(), &t, open.clone());
                }
            });
            tasks.push(h.abort_handle());
        }
        // Per run, so that a second run against the same node meets none of the first's
        // Call-IDs or branches.
        let nonce = {
            use crate::translate::conversation::IdSource;
            let id = crate::node::ids::RandomIds::new().fresh_id();
            String::from_utf8_lossy(id.get(..8).unwrap_or_default()).into_owned()
        };
        Ok(TargetRunner {
            runner: Runner {
                sip,
                sip_addr: [cpm_addr, simple_addr],
                msrp_addr,
                node,
                opts,
                events,
                tx,
                tasks,
                conn_ids,
                open,
                nonce,
                counter: 0,
                old_call_ids: HashSet::new(),
            },
            end: Instant::now() + opts.run_timeout,
            cases: 0,
        })
    }

    /// Play the next cases against another node (same peers).
    pub fn set_node(&mut self, node: NodeAddrs) {
        self.runner.node = node;
    }

    /// Play one case file. A case that would start after the run's time limit fails.
    pub async fn run_case(&mut self, path: &Path) -> Result<TargetResult, FileError> {
        self.cases += 1;
        if Instant::now() >= self.end {
            return Ok(TargetResult {
                name: path.display().to_string(),
                clause: String::new(),
                outcome: Outcome::Failed("the run's time limit was reached first".into()),
                not_checked: Vec::new(),
            });
        }
        self.runner.run_case(path, self.cases).await
    }
}

impl Drop for TargetRunner {
    fn drop(&mut self) {
        self.runner.tasks.abort_all();
    }
}

/// Play every `*.toml` case in `dir`, in name order, against the node at `node`, the runner
/// being its peers (`peers`; the node's next hops must be `peers.sip_addrs()`).
pub async fn run_target_dir(
    dir: &Path,
    peers: Peers,
    node: NodeAddrs,
    opts: TargetOptions,
) -> Result<Vec<TargetResult>, FileError> {
    let files = case_files(dir)?;
    let mut runner = TargetRunner::start(peers, node, opts).map_err(|e| FileError {
        file: "peers".into(),
        line: 1,
        column: 1,
        reason: e.to_string(),
    })?;
    let mut results = Vec::with_capacity(files.len());
    for f in &files {
        results.push(runner.run_case(f).await?);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_binds_at_its_first_match_and_must_stay_the_same() {
        let mut b = Bindings::default();
        assert!(match_exact(
            "<sip:a@b>;tag=gen-1",
            "<sip:a@b>;tag=9f1c-77",
            &mut b
        ));
        assert!(match_exact("gen-1", "9f1c-77", &mut b));
        assert!(!match_exact("gen-1", "other", &mut b));
        // Different N, different tokens.
        assert!(!match_exact("gen-2", "9f1c-77", &mut b));
        assert!(match_exact("gen-2", "abc", &mut b));
        assert_eq!(
            substitute_vars("Call-ID: gen-2;x=gen-1", &b).as_deref(),
            Ok("Call-ID: abc;x=9f1c-77")
        );
        assert!(substitute_vars("gen-3", &b).is_err());
    }

    #[test]
    fn a_failed_match_binds_nothing() {
        let mut b = Bindings::default();
        assert!(!match_exact("tag=gen-1;x", "tag=abc;y", &mut b));
        assert!(b.vars.is_empty());
    }

    #[test]
    fn contains_with_variables_and_time() {
        let mut b = Bindings::default();
        assert!(match_contains(
            "a=path:msrp://127.0.0.1:2855/gen-2;tcp",
            "x\r\na=path:msrp://127.0.0.1:2855/5d1e-aa;tcp\r\n",
            &mut b
        ));
        assert_eq!(b.vars.get(&2).map(String::as_str), Some("5d1e-aa"));
        assert!(match_contains(
            "DateTime: 2026-11-25T10:00:05.000Z",
            "DateTime: 2031-01-02T03:04:05.678Z\r\n",
            &mut b
        ));
        // A bound variable is its token, nothing else.
        assert!(!match_contains("/gen-2;", "x/5d1e-ab;", &mut b));
        assert!(match_contains("/gen-2;", "x/5d1e-aa;", &mut b));
    }

    #[test]
    fn gen_tokens_are_whole_words() {
        assert_eq!(
            gen_tokens("gen-1 gen-12;xgen-3 gen-"),
            vec![(0, 5, 1), (6, 12, 12)]
        );
    }

    #[test]
    fn text_map_replaces_whole_tokens_once() {
        let mut m = TextMap::default();
        m.insert("127.0.0.1:5060".into(), "127.0.0.1:40001".into());
        m.insert("simple-text-1".into(), "simple-text-1.k".into());
        m.insert("127.0.0.1:40001".into(), "never".into());
        assert_eq!(
            m.apply("sip:iwf@127.0.0.1:5060;x simple-text-10 simple-text-1\n"),
            "sip:iwf@127.0.0.1:40001;x simple-text-10 simple-text-1.k\n"
        );
    }

    #[test]
    fn vias_are_replaced_or_pushed() {
        let t = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP a;branch=1\nv: SIP/2.0/UDP b\nTo: x\n\nVia: body";
        assert_eq!(
            set_vias(t, &["SIP/2.0/UDP n;branch=z".into()]),
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP n;branch=z\nTo: x\n\nVia: body"
        );
        assert_eq!(
            push_via("M x SIP/2.0\nTo: y\n", "V"),
            "M x SIP/2.0\nVia: V\nTo: y\n"
        );
        assert_eq!(
            first_branch("M x SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9-1;rport\n"),
            "z9-1"
        );
        assert_eq!(cseq_of("M x\nCSeq: 2 BYE\n"), Some((2, "BYE".into())));
    }

    #[test]
    fn msrp_authorities_and_call_ids() {
        assert_eq!(
            msrp_authorities("a=path:msrp://192.0.2.10:9/s1;tcp\nFrom-Path: msrp://h:7/x;tcp"),
            vec!["192.0.2.10:9".to_string(), "h:7".to_string()]
        );
        assert_eq!(suffixed_call_id("a@b", "t"), "a.t@b");
        assert_eq!(suffixed_call_id("a", "t"), "a.t");
        assert_eq!(literal_call_id("M x\nCall-ID: {{last.Call-ID}}\n"), None);
        assert_eq!(literal_call_id("M x\ni: abc\n"), Some("abc".into()));
    }

    #[test]
    fn an_input_variable_is_bound_from_what_the_node_sent_to_that_side() {
        let mut cs = CaseState::default();
        cs.history.push((
            Side::Simple,
            "INVITE sip:b@h SIP/2.0\r\nFrom: <sip:a@h>;tag=t-77\r\nCall-ID: c-55\r\n\r\n".into(),
        ));
        cs.history.push((
            Side::Cpm,
            "SIP/2.0 200 OK\r\nCall-ID: other\r\n\r\na=path:msrp://127.0.0.1:9/s-1;tcp\r\n".into(),
        ));
        let input = "ACK x SIP/2.0\nFrom: <sip:a@h>;tag=gen-3\nCall-ID: gen-4\n";
        bind_from_history(input, Side::Simple, &mut cs);
        assert_eq!(
            substitute_vars(input, &cs.bindings).as_deref(),
            Ok("ACK x SIP/2.0\nFrom: <sip:a@h>;tag=t-77\nCall-ID: c-55\n")
        );
        let msrp = "MSRP a SEND\nTo-Path: msrp://127.0.0.1:9/gen-1;tcp\n";
        bind_from_history(msrp, Side::Cpm, &mut cs);
        assert_eq!(cs.bindings.vars.get(&1).map(String::as_str), Some("s-1"));
    }
}
