//! The admin HTTP server on 127.0.0.1 (ephemeral ports): the Prometheus exposition of the
//! metrics recorded through `cpm_iwf::metrics`, health and readiness, and what it does with bad,
//! oversized, stalled and excess clients. Every wait on the server is under a timeout.
//!
//! `promtool_accepts_the_exposition` is `#[ignore]`d: `.ci/test.sh` runs it with the Debian
//! `prometheus` package installed (it fails when `promtool` is missing).

use std::net::SocketAddr;
use std::time::Duration;

use cpm_iwf::metrics::{
    self, AclTransport, Direction, FailureReason, Method, MetricKind, RelayDirection, TableKind,
    TranslationKind,
};
use cpm_iwf::node::admin::{AdminLimits, AdminServer, Readiness, ShutdownHandle};
use cpm_iwf::translate::state::Side;
use cpm_iwf::wire::Answer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Longest any single wait on the server may take in these tests.
const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    readiness: Readiness,
    stop: ShutdownHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: AdminLimits) -> Server {
        let readiness = Readiness::new();
        let server =
            AdminServer::bind_with("127.0.0.1:0".parse().unwrap(), readiness.clone(), limits)
                .await
                .expect("bind the admin server");
        let addr = server.local_addr().unwrap();
        let stop = server.shutdown_handle();
        let task = tokio::spawn(server.serve());
        Server {
            addr,
            readiness,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.shutdown();
        let done = timeout(WAIT, self.task).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "serve did not return: {done:?}"
        );
    }
}

fn short_limits() -> AdminLimits {
    AdminLimits {
        max_head: 1024,
        max_connections: 4,
        head_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(3),
        write_timeout: Duration::from_secs(2),
        max_requests: 5,
        upkeep_interval: Duration::from_millis(200),
    }
}

/// One response as read from the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from `stream` (`buf` keeps bytes of the next); `head_only` for HEAD.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Response {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("name: value");
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("Content-Length");
    let len = if head_only { 0 } else { len };
    while buf.len() < end + len {
        let mut chunk = [0u8; 16384];
        let n = timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("body in time")
            .expect("read");
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Response {
        status,
        headers,
        body,
    }
}

/// Whether the server closed `stream` (EOF or reset) within [`WAIT`].
async fn closed(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match timeout(WAIT, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Sends one request and reads its response on a fresh connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = connect(addr).await;
    s.write_all(request).await.unwrap();
    let head_only = request.starts_with(b"HEAD ");
    read_response(&mut s, &mut Vec::new(), head_only).await
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes()).await
}

/// The value of the sample line `series` (name and labels exactly as rendered).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Records one of everything, through the helpers the node calls.
fn record_everything() {
    metrics::sip_request(Side::Cpm, Direction::In, Method::Message);
    metrics::sip_response(Side::Simple, Direction::Out, Method::Message, 202);
    metrics::sip_message(Side::Cpm, Direction::Out, Method::Invite, None);
    metrics::sip_message(Side::Cpm, Direction::In, Method::Invite, Some(486));
    metrics::retransmission(Side::Simple, Direction::Out, Method::Invite);
    metrics::sip_parse_error(Side::Simple, Answer::Status(400));
    metrics::transaction_duration(Side::Simple, Method::Message, Duration::from_millis(12));
    metrics::transaction_timeout(Side::Cpm, Method::Bye);
    metrics::acl_drop(Side::Cpm, AclTransport::SipUdp);
    metrics::translation(Side::Cpm, TranslationKind::Pager);
    metrics::translation_failure(Side::Simple, TranslationKind::Imdn, FailureReason::Imdn);
    metrics::processing_duration(TranslationKind::Pager, Duration::from_micros(40));
    metrics::dialogs_active(2);
    metrics::dialogs_active(-1);
    metrics::msrp_sessions_active(1);
    metrics::msrp_chunk(RelayDirection::CpmToSimple, 1200);
    metrics::msrp_bytes(RelayDirection::SimpleToCpm, 10);
    metrics::table_entries(TableKind::Message, 7);
    metrics::table_capacity(TableKind::Message, 100_000);
    metrics::table_refused(TableKind::Dialog);
    metrics::table_expired(TableKind::Conversation, 3);
    metrics::admin_connection_refused();
}

#[tokio::test]
async fn metrics_exposition_has_every_declared_family() {
    let server = Server::start(short_limits()).await;
    record_everything();
    // A request first, so that the admin request counter has a sample too.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);

    let r = get(server.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    let text = r.text();
    for m in metrics::ALL {
        assert!(
            text.contains(&format!("# HELP {} {}\n", m.name, m.help)),
            "no HELP for {}\n{text}",
            m.name
        );
        assert!(
            text.contains(&format!("# TYPE {} {}\n", m.name, m.kind.as_str())),
            "no TYPE for {}",
            m.name
        );
        let sample_name = match m.kind {
            MetricKind::Histogram => format!("{}_bucket{{", m.name),
            _ => m.name.to_owned(),
        };
        assert!(
            text.lines().any(|l| l.starts_with(&sample_name)),
            "no sample of {}",
            m.name
        );
    }

    let at_least = |series: &str, min: f64| {
        let v = sample(&text, series).unwrap_or_else(|| panic!("no {series}\n{text}"));
        assert!(v >= min, "{series} = {v}");
    };
    at_least(
        r#"cpm_iwf_sip_requests_total{side="cpm",direction="in",method="MESSAGE"}"#,
        1.0,
    );
    at_least(
        r#"cpm_iwf_sip_responses_total{side="simple",direction="out",method="MESSAGE",status_class="2xx"}"#,
        1.0,
    );
    at_least(
        r#"cpm_iwf_sip_responses_total{side="cpm",direction="in",method="INVITE",status_class="4xx"}"#,
        1.0,
    );
    at_least(
        r#"cpm_iwf_sip_parse_errors_total{side="simple",status="400"}"#,
        1.0,
    );
    at_least(
        r#"cpm_iwf_acl_drops_total{side="cpm",transport="sip_udp"}"#,
        1.0,
    );
    at_least(
        r#"cpm_iwf_translation_failures_total{side="simple",kind="imdn",reason="imdn"}"#,
        1.0,
    );
    at_least(
        r#"cpm_iwf_msrp_relayed_bytes_total{direction="cpm_to_simple"}"#,
        1200.0,
    );
    at_least(r#"cpm_iwf_table_expired_total{kind="conversation"}"#, 3.0);
    at_least(r#"cpm_iwf_table_capacity{kind="message"}"#, 100_000.0);
    at_least(
        r#"cpm_iwf_admin_requests_total{path="/healthz",status="200"}"#,
        1.0,
    );
    at_least(
        &format!(
            r#"cpm_iwf_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    at_least("cpm_iwf_process_resident_memory_bytes", 1.0);
    at_least("cpm_iwf_process_open_fds", 1.0);
    at_least("cpm_iwf_process_start_time_seconds", 1.7e9);
    // Counters of the small label sets exist at 0 from the start.
    assert!(
        sample(
            &text,
            r#"cpm_iwf_acl_drops_total{side="simple",transport="msrp"}"#
        )
        .is_some()
    );
    // The processing histogram's buckets run from 10 µs to 1 s; 40 µs is in the 50 µs bucket.
    at_least(
        r#"cpm_iwf_processing_duration_seconds_bucket{kind="pager",le="0.00005"}"#,
        1.0,
    );
    assert!(
        text.contains(r#"cpm_iwf_processing_duration_seconds_bucket{kind="pager",le="0.00001"}"#)
    );
    assert!(text.contains(r#"cpm_iwf_processing_duration_seconds_bucket{kind="pager",le="1"}"#));
    at_least(
        r#"cpm_iwf_sip_transaction_duration_seconds_bucket{side="simple",method="MESSAGE",le="0.025"}"#,
        1.0,
    );
    // No label carries anything but the fixed values.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(!line.contains('@') && !line.contains("sip:"), "{line}");
    }

    // HEAD: the same headers, no content.
    let mut s = connect(server.addr).await;
    let head = format!("HEAD /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, true).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );
    // The connection stays open and the next answer follows directly (no stray body).
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));

    server.stop().await;
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_flag() {
    let server = Server::start(short_limits()).await;
    let r = get(server.addr, "/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(r.header("connection"), Some("close"));

    let r = get(server.addr, "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (503, "not ready\n"));
    server.readiness.set(true);
    assert!(server.readiness.is_ready());
    let r = get(server.addr, "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    // A listener going down: the node clears the flag.
    server.readiness.set(false);
    assert_eq!(get(server.addr, "/readyz").await.status, 503);
    // Health does not depend on readiness.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let server = Server::start(short_limits()).await;
    assert_eq!(get(server.addr, "/").await.status, 404);
    assert_eq!(get(server.addr, "/metrics/x").await.status, 404);
    assert_eq!(get(server.addr, "/metrics?name[]=x").await.status, 200);
    let post = format!(
        "POST /metrics HTTP/1.1\r\nHost: {}\r\nContent-Length: 3\r\n\r\nabc",
        server.addr
    );
    let r = exchange(server.addr, post.as_bytes()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // It had content the server did not read: the connection closes after the answer.
    assert_eq!(r.header("connection"), Some("close"));
    let r = exchange(
        server.addr,
        format!("BREW /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 501);
    server.stop().await;
}

#[tokio::test]
async fn bad_request_lines_get_400_and_a_close() {
    let server = Server::start(short_limits()).await;
    let bad: [&[u8]; 5] = [
        b"GARBAGE\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"\x00\x01\x02 \xff HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for req in bad {
        let mut s = connect(server.addr).await;
        s.write_all(req).await.unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false).await;
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed(&mut s).await);
    }
    let r = exchange(server.addr, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 505);
    // The server still serves.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn too_large_head_gets_431_or_a_close() {
    let server = Server::start(short_limits()).await;
    let mut s = connect(server.addr).await;
    let mut req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", server.addr).into_bytes();
    for i in 0..100 {
        req.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(40)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert!(req.len() > 1024);
    // The server may stop reading and close while this is being written.
    let _ = timeout(WAIT, s.write_all(&req)).await;
    let mut buf = Vec::new();
    let mut sink = [0u8; 4096];
    loop {
        match timeout(WAIT, s.read(&mut sink))
            .await
            .expect("an answer or a close in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&sink[..n]),
        }
    }
    if !buf.is_empty() {
        assert!(
            buf.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_pipelining_and_request_limit() {
    let server = Server::start(short_limits()).await;
    let mut s = connect(server.addr).await;
    let one = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    // Two requests in one write, and a leading empty line (RFC 9112 §2.2), answered in order.
    let two = format!("\r\n{one}{}", one.replace("/healthz", "/readyz"));
    s.write_all(two.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).await.status, 200);
    assert_eq!(read_response(&mut s, &mut buf, false).await.status, 503);
    // A request split across writes.
    let (a, b) = one.split_at(7);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).await.status, 200);
    // max_requests = 5: the fifth answer closes the connection.
    s.write_all(one.as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.header("connection"), None);
    s.write_all(one.as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut s).await);
    server.stop().await;
}

#[tokio::test]
async fn stalled_head_gets_408_while_others_are_served() {
    let server = Server::start(short_limits()).await;
    let mut slow = connect(server.addr).await;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // Another client is served meanwhile.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    let started = tokio::time::Instant::now();
    let r = read_response(&mut slow, &mut Vec::new(), false).await;
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(closed(&mut slow).await);
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let server = Server::start(short_limits()).await;
    // Four idle connections hold every slot (max_connections = 4).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect(server.addr).await;
        // A complete exchange proves the connection has been accepted and holds a slot.
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
        s.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(
            read_response(&mut s, &mut Vec::new(), false).await.status,
            200
        );
        held.push(s);
    }
    let mut extra = connect(server.addr).await;
    assert!(closed(&mut extra).await, "a fifth connection is closed");
    // One slot frees: a new connection is served.
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        let mut s = connect(server.addr).await;
        let req = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        );
        let _ = s.write_all(req.as_bytes()).await;
        let mut buf = Vec::new();
        let _ = timeout(WAIT, s.read_to_end(&mut buf)).await;
        if buf.starts_with(b"HTTP/1.1 200 OK\r\n") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let server = Server::start(short_limits()).await;
    let addr = server.addr;
    let mut idle = connect(addr).await;
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    idle.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut idle, &mut Vec::new(), false)
            .await
            .status,
        200
    );
    server.stop().await;
    assert!(closed(&mut idle).await);
    assert!(
        timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
#[ignore = "needs promtool (Debian package prometheus); .ci/test.sh installs it and runs it"]
async fn promtool_accepts_the_exposition() {
    let server = Server::start(short_limits()).await;
    record_everything();
    let exposition = get(server.addr, "/metrics").await.body;
    server.stop().await;

    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package prometheus)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&exposition).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{report}");
    assert!(
        report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}
