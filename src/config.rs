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
    /// Recording to the users' Message Storage Server (issue 8, CPM 2.0 SD 5.2.1.2).
    pub record: RecordConfig,
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
    /// Most chat sessions at once (each is two SIP dialogs and two MSRP connections).
    pub max_sessions: usize,
    /// Most entries of each correlation table kind.
    pub table_cap: usize,
    /// Most messages queued towards one connection before it is considered stuck.
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
    record: Option<RawRecord>,
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
            },
            record: RecordConfig::default(),
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
            if tim.t2_ms < tim.t1_ms {
                return Err(error_at(
                    src,
                    0,
                    "timers: t2_ms must not be below t1_ms (RFC 3261 §17.1.2.2)",
                ));
            }
        }
        if let Some(r) = raw.record {
            apply_record(src, r, &mut c.record)?;
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
