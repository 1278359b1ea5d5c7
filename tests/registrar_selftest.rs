//! The test registrar (tests/peers/registrar.rs) against `cpm_iwf::node::availability` over
//! real UDP sockets on 127.0.0.1: a small driver loop here plays the node's core (it adds the
//! Via, sends what the watcher asks, feeds it responses and NOTIFYs, answers with what it
//! decides). Proves the list and per-user subscriptions, refresh in the dialog, 423 handling,
//! the RFC 3680 §5.2 version gap, termination and re-subscription, a bad body answered 400,
//! and third-party REGISTER. Every wait is bounded ([`bounded`], and each helper's deadline).

#[path = "peers/registrar.rs"]
mod registrar;
#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::node::availability::{
    AvailabilityEvent, RegEventWatcher, RetrySchedule, SubscribeConfig, WatchMode, WatcherConfig,
    third_party_register,
};
use cpm_iwf::time::Millis;
use cpm_iwf::translate::conversation::IdSource;
use cpm_iwf::wire::sip::{Limits, parse_datagram};
use registrar::{Registrar, RegistrarConfig};
use rsip::Method;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// No test may take longer than this, whatever happens.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test finished in time")
}

const WAIT: Duration = Duration::from_secs(5);

struct Ids(u64);
impl IdSource for Ids {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("node-{}", self.0))
    }
}

enum Cmd {
    Watch(String),
    Available(String, oneshot::Sender<Option<bool>>),
    NotifyAnswers(oneshot::Sender<Vec<u16>>),
}

/// The node side: a UDP socket and the watcher, driven by a background task.
struct Node {
    addr: SocketAddr,
    cmds: mpsc::Sender<Cmd>,
    events: mpsc::Receiver<AvailabilityEvent>,
    task: AbortHandle,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long the driver waits for a final response before telling the watcher the
/// transaction timed out (the core's Timer F; short here).
const TX_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    async fn start(
        registrar: SocketAddr,
        mode: WatchMode,
        expires_s: u32,
        margin_s: u32,
        accept_register: bool,
    ) -> Node {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let cfg = WatcherConfig {
            subscribe: SubscribeConfig {
                from: "sip:iwf@ims.example.net".into(),
                contact: format!("sip:iwf@{addr}"),
                expires_s,
                refresh_margin_s: margin_s,
                retry: RetrySchedule {
                    initial_ms: 200,
                    max_ms: 1_000,
                },
            },
            mode,
            max_subscriptions: 16,
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let task = tokio::spawn(drive(sock, registrar, cfg, accept_register, cmd_rx, ev_tx))
            .abort_handle();
        Node {
            addr,
            cmds: cmd_tx,
            events: ev_rx,
            task,
        }
    }

    async fn next_event(&mut self) -> AvailabilityEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an availability event in time")
            .expect("driver running")
    }

    async fn no_event(&mut self, wait: Duration) {
        if let Ok(Some(e)) = tokio::time::timeout(wait, self.events.recv()).await {
            panic!("unexpected event {e:?}");
        }
    }

    async fn watch(&self, aor: &str) {
        self.cmds
            .send(Cmd::Watch(aor.into()))
            .await
            .expect("driver");
    }

    async fn available(&self, aor: &str) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Available(aor.into(), tx))
            .await
            .expect("driver");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("in time")
            .expect("driver")
    }

    async fn notify_answers(&self) -> Vec<u16> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::NotifyAnswers(tx))
            .await
            .expect("driver");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("in time")
            .expect("driver")
    }
}

/// The driver loop: what the node's core will do with the watcher (see the module's report).
async fn drive(
    sock: UdpSocket,
    registrar: SocketAddr,
    cfg: WatcherConfig,
    accept_register: bool,
    mut cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<AvailabilityEvent>,
) {
    let start = Instant::now();
    let now = || Millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    let mut ids = Ids(0);
    let mut watcher = RegEventWatcher::new(cfg, 42, &mut ids, now());
    let local = sock.local_addr().expect("addr");
    let mut branch = 0u64;
    // Call-ID -> when its SUBSCRIBE went (no final response yet).
    let mut in_flight: HashMap<String, Instant> = HashMap::new();
    let mut notify_answers = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                Cmd::Watch(aor) => {
                    watcher.watch(&aor, &mut ids, now()).expect("watch");
                }
                Cmd::Available(aor, reply) => {
                    let _ = reply.send(watcher.is_available(&aor));
                }
                Cmd::NotifyAnswers(reply) => {
                    let _ = reply.send(notify_answers.clone());
                }
            }
        }
        for mut m in watcher.handle_timeout(now(), &mut ids) {
            branch += 1;
            m.insert_header(
                0,
                "Via",
                &format!("SIP/2.0/UDP {local};branch=z9hG4bKnode{branch}"),
            )
            .expect("via");
            in_flight.insert(m.call_id().unwrap_or_default().to_string(), Instant::now());
            sock.send_to(&m.serialize(), registrar).await.expect("send");
        }
        let late: Vec<String> = in_flight
            .iter()
            .filter(|(_, at)| at.elapsed() > TX_TIMEOUT)
            .map(|(c, _)| c.clone())
            .collect();
        for c in late {
            in_flight.remove(&c);
            watcher.on_request_timeout(&c, now());
        }
        let wait = match watcher.poll_timeout() {
            Some(due) => {
                Duration::from_millis(due.0.saturating_sub(now().0)).min(Duration::from_millis(20))
            }
            None => Duration::from_millis(20),
        };
        let Ok(Ok((n, from))) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await else {
            continue;
        };
        let Some(data) = buf.get(..n) else { continue };
        let Ok(msg) = parse_datagram(Bytes::copy_from_slice(data), &Limits::default()) else {
            continue;
        };
        if !msg.is_request() {
            if msg.status_code().unwrap_or(0) >= 200 {
                in_flight.remove(msg.call_id().unwrap_or_default());
            }
            watcher.on_response(&msg, now());
            continue;
        }
        let (resp, evs) = match msg.method() {
            Some(Method::Notify) => {
                let out = watcher.on_notify(&msg, now());
                notify_answers.push(out.status);
                (out.response(&msg), out.events)
            }
            Some(Method::Register) => {
                let out = third_party_register(&msg, accept_register);
                let mut r = out.response(&msg);
                let to = format!("{};tag=node", msg.header("To").unwrap_or_default());
                r.set_header("To", &to).expect("to");
                (r, out.event.into_iter().collect())
            }
            _ => (msg.response_to(405, "Method Not Allowed"), Vec::new()),
        };
        sock.send_to(&resp.serialize(), from).await.expect("send");
        for e in evs {
            if events.send(e).await.is_err() {
                return;
            }
        }
    }
}

fn registered(e: &AvailabilityEvent) -> (&str, Vec<String>) {
    match e {
        AvailabilityEvent::Registered { aor, contacts } => (
            aor.as_str(),
            contacts
                .iter()
                .map(|c| String::from_utf8_lossy(&c.uri).into_owned())
                .collect(),
        ),
        other => panic!("expected Registered, got {other:?}"),
    }
}

fn unregistered(e: &AvailabilityEvent) -> &str {
    match e {
        AvailabilityEvent::Unregistered { aor } => aor.as_str(),
        other => panic!("expected Unregistered, got {other:?}"),
    }
}

/// Wait until the registrar has seen `n` SUBSCRIBEs.
async fn subscribes(reg: &Registrar, n: usize) -> Vec<registrar::SubscribeSeen> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = reg.subscribes();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "only {} SUBSCRIBEs: {seen:?}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn list_subscription_learns_register_and_unregister() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig::default())
            .await
            .expect("registrar");
        reg.register("sip:alice@ims.example.net", "sip:alice@10.0.0.1:5060")
            .await
            .expect("register before any subscription");
        let mut node = Node::start(
            reg.addr(),
            WatchMode::List("sip:registrar@ims.example.net".into()),
            600,
            60,
            true,
        )
        .await;
        // The first NOTIFY carries full state: alice is there already.
        let e = node.next_event().await;
        assert_eq!(
            registered(&e),
            (
                "sip:alice@ims.example.net",
                vec!["sip:alice@10.0.0.1:5060".to_string()]
            )
        );
        let seen = subscribes(&reg, 1).await;
        assert_eq!(seen[0].request_uri, "sip:registrar@ims.example.net");
        assert_eq!(
            (seen[0].status, seen[0].expires, seen[0].in_dialog),
            (200, 600, false)
        );

        let statuses = reg
            .register(
                "sip:Bob@IMS.example.net",
                "sip:bob@10.0.0.2:5060;transport=tcp",
            )
            .await
            .expect("register");
        assert_eq!(statuses, vec![200]);
        let e = node.next_event().await;
        assert_eq!(
            registered(&e),
            (
                "sip:Bob@ims.example.net",
                vec!["sip:bob@10.0.0.2:5060;transport=tcp".to_string()]
            )
        );
        assert_eq!(node.available("sip:Bob@ims.example.net").await, Some(true));
        // A second device of an available user: no new event.
        reg.register("sip:alice@ims.example.net", "sip:alice@10.0.0.9:5060")
            .await
            .expect("register");
        node.no_event(Duration::from_millis(200)).await;

        assert_eq!(
            reg.unregister("sip:alice@ims.example.net")
                .await
                .expect("unregister"),
            vec![200]
        );
        assert_eq!(
            unregistered(&node.next_event().await),
            "sip:alice@ims.example.net"
        );
        assert_eq!(
            node.available("sip:alice@ims.example.net").await,
            Some(false)
        );
        assert_eq!(node.available("sip:carol@ims.example.net").await, None);
        assert!(node.notify_answers().await.iter().all(|s| *s == 200));
    })
    .await
}

#[tokio::test]
async fn per_user_subscription_to_the_aor() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig::default())
            .await
            .expect("registrar");
        let mut node = Node::start(reg.addr(), WatchMode::PerUser, 600, 60, true).await;
        node.watch("sip:bob@ims.example.net").await;
        // Full state of a user not registered: init, so unavailable.
        assert_eq!(
            unregistered(&node.next_event().await),
            "sip:bob@ims.example.net"
        );
        let seen = subscribes(&reg, 1).await;
        assert_eq!(seen[0].request_uri, "sip:bob@ims.example.net");
        // Another user's registration does not reach this subscription.
        assert_eq!(
            reg.register("sip:carol@ims.example.net", "sip:c@10.0.0.3")
                .await
                .expect("r"),
            Vec::<u16>::new()
        );
        assert_eq!(
            reg.register("sip:bob@ims.example.net", "sip:b@10.0.0.2")
                .await
                .expect("r"),
            vec![200]
        );
        let e = node.next_event().await;
        assert_eq!(registered(&e).0, "sip:bob@ims.example.net");
    })
    .await
}

#[tokio::test]
async fn refresh_goes_in_the_dialog_before_expiry() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig::default())
            .await
            .expect("registrar");
        // 2 s subscriptions, refreshed at half time (the 60 s margin does not fit).
        let _node = Node::start(
            reg.addr(),
            WatchMode::List("sip:registrar@ims.example.net".into()),
            2,
            60,
            true,
        )
        .await;
        let seen = subscribes(&reg, 3).await;
        assert!(!seen[0].in_dialog);
        for (i, s) in seen.iter().enumerate().skip(1).take(2) {
            assert!(s.in_dialog, "{s:?}");
            assert_eq!(s.call_id, seen[0].call_id);
            assert_eq!(s.cseq as usize, i + 1);
            assert_eq!(s.status, 200);
        }
    })
    .await
}

#[tokio::test]
async fn interval_too_brief_is_retried_with_min_expires() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig {
            min_expires: Some(900),
            ..RegistrarConfig::default()
        })
        .await
        .expect("registrar");
        let mut node = Node::start(
            reg.addr(),
            WatchMode::List("sip:registrar@ims.example.net".into()),
            600,
            60,
            true,
        )
        .await;
        reg.register("sip:dave@ims.example.net", "sip:d@10.0.0.4")
            .await
            .expect("r");
        let seen = subscribes(&reg, 2).await;
        assert_eq!((seen[0].expires, seen[0].status), (600, 423));
        assert_eq!((seen[1].expires, seen[1].status), (900, 200));
        assert_eq!(seen[1].call_id, seen[0].call_id);
        assert_eq!(seen[1].cseq, 2);
        assert_eq!(
            registered(&node.next_event().await).0,
            "sip:dave@ims.example.net"
        );
    })
    .await
}

#[tokio::test]
async fn a_lost_version_triggers_a_refresh_for_full_state() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig::default())
            .await
            .expect("registrar");
        let mut node = Node::start(
            reg.addr(),
            WatchMode::List("sip:registrar@ims.example.net".into()),
            600,
            60,
            true,
        )
        .await;
        subscribes(&reg, 1).await;
        reg.skip_version().await.expect("skip");
        reg.register("sip:erin@ims.example.net", "sip:e@10.0.0.5")
            .await
            .expect("r");
        assert_eq!(
            registered(&node.next_event().await).0,
            "sip:erin@ims.example.net"
        );
        // The gap made the watcher refresh at once; the full state that follows changes nothing.
        let seen = subscribes(&reg, 2).await;
        assert!(seen[1].in_dialog && seen[1].status == 200, "{seen:?}");
        node.no_event(Duration::from_millis(200)).await;
        assert_eq!(node.available("sip:erin@ims.example.net").await, Some(true));
    })
    .await
}

#[tokio::test]
async fn termination_leads_to_a_new_subscription_and_bad_bodies_get_400() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig::default())
            .await
            .expect("registrar");
        let mut node = Node::start(
            reg.addr(),
            WatchMode::List("sip:registrar@ims.example.net".into()),
            600,
            60,
            true,
        )
        .await;
        subscribes(&reg, 1).await;
        let statuses = reg
            .notify_raw(
                "application/reginfo+xml",
                Bytes::from_static(
                    b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' state='full'/>",
                ),
            )
            .await
            .expect("notify");
        assert_eq!(statuses, vec![400]);
        let statuses = reg
            .notify_raw(
                "application/reginfo+xml",
                Bytes::from_static(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"),
            )
            .await
            .expect("notify");
        assert_eq!(statuses, vec![400]);
        assert_eq!(
            reg.terminate("deactivated").await.expect("terminate"),
            vec![200]
        );
        let seen = subscribes(&reg, 2).await;
        assert!(!seen[1].in_dialog);
        assert_ne!(seen[1].call_id, seen[0].call_id);
        reg.register("sip:fay@ims.example.net", "sip:f@10.0.0.6")
            .await
            .expect("r");
        assert_eq!(
            registered(&node.next_event().await).0,
            "sip:fay@ims.example.net"
        );
    })
    .await
}

#[tokio::test]
async fn third_party_register_reaches_the_node() {
    bounded(async {
        let reg = Registrar::start(RegistrarConfig::default())
            .await
            .expect("registrar");
        let mut node = Node::start(reg.addr(), WatchMode::PerUser, 600, 60, true).await;
        let status = reg
            .third_party_register(node.addr, "sip:gus@ims.example.net", 600_000)
            .await
            .expect("register");
        assert_eq!(status, 200);
        let e = node.next_event().await;
        assert_eq!(registered(&e), ("sip:gus@ims.example.net", vec![]));
        let status = reg
            .third_party_register(node.addr, "sip:gus@ims.example.net", 0)
            .await
            .expect("deregister");
        assert_eq!(status, 200);
        assert_eq!(
            unregistered(&node.next_event().await),
            "sip:gus@ims.example.net"
        );

        let mut refusing = Node::start(reg.addr(), WatchMode::PerUser, 600, 60, false).await;
        let status = reg
            .third_party_register(refusing.addr, "sip:gus@ims.example.net", 600)
            .await
            .expect("register");
        assert_eq!(status, 403);
        refusing.no_event(Duration::from_millis(100)).await;
    })
    .await
}
