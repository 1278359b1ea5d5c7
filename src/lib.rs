//! cpm-iwf: an interworking function between an OMA CPM 2.0 network and an OMA SIMPLE IM 2.0
//! network. See `../shared/design/ARCHITECTURE.md` for the layering; a module never imports a
//! layer above it:
//!
//! 1. [`wire`]: codecs (SIP, SDP, MSRP, CPIM, IMDN, isComposing). No I/O, no tokio runtime.
//! 2. [`translate`]: the stateless-per-message translator (sans-IO).
//! 3. [`mapping`]: the operator's rewrite rules, loaded from `mappings/`.
//! 4. `correlate`: the sharded in-memory correlation table.
//! 5. `node`: the tokio shell that owns every socket and timer.
//!
//! [`inspect`] renders parsed wire messages as JSON for the `cpm-iwf inspect` command.

pub mod correlate;
pub mod inspect;
pub mod mapping;
pub mod translate;
pub mod wire;
