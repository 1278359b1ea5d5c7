//! The stateless-per-message translator (ARCHITECTURE.md layer 2): pure functions that rewrite
//! one CPM message into its SIMPLE IM form and back. No I/O, no clock, no table writes: the
//! caller hands in what is needed and applies what comes out.
//!
//! Built so far: [`conversation`], the CPM conversation identities kept and generated;
//! [`device`], multi-device routing of notifications;
//! [`state`], what is remembered between messages and how the translator reads
//! it ([`state::View`]) and asks for changes ([`state::Change`]); [`feature_tags`], the service
//! identification rewrite of `Contact` and `Accept-Contact`, on [`params`].

pub mod conversation;
pub mod device;
pub mod feature_tags;
pub mod params;
pub mod state;
