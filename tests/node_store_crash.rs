//! Nothing accepted is lost, not even by a crash (issue 7): the `cpm-iwf` binary takes pager
//! MESSAGEs for users who are not available (their network answers 480) from four senders at
//! once, is killed with SIGKILL at a random point, and started again on the same store; then
//! the users are back. Every message that was answered 202 is delivered, none twice, each
//! user's in the order they were accepted. For the embedded store (redb) and for Redis (that
//! one is `#[ignore]`d: it needs `redis-server`, which `.ci/test.sh` installs).

#[path = "peers/redis_server.rs"]
mod redis_server;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::Method;
use sip_ua::{SipUa, Transport, UaConfig};
use tokio::sync::Mutex;

const SENDERS: usize = 4;
const USERS: usize = 5;
const PER_SENDER: usize = 150;

fn lo0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// The node as a child process, SIGKILLed when dropped.
struct NodeProcess(Child);

impl NodeProcess {
    fn start(config: &std::path::Path) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
            .args(["run", "--log-format", "text", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the node never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        assert!(line.contains("listening"), "node did not start: {line:?}");
        NodeProcess(child)
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config_text(
    location: &str,
    cpm_port: u16,
    simple_port: u16,
    cpm_ua: SocketAddr,
    simple_ua: SocketAddr,
) -> String {
    format!(
        "admin_listen = \"127.0.0.1:0\"\n\
         [timers]\nprobe_interval_ms = 0\nt1_ms = 200\n\
         [cpm]\nsip_udp = [\"127.0.0.1:{cpm_port}\"]\nsip_tcp = []\nmsrp_listen = \"127.0.0.1:0\"\n\
         next_hops = [{{ address = \"{cpm_ua}\", transport = \"udp\" }}]\n\
         [simple]\nsip_udp = [\"127.0.0.1:{simple_port}\"]\nsip_tcp = []\nmsrp_listen = \"127.0.0.1:0\"\n\
         next_hops = [{{ address = \"{simple_ua}\", transport = \"udp\" }}]\n\
         [store]\nlocation = \"{location}\"\n[availability]\nretry_initial_ms = 300\nretry_max_ms = 600\n"
    )
}

fn cpim(from: &str, to: &str, id: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\nimdn.Disposition-Notification: positive-delivery\r\n\
\r\nContent-Type: text/plain\r\n\r\nkept {id}"
    ))
}

fn message_id(m: &cpm_iwf::wire::sip::SipMessage) -> String {
    String::from_utf8_lossy(m.body())
        .lines()
        .find_map(|l| l.strip_prefix("imdn.Message-ID: "))
        .unwrap_or_default()
        .to_string()
}

fn ua(user: &str, domain: &str) -> UaConfig {
    UaConfig {
        user: user.into(),
        domain: domain.into(),
        t1: Duration::from_millis(200),
        wait: Duration::from_secs(3),
        ..UaConfig::default()
    }
}

/// A small deterministic generator (the seed is printed, so a failing round can be replayed).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

async fn crash_round(location: &str, seed: u64) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    eprintln!("crash round: store {location}, seed {seed}");
    let simple = SipUa::bind_with(Transport::Udp, lo0(), ua("store", "simple.example.net"))
        .await
        .expect("SIMPLE UA");
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(
            SipUa::bind_with(
                Transport::Udp,
                lo0(),
                ua(&format!("s{i}"), "cpm.example.net"),
            )
            .await
            .expect("CPM UA"),
        );
    }
    let (cpm_port, simple_port) = (free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        config_text(
            location,
            cpm_port,
            simple_port,
            senders[0].local_addr(),
            simple.local_addr(),
        ),
    )
    .expect("config");
    let node = NodeProcess::start(&cfg);
    let node_cpm = SocketAddr::from(([127, 0, 0, 1], cpm_port));

    // The users are offline: their network answers 480 to everything.
    let offline = Arc::new(AtomicBool::new(true));
    let simple = Arc::new(Mutex::new(simple));
    let refuser = {
        let (simple, offline) = (simple.clone(), offline.clone());
        tokio::spawn(async move {
            let mut ua = simple.lock().await;
            while offline.load(Ordering::SeqCst) {
                if let Ok(tx) = ua
                    .recv_method(Method::Message, Some(Duration::from_millis(50)))
                    .await
                {
                    let _ = ua
                        .respond(&tx, 480, "Temporarily Unavailable", &[], None)
                        .await;
                }
            }
        })
    };
    // Four senders, each to the five users in turn; what got 202, in order.
    let mut tasks = Vec::new();
    for (s, mut ua) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..PER_SENDER {
                let user = format!("sip:u{}@simple.example.net", i % USERS);
                let id = format!("K-{s}-{i}");
                let from = ua.aor();
                let Ok(msg) = ua.new_message(&user, "message/cpim", cpim(&from, &user, &id)) else {
                    break;
                };
                match ua.request(node_cpm, msg).await {
                    Ok(r) if r.status_code() == Some(202) => accepted.push((user, id)),
                    Ok(r) => panic!("{id}: {:?} instead of 202", r.status_code()),
                    // The node is gone.
                    Err(_) => break,
                }
            }
            accepted
        }));
    }
    // SIGKILL at a random point of the run.
    let kill_after = Duration::from_millis(150 + next(&mut rng) % 900);
    tokio::time::sleep(kill_after).await;
    node.kill();
    let mut accepted: Vec<(String, String)> = Vec::new();
    for t in tasks {
        accepted.extend(t.await.expect("sender"));
    }
    offline.store(false, Ordering::SeqCst);
    refuser.await.expect("refuser");
    eprintln!(
        "killed after {kill_after:?}: {} messages had 202",
        accepted.len()
    );
    assert!(
        !accepted.is_empty(),
        "nothing was accepted before the kill: the round tests nothing"
    );

    // Start again on the same store; the users are back (the node resumes what it kept).
    let _node = NodeProcess::start(&cfg);
    let want: HashSet<&str> = accepted.iter().map(|(_, id)| id.as_str()).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    let mut ua = simple.lock().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = None;
    while Instant::now() < deadline {
        match ua
            .recv_method(Method::Message, Some(Duration::from_millis(200)))
            .await
        {
            Ok(tx) => {
                quiet_since = None;
                let id = message_id(&tx.request);
                let user = String::from_utf8_lossy(tx.request.request_uri().unwrap_or_default())
                    .into_owned();
                *seen.entry(id.clone()).or_default() += 1;
                order.entry(user).or_default().push(id);
                ua.respond(&tx, 200, "OK", &[], None).await.expect("200");
            }
            Err(_) => {
                let all = want.iter().all(|id| seen.contains_key(*id));
                // Everything there, and quiet for a second: no late duplicate.
                if all {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                }
            }
        }
    }
    let missing: Vec<&&str> = want.iter().filter(|id| !seen.contains_key(**id)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: accepted but never delivered: {missing:?}"
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "seed {seed}: delivered more than once: {twice:?}"
    );
    // Per user, the accepted messages arrive in the order they were accepted (one sender's
    // messages to one user were accepted one after the other).
    for (user, got) in &order {
        for s in 0..SENDERS {
            let prefix = format!("K-{s}-");
            let got: Vec<&String> = got.iter().filter(|id| id.starts_with(&prefix)).collect();
            let want: Vec<&String> = accepted
                .iter()
                .filter(|(u, id)| u == user && id.starts_with(&prefix))
                .map(|(_, id)| id)
                .collect();
            let got_accepted: Vec<&String> =
                got.into_iter().filter(|id| want.contains(id)).collect();
            assert_eq!(
                got_accepted, want,
                "seed {seed}: order for {user} from sender {s}"
            );
        }
    }
}

fn seed() -> u64 {
    std::env::var("CPM_IWF_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_sigkill_loses_nothing_accepted() {
    let dir = tempfile::tempdir().expect("dir");
    let location = dir.path().join("store.redb").display().to_string();
    let base = seed();
    tokio::time::timeout(Duration::from_secs(150), async {
        for round in 0..2 {
            // A fresh store per round: each round checks only its own messages.
            let location = format!("{location}.{round}");
            crash_round(&location, base.wrapping_add(round)).await;
        }
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (installed by .ci/test.sh)"]
async fn redis_sigkill_loses_nothing_accepted() {
    let dir = tempfile::tempdir().expect("dir");
    let server = redis_server::RedisServer::start(dir.path(), "always");
    let base = seed();
    tokio::time::timeout(Duration::from_secs(150), async {
        for round in 0..2 {
            // A database per round: each round checks only its own messages.
            let location = format!("{}{}", server.url(), round + 1);
            crash_round(&location, base.wrapping_add(round)).await;
        }
    })
    .await
    .expect("bounded");
}
