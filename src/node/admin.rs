//! The admin HTTP server: `/metrics` (Prometheus text exposition format 0.0.4), `/healthz`
//! (the process serves), `/readyz` (the node's [`Readiness`] flag).
//!
//! A deliberately small HTTP/1.1 server (RFC 9112) on tokio: GET and HEAD only, no request
//! bodies, persistent connections, pipelining answered in order. Everything a client can make it
//! hold is bounded ([`AdminLimits`]): the request head size (431 past it), the number of open
//! connections (more are closed at accept), the time to send a started head (408), the idle time
//! between requests, the time to write an answer, the requests per connection. The parsing and
//! routing are pure functions ([`find_head_end`], [`parse_head`], [`route`]) tested without
//! sockets; bad input gets a 4xx/5xx and a close, never a panic, and never stops the server.
//!
//! The B2BUA core calls [`AdminServer::bind`] (which installs the metrics recorder,
//! [`crate::metrics::install`]) with `config.admin_listen` and a [`Readiness`] it sets once its
//! listeners are bound, spawns [`AdminServer::serve`], and on exit calls
//! [`ShutdownHandle::shutdown`] and awaits the task.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};

use crate::metrics::{self, AdminPath, AdminStatus, LabelValue};

/// Bounds on what a client of the admin server can make it hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Largest request head (request line and header fields); past it: 431 and close
    /// (RFC 6585 §5).
    pub max_head: usize,
    /// Most connections open at once; one more is closed at accept.
    pub max_connections: usize,
    /// Time from a request's first byte to the end of its head; past it: 408 and close.
    pub head_timeout: Duration,
    /// Time a connection may wait for its next request; past it: closed.
    pub idle_timeout: Duration,
    /// Time to write one answer; past it: closed.
    pub write_timeout: Duration,
    /// Requests answered on one connection before it is closed (`Connection: close`).
    pub max_requests: usize,
    /// How often recorded histogram samples are folded into their buckets (they are also folded
    /// at each render; this bounds their memory when nobody scrapes).
    pub upkeep_interval: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_head: 8 * 1024,
            max_connections: 32,
            head_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_requests: 1000,
            upkeep_interval: Duration::from_secs(5),
        }
    }
}

/// Whether the node is ready to serve: `/readyz` answers 200 while it is set, 503 otherwise.
/// Cheap to clone; every clone is the same flag. Also exported as the `cpm_iwf_ready` gauge.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Sets the flag (the node: true once every listener is bound, false when one goes down or
    /// at shutdown).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
        metrics::ready(ready);
    }

    /// The flag.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Stops a running [`AdminServer::serve`]: it stops accepting, closes idle connections, lets
/// answers being written finish (bounded by [`AdminLimits::write_timeout`]) and returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Asks the server to stop.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// The admin HTTP server, bound and not yet serving.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct Shared {
    handle: PrometheusHandle,
    readiness: Readiness,
    limits: AdminLimits,
}

impl AdminServer {
    /// Installs the metrics recorder (once per process) and binds `addr` with the default
    /// [`AdminLimits`].
    ///
    /// # Errors
    /// The address cannot be bound, or another `metrics` recorder is installed.
    pub async fn bind(addr: SocketAddr, readiness: Readiness) -> io::Result<AdminServer> {
        AdminServer::bind_with(addr, readiness, AdminLimits::default()).await
    }

    /// [`bind`](Self::bind) with explicit limits.
    ///
    /// # Errors
    /// The address cannot be bound, or another `metrics` recorder is installed.
    pub async fn bind_with(
        addr: SocketAddr,
        readiness: Readiness,
        limits: AdminLimits,
    ) -> io::Result<AdminServer> {
        let handle = metrics::install().map_err(io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        // The gauge follows the flag from now on; give it the flag's current value.
        metrics::ready(readiness.is_ready());
        let (shutdown, _) = watch::channel(false);
        Ok(AdminServer {
            listener,
            shared: Arc::new(Shared {
                handle,
                readiness,
                limits,
            }),
            shutdown,
        })
    }

    /// The bound address (the port, when bound to port 0).
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`serve`](Self::serve).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Accepts and answers until [`ShutdownHandle::shutdown`]. An accept error (e.g. out of
    /// descriptors) is logged and retried after a pause; a connection's error closes only that
    /// connection.
    ///
    /// # Errors
    /// None at present: the signature leaves room for a fatal listener error.
    pub async fn serve(self) -> io::Result<()> {
        let AdminServer {
            listener,
            shared,
            shutdown,
        } = self;
        let limits = shared.limits;
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut stop = shutdown.subscribe();
        let mut connections = JoinSet::new();
        let mut upkeep = tokio::time::interval(limits.upkeep_interval);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            let conn = Connection {
                                shared: Arc::clone(&shared),
                                stop: shutdown.subscribe(),
                                _permit: permit,
                            };
                            connections.spawn(conn.run(stream));
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "admin: connection limit reached, closing");
                            metrics::admin_connection_refused();
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "admin: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = upkeep.tick() => shared.handle.run_upkeep(),
            }
        }
        drop(listener);
        // Idle connections saw the stop and close; answers being written get their bound.
        let drained = timeout(limits.write_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
        Ok(())
    }
}

/// Resolves once the stop is asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One accepted connection.
struct Connection {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

/// Why no request head could be read.
enum ReadFailure {
    /// The peer closed, a read failed, the idle time ran out or the server is stopping: close.
    Gone,
    /// Over [`AdminLimits::max_head`]: 431.
    TooLarge,
    /// The head did not complete within [`AdminLimits::head_timeout`]: 408.
    Stalled,
}

impl Connection {
    async fn run(mut self, mut stream: TcpStream) {
        let limits = self.shared.limits;
        let mut buf = BytesMut::with_capacity(1024);
        for served in 1..=limits.max_requests {
            let answer = match self.read_head(&mut stream, &mut buf).await {
                Ok(end) => {
                    let head = buf.split_to(end);
                    let mut answer = self.answer(&head);
                    answer.close |= served == limits.max_requests;
                    answer
                }
                Err(ReadFailure::Gone) => return,
                Err(ReadFailure::TooLarge) => {
                    Answer::error(AdminStatus::HeaderFieldsTooLarge, "request head too large")
                }
                Err(ReadFailure::Stalled) => Answer::error(
                    AdminStatus::RequestTimeout,
                    "request head not complete in time",
                ),
            };
            metrics::admin_request(answer.path, answer.status);
            let close = answer.close;
            let bytes = answer.into_bytes(SystemTime::now());
            match timeout(limits.write_timeout, stream.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            if close {
                linger_close(stream, limits).await;
                return;
            }
        }
    }

    /// Reads until `buf` holds a complete head; returns its length (through the empty line).
    async fn read_head(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
    ) -> Result<usize, ReadFailure> {
        let limits = self.shared.limits;
        let mut started: Option<Instant> = None;
        let idle_deadline = Instant::now() + limits.idle_timeout;
        let mut chunk = [0u8; 4096];
        loop {
            // RFC 9112 §2.2: empty lines before the request line are ignored.
            let blank = buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            buf.advance(blank);
            if !buf.is_empty() && started.is_none() {
                started = Some(Instant::now());
            }
            if let Some(end) = find_head_end(buf, limits.max_head) {
                return Ok(end);
            }
            if buf.len() >= limits.max_head {
                return Err(ReadFailure::TooLarge);
            }
            let deadline = match started {
                Some(t) => t + limits.head_timeout,
                None => idle_deadline,
            };
            let read = tokio::select! {
                () = stopped(&mut self.stop) => return Err(ReadFailure::Gone),
                r = timeout_at(deadline, stream.read(&mut chunk)) => r,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadFailure::Gone),
                Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(_) if started.is_some() => return Err(ReadFailure::Stalled),
                Err(_) => return Err(ReadFailure::Gone),
            }
        }
    }

    /// The answer to one complete head.
    fn answer(&self, head: &[u8]) -> Answer {
        let request = match parse_head(head) {
            Ok(r) => r,
            Err(e) => return Answer::error(e.status(), e.reason()),
        };
        let (path, reply) = route(
            request.method,
            request.target,
            self.shared.readiness.is_ready(),
        );
        let body = match reply.body {
            ReplyBody::Text(t) => t.as_bytes().to_vec(),
            ReplyBody::Metrics => {
                metrics::refresh_process();
                self.shared.handle.render().into_bytes()
            }
        };
        Answer {
            path,
            status: reply.status,
            content_type: reply.content_type,
            allow: reply.allow,
            // RFC 9110 §9.3.2: HEAD gets the headers GET would, without the content.
            send_body: request.method != b"HEAD",
            body,
            // A request with content we did not read leaves the connection unframed
            // (RFC 9112 §6.3): answer it and close.
            close: request.close || request.has_content,
        }
    }
}

/// Closes after an answer that ends the connection: half-close, then read and discard what the
/// client still sends for a short bounded time, so that its unread bytes do not make the kernel
/// reset the connection before the client has read the answer (RFC 9112 §9.6).
async fn linger_close(mut stream: TcpStream, limits: AdminLimits) {
    let linger = Duration::from_millis(500).min(limits.write_timeout);
    let _ = timeout(linger, async {
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Pure part: parsing and routing.

/// Where the head in `buf` ends (the index after its empty line), looking at no more than
/// `max_head` bytes. Lines end in CRLF; a bare LF is accepted as a line end (RFC 9112 §2.2).
pub fn find_head_end(buf: &[u8], max_head: usize) -> Option<usize> {
    let window = buf.get(..max_head).unwrap_or(buf);
    let mut line_start = 0;
    for lf in memchr::memchr_iter(b'\n', window) {
        let line = window.get(line_start..lf)?;
        if line.is_empty() || line == b"\r" {
            return Some(lf + 1);
        }
        line_start = lf + 1;
    }
    None
}

/// A request head, its parts borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method token (case-sensitive, RFC 9110 §9.1).
    pub method: &'a [u8],
    /// The request-target as sent (RFC 9112 §3.2).
    pub target: &'a [u8],
    /// HTTP/1.0 or HTTP/1.1 (the minor version).
    pub minor_version: u8,
    /// The connection closes after the answer: `Connection: close`, or HTTP/1.0 (which this
    /// server does not keep open).
    pub close: bool,
    /// The request has content (`Content-Length` above 0, or `Transfer-Encoding`).
    pub has_content: bool,
}

/// What is wrong with a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not `method SP request-target SP HTTP-version` (RFC 9112 §3).
    #[error("malformed request line")]
    RequestLine,
    /// A version other than HTTP/1.0 and HTTP/1.1 (RFC 9110 §15.6.6: 505).
    #[error("HTTP version not supported")]
    Version,
    /// A header line that is not `name: value`, or an obsolete line folding (RFC 9112 §5).
    #[error("malformed header field")]
    HeaderField,
    /// HTTP/1.1 without exactly one Host (RFC 9112 §3.2: 400).
    #[error("missing or repeated Host")]
    Host,
    /// A Content-Length that is not one decimal number (RFC 9112 §6.3).
    #[error("invalid Content-Length")]
    ContentLength,
}

impl HeadError {
    /// The status code to answer with.
    pub fn status(self) -> AdminStatus {
        match self {
            HeadError::Version => AdminStatus::VersionNotSupported,
            _ => AdminStatus::BadRequest,
        }
    }

    /// A short reason for the body of the answer.
    pub fn reason(self) -> &'static str {
        match self {
            HeadError::RequestLine => "malformed request line",
            HeadError::Version => "HTTP version not supported",
            HeadError::HeaderField => "malformed header field",
            HeadError::Host => "missing or repeated Host",
            HeadError::ContentLength => "invalid Content-Length",
        }
    }
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a complete head (as delimited by [`find_head_end`], empty line included).
///
/// # Errors
/// [`HeadError`], whose [`status`](HeadError::status) is the answer.
pub fn parse_head(head: &[u8]) -> Result<RequestHead<'_>, HeadError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::RequestLine)?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::RequestLine);
    };
    if !is_token(method) || target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HeadError::RequestLine);
    }
    let minor_version = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HeadError::Version);
        }
        _ => return Err(HeadError::RequestLine),
    };
    let mut close = minor_version == 0;
    let mut has_content = false;
    let mut hosts = 0usize;
    let mut content_length: Option<&[u8]> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        // RFC 9112 §5.2: obsolete line folding may be rejected with 400.
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(HeadError::HeaderField);
        }
        let colon = memchr::memchr(b':', line).ok_or(HeadError::HeaderField)?;
        let (name, value) = (line.get(..colon), line.get(colon + 1..));
        let (Some(name), Some(value)) = (name, value) else {
            return Err(HeadError::HeaderField);
        };
        // RFC 9112 §5.1: no whitespace between the name and the colon.
        if !is_token(name) || value.iter().any(|&b| b == b'\r' || b == 0) {
            return Err(HeadError::HeaderField);
        }
        let value = trim_ows(value);
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value
                .split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(b"close"))
            {
                close = true;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_content = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9112 §6.3 item 5: repeated values must agree; one number.
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::ContentLength);
            }
            if content_length.is_some_and(|prev| prev != value) {
                return Err(HeadError::ContentLength);
            }
            content_length = Some(value);
            if value.iter().any(|&b| b != b'0') {
                has_content = true;
            }
        }
    }
    if minor_version == 1 && hosts != 1 {
        return Err(HeadError::Host);
    }
    Ok(RequestHead {
        method,
        target,
        minor_version,
        close,
        has_content,
    })
}

/// What to answer, before the metrics are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: AdminStatus,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Allow`, for a 405 (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
    /// The content.
    pub body: ReplyBody,
}

/// The content of a [`Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBody {
    /// Fixed text.
    Text(&'static str),
    /// The Prometheus exposition, rendered when answering.
    Metrics,
}

/// Prometheus text exposition format (version 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Methods this server knows but does not allow on its paths (RFC 9110 §9): 405, not 501.
const KNOWN_METHODS: [&[u8]; 7] = [
    b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// The path of a request-target: origin-form `/p?q`, or absolute-form `http://host/p?q`
/// (RFC 9112 §3.2.1, §3.2.2).
fn target_path(target: &[u8]) -> &[u8] {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(q) => target.get(..q).unwrap_or(target),
        None => target,
    };
    for scheme in [&b"http://"[..], b"https://"] {
        if path.len() >= scheme.len()
            && path
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        {
            let rest = path.get(scheme.len()..).unwrap_or_default();
            return match rest.iter().position(|&b| b == b'/') {
                Some(slash) => rest.get(slash..).unwrap_or(b"/"),
                None => b"/",
            };
        }
    }
    path
}

/// The answer to `method target`, `ready` being the readiness flag.
pub fn route(method: &[u8], target: &[u8], ready: bool) -> (AdminPath, Reply) {
    let path = match target_path(target) {
        b"/metrics" => AdminPath::Metrics,
        b"/healthz" => AdminPath::Healthz,
        b"/readyz" => AdminPath::Readyz,
        _ => AdminPath::Other,
    };
    let text = |status, body| Reply {
        status,
        content_type: TEXT,
        allow: None,
        body: ReplyBody::Text(body),
    };
    let get_or_head = method == b"GET" || method == b"HEAD";
    if !get_or_head && !KNOWN_METHODS.contains(&method) {
        // RFC 9110 §9.1: a method the server does not recognise.
        return (path, text(AdminStatus::NotImplemented, "not implemented\n"));
    }
    if path == AdminPath::Other {
        return (path, text(AdminStatus::NotFound, "not found\n"));
    }
    if !get_or_head {
        let mut reply = text(AdminStatus::MethodNotAllowed, "method not allowed\n");
        reply.allow = Some("GET, HEAD");
        return (path, reply);
    }
    let reply = match path {
        AdminPath::Metrics => Reply {
            status: AdminStatus::Ok,
            content_type: METRICS_CONTENT_TYPE,
            allow: None,
            body: ReplyBody::Metrics,
        },
        AdminPath::Healthz => text(AdminStatus::Ok, "ok\n"),
        AdminPath::Readyz if ready => text(AdminStatus::Ok, "ready\n"),
        AdminPath::Readyz => text(AdminStatus::Unavailable, "not ready\n"),
        AdminPath::Other => text(AdminStatus::NotFound, "not found\n"),
    };
    (path, reply)
}

/// A response ready to be written.
struct Answer {
    path: AdminPath,
    status: AdminStatus,
    content_type: &'static str,
    allow: Option<&'static str>,
    send_body: bool,
    body: Vec<u8>,
    close: bool,
}

impl Answer {
    /// An error answer that closes the connection.
    fn error(status: AdminStatus, reason: &'static str) -> Answer {
        let mut body = Vec::with_capacity(reason.len() + 1);
        body.extend_from_slice(reason.as_bytes());
        body.push(b'\n');
        Answer {
            path: AdminPath::Other,
            status,
            content_type: TEXT,
            allow: None,
            send_body: true,
            body,
            close: true,
        }
    }

    fn into_bytes(self, now: SystemTime) -> Vec<u8> {
        let head = response_head(
            self.status,
            self.content_type,
            self.allow,
            self.body.len(),
            self.close,
            now,
        );
        let mut out = head.into_bytes();
        if self.send_body {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase of a status (RFC 9110 §15, RFC 6585 §5).
pub fn reason_phrase(status: AdminStatus) -> &'static str {
    match status {
        AdminStatus::Ok => "OK",
        AdminStatus::BadRequest => "Bad Request",
        AdminStatus::NotFound => "Not Found",
        AdminStatus::MethodNotAllowed => "Method Not Allowed",
        AdminStatus::RequestTimeout => "Request Timeout",
        AdminStatus::HeaderFieldsTooLarge => "Request Header Fields Too Large",
        AdminStatus::NotImplemented => "Not Implemented",
        AdminStatus::Unavailable => "Service Unavailable",
        AdminStatus::VersionNotSupported => "HTTP Version Not Supported",
    }
}

/// Status line and header fields of an answer, through the empty line.
pub fn response_head(
    status: AdminStatus,
    content_type: &str,
    allow: Option<&str>,
    content_length: usize,
    close: bool,
    now: SystemTime,
) -> String {
    use std::fmt::Write;
    let mut h = String::with_capacity(192);
    // Writing to a String cannot fail.
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        status.as_str(),
        reason_phrase(status),
        http_date(now),
        content_type,
        content_length
    );
    if let Some(allow) = allow {
        let _ = write!(h, "Allow: {allow}\r\n");
    }
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h
}

/// `IMF-fixdate` (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`: an origin server with
/// a clock sends `Date` (RFC 9110 §6.6.1).
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month} {year:04} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1..=12) and day of the days since 1970-01-01 (the proleptic Gregorian
/// calendar; H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_crlf_and_bare_lf() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 100),
            Some(27)
        );
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 100),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 100), None);
        assert_eq!(find_head_end(b"", 100), None);
        // The end past the window is not seen.
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 20),
            None
        );
    }

    #[test]
    fn parses_a_prometheus_scrape() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        let r = parse_head(head).unwrap();
        assert_eq!(r.method, b"GET");
        assert_eq!(r.target, b"/metrics");
        assert_eq!(r.minor_version, 1);
        assert!(!r.close);
        assert!(!r.has_content);
    }

    #[test]
    fn connection_close_http10_and_content() {
        let r = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(r.unwrap().close);
        let r = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(r.close);
        assert_eq!(r.minor_version, 0);
        let r = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert!(r.has_content);
        let r = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!r.has_content);
        let r = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.unwrap().has_content);
    }

    #[test]
    fn rejects_what_is_malformed() {
        let cases: [(&[u8], HeadError); 14] = [
            (b"\r\n", HeadError::RequestLine),
            (b"GET\r\n\r\n", HeadError::RequestLine),
            (b"GET /\r\n\r\n", HeadError::RequestLine),
            (b"GET  / HTTP/1.1\r\n\r\n", HeadError::RequestLine),
            (b"GET / HTTP/1.1 x\r\n\r\n", HeadError::RequestLine),
            (b"G(T / HTTP/1.1\r\n\r\n", HeadError::RequestLine),
            (b"GET / FTP/1.1\r\n\r\n", HeadError::RequestLine),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", HeadError::Version),
            (b"GET / HTTP/1.1\r\n\r\n", HeadError::Host),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                HeadError::Host,
            ),
            (
                b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                HeadError::HeaderField,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                HeadError::HeaderField,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n",
                HeadError::HeaderField,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HeadError::ContentLength,
            ),
        ];
        for (head, want) in cases {
            assert_eq!(
                parse_head(head),
                Err(want),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::ContentLength)
        );
        assert_eq!(
            HeadError::Version.status(),
            AdminStatus::VersionNotSupported
        );
        assert_eq!(HeadError::Host.status(), AdminStatus::BadRequest);
    }

    #[test]
    fn never_panics_on_any_prefix_of_odd_input() {
        let inputs: [&[u8]; 5] = [
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"\xff\xfe\x00 \x00 HTTP/1.1\r\n:\r\n\r\n",
            b"GET http:// HTTP/1.1\r\nHost:\r\n\r\n",
            b"A B HTTP/9.9\n\n",
            b"::::\r\n\r\n\r\n",
        ];
        for input in inputs {
            for end in 0..=input.len() {
                let part = input.get(..end).unwrap_or_default();
                let _ = find_head_end(part, 64);
                if let Ok(r) = parse_head(part) {
                    let _ = route(r.method, r.target, true);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_answered_without_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Some(end) = find_head_end(&input, 512) {
                proptest::prop_assert!(end <= input.len().min(512));
                if let Ok(r) = parse_head(input.get(..end).unwrap_or_default()) {
                    let _ = route(r.method, r.target, false);
                }
            }
            let _ = parse_head(&input);
        }

        #[test]
        fn well_formed_requests_parse(
            method in "GET|HEAD|POST|[A-Z]{1,8}",
            path in "/[a-z/?=&.]{0,40}",
            extra in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..8),
        ) {
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            for (name, value) in &extra {
                let lower = name.to_ascii_lowercase();
                if ["host", "content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
                    continue;
                }
                head.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            head.push_str("\r\n");
            let end = find_head_end(head.as_bytes(), 8192);
            proptest::prop_assert_eq!(end, Some(head.len()));
            let r = parse_head(head.as_bytes()).unwrap();
            proptest::prop_assert_eq!(r.method, method.as_bytes());
            proptest::prop_assert_eq!(r.target, path.as_bytes());
            proptest::prop_assert!(!r.close && !r.has_content);
        }
    }

    #[test]
    fn routes() {
        let (p, r) = route(b"GET", b"/metrics", false);
        assert_eq!(
            (p, r.status, r.body),
            (AdminPath::Metrics, AdminStatus::Ok, ReplyBody::Metrics)
        );
        assert_eq!(r.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(
            route(b"GET", b"/metrics?x=1", false).1.status,
            AdminStatus::Ok
        );
        assert_eq!(
            route(b"GET", b"http://127.0.0.1:9464/metrics", false).0,
            AdminPath::Metrics
        );
        assert_eq!(route(b"GET", b"http://host", false).0, AdminPath::Other);
        assert_eq!(route(b"HEAD", b"/healthz", false).1.status, AdminStatus::Ok);
        assert_eq!(
            route(b"GET", b"/healthz", false).1.body,
            ReplyBody::Text("ok\n")
        );
        assert_eq!(route(b"GET", b"/readyz", true).1.status, AdminStatus::Ok);
        assert_eq!(
            route(b"GET", b"/readyz", false).1.status,
            AdminStatus::Unavailable
        );
        assert_eq!(route(b"GET", b"/", true).1.status, AdminStatus::NotFound);
        assert_eq!(
            route(b"GET", b"/metricsx", true).1.status,
            AdminStatus::NotFound
        );
        let (_, r) = route(b"POST", b"/metrics", true);
        assert_eq!(
            (r.status, r.allow),
            (AdminStatus::MethodNotAllowed, Some("GET, HEAD"))
        );
        assert_eq!(
            route(b"POST", b"/nope", true).1.status,
            AdminStatus::NotFound
        );
        assert_eq!(
            route(b"BREW", b"/metrics", true).1.status,
            AdminStatus::NotImplemented
        );
        // Methods are case-sensitive (RFC 9110 §9.1).
        assert_eq!(
            route(b"get", b"/metrics", true).1.status,
            AdminStatus::NotImplemented
        );
    }

    #[test]
    fn response_heads() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let h = response_head(
            AdminStatus::MethodNotAllowed,
            TEXT,
            Some("GET, HEAD"),
            19,
            true,
            t,
        );
        assert_eq!(
            h,
            "HTTP/1.1 405 Method Not Allowed\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\n\
             Allow: GET, HEAD\r\nConnection: close\r\n\r\n"
        );
        for s in AdminStatus::ALL {
            assert!(!reason_phrase(*s).is_empty());
        }
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31 23:59:59
        assert_eq!(http_date(t), "Thu, 31 Dec 2026 23:59:59 GMT");
    }
}
