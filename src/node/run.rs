//! `cpm-iwf run`: the node started from a configuration, every piece bound and wired, and
//! stopped gracefully.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::admin::{AdminServer, Readiness, ShutdownHandle};
use super::b2bua::{Clock, Core, CoreEvent, CoreParts, SideIo, StoreParts};
use super::msrp::{MsrpRelay, RelayConfig};
use super::transaction::TimerConfig;
use super::transport::{SipTransport, Target, TransportConfig};
use crate::config::{Config, SideConfig, Transport};
use crate::correlate::{KindLimits, Table, TableLimits};
use crate::mapping::Mappings;
use crate::metrics;
use crate::store::reconnect::Reconnecting;
use crate::store::{Limits as StoreLimits, Location};
use crate::translate::session::{Addresses, SideAddresses};
use crate::translate::state::Side;

/// Where a started node listens (the configuration may ask for port 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// CPM side SIP over UDP.
    pub cpm_udp: Vec<SocketAddr>,
    /// CPM side SIP over TCP.
    pub cpm_tcp: Vec<SocketAddr>,
    /// SIMPLE side SIP over UDP.
    pub simple_udp: Vec<SocketAddr>,
    /// SIMPLE side SIP over TCP.
    pub simple_tcp: Vec<SocketAddr>,
    /// CPM side MSRP.
    pub cpm_msrp: SocketAddr,
    /// SIMPLE side MSRP.
    pub simple_msrp: SocketAddr,
    /// The admin HTTP server.
    pub admin: SocketAddr,
}

/// A running node.
pub struct Node {
    /// Where it listens.
    pub listening: Listening,
    events: mpsc::Sender<CoreEvent>,
    core: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    transports: [SipTransport; 2],
    relay: Arc<MsrpRelay>,
    readiness: Readiness,
    admin_stop: ShutdownHandle,
    table: Arc<Table>,
    /// The store-and-forward store, released last on shutdown.
    store: Option<Arc<dyn crate::store::Store>>,
}

fn table_limits(config: &Config) -> TableLimits {
    let d = TableLimits::default();
    let cap = |k: KindLimits| KindLimits {
        cap: k.cap.min(config.limits.table_cap),
        ..k
    };
    TableLimits {
        messages: cap(d.messages),
        conversations: cap(d.conversations),
        dialogs: cap(d.dialogs),
        msrp: cap(d.msrp),
    }
}

/// The next hop of a side and the node's own address for it.
fn route_of(side: &SideConfig, transport: &SipTransport) -> (Option<Target>, SocketAddr) {
    let hop = side.next_hops.first().map(|p| Target {
        addr: p.address,
        transport: p.transport,
    });
    let udp = transport.udp_addrs();
    let tcp = transport.tcp_addrs();
    let own = match hop.map(|h| h.transport) {
        Some(Transport::Tcp) => tcp.first().or(udp.first()),
        _ => udp.first().or(tcp.first()),
    }
    .copied()
    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)));
    (hop, own)
}

/// Opens the store-and-forward store the configuration names (issue 7), creating a redb
/// file's directory. A store that cannot be opened stops the start: a node that would answer
/// 202 without a durable store must not run.
async fn open_store(
    config: &Config,
    events: mpsc::Sender<CoreEvent>,
    table: Arc<Table>,
    clock: Clock,
) -> io::Result<Option<(StoreParts, Option<Arc<Reconnecting>>)>> {
    let Some(text) = config.store.location.as_deref() else {
        return Ok(None);
    };
    let location = Location::parse(text).map_err(|e| io::Error::other(e.to_string()))?;
    if let Location::Redb(path) = &location
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let c = &config.store;
    let limits = StoreLimits {
        max_payload_bytes: config.limits.sip_max_message.max(4096),
        max_user_messages: c.max_user_messages,
        max_user_bytes: c.max_user_bytes,
        max_total_bytes: c.max_total_bytes,
        ..StoreLimits::default()
    };
    // A redb file opens now or the node does not start; a Redis that is down (or loading)
    // is opened in the background while the node stays not ready (`store_open`).
    let (store, store_open): (Arc<dyn crate::store::Store>, Option<Arc<Reconnecting>>) =
        match crate::store::open(&location, limits).await {
            Ok(s) => (s, None),
            Err(e @ crate::store::StoreError::Unavailable(_))
                if matches!(location, Location::Redis(_)) =>
            {
                tracing::warn!(store = %text, error = %e, "store not reachable: opening it in the background, not ready until then");
                let r = Arc::new(Reconnecting::open(location.clone(), limits));
                (r.clone(), Some(r))
            }
            Err(e) => return Err(io::Error::other(format!("store {text}: {e}"))),
        };
    let mailbox = super::mailbox::Mailbox::bind(
        store.clone(),
        table,
        clock,
        events.clone(),
        limits.max_payload_bytes,
    )
    .await?;
    tracing::info!(store = %text, "store-and-forward on");
    let parts = StoreParts {
        store,
        config: config.store.clone(),
        retry: super::availability::RetrySchedule::from_config(&config.availability),
        availability: config.availability.clone(),
        events,
        sip_limits: crate::wire::sip::Limits {
            max_message: config.limits.sip_max_message,
            max_headers: config.limits.sip_max_headers,
            max_line: config.limits.sip_max_line,
        },
        mailbox,
    };
    Ok(Some((parts, store_open)))
}

impl Node {
    /// Bind every socket the configuration names and start serving.
    pub async fn start(config: Config, mappings: Mappings) -> io::Result<Node> {
        let readiness = Readiness::new();
        let admin = AdminServer::bind(config.admin_listen, readiness.clone()).await?;
        metrics::describe();
        let admin_addr = admin.local_addr()?;
        let admin_stop = admin.shutdown_handle();
        let mut tasks: Vec<JoinHandle<()>> = vec![tokio::spawn(async move {
            if let Err(e) = admin.serve().await {
                tracing::error!(error = %e, "admin server stopped");
            }
        })];

        // The core reads the UDP sockets itself: no task and channel between a datagram and
        // the core (each cost a hand-over and often a thread wake-up per datagram).
        let (cpm, cpm_in, cpm_udp) = SipTransport::bind_for_caller(
            TransportConfig::for_side_named(&config.cpm, &config.limits, Some(Side::Cpm)),
        )
        .await?;
        let (simple, simple_in, simple_udp) = SipTransport::bind_for_caller(
            TransportConfig::for_side_named(&config.simple, &config.limits, Some(Side::Simple)),
        )
        .await?;
        let (relay, mut relay_events) = MsrpRelay::bind(
            config.cpm.msrp_listen,
            config.simple.msrp_listen,
            RelayConfig::from_config(&config),
        )
        .await?;
        let relay = Arc::new(relay);

        let contact = |t: &SipTransport| {
            let a = t.udp_addrs().first().or(t.tcp_addrs().first()).copied();
            a.map_or("sip:iwf@127.0.0.1".to_string(), |a| format!("sip:iwf@{a}"))
        };
        let addrs = Addresses {
            cpm: SideAddresses {
                contact: contact(&cpm),
                msrp: relay.local_addr(Side::Cpm),
                secure: false,
            },
            simple: SideAddresses {
                contact: contact(&simple),
                msrp: relay.local_addr(Side::Simple),
                secure: false,
            },
        };
        let timers = TimerConfig {
            t1_ms: config.timers.t1_ms,
            t2_ms: config.timers.t2_ms,
            t4_ms: config.timers.t4_ms,
            reliable: false,
        };
        let (cpm_hop, cpm_own) = route_of(&config.cpm, &cpm);
        let (simple_hop, simple_own) = route_of(&config.simple, &simple);
        let table = Arc::new(Table::new(table_limits(&config)));
        let limits = table_limits(&config);
        for (kind, k) in [
            (metrics::TableKind::Message, limits.messages),
            (metrics::TableKind::Conversation, limits.conversations),
            (metrics::TableKind::Dialog, limits.dialogs),
            (metrics::TableKind::Msrp, limits.msrp),
        ] {
            metrics::table_capacity(kind, k.cap as u64);
        }
        let clock = Clock::start();
        let (events, events_rx) = mpsc::channel(config.limits.queue_depth.max(64));
        let (store, store_open) =
            match open_store(&config, events.clone(), table.clone(), clock).await? {
                Some((parts, open)) => (Some(parts), open),
                None => (None, None),
            };
        let store_handle = store.as_ref().map(|s| s.store.clone());
        let core = Core::new(
            CoreParts {
                table: table.clone(),
                mappings: Arc::new(mappings),
                addrs: Arc::new(addrs),
                clock,
                relay: relay.clone(),
                max_transactions: config.limits.max_sessions.max(1024),
                readiness: readiness.clone(),
                probe_interval: (config.timers.probe_interval_ms > 0)
                    .then(|| Duration::from_millis(config.timers.probe_interval_ms)),
                store,
            },
            SideIo {
                transport: cpm.clone(),
                next_hop: cpm_hop,
                sent_by: cpm_own,
                timers,
            },
            SideIo {
                transport: simple.clone(),
                next_hop: simple_hop,
                sent_by: simple_own,
                timers,
            },
            config.limits.queue_depth,
        );
        // Recording to the MSS (issue 8): the uploader, the preferences reloader.
        let core = if config.record.enabled {
            let (recorder, record_tasks) = super::record::Recorder::start(&config.record)
                .map_err(|e| io::Error::other(format!("record: {e}")))?;
            tasks.extend(record_tasks);
            core.with_recorder(recorder, events.clone())
        } else {
            core
        };
        {
            let events = events.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = relay_events.recv().await {
                    if events.send(CoreEvent::Relay(ev)).await.is_err() {
                        break;
                    }
                }
            }));
        }
        {
            // Readiness follows the listeners (RFC-less, operational): a side that stopped
            // listening makes the node not ready; only start-up makes it ready. The same tick
            // reads the UDP sockets' kernel drop counts.
            let transports = [cpm.clone(), simple.clone()];
            let readiness = readiness.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    // The UDP receive buffers are the core's inbound queue: their drops are
                    // the overload signal (`cpm_iwf_sip_inbound_drops_total`).
                    for t in &transports {
                        t.update_kernel_drops();
                    }
                    if transports.iter().any(|t| !t.is_listening()) && readiness.is_ready() {
                        tracing::error!("a side's SIP listeners are down: not ready");
                        readiness.set(false);
                        metrics::ready(false);
                    }
                }
            }));
        }
        if config.timers.memory_trim_ms > 0 {
            let every = Duration::from_millis(config.timers.memory_trim_ms);
            tasks.push(tokio::spawn(super::memory::run_trimmer(
                every,
                table.clone(),
                events.clone(),
            )));
        }
        {
            let table = table.clone();
            let every = Duration::from_millis(config.timers.sweep_interval_ms.max(100));
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                // Active dialogs are the B2BUA sessions: two table entries (one per leg) each.
                let mut sessions = 0i64;
                let mut expired = [0u64; 4];
                loop {
                    tick.tick().await;
                    table.sweep(clock.now());
                    let stats = table.stats();
                    let now_sessions = i64::try_from(stats.dialogs.len / 2).unwrap_or(i64::MAX);
                    metrics::dialogs_active(now_sessions - sessions);
                    sessions = now_sessions;
                    for (i, (kind, s)) in [
                        (metrics::TableKind::Message, stats.messages),
                        (metrics::TableKind::Conversation, stats.conversations),
                        (metrics::TableKind::Dialog, stats.dialogs),
                        (metrics::TableKind::Msrp, stats.msrp),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        metrics::table_entries(kind, s.len as u64);
                        if let Some(prev) = expired.get_mut(i) {
                            metrics::table_expired(kind, s.expired.saturating_sub(*prev));
                            *prev = s.expired;
                        }
                    }
                }
            }));
        }
        let core = tokio::spawn(core.run(cpm_in, simple_in, cpm_udp, simple_udp, events_rx));
        let listening = Listening {
            cpm_udp: cpm.udp_addrs(),
            cpm_tcp: cpm.tcp_addrs(),
            simple_udp: simple.udp_addrs(),
            simple_tcp: simple.tcp_addrs(),
            cpm_msrp: relay.local_addr(Side::Cpm),
            simple_msrp: relay.local_addr(Side::Simple),
            admin: admin_addr,
        };
        // Not ready while the store is still being opened (a Redis down at start).
        let ready = store_open.as_ref().is_none_or(|r| r.is_open());
        readiness.set(ready);
        metrics::ready(ready);
        if let Some(r) = store_open.filter(|r| !r.is_open()) {
            let readiness = readiness.clone();
            let transports = [cpm.clone(), simple.clone()];
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    if r.is_open() {
                        if transports.iter().all(|t| t.is_listening()) {
                            readiness.set(true);
                            metrics::ready(true);
                        }
                        return;
                    }
                }
            }));
        }
        Ok(Node {
            listening,
            events,
            core,
            tasks,
            transports: [cpm, simple],
            relay,
            readiness,
            admin_stop,
            table,
            store: store_handle,
        })
    }

    /// The SIP transport of a side (for tests and the admin view).
    pub fn transport(&self, side: Side) -> &SipTransport {
        match side {
            Side::Cpm => &self.transports[0],
            Side::Simple => &self.transports[1],
        }
    }

    /// The correlation table (for tests and the admin view).
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Stop: not ready any more, new requests answered 503, transactions in progress given
    /// `grace` to finish, then every socket closed.
    pub async fn shutdown(self, grace: Duration) {
        self.readiness.set(false);
        metrics::ready(false);
        let _ = self.events.send(CoreEvent::Drain).await;
        let mut core = self.core;
        if tokio::time::timeout(grace, &mut core).await.is_err() {
            core.abort();
            // Wait for it to be dropped: it holds the store (a redb file stays locked until).
            let _ = core.await;
        }
        for t in &self.transports {
            t.shutdown(Duration::from_secs(1)).await;
        }
        self.relay.shutdown();
        self.admin_stop.shutdown();
        for t in self.tasks {
            t.abort();
        }
        // The store is closed only when the last task holding it (the mailbox's, a put in
        // flight) has gone, so that a node started next on the same redb file can open it.
        if let Some(store) = self.store {
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while Arc::strong_count(&store) > 1 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(store);
        }
    }
}
