//! Every metric the node records: names, kinds, labels and help text in one place ([`ALL`]), so
//! that the Grafana dashboard (`grafana/cpm-iwf.json`, checked by `tests/grafana_dashboard.rs`)
//! and the README's table can be checked against them.
//!
//! Naming follows Prometheus practice: every name starts with `cpm_iwf_`, counters end in
//! `_total`, units are base units in the name (`_seconds`, `_bytes`). Every label value comes
//! from a fixed enum below ([`Direction`], [`Method`], [`StatusClass`], ...), never from a
//! message: no user, Call-ID or address ever becomes a label, so the number of series is bounded
//! by the product of the enums' sizes.
//!
//! The node calls [`install`] once at start (the admin server does it in
//! [`AdminServer::bind`](crate::node::admin::AdminServer::bind)) and then the helper functions
//! ([`sip_request`], [`translation`], ...). Before [`install`], or in a process that never calls
//! it (unit tests of other modules), every helper does nothing. After it, a helper is one atomic
//! operation on a handle cached per label combination: the first use of a combination registers
//! it with the recorder, later uses neither allocate nor look anything up.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Label};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::translate::TranslateError;
use crate::translate::state::{Key, Side};
use crate::wire::Answer;

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (restarts at 0 with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

impl MetricKind {
    /// The name Prometheus gives the type in `# TYPE` lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric family as exposed on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The exposed name.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// The names of its labels (values from the enums of this module).
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

// ---------------------------------------------------------------------------------------------
// The declarations.

/// SIP requests received from (`in`) or sent to (`out`) a side, retransmissions included.
pub const SIP_REQUESTS: Metric = Metric {
    name: "cpm_iwf_sip_requests_total",
    kind: MetricKind::Counter,
    labels: &["side", "direction", "method"],
    help: "SIP requests received from (direction=in) or sent to (direction=out) a side, \
           retransmissions included.",
};

/// SIP responses received from or sent to a side, by the method of their CSeq and status class.
pub const SIP_RESPONSES: Metric = Metric {
    name: "cpm_iwf_sip_responses_total",
    kind: MetricKind::Counter,
    labels: &["side", "direction", "method", "status_class"],
    help: "SIP responses received from (direction=in) or sent to (direction=out) a side, by CSeq \
           method and status class (RFC 3261 section 21).",
};

/// Retransmissions: received ones absorbed by a transaction (`in`), and the node's own on timer
/// A, E or G (`out`) (RFC 3261 §17).
pub const SIP_RETRANSMISSIONS: Metric = Metric {
    name: "cpm_iwf_sip_retransmissions_total",
    kind: MetricKind::Counter,
    labels: &["side", "direction", "method"],
    help: "SIP retransmissions: received and absorbed by a transaction (direction=in), or sent by \
           the node on timer A, E or G (direction=out) (RFC 3261 section 17).",
};

/// SIP input that could not be parsed, by the answer it got.
pub const SIP_PARSE_ERRORS: Metric = Metric {
    name: "cpm_iwf_sip_parse_errors_total",
    kind: MetricKind::Counter,
    labels: &["side", "status"],
    help: "SIP messages that could not be parsed, by the status code answered (status=dropped: \
           not answerable, RFC 3261 section 18.1.2).",
};

/// Client transactions that ended on timer B or F without a final response.
pub const SIP_TRANSACTION_TIMEOUTS: Metric = Metric {
    name: "cpm_iwf_sip_transaction_timeouts_total",
    kind: MetricKind::Counter,
    labels: &["side", "method"],
    help: "SIP client transactions of the node that got no final response before timer B or F \
           (RFC 3261 section 17.1).",
};

/// Client transaction duration, request sent to final response.
pub const SIP_TRANSACTION_DURATION: Metric = Metric {
    name: "cpm_iwf_sip_transaction_duration_seconds",
    kind: MetricKind::Histogram,
    labels: &["side", "method"],
    help: "Time from the node sending a SIP request to a side to the final response (client \
           transaction, RFC 3261 section 17.1).",
};

/// Packets and connections refused by a side's source access list.
pub const ACL_DROPS: Metric = Metric {
    name: "cpm_iwf_acl_drops_total",
    kind: MetricKind::Counter,
    labels: &["side", "transport"],
    help: "Datagrams dropped and connections closed because their source is outside the side's \
           allow list.",
};

/// SIP datagrams dropped before the node read them: its UDP sockets' receive buffers were
/// full (the kernel's count), or, where a task reads them, its inbound queue was.
pub const SIP_INBOUND_DROPS: Metric = Metric {
    name: "cpm_iwf_sip_inbound_drops_total",
    kind: MetricKind::Counter,
    labels: &["side"],
    help: "SIP datagrams dropped before the node read them: a full UDP receive buffer or inbound \
           queue (the sender retransmits, RFC 3261 section 17.1.2.2); non-zero means the node is \
           overloaded.",
};

/// Messages translated, by the side they came from and kind.
pub const TRANSLATIONS: Metric = Metric {
    name: "cpm_iwf_translations_total",
    kind: MetricKind::Counter,
    labels: &["side", "kind"],
    help: "Messages translated and passed to the other side, by the side they came from and kind.",
};

/// Messages that could not be translated, by reason.
pub const TRANSLATION_FAILURES: Metric = Metric {
    name: "cpm_iwf_translation_failures_total",
    kind: MetricKind::Counter,
    labels: &["side", "kind", "reason"],
    help: "Messages that could not be translated, by the side they came from, kind and reason.",
};

/// Time spent inside the node, message received to its translation sent.
pub const PROCESSING_DURATION: Metric = Metric {
    name: "cpm_iwf_processing_duration_seconds",
    kind: MetricKind::Histogram,
    labels: &["kind"],
    help: "Time a message spends inside the node, from its receipt to the send of its \
           translation.",
};

/// SIP dialogs the node holds (two per chat session: one per leg).
pub const DIALOGS_ACTIVE: Metric = Metric {
    name: "cpm_iwf_dialogs_active",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "SIP dialogs the node currently holds (a chat session has one on each side).",
};

/// Chat sessions whose MSRP legs are open.
pub const MSRP_SESSIONS_ACTIVE: Metric = Metric {
    name: "cpm_iwf_msrp_sessions_active",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Chat sessions whose MSRP relay is open (RFC 4975).",
};

/// MSRP chunk body bytes relayed.
pub const MSRP_BYTES: Metric = Metric {
    name: "cpm_iwf_msrp_relayed_bytes_total",
    kind: MetricKind::Counter,
    labels: &["direction"],
    help: "MSRP chunk body bytes relayed between the legs of chat sessions.",
};

/// MSRP chunks relayed.
pub const MSRP_CHUNKS: Metric = Metric {
    name: "cpm_iwf_msrp_relayed_chunks_total",
    kind: MetricKind::Counter,
    labels: &["direction"],
    help: "MSRP SEND chunks relayed between the legs of chat sessions (RFC 4975 section 5.1).",
};

/// Correlation table entries per kind.
pub const TABLE_ENTRIES: Metric = Metric {
    name: "cpm_iwf_table_entries",
    kind: MetricKind::Gauge,
    labels: &["kind"],
    help: "Entries in the correlation table, by kind.",
};

/// Correlation table capacity per kind.
pub const TABLE_CAPACITY: Metric = Metric {
    name: "cpm_iwf_table_capacity",
    kind: MetricKind::Gauge,
    labels: &["kind"],
    help: "Most entries the correlation table keeps of each kind (limits.table_cap).",
};

/// Correlation table inserts refused at capacity.
pub const TABLE_REFUSED: Metric = Metric {
    name: "cpm_iwf_table_refused_total",
    kind: MetricKind::Counter,
    labels: &["kind"],
    help: "Correlation table inserts refused because the kind was at its capacity.",
};

/// Correlation table entries expired.
pub const TABLE_EXPIRED: Metric = Metric {
    name: "cpm_iwf_table_expired_total",
    kind: MetricKind::Counter,
    labels: &["kind"],
    help: "Correlation table entries removed because their time to live ran out.",
};

/// Whether the node is ready (what `/readyz` answers).
pub const READY: Metric = Metric {
    name: "cpm_iwf_ready",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "1 when the node is ready to serve (listeners bound), else 0; what /readyz answers.",
};

/// Build information.
pub const BUILD_INFO: Metric = Metric {
    name: "cpm_iwf_build_info",
    kind: MetricKind::Gauge,
    labels: &["version"],
    help: "Always 1; the version label is the cpm-iwf version.",
};

/// When the process started.
pub const PROCESS_START_TIME: Metric = Metric {
    name: "cpm_iwf_process_start_time_seconds",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Start time of the process (when its metrics were installed), seconds since the Unix \
           epoch.",
};

/// Resident memory.
pub const PROCESS_RESIDENT_MEMORY: Metric = Metric {
    name: "cpm_iwf_process_resident_memory_bytes",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Resident memory of the process (VmRSS of /proc/self/status), read at each scrape.",
};

/// Open file descriptors.
pub const PROCESS_OPEN_FDS: Metric = Metric {
    name: "cpm_iwf_process_open_fds",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Open file descriptors of the process (entries of /proc/self/fd), read at each scrape.",
};

/// Requests the admin HTTP server answered.
pub const ADMIN_REQUESTS: Metric = Metric {
    name: "cpm_iwf_admin_requests_total",
    kind: MetricKind::Counter,
    labels: &["path", "status"],
    help: "Requests the admin HTTP server answered, by path (known paths only) and status code.",
};

/// Connections the admin HTTP server refused at its connection limit.
pub const ADMIN_CONNECTIONS_REFUSED: Metric = Metric {
    name: "cpm_iwf_admin_connections_refused_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Connections the admin HTTP server closed at once because it had its maximum open.",
};

/// Objects recorded in a Message Storage Server (issue 8).
pub const RECORD_OBJECTS: Metric = Metric {
    name: "cpm_iwf_record_objects_total",
    kind: MetricKind::Counter,
    labels: &["kind"],
    help: "Objects the MSS confirmed recorded (IMAP APPEND OK), by kind (standalone, session).",
};

/// Bytes of the objects recorded.
pub const RECORD_BYTES: Metric = Metric {
    name: "cpm_iwf_record_bytes_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Bytes of the objects the MSS confirmed recorded.",
};

/// Failed recording attempts and refusals.
pub const RECORD_FAILURES: Metric = Metric {
    name: "cpm_iwf_record_failures_total",
    kind: MetricKind::Counter,
    labels: &["reason"],
    help: "Recording jobs that failed an attempt (connect, timeout, login, imap) or were refused (queue_full, queue_error, too_large, reassembly).",
};

/// Jobs waiting in the durable upload queue.
pub const RECORD_QUEUE_DEPTH: Metric = Metric {
    name: "cpm_iwf_record_queue_depth",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Recording jobs (uploads, deletions) waiting in the durable queue for the MSS.",
};

/// Recorded objects deleted because the delivery of their message failed.
pub const RECORD_DELETIONS: Metric = Metric {
    name: "cpm_iwf_record_deletions_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Recorded standalone messages deleted from the MSS (or dropped before upload) because their delivery failed.",
};

/// Every metric the node exposes.
pub const ALL: [Metric; 36] = [
    SIP_REQUESTS,
    SIP_RESPONSES,
    SIP_RETRANSMISSIONS,
    SIP_PARSE_ERRORS,
    SIP_TRANSACTION_TIMEOUTS,
    SIP_TRANSACTION_DURATION,
    ACL_DROPS,
    SIP_INBOUND_DROPS,
    TRANSLATIONS,
    TRANSLATION_FAILURES,
    PROCESSING_DURATION,
    DIALOGS_ACTIVE,
    MSRP_SESSIONS_ACTIVE,
    MSRP_BYTES,
    MSRP_CHUNKS,
    TABLE_ENTRIES,
    TABLE_CAPACITY,
    TABLE_REFUSED,
    TABLE_EXPIRED,
    READY,
    BUILD_INFO,
    PROCESS_START_TIME,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_OPEN_FDS,
    ADMIN_REQUESTS,
    ADMIN_CONNECTIONS_REFUSED,
    STORE_OPERATIONS,
    STORE_DELIVERIES,
    STORE_EXPIRED,
    STORE_TAKEOVERS,
    STORE_TAKEOVER_MESSAGES,
    RECORD_OBJECTS,
    RECORD_BYTES,
    RECORD_FAILURES,
    RECORD_QUEUE_DEPTH,
    RECORD_DELETIONS,
];

/// The names of [`ALL`], in the same order.
pub const NAMES: [&str; ALL.len()] = {
    let mut names = [""; ALL.len()];
    let mut i = 0;
    while i < ALL.len() {
        names[i] = ALL[i].name;
        i += 1;
    }
    names
};

/// Buckets of [`PROCESSING_DURATION`]: 10 µs to 1 s (a translation takes a few µs, a queue
/// behind a slow peer can take much longer).
pub const PROCESSING_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets of [`SIP_TRANSACTION_DURATION`]: 1 ms to 32 s (timer B and F fire at 64*T1 = 32 s
/// with the default T1 of 500 ms, RFC 3261 §17.1.1.2).
pub const TRANSACTION_BUCKETS: [f64; 14] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0,
];

// ---------------------------------------------------------------------------------------------
/// Store-and-forward: operations on the durable store (issue 7).
pub const STORE_OPERATIONS: Metric = Metric {
    name: "cpm_iwf_store_operations_total",
    kind: MetricKind::Counter,
    labels: &["op", "result"],
    help: "Store-and-forward operations on the durable store: put (a message kept for an \
           unavailable user, answered 202 only once durable), read, remove (after delivery), by \
           result (refused: too many puts in flight, 503).",
};

/// Store-and-forward: delivery attempts of kept messages and how they ended.
pub const STORE_DELIVERIES: Metric = Metric {
    name: "cpm_iwf_store_deliveries_total",
    kind: MetricKind::Counter,
    labels: &["side", "result"],
    help: "Deliveries of kept messages to a side: attempts, and their ends (delivered, \
           unavailable: retried later, rejected: removed), plus failed notifications sent to \
           senders (RFC 5438).",
};

/// Store-and-forward: kept messages given up at their maximum age.
pub const STORE_EXPIRED: Metric = Metric {
    name: "cpm_iwf_store_expired_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Kept messages removed unsent at their maximum age (a failed notification goes to the \
           sender when one was requested).",
};

/// Store-and-forward: chat sessions whose leg dropped mid-session and was taken over.
pub const STORE_TAKEOVERS: Metric = Metric {
    name: "cpm_iwf_store_takeovers_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Chat sessions whose MSRP connection to one user dropped mid-session (closed, reset, \
           stalled) and whose messages to that user the node keeps from then on \
           (store.on_msrp_drop = store).",
};

/// Store-and-forward: messages kept for the user of a dropped leg.
pub const STORE_TAKEOVER_MESSAGES: Metric = Metric {
    name: "cpm_iwf_store_takeover_messages_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Chat messages and notifications towards the user of a dropped MSRP leg that the node \
           kept durably (each answered 200 only then), to deliver when the user is back.",
};

// Label values.

/// A label whose values are a fixed list.
pub trait LabelValue: Copy + 'static {
    /// Every value, in index order.
    const ALL: &'static [Self];
    /// The label value as exposed.
    fn as_str(self) -> &'static str;
    /// Position in [`ALL`](Self::ALL).
    fn index(self) -> usize;
}

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
        }

        impl LabelValue for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

impl LabelValue for Side {
    const ALL: &'static [Self] = &[Side::Cpm, Side::Simple];
    fn as_str(self) -> &'static str {
        match self {
            Side::Cpm => "cpm",
            Side::Simple => "simple",
        }
    }
    fn index(self) -> usize {
        match self {
            Side::Cpm => 0,
            Side::Simple => 1,
        }
    }
}

label_enum! {
    /// Whether a message was received from a side or sent to it.
    Direction {
        /// Received from the side.
        In => "in",
        /// Sent to the side.
        Out => "out",
    }
}

label_enum! {
    /// A SIP method (RFC 3261 §7.1 and the extensions rsip knows), or `other`.
    Method {
        /// RFC 3261.
        Invite => "INVITE",
        /// RFC 3261.
        Ack => "ACK",
        /// RFC 3261.
        Bye => "BYE",
        /// RFC 3261.
        Cancel => "CANCEL",
        /// RFC 3261.
        Options => "OPTIONS",
        /// RFC 3261.
        Register => "REGISTER",
        /// RFC 3428.
        Message => "MESSAGE",
        /// RFC 6086.
        Info => "INFO",
        /// RFC 3311.
        Update => "UPDATE",
        /// RFC 3262.
        Prack => "PRACK",
        /// RFC 6665.
        Subscribe => "SUBSCRIBE",
        /// RFC 6665.
        Notify => "NOTIFY",
        /// RFC 3515.
        Refer => "REFER",
        /// RFC 3903.
        Publish => "PUBLISH",
        /// Any other extension method.
        Other => "other",
    }
}

impl Method {
    /// The label of a method token as it appears in a request line or CSeq (method names are
    /// case-sensitive, RFC 3261 §7.1).
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"MESSAGE" => Method::Message,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }
}

impl From<rsip::Method> for Method {
    fn from(m: rsip::Method) -> Method {
        match m {
            rsip::Method::Invite => Method::Invite,
            rsip::Method::Ack => Method::Ack,
            rsip::Method::Bye => Method::Bye,
            rsip::Method::Cancel => Method::Cancel,
            rsip::Method::Options => Method::Options,
            rsip::Method::Register => Method::Register,
            rsip::Method::Message => Method::Message,
            rsip::Method::Info => Method::Info,
            rsip::Method::Update => Method::Update,
            rsip::Method::PRack => Method::Prack,
            rsip::Method::Subscribe => Method::Subscribe,
            rsip::Method::Notify => Method::Notify,
            rsip::Method::Refer => Method::Refer,
            rsip::Method::Publish => Method::Publish,
        }
    }
}

label_enum! {
    /// The class of a SIP status code (RFC 3261 §21: the first digit).
    StatusClass {
        /// 1xx provisional.
        Provisional => "1xx",
        /// 2xx success.
        Success => "2xx",
        /// 3xx redirection.
        Redirection => "3xx",
        /// 4xx client error.
        ClientError => "4xx",
        /// 5xx server error.
        ServerError => "5xx",
        /// 6xx global failure.
        GlobalFailure => "6xx",
    }
}

impl StatusClass {
    /// The class of `code`. The parser only passes 100..=699 (RFC 3261 §25.1 `Status-Code` is
    /// three digits, §21 defines six classes); anything outside is clamped to 1xx or 6xx.
    pub fn of(code: u16) -> StatusClass {
        match code {
            ..200 => StatusClass::Provisional,
            200..300 => StatusClass::Success,
            300..400 => StatusClass::Redirection,
            400..500 => StatusClass::ClientError,
            500..600 => StatusClass::ServerError,
            _ => StatusClass::GlobalFailure,
        }
    }
}

label_enum! {
    /// The answer to SIP input that could not be parsed (`wire::sip::Fault::status`).
    ParseErrorStatus {
        /// 400 Bad Request.
        BadRequest => "400",
        /// 413 Request Entity Too Large.
        TooLarge => "413",
        /// 415 Unsupported Media Type.
        UnsupportedMediaType => "415",
        /// 501 Not Implemented.
        NotImplemented => "501",
        /// 505 Version Not Supported.
        VersionNotSupported => "505",
        /// Another status code.
        Other => "other",
        /// Not answered: a malformed response or no readable start line (RFC 3261 §18.1.2).
        Dropped => "dropped",
    }
}

impl ParseErrorStatus {
    /// The label of a codec's [`Answer`].
    pub fn of(answer: Answer) -> ParseErrorStatus {
        match answer {
            Answer::Status(400) => ParseErrorStatus::BadRequest,
            Answer::Status(413) => ParseErrorStatus::TooLarge,
            Answer::Status(415) => ParseErrorStatus::UnsupportedMediaType,
            Answer::Status(501) => ParseErrorStatus::NotImplemented,
            Answer::Status(505) => ParseErrorStatus::VersionNotSupported,
            Answer::Status(_) => ParseErrorStatus::Other,
            Answer::Drop => ParseErrorStatus::Dropped,
        }
    }
}

label_enum! {
    /// Which listener of a side the access list refused input on.
    AclTransport {
        /// SIP over UDP.
        SipUdp => "sip_udp",
        /// SIP over TCP.
        SipTcp => "sip_tcp",
        /// MSRP (over TCP).
        Msrp => "msrp",
    }
}

label_enum! {
    /// What a message is, for translations and the processing time.
    TranslationKind {
        /// A pager-mode MESSAGE with content (RFC 3428; CPM 2.0 standalone message).
        Pager => "pager",
        /// A chat-session request: INVITE, ACK, BYE, CANCEL of a session (RFC 3261, RFC 4975).
        Session => "session",
        /// An MSRP SEND or REPORT of a chat session (RFC 4975).
        Chat => "chat",
        /// A disposition notification (RFC 5438).
        Imdn => "imdn",
        /// An isComposing indication (RFC 3994).
        IsComposing => "iscomposing",
        /// A SIP response relayed back to the side of the request.
        Response => "response",
    }
}

label_enum! {
    /// Why a message could not be translated.
    FailureReason {
        /// The SIP message itself is malformed.
        Sip => "sip",
        /// The CPIM body (RFC 3862).
        Cpim => "cpim",
        /// The IMDN body (RFC 5438).
        Imdn => "imdn",
        /// The isComposing body (RFC 3994).
        IsComposing => "iscomposing",
        /// An MSRP chunk (RFC 4975).
        Msrp => "msrp",
        /// The SDP of a session (RFC 4566).
        Sdp => "sdp",
        /// A required header field is absent.
        MissingHeader => "missing_header",
        /// A header field's value is unusable.
        BadHeader => "bad_header",
        /// An INVITE without an SDP offer with an MSRP stream.
        NoOffer => "no_offer",
        /// A service the mappings do not interwork.
        UnknownService => "unknown_service",
        /// Nothing remembered for an in-dialog request, response, chunk or notification.
        UnknownDialog => "unknown_dialog",
        /// The correlation table was at its capacity.
        TableFull => "table_full",
        /// The other side did not answer in time (timer B or F).
        Timeout => "timeout",
        /// The node could not queue it towards the other side (a full queue).
        Overload => "overload",
        /// A method the gateway does not relay outside a dialog.
        MethodNotAllowed => "method_not_allowed",
    }
}

impl FailureReason {
    /// The reason of a translator error.
    pub fn of(e: &TranslateError) -> FailureReason {
        match e {
            TranslateError::Sip(_) => FailureReason::Sip,
            TranslateError::Cpim(_) => FailureReason::Cpim,
            TranslateError::Imdn(_) => FailureReason::Imdn,
            TranslateError::IsComposing(_) => FailureReason::IsComposing,
            TranslateError::Msrp(_) => FailureReason::Msrp,
            TranslateError::Sdp(_) => FailureReason::Sdp,
            TranslateError::Missing(_) => FailureReason::MissingHeader,
            TranslateError::Header { .. } => FailureReason::BadHeader,
            TranslateError::NoOffer => FailureReason::NoOffer,
            TranslateError::UnknownService(_) => FailureReason::UnknownService,
            TranslateError::NoDialog => FailureReason::UnknownDialog,
            TranslateError::MethodNotAllowed(_) => FailureReason::MethodNotAllowed,
        }
    }
}

label_enum! {
    /// The direction MSRP chunks are relayed in.
    RelayDirection {
        /// From the CPM leg to the SIMPLE IM leg.
        CpmToSimple => "cpm_to_simple",
        /// From the SIMPLE IM leg to the CPM leg.
        SimpleToCpm => "simple_to_cpm",
    }
}

impl RelayDirection {
    /// The direction of a chunk received from `side`.
    pub fn from_side(side: Side) -> RelayDirection {
        match side {
            Side::Cpm => RelayDirection::CpmToSimple,
            Side::Simple => RelayDirection::SimpleToCpm,
        }
    }
}

label_enum! {
    /// A kind of correlation table entry (`translate::state::Key`).
    TableKind {
        /// By `imdn.Message-ID`.
        Message => "message",
        /// By pair of users.
        Conversation => "conversation",
        /// By leg Call-ID.
        Dialog => "dialog",
        /// By MSRP session-id.
        Msrp => "msrp",
    }
}

impl TableKind {
    /// The kind of a table key.
    pub fn of(key: &Key) -> TableKind {
        match key {
            Key::Message(_) => TableKind::Message,
            Key::Conversation(_) => TableKind::Conversation,
            Key::Dialog(_) => TableKind::Dialog,
            Key::Msrp(_) => TableKind::Msrp,
        }
    }
}

label_enum! {
    /// The paths of the admin HTTP server, for its request counter.
    AdminPath {
        /// `/metrics`.
        Metrics => "/metrics",
        /// `/healthz`.
        Healthz => "/healthz",
        /// `/readyz`.
        Readyz => "/readyz",
        /// Any other target (answered 404 or 400).
        Other => "other",
    }
}

label_enum! {
    /// The status codes the admin HTTP server answers with (RFC 9110 §15).
    AdminStatus {
        /// 200 OK.
        Ok => "200",
        /// 400 Bad Request.
        BadRequest => "400",
        /// 404 Not Found.
        NotFound => "404",
        /// 405 Method Not Allowed.
        MethodNotAllowed => "405",
        /// 408 Request Timeout.
        RequestTimeout => "408",
        /// 431 Request Header Fields Too Large.
        HeaderFieldsTooLarge => "431",
        /// 501 Not Implemented.
        NotImplemented => "501",
        /// 503 Service Unavailable.
        Unavailable => "503",
        /// 505 HTTP Version Not Supported.
        VersionNotSupported => "505",
    }
}

// ---------------------------------------------------------------------------------------------
// Installation.

/// Why the metrics could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The exporter refused its configuration, or another recorder is already installed.
    #[error("installing the Prometheus recorder: {0}")]
    Build(#[from] BuildError),
}

/// The handles of every label combination, created on first use.
struct Slots<H>(Box<[OnceLock<H>]>);

impl<H> Slots<H> {
    fn new(len: usize) -> Self {
        Slots((0..len).map(|_| OnceLock::new()).collect())
    }

    /// The handle at `index`, registered with `make` the first time.
    fn get(&self, index: usize, make: impl FnOnce() -> H) -> Option<&H> {
        self.0.get(index).map(|slot| slot.get_or_init(make))
    }
}

/// Position of a label combination: mixed-radix number of the labels' indexes.
fn position(parts: &[(usize, usize)]) -> usize {
    parts
        .iter()
        .fold(0, |acc, &(index, count)| acc * count + index)
}

fn part<L: LabelValue>(l: L) -> (usize, usize) {
    (l.index(), L::ALL.len())
}

fn label<L: LabelValue>(key: &'static str, l: L) -> Label {
    Label::from_static_parts(key, l.as_str())
}

const fn size(parts: &[usize]) -> usize {
    let mut n = 1;
    let mut i = 0;
    while i < parts.len() {
        n *= parts[i];
        i += 1;
    }
    n
}

const SIDES: usize = 2;
const DIRECTIONS: usize = Direction::ALL.len();
const METHODS: usize = Method::ALL.len();
const CLASSES: usize = StatusClass::ALL.len();
const KINDS: usize = TranslationKind::ALL.len();
const REASONS: usize = FailureReason::ALL.len();
const TABLE_KINDS: usize = TableKind::ALL.len();

struct Registry {
    sip_requests: Slots<Counter>,
    sip_responses: Slots<Counter>,
    sip_retransmissions: Slots<Counter>,
    sip_parse_errors: Slots<Counter>,
    sip_transaction_timeouts: Slots<Counter>,
    sip_transaction_duration: Slots<Histogram>,
    acl_drops: Slots<Counter>,
    sip_inbound_drops: Slots<Counter>,
    translations: Slots<Counter>,
    translation_failures: Slots<Counter>,
    processing_duration: Slots<Histogram>,
    dialogs_active: Gauge,
    msrp_sessions_active: Gauge,
    msrp_bytes: Slots<Counter>,
    msrp_chunks: Slots<Counter>,
    table_entries: Slots<Gauge>,
    table_capacity: Slots<Gauge>,
    table_refused: Slots<Counter>,
    table_expired: Slots<Counter>,
    ready: Gauge,
    resident_memory: Gauge,
    open_fds: Gauge,
    admin_requests: Slots<Counter>,
    admin_connections_refused: Counter,
    store_operations: Slots<Counter>,
    store_deliveries: Slots<Counter>,
    store_expired: Counter,
    store_takeovers: Counter,
    store_takeover_messages: Counter,
}

impl Registry {
    fn new() -> Self {
        Registry {
            sip_requests: Slots::new(size(&[SIDES, DIRECTIONS, METHODS])),
            sip_responses: Slots::new(size(&[SIDES, DIRECTIONS, METHODS, CLASSES])),
            sip_retransmissions: Slots::new(size(&[SIDES, DIRECTIONS, METHODS])),
            sip_parse_errors: Slots::new(size(&[SIDES, ParseErrorStatus::ALL.len()])),
            sip_transaction_timeouts: Slots::new(size(&[SIDES, METHODS])),
            sip_transaction_duration: Slots::new(size(&[SIDES, METHODS])),
            acl_drops: Slots::new(size(&[SIDES, AclTransport::ALL.len()])),
            sip_inbound_drops: Slots::new(SIDES),
            translations: Slots::new(size(&[SIDES, KINDS])),
            translation_failures: Slots::new(size(&[SIDES, KINDS, REASONS])),
            processing_duration: Slots::new(KINDS),
            dialogs_active: metrics::gauge!(DIALOGS_ACTIVE.name),
            msrp_sessions_active: metrics::gauge!(MSRP_SESSIONS_ACTIVE.name),
            msrp_bytes: Slots::new(RelayDirection::ALL.len()),
            msrp_chunks: Slots::new(RelayDirection::ALL.len()),
            table_entries: Slots::new(TABLE_KINDS),
            table_capacity: Slots::new(TABLE_KINDS),
            table_refused: Slots::new(TABLE_KINDS),
            table_expired: Slots::new(TABLE_KINDS),
            ready: metrics::gauge!(READY.name),
            resident_memory: metrics::gauge!(PROCESS_RESIDENT_MEMORY.name),
            open_fds: metrics::gauge!(PROCESS_OPEN_FDS.name),
            admin_requests: Slots::new(size(&[AdminPath::ALL.len(), AdminStatus::ALL.len()])),
            admin_connections_refused: metrics::counter!(ADMIN_CONNECTIONS_REFUSED.name),
            store_operations: Slots::new(size(&[StoreOp::ALL.len(), StoreResult::ALL.len()])),
            store_deliveries: Slots::new(size(&[SIDES, DeliveryResult::ALL.len()])),
            store_expired: metrics::counter!(STORE_EXPIRED.name),
            store_takeovers: metrics::counter!(STORE_TAKEOVERS.name),
            store_takeover_messages: metrics::counter!(STORE_TAKEOVER_MESSAGES.name),
        }
    }
}

struct Installed {
    handle: PrometheusHandle,
    registry: Registry,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Installs the Prometheus recorder as the process's global `metrics` recorder, registers every
/// description ([`describe`]) and the series that exist from the start (gauges at their
/// initial values; at 0 the counters whose label sets are small and whose events are rare:
/// ACL drops, parse errors, transaction timeouts, table refusals and expiries, MSRP relay,
/// store-and-forward, so
/// that `rate()` sees their first increment and dashboards show 0 rather than no data), and
/// returns the handle that renders the exposition. Idempotent: later calls
/// return the same handle.
///
/// # Errors
/// Another `metrics` recorder was installed first in this process.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    if let Some(i) = INSTALLED.get() {
        return Ok(i.handle.clone());
    }
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = INSTALLED.get() {
        return Ok(i.handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(PROCESSING_DURATION.name.to_owned()),
            &PROCESSING_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(SIP_TRANSACTION_DURATION.name.to_owned()),
            &TRANSACTION_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    let installed = INSTALLED.get_or_init(|| Installed {
        handle,
        registry: Registry::new(),
    });
    initial_series(&installed.registry);
    Ok(installed.handle.clone())
}

/// Registers the `# HELP` text of every metric with the global recorder (a no-op before
/// [`install`]).
pub fn describe() {
    for m in ALL {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

fn initial_series(r: &Registry) {
    metrics::gauge!(BUILD_INFO.name, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    metrics::gauge!(PROCESS_START_TIME.name).set(start.as_secs_f64());
    r.dialogs_active.set(0.0);
    r.msrp_sessions_active.set(0.0);
    r.ready.set(0.0);
    for &kind in TableKind::ALL {
        table_entries(kind, 0);
        touch_table(r, kind);
    }
    for &side in Side::ALL {
        for &t in AclTransport::ALL {
            acl_counter(r, side, t);
        }
        inbound_drop_counter(r, side);
        for &s in ParseErrorStatus::ALL {
            parse_error_counter(r, side, s);
        }
        for &m in Method::ALL {
            timeout_counter(r, side, m);
        }
        for &d in DeliveryResult::ALL {
            store_delivery_counter(r, side, d);
        }
    }
    // Store-and-forward is rare traffic: its series exist from the start at 0.
    for &op in StoreOp::ALL {
        for &result in StoreResult::ALL {
            store_operation_counter(r, op, result);
        }
    }
    r.store_expired.increment(0);
    r.store_takeovers.increment(0);
    r.store_takeover_messages.increment(0);
    for &d in RelayDirection::ALL {
        msrp_counters(r, d);
    }
    record_initial();
    refresh_process();
}

/// The handle that renders `/metrics`, when [`install`] has run.
pub fn handle() -> Option<PrometheusHandle> {
    INSTALLED.get().map(|i| i.handle.clone())
}

/// Runs `f` on the registry when the metrics are installed.
fn with(f: impl FnOnce(&Registry)) {
    if let Some(i) = INSTALLED.get() {
        f(&i.registry);
    }
}

// ---------------------------------------------------------------------------------------------
// What the node calls.

/// A SIP request received from (`In`) or sent to (`Out`) `side`.
pub fn sip_request(side: Side, direction: Direction, method: Method) {
    with(|r| {
        let i = position(&[part(side), part(direction), part(method)]);
        let make = || {
            metrics::counter!(
                SIP_REQUESTS.name,
                vec![
                    label("side", side),
                    label("direction", direction),
                    label("method", method)
                ]
            )
        };
        if let Some(c) = r.sip_requests.get(i, make) {
            c.increment(1);
        }
    });
}

/// A SIP response with status `code` to a `method` request (its CSeq), received from or sent to
/// `side`.
pub fn sip_response(side: Side, direction: Direction, method: Method, code: u16) {
    let class = StatusClass::of(code);
    with(|r| {
        let i = position(&[part(side), part(direction), part(method), part(class)]);
        let make = || {
            metrics::counter!(
                SIP_RESPONSES.name,
                vec![
                    label("side", side),
                    label("direction", direction),
                    label("method", method),
                    label("status_class", class)
                ]
            )
        };
        if let Some(c) = r.sip_responses.get(i, make) {
            c.increment(1);
        }
    });
}

/// A SIP message: a request when `status` is `None`, else a response of that status code.
pub fn sip_message(side: Side, direction: Direction, method: Method, status: Option<u16>) {
    match status {
        None => sip_request(side, direction, method),
        Some(code) => sip_response(side, direction, method, code),
    }
}

/// A retransmission received and absorbed (`In`) or sent by the node (`Out`).
pub fn retransmission(side: Side, direction: Direction, method: Method) {
    with(|r| {
        let i = position(&[part(side), part(direction), part(method)]);
        let make = || {
            metrics::counter!(
                SIP_RETRANSMISSIONS.name,
                vec![
                    label("side", side),
                    label("direction", direction),
                    label("method", method)
                ]
            )
        };
        if let Some(c) = r.sip_retransmissions.get(i, make) {
            c.increment(1);
        }
    });
}

fn parse_error_counter(r: &Registry, side: Side, status: ParseErrorStatus) -> Option<&Counter> {
    let i = position(&[part(side), part(status)]);
    r.sip_parse_errors.get(i, || {
        metrics::counter!(
            SIP_PARSE_ERRORS.name,
            vec![label("side", side), label("status", status)]
        )
    })
}

/// SIP input from `side` that could not be parsed, and what it was answered with (the codec's
/// [`Answer`]).
pub fn sip_parse_error(side: Side, answer: Answer) {
    with(|r| {
        if let Some(c) = parse_error_counter(r, side, ParseErrorStatus::of(answer)) {
            c.increment(1);
        }
    });
}

/// A client transaction of the node towards `side` ended with a final response after
/// `elapsed`.
pub fn transaction_duration(side: Side, method: Method, elapsed: Duration) {
    with(|r| {
        let i = position(&[part(side), part(method)]);
        let make = || {
            metrics::histogram!(
                SIP_TRANSACTION_DURATION.name,
                vec![label("side", side), label("method", method)]
            )
        };
        if let Some(h) = r.sip_transaction_duration.get(i, make) {
            h.record(elapsed.as_secs_f64());
        }
    });
}

fn timeout_counter(r: &Registry, side: Side, method: Method) -> Option<&Counter> {
    let i = position(&[part(side), part(method)]);
    r.sip_transaction_timeouts.get(i, || {
        metrics::counter!(
            SIP_TRANSACTION_TIMEOUTS.name,
            vec![label("side", side), label("method", method)]
        )
    })
}

/// A client transaction of the node towards `side` timed out (timer B or F).
pub fn transaction_timeout(side: Side, method: Method) {
    with(|r| {
        if let Some(c) = timeout_counter(r, side, method) {
            c.increment(1);
        }
    });
}

fn acl_counter(r: &Registry, side: Side, transport: AclTransport) -> Option<&Counter> {
    let i = position(&[part(side), part(transport)]);
    r.acl_drops.get(i, || {
        metrics::counter!(
            ACL_DROPS.name,
            vec![label("side", side), label("transport", transport)]
        )
    })
}

fn inbound_drop_counter(r: &Registry, side: Side) -> Option<&Counter> {
    let i = position(&[part(side)]);
    r.sip_inbound_drops.get(i, || {
        metrics::counter!(SIP_INBOUND_DROPS.name, vec![label("side", side)])
    })
}

/// A SIP message from `side` dropped because the inbound queue was full.
pub fn sip_inbound_drop(side: Side) {
    sip_inbound_drops(side, 1);
}

/// `n` SIP datagrams from `side` dropped before the node read them.
pub fn sip_inbound_drops(side: Side, n: u64) {
    with(|r| {
        if let Some(c) = inbound_drop_counter(r, side) {
            c.increment(n);
        }
    });
}

/// A datagram dropped or a connection closed by `side`'s access list.
pub fn acl_drop(side: Side, transport: AclTransport) {
    with(|r| {
        if let Some(c) = acl_counter(r, side, transport) {
            c.increment(1);
        }
    });
}

/// A message from `side` translated and passed on.
pub fn translation(side: Side, kind: TranslationKind) {
    with(|r| {
        let i = position(&[part(side), part(kind)]);
        let make = || {
            metrics::counter!(
                TRANSLATIONS.name,
                vec![label("side", side), label("kind", kind)]
            )
        };
        if let Some(c) = r.translations.get(i, make) {
            c.increment(1);
        }
    });
}

/// A message from `side` that could not be translated.
pub fn translation_failure(side: Side, kind: TranslationKind, reason: FailureReason) {
    with(|r| {
        let i = position(&[part(side), part(kind), part(reason)]);
        let make = || {
            metrics::counter!(
                TRANSLATION_FAILURES.name,
                vec![
                    label("side", side),
                    label("kind", kind),
                    label("reason", reason)
                ]
            )
        };
        if let Some(c) = r.translation_failures.get(i, make) {
            c.increment(1);
        }
    });
}

/// Time a message of `kind` spent inside the node, receipt to send.
pub fn processing_duration(kind: TranslationKind, elapsed: Duration) {
    with(|r| {
        let make = || metrics::histogram!(PROCESSING_DURATION.name, vec![label("kind", kind)]);
        if let Some(h) = r.processing_duration.get(kind.index(), make) {
            h.record(elapsed.as_secs_f64());
        }
    });
}

/// Dialogs opened (`delta > 0`) or ended (`delta < 0`).
pub fn dialogs_active(delta: i64) {
    with(|r| r.dialogs_active.increment(delta as f64));
}

/// MSRP sessions opened (`delta > 0`) or closed (`delta < 0`).
pub fn msrp_sessions_active(delta: i64) {
    with(|r| r.msrp_sessions_active.increment(delta as f64));
}

fn msrp_counters(r: &Registry, d: RelayDirection) -> Option<(&Counter, &Counter)> {
    let bytes = r.msrp_bytes.get(d.index(), || {
        metrics::counter!(MSRP_BYTES.name, vec![label("direction", d)])
    })?;
    let chunks = r.msrp_chunks.get(d.index(), || {
        metrics::counter!(MSRP_CHUNKS.name, vec![label("direction", d)])
    })?;
    Some((bytes, chunks))
}

/// `n` MSRP body bytes relayed in `direction` (part of a chunk or several: see
/// [`msrp_chunk`] for the chunk count).
pub fn msrp_bytes(direction: RelayDirection, n: u64) {
    with(|r| {
        if let Some((bytes, _)) = msrp_counters(r, direction) {
            bytes.increment(n);
        }
    });
}

/// One MSRP chunk of `body_len` body bytes relayed in `direction` (counts the chunk and its
/// bytes).
pub fn msrp_chunk(direction: RelayDirection, body_len: u64) {
    with(|r| {
        if let Some((bytes, chunks)) = msrp_counters(r, direction) {
            bytes.increment(body_len);
            chunks.increment(1);
        }
    });
}

fn touch_table(r: &Registry, kind: TableKind) {
    let _ = r.table_refused.get(kind.index(), || {
        metrics::counter!(TABLE_REFUSED.name, vec![label("kind", kind)])
    });
    let _ = r.table_expired.get(kind.index(), || {
        metrics::counter!(TABLE_EXPIRED.name, vec![label("kind", kind)])
    });
}

/// The correlation table holds `n` entries of `kind`.
pub fn table_entries(kind: TableKind, n: u64) {
    with(|r| {
        let make = || metrics::gauge!(TABLE_ENTRIES.name, vec![label("kind", kind)]);
        if let Some(g) = r.table_entries.get(kind.index(), make) {
            g.set(n as f64);
        }
    });
}

/// The correlation table keeps at most `cap` entries of `kind`.
pub fn table_capacity(kind: TableKind, cap: u64) {
    with(|r| {
        let make = || metrics::gauge!(TABLE_CAPACITY.name, vec![label("kind", kind)]);
        if let Some(g) = r.table_capacity.get(kind.index(), make) {
            g.set(cap as f64);
        }
    });
}

/// An insert of `kind` refused at capacity.
pub fn table_refused(kind: TableKind) {
    with(|r| {
        touch_table(r, kind);
        if let Some(c) = r.table_refused.0.get(kind.index()).and_then(OnceLock::get) {
            c.increment(1);
        }
    });
}

/// `n` entries of `kind` expired.
pub fn table_expired(kind: TableKind, n: u64) {
    with(|r| {
        touch_table(r, kind);
        if let Some(c) = r.table_expired.0.get(kind.index()).and_then(OnceLock::get) {
            c.increment(n);
        }
    });
}

label_enum! {
    /// A store-and-forward operation.
    StoreOp {
        /// A message kept.
        Put => "put",
        /// Messages read for delivery.
        Read => "read",
        /// A delivered message removed.
        Remove => "remove",
    }
}

label_enum! {
    /// How a store operation ended.
    StoreResult {
        /// Done (durable, for a put).
        Ok => "ok",
        /// The store failed (the sender got the store's error status for a put).
        Failed => "failed",
        /// Not tried: too many in flight.
        Refused => "refused",
    }
}

label_enum! {
    /// A delivery attempt of a kept message, or how it ended.
    DeliveryResult {
        /// Sent.
        Attempt => "attempt",
        /// Answered 2xx.
        Delivered => "delivered",
        /// Still unavailable: retried later.
        Unavailable => "unavailable",
        /// Refused for good: removed.
        Rejected => "rejected",
        /// A failed notification sent to the sender (expired or rejected).
        FailedNotification => "failed_notification",
    }
}

fn store_operation_counter(r: &Registry, op: StoreOp, result: StoreResult) -> Option<&Counter> {
    let i = position(&[part(op), part(result)]);
    let make = || {
        metrics::counter!(
            STORE_OPERATIONS.name,
            vec![label("op", op), label("result", result)]
        )
    };
    r.store_operations.get(i, make)
}

fn store_delivery_counter(r: &Registry, side: Side, result: DeliveryResult) -> Option<&Counter> {
    let i = position(&[part(side), part(result)]);
    let make = || {
        metrics::counter!(
            STORE_DELIVERIES.name,
            vec![label("side", side), label("result", result)]
        )
    };
    r.store_deliveries.get(i, make)
}

/// A store-and-forward operation ended with `result`.
pub fn store_operation(op: StoreOp, result: StoreResult) {
    with(|r| {
        if let Some(c) = store_operation_counter(r, op, result) {
            c.increment(1);
        }
    });
}

/// A kept message's delivery to `side`: an attempt or how it ended.
pub fn stored_delivery(side: Side, result: DeliveryResult) {
    with(|r| {
        if let Some(c) = store_delivery_counter(r, side, result) {
            c.increment(1);
        }
    });
}

/// A kept message expired unsent.
pub fn stored_expired() {
    with(|r| r.store_expired.increment(1));
}

/// A chat session's dropped leg was taken over (its messages kept from now on).
pub fn store_takeover() {
    with(|r| r.store_takeovers.increment(1));
}

/// A message towards the user of a dropped leg was kept durably.
pub fn store_takeover_message() {
    with(|r| r.store_takeover_messages.increment(1));
}

/// Whether the node is ready (the admin server's readiness flag sets it).
pub fn ready(is_ready: bool) {
    with(|r| r.ready.set(if is_ready { 1.0 } else { 0.0 }));
}

/// A request answered by the admin HTTP server.
pub fn admin_request(path: AdminPath, status: AdminStatus) {
    with(|r| {
        let i = position(&[part(path), part(status)]);
        let make = || {
            metrics::counter!(
                ADMIN_REQUESTS.name,
                vec![label("path", path), label("status", status)]
            )
        };
        if let Some(c) = r.admin_requests.get(i, make) {
            c.increment(1);
        }
    });
}

/// A connection the admin HTTP server closed at its connection limit.
pub fn admin_connection_refused() {
    with(|r| r.admin_connections_refused.increment(1));
}

/// Reads the process's resident memory and open descriptors from `/proc/self` into their
/// gauges (called before each render of `/metrics`; on a system without `/proc` the gauges keep
/// their last value).
pub fn refresh_process() {
    with(|r| {
        if let Some(rss) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .as_deref()
            .and_then(vm_rss_bytes)
        {
            r.resident_memory.set(rss as f64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            let n = dir.count().saturating_sub(1);
            r.open_fds.set(n as f64);
        }
    });
}

/// The `VmRSS:` line of `/proc/<pid>/status` (proc(5): in kB, meaning KiB), in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Recording (issue 8): rare events next to the message path, so the macros' own lookup is
// enough (no cached handles). Label values are fixed strings of `node::record`.

/// The kinds of recorded objects ([`RECORD_OBJECTS`]).
pub const RECORD_KINDS: [&str; 2] = ["standalone", "session"];
/// The reasons of [`RECORD_FAILURES`].
pub const RECORD_FAILURE_REASONS: [&str; 8] = [
    "connect",
    "timeout",
    "login",
    "imap",
    "queue_full",
    "queue_error",
    "too_large",
    "reassembly",
];

/// The recording series at 0 from the start (rare events, small label sets).
fn record_initial() {
    for kind in RECORD_KINDS {
        metrics::counter!(RECORD_OBJECTS.name, "kind" => kind).absolute(0);
    }
    metrics::counter!(RECORD_BYTES.name).absolute(0);
    for reason in RECORD_FAILURE_REASONS {
        metrics::counter!(RECORD_FAILURES.name, "reason" => reason).absolute(0);
    }
    metrics::gauge!(RECORD_QUEUE_DEPTH.name).set(0.0);
    metrics::counter!(RECORD_DELETIONS.name).absolute(0);
}

/// One object of `kind` (`standalone`, `session`) of `bytes` recorded.
pub fn record_object(kind: &'static str, bytes: u64) {
    if INSTALLED.get().is_some() {
        metrics::counter!(RECORD_OBJECTS.name, "kind" => kind).increment(1);
        metrics::counter!(RECORD_BYTES.name).increment(bytes);
    }
}

/// A recording job failed an attempt, or was refused, for `reason`.
pub fn record_failure(reason: &'static str) {
    if INSTALLED.get().is_some() {
        metrics::counter!(RECORD_FAILURES.name, "reason" => reason).increment(1);
    }
}

/// The durable queue holds `n` jobs.
pub fn record_queue_depth(n: u64) {
    if INSTALLED.get().is_some() {
        metrics::gauge!(RECORD_QUEUE_DEPTH.name).set(n as f64);
    }
}

/// A recorded object deleted after its message's delivery failed.
pub fn record_deletion() {
    if INSTALLED.get().is_some() {
        metrics::counter!(RECORD_DELETIONS.name).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_practice() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            assert!(m.name.starts_with("cpm_iwf_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            let is_total = m.name.ends_with("_total");
            assert_eq!(is_total, m.kind == MetricKind::Counter, "{}", m.name);
            if m.kind == MetricKind::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(
                    !m.name.ends_with(suffix),
                    "{} uses a reserved suffix",
                    m.name
                );
            }
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
        }
        assert_eq!(NAMES.len(), ALL.len());
        assert!(NAMES.iter().zip(ALL).all(|(n, m)| *n == m.name));
    }

    #[test]
    fn label_values_are_unique_and_indexed_in_order() {
        fn check<L: LabelValue + std::fmt::Debug>() {
            let mut seen = std::collections::HashSet::new();
            for (i, l) in L::ALL.iter().enumerate() {
                assert_eq!(l.index(), i, "{l:?}");
                assert!(seen.insert(l.as_str()), "{l:?}");
            }
        }
        check::<Side>();
        check::<Direction>();
        check::<Method>();
        check::<StatusClass>();
        check::<ParseErrorStatus>();
        check::<AclTransport>();
        check::<TranslationKind>();
        check::<FailureReason>();
        check::<RelayDirection>();
        check::<TableKind>();
        check::<AdminPath>();
        check::<AdminStatus>();
    }

    #[test]
    fn positions_are_distinct_and_in_range() {
        let n = size(&[SIDES, DIRECTIONS, METHODS, CLASSES]);
        let mut seen = vec![false; n];
        for &s in Side::ALL {
            for &d in Direction::ALL {
                for &m in Method::ALL {
                    for &c in StatusClass::ALL {
                        let i = position(&[part(s), part(d), part(m), part(c)]);
                        assert!(i < n);
                        assert!(!seen[i]);
                        seen[i] = true;
                    }
                }
            }
        }
        assert!(seen.iter().all(|&b| b));
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of(100), StatusClass::Provisional);
        assert_eq!(StatusClass::of(183), StatusClass::Provisional);
        assert_eq!(StatusClass::of(200), StatusClass::Success);
        assert_eq!(StatusClass::of(302), StatusClass::Redirection);
        assert_eq!(StatusClass::of(481), StatusClass::ClientError);
        assert_eq!(StatusClass::of(503), StatusClass::ServerError);
        assert_eq!(StatusClass::of(603), StatusClass::GlobalFailure);
        assert_eq!(StatusClass::of(0), StatusClass::Provisional);
        assert_eq!(StatusClass::of(999), StatusClass::GlobalFailure);
    }

    #[test]
    fn methods_from_tokens_and_rsip() {
        assert_eq!(Method::from_token(b"MESSAGE"), Method::Message);
        assert_eq!(Method::from_token(b"INVITE"), Method::Invite);
        // Case-sensitive (RFC 3261 §7.1): `message` is an unknown extension method.
        assert_eq!(Method::from_token(b"message"), Method::Other);
        assert_eq!(Method::from_token(b""), Method::Other);
        for m in rsip::Method::all() {
            let ours = Method::from(m);
            assert_eq!(ours.as_str(), m.to_string(), "{m:?}");
            assert_eq!(Method::from_token(m.to_string().as_bytes()), ours);
        }
    }

    #[test]
    fn parse_error_statuses() {
        assert_eq!(ParseErrorStatus::of(Answer::Drop).as_str(), "dropped");
        for code in [400, 413, 415, 501, 505] {
            assert_eq!(
                ParseErrorStatus::of(Answer::Status(code)).as_str(),
                code.to_string()
            );
        }
        assert_eq!(
            ParseErrorStatus::of(Answer::Status(488)),
            ParseErrorStatus::Other
        );
    }

    #[test]
    fn failure_reasons_of_translator_errors() {
        assert_eq!(
            FailureReason::of(&TranslateError::NoOffer),
            FailureReason::NoOffer
        );
        assert_eq!(
            FailureReason::of(&TranslateError::Missing("Call-ID")),
            FailureReason::MissingHeader
        );
        assert_eq!(
            FailureReason::of(&TranslateError::UnknownService("x".into())),
            FailureReason::UnknownService
        );
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\tcpm-iwf\nVmPeak:\t  10 kB\nVmRSS:\t    5120 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_bytes(status), Some(5120 * 1024));
        assert_eq!(vm_rss_bytes("VmRSS: 12 MB\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS: x kB\n"), None);
        assert_eq!(vm_rss_bytes(""), None);
    }

    #[test]
    fn buckets_cover_ten_microseconds_to_one_second() {
        assert_eq!(PROCESSING_BUCKETS.first(), Some(&0.000_01));
        assert_eq!(PROCESSING_BUCKETS.last(), Some(&1.0));
        assert!(PROCESSING_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(TRANSACTION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn helpers_before_install_do_nothing() {
        // No recorder in this unit-test binary unless a test installs one; none does here.
        if INSTALLED.get().is_none() {
            sip_request(Side::Cpm, Direction::In, Method::Message);
            table_refused(TableKind::Dialog);
            assert!(handle().is_none());
        }
    }
}
