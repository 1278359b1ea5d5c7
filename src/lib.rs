//! cpm-iwf: an interworking function between an OMA CPM 2.0 network and an OMA SIMPLE IM 2.0
//! network. See `../shared/design/ARCHITECTURE.md` for the layers. A module never imports a
//! module above it in this list (the order in which they depend on one another):
//!
//! 0. [`time`]: `Millis`, the time the caller passes in (nothing below the node reads a clock).
//! 1. [`wire`]: codecs (SIP, SDP, MSRP, CPIM, IMDN, isComposing). No I/O, no tokio runtime.
//! 2. [`mapping`]: the operator's rewrite rules, loaded from `mappings/`.
//! 3. [`translate`]: the stateless-per-message translator (sans-IO). It reads the mappings, so
//!    it sits above them (ARCHITECTURE.md lists mapping as layer 3 and translate as layer 2;
//!    the dependency runs this way). It owns the model of what is remembered
//!    ([`translate::state`]) and reads it through a `View`.
//! 4. [`correlate`]: the sharded in-memory table that stores [`translate::state`] entries.
//! 5. [`node`]: the tokio shell that owns every socket and timer: SIP transports, the
//!    transaction layer, the B2BUA core, the MSRP relay, the admin server. [`metrics`] declares
//!    what it records. ARCHITECTURE.md's "two TCP connections per chat" is the default; a
//!    connection may also carry several chats' legs to one peer (RFC 4975 §5.4: always
//!    accepted inbound, dialed that way with `[msrp] share_connections`; `node::msrp::link`).
//!
//! [`inspect`] renders parsed wire messages as JSON for the `cpm-iwf inspect` command;
//! [`conformance`] runs the conformance cases through the translator.

pub mod config;
pub mod conformance;
pub mod correlate;
pub mod inspect;
pub mod mapping;
pub mod metrics;
pub mod node;
pub mod record;
pub mod store;
pub mod time;
pub mod tomlfile;
pub mod translate;
pub mod wire;
