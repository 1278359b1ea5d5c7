//! `grafana/cpm-iwf.json` against `src/metrics.rs`: every metric a panel queries is declared,
//! every declared metric is on a panel, every label a panel groups or names in a legend is a
//! declared label, and the file has the shape Grafana imports (schemaVersion, the data source
//! and instance variables, unique panel ids inside the 24-column grid).
//!
//! Two `#[ignore]`d tests need the Debian `prometheus` package (`.ci/test.sh` installs it and runs
//! them; they fail when it is missing): `promtool check rules` parses every expression, and a
//! real Prometheus scraping a real node (traffic from test peers) returns data for every
//! expression, while `promtool check metrics` accepts the node's `/metrics`.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use cpm_iwf::metrics::{self, MetricKind};
use serde_json::Value;

#[path = "peers/chat.rs"]
mod chat;
#[path = "peers/gateway.rs"]
mod gateway;
#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

const DASHBOARD: &str = include_str!("../grafana/cpm-iwf.json");

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("grafana/cpm-iwf.json is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// `(panel title, expr, legendFormat)` of every query.
fn queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_owned();
            let legend = t["legendFormat"].as_str().unwrap_or_default().to_owned();
            out.push((title.clone(), expr, legend));
        }
    }
    out
}

/// What an expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Metric names (series selectors).
    metrics: Vec<String>,
    /// Labels in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`, `group_*(...)`, and
    /// label names in matchers.
    labels: Vec<String>,
}

const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Operators and aggregations that may stand without parentheses right after them
/// (`sum by (x) (...)`).
const KEYWORDS: [&str; 18] = [
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// A small PromQL scanner: enough to tell metric names from functions, keywords, label lists,
/// matchers, ranges, strings and numbers.
fn refs(expr: &str) -> Refs {
    let b = expr.as_bytes();
    let mut r = Refs::default();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c == b'{' {
            // Matchers: label names before =, !=, =~, !~; values are strings.
            i += 1;
            while i < b.len() && b[i] != b'}' {
                if b[i] == b'"' {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                } else if ident(b[i]) {
                    let s = i;
                    while i < b.len() && ident(b[i]) {
                        i += 1;
                    }
                    r.labels.push(expr[s..i].to_owned());
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == b'$' {
            i += 1;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if ident(c) {
            let s = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[s..i];
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let call = b.get(j) == Some(&b'(');
            if GROUPING.contains(&word) {
                if call {
                    let close = expr[j..].find(')').map_or(b.len(), |k| j + k);
                    for l in expr[j + 1..close].split(',') {
                        let l = l.trim();
                        if !l.is_empty() {
                            r.labels.push(l.to_owned());
                        }
                    }
                    i = close + 1;
                }
            } else if !call && !KEYWORDS.contains(&word) {
                r.metrics.push(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    r
}

/// The declared metric a series name belongs to (histograms expose `_bucket`, `_sum`, `_count`).
fn declared(series: &str) -> Option<&'static metrics::Metric> {
    metrics::ALL.iter().find(|m| {
        m.name == series
            || (m.kind == MetricKind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| series.strip_suffix(s) == Some(m.name)))
    })
}

/// Labels every series has once scraped, besides the declared ones.
const TARGET_LABELS: [&str; 3] = ["instance", "job", "le"];

#[test]
fn scanner_tells_metrics_from_the_rest() {
    let r = refs(
        r#"histogram_quantile(0.99, sum by (le, side) (rate(a_bucket{instance=~"$instance",x="}"}[$__rate_interval]))) / on (side) b offset 5m and time() - c"#,
    );
    assert_eq!(r.metrics, ["a_bucket", "b", "c"]);
    assert_eq!(r.labels, ["le", "side", "instance", "x", "side"]);
}

#[test]
fn dashboard_has_the_shape_grafana_imports() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 39);
    assert_eq!(d["uid"], "cpm-iwf");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a data source variable");
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    let instance = vars
        .iter()
        .find(|v| v["name"] == "instance")
        .expect("an instance variable");
    assert_eq!(instance["type"], "query");
    assert_eq!(instance["datasource"]["uid"], "${DS_PROMETHEUS}");
    assert!(d["__inputs"][0]["name"] == "DS_PROMETHEUS");

    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    for p in panels(&d) {
        assert!(
            ids.insert(p["id"].as_u64().expect("numeric id")),
            "duplicate id"
        );
        let title = p["title"].as_str().expect("title");
        assert!(titles.insert(title), "duplicate title {title}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0, "{title}: {g}");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        let mut ref_ids = HashSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            assert!(ref_ids.insert(t["refId"].as_str().unwrap()), "{title}");
            let expr = t["expr"].as_str().unwrap();
            // Every series selector is scoped to the chosen instances.
            for m in refs(expr).metrics {
                assert!(
                    expr.contains(&format!("{m}{{instance=~\"$instance\"")),
                    "{title}: {m} not filtered by $instance in {expr}"
                );
            }
        }
    }
}

#[test]
fn every_metric_in_the_dashboard_is_declared() {
    let d = dashboard();
    for (title, expr, _) in queries(&d) {
        let r = refs(&expr);
        assert!(!r.metrics.is_empty(), "{title}: no metric in {expr}");
        for m in r.metrics {
            assert!(
                declared(&m).is_some(),
                "{title}: {m} is not declared in src/metrics.rs"
            );
        }
    }
}

#[test]
fn every_declared_metric_has_a_panel() {
    let d = dashboard();
    let used: BTreeSet<&str> = queries(&d)
        .iter()
        .flat_map(|(_, e, _)| refs(e).metrics)
        .filter_map(|m| declared(&m).map(|d| d.name))
        .collect();
    let missing: Vec<&str> = metrics::NAMES
        .iter()
        .copied()
        .filter(|n| !used.contains(n))
        .collect();
    assert!(missing.is_empty(), "declared but on no panel: {missing:?}");
}

#[test]
fn labels_in_panels_are_declared() {
    let d = dashboard();
    for (title, expr, legend) in queries(&d) {
        let r = refs(&expr);
        let mut allowed: HashSet<&str> = TARGET_LABELS.into_iter().collect();
        for m in &r.metrics {
            if let Some(decl) = declared(m) {
                allowed.extend(decl.labels.iter().copied());
            }
        }
        for l in &r.labels {
            assert!(allowed.contains(l.as_str()), "{title}: label {l} in {expr}");
        }
        let mut rest = legend.as_str();
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").expect("closed {{") + start;
            let l = rest[start + 2..end].trim();
            assert!(allowed.contains(l), "{title}: legend label {l}");
            rest = &rest[end + 2..];
        }
    }
}

/// The expressions as Prometheus itself would get them from Grafana, variables expanded.
fn expanded(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$instance", ".*")
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); .ci/test.sh installs it and runs it"]
fn promtool_parses_every_expression() {
    let d = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr, _)) in queries(&d).iter().enumerate() {
        let expr = expanded(expr).replace('\'', "''");
        rules.push_str(&format!(
            "      - record: cpm_iwf:dashboard_{i}\n        expr: '{expr}'\n"
        ));
    }
    let dir = scratch_dir("promtool-rules");
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool must be installed (Debian package prometheus)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scratch_dir(what: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("cpm-iwf-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Prometheus server run for one test; killed and its data removed on drop.
struct Prometheus {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts `prometheus` on a free loopback port, scraping `target` every second.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = scratch_dir("prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cpm-iwf\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port: bind 0, read it back, release it for Prometheus.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus must be installed (Debian package prometheus)");
        Prometheus { child, dir, addr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

/// `GET path` on `addr`, answer status and body (HTTP/1.1, Connection: close).
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Un-chunks a `Transfer-Encoding: chunked` body (RFC 9112 §7.1).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default();
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One pager MESSAGE CPM -> SIMPLE through the node, answered 200, and a garbage datagram.
async fn pager_traffic(bed: &mut gateway::Bed, n: u32) {
    let bob = bed.simple.aor();
    let node_cpm = bed.node_cpm();
    let msg = bed
        .cpm
        .new_message(
            &bob,
            "text/plain",
            bytes::Bytes::from(format!("scrape me {n}")),
        )
        .expect("MESSAGE");
    let (answer, _) = tokio::join!(bed.cpm.request(node_cpm, msg), async {
        let tx = bed
            .simple
            .recv_method(rsip::Method::Message, None)
            .await
            .expect("MESSAGE at SIMPLE");
        bed.simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
    });
    assert_eq!(answer.expect("answered").status_code(), Some(200));
    bed.cpm
        .send_raw(node_cpm, bytes::Bytes::from_static(b"\x00garbage\r\n\r\n"))
        .await
        .expect("send");
    // A MESSAGE whose CPIM is malformed: refused (400, a translation failure), and sent twice
    // as a UDP retransmission would be (absorbed by the server transaction).
    let bad = bed
        .cpm
        .new_message(
            &bob,
            "message/cpim",
            bytes::Bytes::from_static(b"not CPIM at all"),
        )
        .expect("MESSAGE")
        .serialize();
    for _ in 0..2 {
        bed.cpm.send_raw(node_cpm, bad.clone()).await.expect("send");
    }
}

/// A chat session through the node: a few MSRP messages each way, then BYE.
async fn chat_traffic(transport: sip_ua::Transport) -> gateway::Bed {
    let mut c = chat::set_up(transport).await;
    let (ar, aw) = (&mut c.alice.0, &mut c.alice.1);
    let (br, bw) = (&mut c.bob.0, &mut c.bob.1);
    for i in 0..5 {
        let m = chat::send(
            aw,
            &format!("scrape-{i:04}"),
            "text/plain",
            bytes::Bytes::from_static(b"hello"),
        );
        aw.send(&m).await.expect("send");
        chat::ok(ar).await;
        let got = chat::next_request(br).await;
        bw.send(&bw.respond(&got, 200)).await.expect("200");
    }
    let mut dialog = c.cpm_dialog.clone();
    let (bye, _) = tokio::join!(c.bed.cpm.bye(&mut dialog), async {
        let tx = c
            .bed
            .simple
            .recv_method(rsip::Method::Bye, None)
            .await
            .expect("BYE at SIMPLE");
        c.bed
            .simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
    });
    assert_eq!(bye.expect("BYE answered").status_code(), Some(200));
    c.bed
}

/// A real node scraped by a real Prometheus while test peers drive traffic through it (pager
/// MESSAGEs, a chat session with MSRP, malformed input): every expression of every panel must
/// return data, and `promtool check metrics` must find nothing wrong in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (Debian package prometheus); .ci/test.sh installs it and runs it"]
async fn every_expression_returns_data_from_a_real_prometheus() {
    use tokio::time::{Instant, sleep, timeout};

    let mut bed = timeout(
        Duration::from_secs(30),
        chat_traffic(sip_ua::Transport::Udp),
    )
    .await
    .expect("the chat session ran in time");
    let target = bed.node.listening.admin;
    let prometheus = Prometheus::start(target);
    let deadline = Instant::now() + Duration::from_secs(60);

    // Prometheus up and scraping the node, traffic going on so that rates have two points.
    let mut n = 0;
    loop {
        n += 1;
        timeout(Duration::from_secs(10), pager_traffic(&mut bed, n))
            .await
            .expect("pager traffic in time");
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped cpm-iwf:\n{}",
            prometheus.log()
        );
        if let Ok(Ok((200, body))) = timeout(
            Duration::from_secs(2),
            http_get(
                prometheus.addr,
                "/api/v1/query?query=count_over_time(up%5B1m%5D)",
            ),
        )
        .await
        {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let count = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            if count >= 4 {
                break;
            }
        }
        sleep(Duration::from_millis(500)).await;
    }

    // The node's own exposition passes promtool.
    let (status, body) = timeout(Duration::from_secs(5), http_get(target, "/metrics"))
        .await
        .expect("metrics in time")
        .expect("metrics");
    assert_eq!(status, 200);
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package prometheus)");
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(dechunk(&body).as_bytes())
            .expect("write");
    }
    let out = check.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let d = dashboard();
    let mut empty = Vec::new();
    for (title, expr, _) in queries(&d) {
        let q = expanded(&expr);
        let (status, body) = timeout(
            Duration::from_secs(5),
            http_get(
                prometheus.addr,
                &format!("/api/v1/query?query={}", encode(&q)),
            ),
        )
        .await
        .expect("prometheus answers in time")
        .expect("query");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{title}: {e}: {body}"));
        assert_eq!(status, 200, "{title}: {q}: {v}");
        assert_eq!(v["status"], "success", "{title}: {q}: {v}");
        let n = v["data"]["result"].as_array().map_or(0, Vec::len);
        if n == 0 {
            empty.push(format!("{title}: {q}"));
        }
    }
    drop(prometheus);
    bed.stop().await;
    assert!(
        empty.is_empty(),
        "expressions with no data:\n{}",
        empty.join("\n")
    );
}

/// README's metrics table names every declared metric, with its type and labels.
#[test]
fn readme_documents_every_metric() {
    let readme = include_str!("../README.md");
    for m in metrics::ALL {
        let kind = format!("{:?}", m.kind).to_lowercase();
        let labels = if m.labels.is_empty() {
            "—".to_string()
        } else {
            m.labels.join(", ")
        };
        let row = format!("| `{}` | {kind} | {labels} |", m.name);
        assert!(readme.contains(&row), "README lacks the row starting {row}");
    }
}
