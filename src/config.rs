//! The node's configuration: one TOML file (`config/cpm-iwf.toml` is the documented example).
//!
//! Every key has a default, and the defaults are a complete loopback setup, so that
//! `cpm-iwf run` with no file starts (README's first command). A file overrides what it names;
//! unknown keys are errors (a typo must not be silently ignored), and every value is checked
//! before the node binds a socket: `cpm-iwf check-config FILE` reports the first fault as
//! `file:line:column: reason` and exits 2.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use crate::tomlfile::{FileError, Source, error_at, parse_toml};

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The CPM 2.0 side.
    pub cpm: SideConfig,
    /// The SIMPLE IM 2.0 side.
    pub simple: SideConfig,
    /// Admin HTTP server (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Directory of the mapping files; `None`: the mappings compiled into the binary.
    pub mappings: Option<PathBuf>,
    /// Sizes and counts.
    pub limits: Limits,
    /// SIP timer bases and table housekeeping.
    pub timers: Timers,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Store-and-forward for users who are not available (issue 7).
    pub store: StoreConfig,
    /// How the node learns that a user is back (store-and-forward).
    pub availability: AvailabilityConfig,
    /// Recording to the users' Message Storage Server (issue 8, CPM 2.0 SD 5.2.1.2).
    pub record: RecordConfig,
    /// MSRP connection sharing (RFC 4975 §5.4 connection reuse, `node::msrp::link`).
    pub msrp: MsrpConfig,
}

/// How MSRP sessions share TCP connections (`[msrp]`, `node::msrp::link`). Several sessions on
/// one inbound connection are always accepted; the node dials shared ones only when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrpConfig {
    /// An active leg reuses a connection the node already has to the same host:port (from the
    /// same side) when it has room, and concurrent dials to one host:port wait for one
    /// connection. Default off: one connection per leg.
    pub share_connections: bool,
    /// Most sessions on one connection: an inbound bind beyond it gets 403, an outbound leg
    /// dials a new connection.
    pub max_sessions_per_connection: usize,
    /// How long a shared connection with no session left stays open (ms).
    pub connection_idle_ms: u64,
    /// How long the reader of a shared connection waits for room in one session's queue
    /// before it answers that SEND 413 (ms), so that one slow session does not block the
    /// others on the connection (head-of-line blocking).
    pub share_wait_ms: u64,
}

impl Default for MsrpConfig {
    fn default() -> Self {
        MsrpConfig {
            share_connections: false,
            max_sessions_per_connection: 1_000,
            connection_idle_ms: 30_000,
            share_wait_ms: 500,
        }
    }
}

/// Store-and-forward (CPM 2.0 §4.2): where messages for unavailable users are kept, when a
/// message counts as undeliverable now, and how delivery is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `None`: off (every answer is relayed as it came). Else a redb file path (created with
    /// its directory) or a `redis://` URL (`crate::store::Location::parse`).
    pub location: Option<String>,
    /// Policy for messages towards CPM users.
    pub cpm: StorePolicy,
    /// Policy for messages towards SIMPLE IM users.
    pub simple: StorePolicy,
    /// Most messages kept for one user; beyond it the sender gets 480.
    pub max_user_messages: u64,
    /// Most bytes kept for one user.
    pub max_user_bytes: u64,
    /// Most bytes kept in all.
    pub max_total_bytes: u64,
    /// How often expired messages are looked for (ms).
    pub expiry_check_ms: u64,
    /// Most store writes in flight; more pager MESSAGEs to store get 503.
    pub max_in_flight: usize,
    /// What a chat session does when one user's MSRP connection drops mid-session (issue 7).
    pub on_msrp_drop: MsrpDropPolicy,
}

/// What a chat session does when the MSRP connection of one leg drops mid-session (peer
/// closed, reset, or stalled) while the other is up (issue 7, `node::msrp::takeover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrpDropPolicy {
    /// The node takes the dropped user's place: the dropped leg's dialog gets BYE, the other
    /// user's session goes on, and every message towards the dropped user is kept and
    /// delivered later (each SEND answered 200 only once durable).
    Store,
    /// The session ends: BYE on both legs (also what happens with the store off).
    End,
}

/// When a message towards one side's users is kept rather than refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePolicy {
    /// Final responses of the next hop that mean "not available now" (RFC 3261 §21.4.18 480,
    /// §21.4.9 408, §21.4.5 404): the message is stored and the sender gets 202. Empty: this
    /// side's messages are never stored.
    pub unavailable: Vec<u16>,
    /// How long a message is kept before it is given up (s); then a `failed` IMDN goes to its
    /// sender when it asked for negative delivery notifications (RFC 5438 §7.2.1.1).
    pub max_age_s: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let policy = StorePolicy {
            unavailable: vec![480, 408, 404],
            max_age_s: 7 * 24 * 3600,
        };
        StoreConfig {
            location: Some("data/cpm-iwf.redb".to_string()),
            cpm: policy.clone(),
            simple: policy,
            max_user_messages: 1_000,
            max_user_bytes: 16 * 1024 * 1024,
            max_total_bytes: 4 * 1024 * 1024 * 1024,
            expiry_check_ms: 10_000,
            max_in_flight: 4_096,
            on_msrp_drop: MsrpDropPolicy::Store,
        }
    }
}

impl StorePolicy {
    /// Whether `status` from the next hop means the user is not available now.
    pub fn is_unavailable(&self, status: u16) -> bool {
        self.unavailable.contains(&status)
    }
}

/// `[record]`: recording conversations to the Message Storage Server over IMAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// Off by default: nothing is recorded and no MSS is contacted.
    pub enabled: bool,
    /// The per-user preferences file (TOML, reloaded on SIGHUP); `None`: the default policy
    /// (record nothing) for everyone.
    pub preferences: Option<PathBuf>,
    /// The durable upload queue (redb), its own file.
    pub queue_path: PathBuf,
    /// The MSS's IMAP address (plain TCP).
    pub imap: SocketAddr,
    /// When set, every user's mailbox is opened as `<user>*<master_user>` with `password`
    /// (Dovecot master user); else each user logs in as itself with `password`.
    pub master_user: Option<String>,
    /// The password of the master user, or of every user.
    pub password: String,
    /// How long a standalone message waits for its upload before it is delivered anyway.
    pub upload_wait_ms: u64,
    /// Time allowed to one IMAP exchange (connect, login, one command).
    pub imap_timeout_ms: u64,
    /// First retry delay of a failed upload; doubled each time up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Most uploads waiting in the durable queue; more are refused (counted, logged).
    pub queue_capacity: usize,
    /// Largest object (a session history, a reassembled message); larger ones are cut.
    pub max_object_bytes: usize,
    /// Uploads done at once (each account's jobs always in order, by one of them).
    pub upload_workers: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: false,
            preferences: None,
            queue_path: PathBuf::from("cpm-iwf-record.redb"),
            imap: loopback(143),
            master_user: None,
            password: String::new(),
            upload_wait_ms: 2_000,
            imap_timeout_ms: 5_000,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            queue_capacity: 100_000,
            max_object_bytes: 16 * 1024 * 1024,
            upload_workers: 4,
        }
    }
}

/// SIP transports a next hop is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP (RFC 3261 §18), with retransmissions.
    Udp,
    /// SIP over TCP, Content-Length framed.
    Tcp,
}

/// A next-hop peer: the proxy or server of that network the node sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its address.
    pub address: SocketAddr,
    /// How to reach it.
    pub transport: Transport,
}

/// One side's sockets, peers and access list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideConfig {
    /// SIP over UDP listen addresses.
    pub sip_udp: Vec<SocketAddr>,
    /// SIP over TCP listen addresses.
    pub sip_tcp: Vec<SocketAddr>,
    /// The MSRP listen address of the node's endpoint on this side (RFC 4975 §6).
    pub msrp_listen: SocketAddr,
    /// Where requests to this side go; the first that answers is used (RFC 3263 order is the
    /// operator's: the list order).
    pub next_hops: Vec<Peer>,
    /// Source networks allowed to send to this side's sockets; anything else is refused (403 for
    /// a SIP request, no answer otherwise) and counted.
    pub allow: Vec<Cidr>,
    /// The domain of this network's users, used to tell the sides apart in addresses.
    pub domain: String,
}

/// Bounds on everything that arrives or is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest SIP message (RFC 3261 §18.1.1 leaves it to the implementation).
    pub sip_max_message: usize,
    /// Most header fields in one SIP message.
    pub sip_max_headers: usize,
    /// Longest SIP header line.
    pub sip_max_line: usize,
    /// Largest MSRP chunk body.
    pub msrp_max_chunk: usize,
    /// Most chat sessions at once (each is two SIP dialogs and two MSRP connections); also the
    /// most SIP requests waiting for their answer at once (503 beyond; answered transactions
    /// kept for RFC 3261 Timer J / RFC 6026 Timer L have room for four times as many).
    pub max_sessions: usize,
    /// Most entries of each correlation table kind.
    pub table_cap: usize,
    /// Most messages queued towards one connection before it is considered stuck; also the
    /// most written MSRP SENDs a connection holds until their 200, to keep them if it drops
    /// (`node::msrp::takeover`).
    pub queue_depth: usize,
}

/// Timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RFC 3261 T1 in milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 in milliseconds.
    pub t4_ms: u64,
    /// How often expired correlation entries are swept.
    pub sweep_interval_ms: u64,
    /// How long an MSRP peer may leave a message half sent, or not read what the node writes,
    /// before its session is ended (a stalled peer must not hold the relay).
    pub msrp_stall_ms: u64,
    /// How long an MSRP peer has to connect (passive leg) or accept (active leg).
    pub msrp_connect_ms: u64,
    /// How often the node sends OPTIONS to each side's next hop to know it is reachable
    /// (`/readyz` is 503 while one does not answer); 0: never.
    pub probe_interval_ms: u64,
    /// How often the heap's freed pages are given back to the system (`node::memory`); 0: never.
    pub memory_trim_ms: u64,
}

/// How reg event subscriptions (RFC 3680) are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegEventMode {
    /// No subscription.
    Off,
    /// One subscription to `registrar` that reports every user.
    List,
    /// One subscription per user with messages waiting, to the user's AOR.
    PerUser,
}

/// Where availability comes from (issue 7): reg event subscriptions, third-party REGISTER
/// (3GPP TS 24.229 §5.4.1.7) and, as the fallback, retries with backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityConfig {
    /// Reg event subscriptions: off, one list subscription, or one per user.
    pub reg_event: RegEventMode,
    /// The registrar's SIP URI (Request-URI of the list subscription).
    pub registrar: Option<String>,
    /// The side whose next hop reaches the registrar (`true`: CPM, `false`: SIMPLE).
    pub registrar_on_cpm: bool,
    /// Expires asked for in SUBSCRIBE, seconds (RFC 3680 §4.4 suggests 3761).
    pub subscribe_expires_s: u32,
    /// Refresh a subscription this many seconds before it expires.
    pub refresh_margin_s: u32,
    /// Whether a third-party REGISTER to the node is accepted (else 403).
    pub third_party_register: bool,
    /// First delay of the retry backoff (delivery attempts and failed subscriptions), ms.
    pub retry_initial_ms: u64,
    /// Longest delay of the retry backoff, ms.
    pub retry_max_ms: u64,
    /// Most reg event subscriptions at once (per-user mode).
    pub max_subscriptions: usize,
}

/// An IP network, `address/prefix-length` (RFC 4632 §3.1 notation; IPv6 as RFC 4291 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `addr` is inside this network (an IPv4 address never matches an IPv6 network,
    /// except IPv4-mapped IPv6 addresses, which are compared as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(full), b.get(full)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

// ---------------------------------------------------------------------------------------------
// The file as read. Every field optional: what is absent keeps its default.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    admin_listen: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    mappings: Option<Spanned<String>>,
    cpm: Option<RawSide>,
    simple: Option<RawSide>,
    limits: Option<RawLimits>,
    timers: Option<RawTimers>,
    store: Option<RawStore>,
    availability: Option<RawAvailability>,
    record: Option<RawRecord>,
    msrp: Option<RawMsrp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMsrp {
    share_connections: Option<bool>,
    max_sessions_per_connection: Option<Spanned<u64>>,
    connection_idle_ms: Option<Spanned<u64>>,
    share_wait_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    location: Option<Spanned<String>>,
    cpm: Option<RawStorePolicy>,
    simple: Option<RawStorePolicy>,
    max_user_messages: Option<Spanned<u64>>,
    max_user_bytes: Option<Spanned<u64>>,
    max_total_bytes: Option<Spanned<u64>>,
    expiry_check_ms: Option<Spanned<u64>>,
    max_in_flight: Option<Spanned<u64>>,
    on_msrp_drop: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorePolicy {
    unavailable: Option<Vec<Spanned<u64>>>,
    max_age_s: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAvailability {
    reg_event: Option<Spanned<String>>,
    registrar: Option<Spanned<String>>,
    registrar_side: Option<Spanned<String>>,
    subscribe_expires_s: Option<Spanned<u64>>,
    refresh_margin_s: Option<Spanned<u64>>,
    third_party_register: Option<bool>,
    retry_initial_ms: Option<Spanned<u64>>,
    retry_max_ms: Option<Spanned<u64>>,
    max_subscriptions: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    enabled: Option<bool>,
    preferences: Option<String>,
    queue_path: Option<String>,
    imap: Option<Spanned<String>>,
    master_user: Option<String>,
    password: Option<String>,
    upload_wait_ms: Option<Spanned<u64>>,
    imap_timeout_ms: Option<Spanned<u64>>,
    retry_base_ms: Option<Spanned<u64>>,
    retry_max_ms: Option<Spanned<u64>>,
    queue_capacity: Option<Spanned<u64>>,
    max_object_bytes: Option<Spanned<u64>>,
    upload_workers: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSide {
    sip_udp: Option<Vec<Spanned<String>>>,
    sip_tcp: Option<Vec<Spanned<String>>>,
    msrp_listen: Option<Spanned<String>>,
    next_hops: Option<Vec<Spanned<RawPeer>>>,
    allow: Option<Vec<Spanned<String>>>,
    domain: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    address: Spanned<String>,
    transport: Transport,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    sip_max_message: Option<Spanned<u64>>,
    sip_max_headers: Option<Spanned<u64>>,
    sip_max_line: Option<Spanned<u64>>,
    msrp_max_chunk: Option<Spanned<u64>>,
    max_sessions: Option<Spanned<u64>>,
    table_cap: Option<Spanned<u64>>,
    queue_depth: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimers {
    t1_ms: Option<Spanned<u64>>,
    t2_ms: Option<Spanned<u64>>,
    t4_ms: Option<Spanned<u64>>,
    sweep_interval_ms: Option<Spanned<u64>>,
    msrp_stall_ms: Option<Spanned<u64>>,
    msrp_connect_ms: Option<Spanned<u64>>,
    probe_interval_ms: Option<Spanned<u64>>,
    memory_trim_ms: Option<Spanned<u64>>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for Config {
    /// A complete loopback setup: the CPM side on 5060 (SIP) / 2855 (MSRP), its peer on 5070;
    /// the SIMPLE side on 5062 / 2856, its peer on 5072; admin HTTP on 9464; only loopback
    /// sources allowed.
    fn default() -> Self {
        let loop_net = Cidr {
            network: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        };
        let side = |sip: u16, msrp: u16, peer: u16, domain: &str| SideConfig {
            sip_udp: vec![loopback(sip)],
            sip_tcp: vec![loopback(sip)],
            msrp_listen: loopback(msrp),
            next_hops: vec![Peer {
                address: loopback(peer),
                transport: Transport::Udp,
            }],
            allow: vec![loop_net],
            domain: domain.to_string(),
        };
        Config {
            cpm: side(5060, 2855, 5070, "cpm.example.net"),
            simple: side(5062, 2856, 5072, "simple.example.net"),
            admin_listen: loopback(9464),
            log_level: "info".to_string(),
            mappings: None,
            limits: Limits {
                sip_max_message: 64 * 1024,
                sip_max_headers: 128,
                sip_max_line: 8 * 1024,
                msrp_max_chunk: 1024 * 1024,
                max_sessions: 100_000,
                table_cap: 1_000_000,
                queue_depth: 1_024,
            },
            timers: Timers {
                t1_ms: 500,
                t2_ms: 4_000,
                t4_ms: 5_000,
                sweep_interval_ms: 1_000,
                msrp_stall_ms: 30_000,
                msrp_connect_ms: 30_000,
                probe_interval_ms: 30_000,
                memory_trim_ms: 10_000,
            },
            store: StoreConfig::default(),
            availability: AvailabilityConfig {
                reg_event: RegEventMode::Off,
                registrar: None,
                registrar_on_cpm: true,
                subscribe_expires_s: 3_761,
                refresh_margin_s: 60,
                third_party_register: true,
                retry_initial_ms: 30_000,
                retry_max_ms: 3_600_000,
                max_subscriptions: 100_000,
            },
            record: RecordConfig::default(),
            msrp: MsrpConfig::default(),
        }
    }
}

impl Config {
    /// The gateway's own addresses on each side, as the translator writes them: its Contact
    /// (`sip:iwf@` the first SIP listen address, UDP first) and its MSRP endpoint.
    pub fn addresses(&self) -> crate::translate::session::Addresses {
        use crate::translate::session::{Addresses, SideAddresses};
        let side = |c: &SideConfig| {
            let sip = c.sip_udp.first().or(c.sip_tcp.first());
            SideAddresses {
                contact: match sip {
                    Some(a) => format!("sip:iwf@{a}"),
                    None => format!("sip:iwf@{}", c.domain),
                },
                msrp: c.msrp_listen,
                secure: false,
            }
        };
        Addresses {
            cpm: side(&self.cpm),
            simple: side(&self.simple),
        }
    }

    /// Read and validate a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, FileError> {
        let text = crate::tomlfile::read(path)?;
        Self::parse((&path.display().to_string(), &text))
    }

    /// Validate configuration text `(name for errors, text)`.
    pub fn parse(src: Source<'_>) -> Result<Config, FileError> {
        let raw: RawConfig = parse_toml(src)?;
        let mut c = Config::default();
        if let Some(a) = raw.admin_listen {
            c.admin_listen = addr(src, &a)?;
        }
        if let Some(m) = raw.mappings {
            c.mappings = Some(PathBuf::from(m.into_inner()));
        }
        if let Some(level) = raw.log_level {
            let span = level.span();
            let v = level.into_inner();
            if !["error", "warn", "info", "debug", "trace"].contains(&v.as_str()) {
                return Err(error_at(
                    src,
                    span.start,
                    format!("log_level: {v:?} is not one of error, warn, info, debug, trace"),
                ));
            }
            c.log_level = v;
        }
        if let Some(side) = raw.cpm {
            apply_side(src, side, &mut c.cpm)?;
        }
        if let Some(side) = raw.simple {
            apply_side(src, side, &mut c.simple)?;
        }
        if let Some(l) = raw.limits {
            let lim = &mut c.limits;
            set_count(
                src,
                l.sip_max_message,
                1_024,
                16 * 1024 * 1024,
                &mut lim.sip_max_message,
            )?;
            set_count(src, l.sip_max_headers, 16, 4_096, &mut lim.sip_max_headers)?;
            set_count(src, l.sip_max_line, 256, 1024 * 1024, &mut lim.sip_max_line)?;
            set_count(
                src,
                l.msrp_max_chunk,
                2_048,
                64 * 1024 * 1024,
                &mut lim.msrp_max_chunk,
            )?;
            set_count(src, l.max_sessions, 1, 10_000_000, &mut lim.max_sessions)?;
            set_count(src, l.table_cap, 16, 100_000_000, &mut lim.table_cap)?;
            set_count(src, l.queue_depth, 1, 1_000_000, &mut lim.queue_depth)?;
        }
        if let Some(t) = raw.timers {
            let tim = &mut c.timers;
            set_ms(src, t.t1_ms, 10, 60_000, &mut tim.t1_ms)?;
            set_ms(src, t.t2_ms, 10, 600_000, &mut tim.t2_ms)?;
            set_ms(src, t.t4_ms, 10, 600_000, &mut tim.t4_ms)?;
            set_ms(
                src,
                t.sweep_interval_ms,
                10,
                3_600_000,
                &mut tim.sweep_interval_ms,
            )?;
            set_ms(src, t.msrp_stall_ms, 100, 600_000, &mut tim.msrp_stall_ms)?;
            set_ms(
                src,
                t.msrp_connect_ms,
                100,
                600_000,
                &mut tim.msrp_connect_ms,
            )?;
            set_ms(
                src,
                t.probe_interval_ms,
                0,
                3_600_000,
                &mut tim.probe_interval_ms,
            )?;
            set_ms(src, t.memory_trim_ms, 0, 3_600_000, &mut tim.memory_trim_ms)?;
            if tim.memory_trim_ms != 0 && tim.memory_trim_ms < 1_000 {
                // Each trim walks the whole heap: more often than once a second costs more
                // than it gives back.
                return Err(error_at(
                    src,
                    0,
                    "timers: memory_trim_ms must be 0 (off) or at least 1000",
                ));
            }
            if tim.t2_ms < tim.t1_ms {
                return Err(error_at(
                    src,
                    0,
                    "timers: t2_ms must not be below t1_ms (RFC 3261 §17.1.2.2)",
                ));
            }
        }
        if let Some(st) = raw.store {
            apply_store(src, st, &mut c.store)?;
        }
        if let Some(a) = raw.availability {
            apply_availability(src, a, &mut c.availability)?;
        }
        if let Some(r) = raw.record {
            apply_record(src, r, &mut c.record)?;
        }
        if let Some(m) = raw.msrp {
            let msrp = &mut c.msrp;
            if let Some(v) = m.share_connections {
                msrp.share_connections = v;
            }
            set_count(
                src,
                m.max_sessions_per_connection,
                1,
                1_000_000,
                &mut msrp.max_sessions_per_connection,
            )?;
            set_ms(
                src,
                m.connection_idle_ms,
                0,
                86_400_000,
                &mut msrp.connection_idle_ms,
            )?;
            set_ms(src, m.share_wait_ms, 1, 30_000, &mut msrp.share_wait_ms)?;
        }
        check_distinct_listeners(src, &c)?;
        Ok(c)
    }
}

fn addr(src: Source<'_>, s: &Spanned<String>) -> Result<SocketAddr, FileError> {
    s.get_ref().parse().map_err(|_| {
        error_at(
            src,
            s.span().start,
            format!("{:?} is not an address:port", s.get_ref()),
        )
    })
}

fn addrs(src: Source<'_>, list: &[Spanned<String>]) -> Result<Vec<SocketAddr>, FileError> {
    list.iter().map(|s| addr(src, s)).collect()
}

fn apply_store(src: Source<'_>, raw: RawStore, store: &mut StoreConfig) -> Result<(), FileError> {
    if let Some(loc) = raw.location {
        let span = loc.span();
        let text = loc.into_inner();
        store.location = if text.trim().is_empty() {
            None
        } else {
            if let Err(e) = crate::store::Location::parse(&text) {
                return Err(error_at(src, span.start, format!("store.location: {e}")));
            }
            Some(text)
        };
    }
    for (raw, policy) in [(raw.cpm, &mut store.cpm), (raw.simple, &mut store.simple)] {
        let Some(raw) = raw else { continue };
        if let Some(list) = raw.unavailable {
            let mut codes = Vec::with_capacity(list.len());
            for code in list {
                let span = code.span();
                let n = code.into_inner();
                // Only failures can mean "not available"; a 2xx/1xx is never stored over.
                if !(300..=699).contains(&n) {
                    return Err(error_at(
                        src,
                        span.start,
                        format!("store: unavailable status {n} is not a SIP failure (300-699)"),
                    ));
                }
                codes.push(u16::try_from(n).unwrap_or(699));
            }
            policy.unavailable = codes;
        }
        set_ms(
            src,
            raw.max_age_s,
            1,
            365 * 24 * 3600,
            &mut policy.max_age_s,
        )?;
    }
    set_ms(
        src,
        raw.max_user_messages,
        1,
        10_000_000,
        &mut store.max_user_messages,
    )?;
    set_ms(
        src,
        raw.max_user_bytes,
        1_024,
        1 << 40,
        &mut store.max_user_bytes,
    )?;
    set_ms(
        src,
        raw.max_total_bytes,
        1_024,
        1 << 50,
        &mut store.max_total_bytes,
    )?;
    set_ms(
        src,
        raw.expiry_check_ms,
        10,
        86_400_000,
        &mut store.expiry_check_ms,
    )?;
    set_count(
        src,
        raw.max_in_flight,
        1,
        1_000_000,
        &mut store.max_in_flight,
    )?;
    if let Some(p) = raw.on_msrp_drop {
        store.on_msrp_drop = match p.get_ref().as_str() {
            "store" => MsrpDropPolicy::Store,
            "end" => MsrpDropPolicy::End,
            v => {
                return Err(error_at(
                    src,
                    p.span().start,
                    format!("store.on_msrp_drop: {v:?} is not one of store, end"),
                ));
            }
        };
    }
    Ok(())
}

fn apply_side(src: Source<'_>, raw: RawSide, side: &mut SideConfig) -> Result<(), FileError> {
    if let Some(v) = raw.sip_udp {
        side.sip_udp = addrs(src, &v)?;
    }
    if let Some(v) = raw.sip_tcp {
        side.sip_tcp = addrs(src, &v)?;
    }
    if side.sip_udp.is_empty() && side.sip_tcp.is_empty() {
        return Err(error_at(
            src,
            0,
            "a side needs at least one SIP listen address",
        ));
    }
    if let Some(v) = raw.msrp_listen {
        side.msrp_listen = addr(src, &v)?;
    }
    if let Some(hops) = raw.next_hops {
        if hops.is_empty() {
            return Err(error_at(src, 0, "next_hops must name at least one peer"));
        }
        side.next_hops = hops
            .iter()
            .map(|h| {
                Ok(Peer {
                    address: addr(src, &h.get_ref().address)?,
                    transport: h.get_ref().transport,
                })
            })
            .collect::<Result<_, FileError>>()?;
    }
    if let Some(v) = raw.allow {
        side.allow = v
            .iter()
            .map(|c| {
                c.get_ref()
                    .parse()
                    .map_err(|e: String| error_at(src, c.span().start, e))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(d) = raw.domain {
        let ok = !d.get_ref().is_empty()
            && d.get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(error_at(
                src,
                d.span().start,
                format!("{:?} is not a domain name", d.get_ref()),
            ));
        }
        side.domain = d.into_inner();
    }
    Ok(())
}

fn apply_availability(
    src: Source<'_>,
    raw: RawAvailability,
    a: &mut AvailabilityConfig,
) -> Result<(), FileError> {
    if let Some(m) = raw.reg_event {
        a.reg_event = match m.get_ref().as_str() {
            "off" => RegEventMode::Off,
            "list" => RegEventMode::List,
            "per-user" => RegEventMode::PerUser,
            v => {
                return Err(error_at(
                    src,
                    m.span().start,
                    format!("reg_event: {v:?} is not one of off, list, per-user"),
                ));
            }
        };
    }
    if let Some(r) = raw.registrar {
        let v = r.get_ref();
        let ok = ["sip:", "sips:"].iter().any(|s| {
            v.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)) && v.len() > s.len()
        }) && !v.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>');
        if !ok {
            return Err(error_at(
                src,
                r.span().start,
                format!("registrar: {v:?} is not a SIP or SIPS URI"),
            ));
        }
        a.registrar = Some(r.into_inner());
    }
    if let Some(side) = raw.registrar_side {
        a.registrar_on_cpm = match side.get_ref().as_str() {
            "cpm" => true,
            "simple" => false,
            v => {
                return Err(error_at(
                    src,
                    side.span().start,
                    format!("registrar_side: {v:?} is not cpm or simple"),
                ));
            }
        };
    }
    let secs = |v: Option<Spanned<u64>>, min: u64, max: u64, t: &mut u32| {
        in_range(src, v, min, max).map(|n| {
            if let Some(n) = n {
                *t = u32::try_from(n).unwrap_or(u32::MAX);
            }
        })
    };
    // RFC 6665 §4.1.2.1 leaves the duration to the subscriber; a week bounds a lost NOTIFY.
    secs(
        raw.subscribe_expires_s,
        60,
        604_800,
        &mut a.subscribe_expires_s,
    )?;
    secs(raw.refresh_margin_s, 1, 86_400, &mut a.refresh_margin_s)?;
    if let Some(b) = raw.third_party_register {
        a.third_party_register = b;
    }
    set_ms(
        src,
        raw.retry_initial_ms,
        100,
        86_400_000,
        &mut a.retry_initial_ms,
    )?;
    set_ms(src, raw.retry_max_ms, 100, 604_800_000, &mut a.retry_max_ms)?;
    set_count(
        src,
        raw.max_subscriptions,
        1,
        10_000_000,
        &mut a.max_subscriptions,
    )?;
    if a.retry_max_ms < a.retry_initial_ms {
        return Err(error_at(
            src,
            0,
            "availability: retry_max_ms must not be below retry_initial_ms",
        ));
    }
    if a.refresh_margin_s >= a.subscribe_expires_s {
        return Err(error_at(
            src,
            0,
            "availability: refresh_margin_s must be below subscribe_expires_s",
        ));
    }
    if a.reg_event == RegEventMode::List && a.registrar.is_none() {
        return Err(error_at(
            src,
            0,
            "availability: reg_event = \"list\" needs a registrar URI",
        ));
    }
    Ok(())
}

/// `value` if present, refused when outside `min..=max`.
fn in_range(
    src: Source<'_>,
    value: Option<Spanned<u64>>,
    min: u64,
    max: u64,
) -> Result<Option<u64>, FileError> {
    let Some(v) = value else { return Ok(None) };
    let n = *v.get_ref();
    if !(min..=max).contains(&n) {
        return Err(error_at(
            src,
            v.span().start,
            format!("{n} is out of range ({min}..={max})"),
        ));
    }
    Ok(Some(n))
}

fn set_count(
    src: Source<'_>,
    value: Option<Spanned<u64>>,
    min: u64,
    max: u64,
    target: &mut usize,
) -> Result<(), FileError> {
    if let Some(n) = in_range(src, value, min, max)? {
        *target = usize::try_from(n).unwrap_or(usize::MAX);
    }
    Ok(())
}

fn set_ms(
    src: Source<'_>,
    value: Option<Spanned<u64>>,
    min: u64,
    max: u64,
    target: &mut u64,
) -> Result<(), FileError> {
    if let Some(n) = in_range(src, value, min, max)? {
        *target = n;
    }
    Ok(())
}

fn apply_record(src: Source<'_>, raw: RawRecord, r: &mut RecordConfig) -> Result<(), FileError> {
    if let Some(v) = raw.enabled {
        r.enabled = v;
    }
    if let Some(v) = raw.preferences {
        r.preferences = Some(PathBuf::from(v));
    }
    if let Some(v) = raw.queue_path {
        r.queue_path = PathBuf::from(v);
    }
    if let Some(v) = raw.imap {
        r.imap = addr(src, &v)?;
    }
    if let Some(v) = raw.master_user {
        r.master_user = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = raw.password {
        r.password = v;
    }
    set_ms(src, raw.upload_wait_ms, 0, 60_000, &mut r.upload_wait_ms)?;
    set_ms(
        src,
        raw.imap_timeout_ms,
        100,
        600_000,
        &mut r.imap_timeout_ms,
    )?;
    set_ms(src, raw.retry_base_ms, 10, 600_000, &mut r.retry_base_ms)?;
    set_ms(src, raw.retry_max_ms, 10, 86_400_000, &mut r.retry_max_ms)?;
    set_count(
        src,
        raw.queue_capacity,
        1,
        100_000_000,
        &mut r.queue_capacity,
    )?;
    set_count(
        src,
        raw.max_object_bytes,
        1_024,
        1024 * 1024 * 1024,
        &mut r.max_object_bytes,
    )?;
    set_count(src, raw.upload_workers, 1, 64, &mut r.upload_workers)?;
    Ok(())
}

/// Two sockets of the same protocol on one address cannot both be bound.
fn check_distinct_listeners(src: Source<'_>, c: &Config) -> Result<(), FileError> {
    let mut udp: Vec<SocketAddr> = Vec::new();
    let mut tcp: Vec<SocketAddr> = Vec::new();
    for side in [&c.cpm, &c.simple] {
        udp.extend(&side.sip_udp);
        tcp.extend(&side.sip_tcp);
        tcp.push(side.msrp_listen);
    }
    tcp.push(c.admin_listen);
    for (proto, list) in [("UDP", &udp), ("TCP", &tcp)] {
        for (i, a) in list.iter().enumerate() {
            // Port 0 asks the system for a free port each time: no clash.
            if a.port() != 0 && list.iter().skip(i + 1).any(|b| b == a) {
                return Err(error_at(
                    src,
                    0,
                    format!("{a} is used by two {proto} listeners"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, FileError> {
        Config::parse(("test.toml", text))
    }

    #[test]
    fn empty_file_is_the_loopback_default_and_the_example_is_valid() {
        assert_eq!(parse("").unwrap(), Config::default());
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/cpm-iwf.toml"))
                .unwrap();
        let c = parse(&example).unwrap();
        assert_eq!(c.cpm.next_hops.len(), 1);
        assert!(
            c.cpm
                .allow
                .iter()
                .any(|n| n.contains("127.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn the_record_section_is_read_and_checked() {
        let c = parse(
            "[record]\nenabled = true\npreferences = \"p.toml\"\nimap = \"127.0.0.1:1143\"\n\
             master_user = \"m\"\npassword = \"s\"\nupload_wait_ms = 0\nretry_base_ms = 50\n",
        )
        .unwrap();
        assert!(c.record.enabled);
        assert_eq!(c.record.preferences, Some(PathBuf::from("p.toml")));
        assert_eq!(c.record.imap.port(), 1143);
        assert_eq!(c.record.master_user.as_deref(), Some("m"));
        assert_eq!(c.record.upload_wait_ms, 0);
        assert_eq!(c.record.retry_max_ms, RecordConfig::default().retry_max_ms);
        assert_eq!(
            parse("[record]\nmaster_user = \"\"\n")
                .unwrap()
                .record
                .master_user,
            None
        );
        let e = parse("[record]\nimap = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[record]\nqueue_capacity = 0\n").unwrap_err();
        assert!(e.reason.contains("out of range"), "{e}");
        assert!(
            parse("[record]\nenable = true\n").is_err(),
            "a typo is an error"
        );
    }

    #[test]
    fn values_override_defaults() {
        let c = parse(
            "[simple]\nsip_tcp = []\nnext_hops = [{ address = \"127.0.0.1:6000\", transport = \"tcp\" }]\n\
             [limits]\nsip_max_message = 2048\n[timers]\nt1_ms = 100\n",
        )
        .unwrap();
        assert!(c.simple.sip_tcp.is_empty());
        assert_eq!(c.simple.next_hops[0].transport, Transport::Tcp);
        assert_eq!(c.limits.sip_max_message, 2048);
        assert_eq!(c.timers.t1_ms, 100);
        assert_eq!(c.cpm, Config::default().cpm);
    }

    #[test]
    fn faults_point_at_line_and_column() {
        let e = parse("[cpm]\nmsrp_listen = \"localhost\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 15));
        assert!(e.to_string().starts_with("test.toml:2:15: "), "{e}");

        let e = parse("[cpm]\nallow = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(e.reason.contains("prefix length"), "{e}");
        assert_eq!(e.line, 2);

        let e = parse("[limits]\nsip_max_headers = 5\n").unwrap_err();
        assert!(e.reason.contains("out of range"), "{e}");

        let e = parse("[cpm]\nsip_udp = [\"127.0.0.1:5062\"]\n").unwrap_err();
        assert!(e.reason.contains("two UDP listeners"), "{e}");

        let e = parse("[cpm]\nlisten = 1\n").unwrap_err();
        assert!(e.reason.contains("listen"), "{e}");
        assert_eq!(e.line, 2);

        let e = parse("[timers]\nt1_ms = 5000\n").unwrap_err();
        assert!(e.reason.contains("t2_ms"), "{e}");
    }

    #[test]
    fn on_msrp_drop_is_store_or_end() {
        assert_eq!(Config::default().store.on_msrp_drop, MsrpDropPolicy::Store);
        let c = parse("[store]\non_msrp_drop = \"end\"\n").unwrap();
        assert_eq!(c.store.on_msrp_drop, MsrpDropPolicy::End);
        let e = parse("[store]\non_msrp_drop = \"report\"\n").unwrap_err();
        assert!(e.reason.contains("store, end"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn msrp_section() {
        let d = Config::default().msrp;
        assert!(!d.share_connections);
        let c = parse(
            "[msrp]\nshare_connections = true\nmax_sessions_per_connection = 50\n\
             connection_idle_ms = 0\nshare_wait_ms = 20\n",
        )
        .unwrap();
        assert!(c.msrp.share_connections);
        assert_eq!(c.msrp.max_sessions_per_connection, 50);
        assert_eq!(c.msrp.connection_idle_ms, 0);
        assert_eq!(c.msrp.share_wait_ms, 20);
        let e = parse("[msrp]\nshare_connections = true\nmax_sessions_per_connection = 0\n")
            .unwrap_err();
        assert!(e.reason.contains("out of range"), "{e}");
        assert_eq!(e.line, 3);
        let e = parse("[msrp]\nshare_wait_ms = 0\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("[msrp]\nshare = true\n").is_err());
    }

    #[test]
    fn availability_section() {
        let a = Config::default().availability;
        assert_eq!(a.reg_event, RegEventMode::Off);
        assert!(a.third_party_register);
        let c = parse(
            "[availability]\nreg_event = \"list\"\nregistrar = \"sip:registrar@cpm.example.net\"\n\
             registrar_side = \"simple\"\nsubscribe_expires_s = 600\nrefresh_margin_s = 30\n\
             third_party_register = false\nretry_initial_ms = 1000\nretry_max_ms = 8000\n\
             max_subscriptions = 10\n",
        )
        .unwrap()
        .availability;
        assert_eq!(c.reg_event, RegEventMode::List);
        assert_eq!(
            c.registrar.as_deref(),
            Some("sip:registrar@cpm.example.net")
        );
        assert!(!c.registrar_on_cpm && !c.third_party_register);
        assert_eq!((c.subscribe_expires_s, c.refresh_margin_s), (600, 30));
        assert_eq!((c.retry_initial_ms, c.retry_max_ms), (1000, 8000));
        assert_eq!(c.max_subscriptions, 10);
        for (text, fault) in [
            ("reg_event = \"sometimes\"", "off, list, per-user"),
            ("registrar = \"http://x\"", "SIP or SIPS URI"),
            ("registrar = \"sip:a b\"", "SIP or SIPS URI"),
            ("registrar_side = \"left\"", "cpm or simple"),
            ("subscribe_expires_s = 5", "out of range"),
            (
                "retry_initial_ms = 5000\nretry_max_ms = 1000",
                "retry_max_ms",
            ),
            (
                "subscribe_expires_s = 60\nrefresh_margin_s = 60",
                "refresh_margin_s",
            ),
            ("reg_event = \"list\"", "needs a registrar"),
            ("registrar_port = 1", "registrar_port"),
        ] {
            let e = parse(&format!("[availability]\n{text}\n")).unwrap_err();
            assert!(e.reason.contains(fault), "{text}: {e}");
        }
    }

    #[test]
    fn cidr_matching() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let n: Cidr = "2001:db8::/33".parse().unwrap();
        assert!(n.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!n.contains("2001:db8:8000::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let one: Cidr = "192.0.2.1".parse().unwrap();
        assert!(one.contains("192.0.2.1".parse().unwrap()));
        assert!(!one.contains("192.0.2.2".parse().unwrap()));
        assert!("300.1.1.1/8".parse::<Cidr>().is_err());
    }
}
