//! The node (ARCHITECTURE.md layer 5): the shell that owns sockets and timers.
//!
//! [`run::Node`] starts the pieces; [`b2bua::Core`] is the one task that ties them to the
//! translator, the table and the store:
//! - [`transaction`]: the RFC 3261 §17 transaction state machines, sans-IO;
//! - [`transport`]: SIP over UDP and TCP per side (RFC 3261 §18): framing by `wire::sip`,
//!   connection reuse, response routing by Via, source ACL, stall and idle cut-offs, bounded
//!   queues;
//! - [`msrp`]: the back-to-back MSRP relay (RFC 4975): the node is the endpoint of each leg,
//!   chunks are translated and forwarded as they arrive, with flow control and session end
//!   events;
//! - [`admin`]: the HTTP server for `/metrics`, `/healthz`, `/readyz`;
//! - [`ids`]: fresh identities and wall-clock text for the translator;
//! - [`deferred`]: store-and-forward decisions and the per-user delivery schedule, sans-IO;
//! - [`mailbox`]: the MSRP endpoint that answers chat sessions for callees who are not
//!   available and keeps their messages;
//! - [`memory`]: giving the heap's freed pages back to the system now and then;
//! - [`record`]: recording to the users' Message Storage Server (issue 8): the uploader and the
//!   core's hooks.

pub mod admin;
pub mod availability;
pub mod b2bua;
pub mod deferred;
pub mod ids;
pub mod mailbox;
pub mod memory;
pub mod msrp;
pub mod record;
pub mod run;
pub mod timers;
pub mod transaction;
pub mod transport;
