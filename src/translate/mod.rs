//! The stateless-per-message translator (ARCHITECTURE.md layer 2): pure functions that rewrite
//! one CPM message into its SIMPLE IM form and back. No I/O, no clock, no table writes: the
//! caller hands in what is needed ([`View`] of the table, [`Mappings`], [`Env`]) and applies
//! what comes out ([`Outcome`]).
//!
//! Built so far: [`pager`], pager-mode MESSAGE with text, isComposing and IMDNs, both ways;
//! [`session`], chat-session INVITEs and their answers; [`chat`], MSRP SEND and REPORT of a
//! session relayed to the other leg;
//! [`conversation`], the CPM conversation identities kept and generated; [`device`],
//! multi-device routing of notifications; [`sdp`], the MSRP session description for the other
//! leg; [`response`], answers mapped back; [`feature_tags`], the service identification rewrite
//! of `Contact` and `Accept-Contact`, on [`params`] and [`addr`]; [`state`], what is remembered.
//!
//! [`View`]: state::View
//! [`Mappings`]: crate::mapping::Mappings

pub mod addr;
pub mod chat;
pub mod conversation;
pub mod device;
pub mod feature_tags;
pub mod few;
pub mod leg;
pub mod pager;
pub mod params;
pub mod response;
pub mod sdp;
pub mod session;
pub mod state;

use crate::time::Millis;
use crate::wire::cpim::CpimError;
use crate::wire::imdn::ImdnError;
use crate::wire::iscomposing::IsComposingError;
use crate::wire::msrp::MsrpError;
use crate::wire::sdp::SdpError;
use crate::wire::sip::{SipError, SipMessage};
use crate::wire::{Answer, WireError};

use conversation::IdSource;
use few::Few;
use params::ParamError;
use state::{Change, Side};

/// What the caller passes in besides the message: the time, a source of fresh identities, and
/// the wall-clock time as RFC 3339 text for the CPIM `DateTime` of content the gateway wraps
/// (RFC 3862 §3.3.4).
pub struct Env<'a> {
    /// Monotonic time, for expiry.
    pub now: Millis,
    /// Fresh Call-IDs, tags, Conversation-IDs, Contribution-IDs, Message-IDs.
    pub ids: &'a mut dyn IdSource,
    /// Wall-clock time, RFC 3339.
    pub datetime: &'a str,
}

/// A final answer the gateway gives the incoming request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
}

impl Reply {
    /// 200 OK: accepted and handled here.
    pub const OK: Reply = Reply {
        status: 200,
        reason: "OK",
    };
}

/// What the caller does after one translation. `send` and `changes` hold their usual one or
/// two items in place ([`Few`]: no allocation for them), and read as slices.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages to send, each to one side. Requests lack a Via: the node adds its own. One in
    /// place: only the end of a session sends two (a BYE on each leg), and every move of an
    /// `Outcome` copies the places (~130 bytes each).
    pub send: Few<(Side, SipMessage), 1>,
    /// A final answer to the incoming request, when the gateway answers it itself.
    pub reply: Option<Reply>,
    /// Changes to make to the correlation table, in order.
    pub changes: Few<Change>,
    /// MSRP legs of a session whose far end is now known, for the node's relay.
    pub msrp: Vec<session::MsrpLeg>,
}

/// Why a message cannot be translated; [`status`](Self::status) is the SIP answer it deserves.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The SIP message itself.
    #[error(transparent)]
    Sip(#[from] SipError),
    /// The CPIM body (RFC 3862).
    #[error("CPIM body: {0}")]
    Cpim(#[from] CpimError),
    /// The IMDN body (RFC 5438).
    #[error("IMDN body: {0}")]
    Imdn(#[from] ImdnError),
    /// The isComposing body (RFC 3994).
    #[error("isComposing body: {0}")]
    IsComposing(#[from] IsComposingError),
    /// An MSRP chunk (RFC 4975).
    #[error("MSRP: {0}")]
    Msrp(#[from] MsrpError),
    /// The SDP of a session (RFC 4566, RFC 4975 §8).
    #[error("SDP: {0}")]
    Sdp(#[from] SdpError),
    /// A required header field is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A header field's value is unusable.
    #[error("{header}: {reason}")]
    Header {
        /// Which header.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An INVITE without an SDP offer: the gateway builds its offer from the caller's.
    #[error("no SDP offer with an MSRP stream in the INVITE")]
    NoOffer,
    /// A request inside a dialog the gateway does not know (RFC 3261 §12.2.2).
    #[error("no such dialog")]
    NoDialog,
    /// A method the gateway does not relay outside a dialog (RFC 3261 §8.2.1).
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// The request names a service the mappings do not interwork.
    #[error("service not interworked: {0}")]
    UnknownService(String),
}

impl TranslateError {
    pub(crate) fn header(header: &'static str, e: ParamError) -> Self {
        TranslateError::Header {
            header,
            reason: e.to_string(),
        }
    }

    /// The SIP status code to answer with (RFC 3261 §21): 400 for what is malformed, 413 and
    /// 415 as the codecs say, 403 for a service the gateway does not interwork (RFC 6050 §4
    /// lets the network refuse a service it does not offer).
    pub fn status(&self) -> u16 {
        let wire = |a: Answer| match a {
            Answer::Status(s) => s,
            Answer::Drop => 400,
        };
        match self {
            TranslateError::Sip(e) => wire(e.answer()),
            TranslateError::Cpim(e) => wire(e.answer()),
            TranslateError::Imdn(e) => wire(e.answer()),
            TranslateError::IsComposing(e) => wire(e.answer()),
            TranslateError::Sdp(e) => wire(e.answer()),
            TranslateError::Msrp(e) => wire(e.answer()),
            TranslateError::Missing(_) | TranslateError::Header { .. } => 400,
            TranslateError::UnknownService(_) => 403,
            // RFC 3261 §12.2.2: Call/Transaction Does Not Exist.
            TranslateError::NoDialog => 481,
            TranslateError::MethodNotAllowed(_) => 405,
            // RFC 3261 §21.4.26: the session description is not acceptable.
            TranslateError::NoOffer => 488,
        }
    }
}

/// Translate a SIP request that arrived from `from`, whatever it is: a pager MESSAGE, an INVITE
/// that opens a session, a CANCEL, or a request inside a session's dialog (its To has a tag,
/// RFC 3261 §12.2.2). OPTIONS outside a dialog is answered here (§11.2); other methods the
/// gateway does not relay outside a dialog get 405 (§8.2.1).
pub fn sip_request(
    msg: &SipMessage,
    from: Side,
    view: &dyn state::View,
    mappings: &crate::mapping::Mappings,
    addrs: &session::Addresses,
    env: &mut Env<'_>,
) -> Result<Outcome, TranslateError> {
    let method = msg.method().ok_or(TranslateError::Missing("method"))?;
    if *method == rsip::Method::Cancel {
        return session::cancel_request(msg, from, view);
    }
    if msg.to_tag().is_some() {
        return session::in_dialog_request(msg, from, view, mappings, addrs);
    }
    match method {
        rsip::Method::Message => pager::message_request(msg, from, view, mappings, env),
        rsip::Method::Invite => {
            Ok(session::invite_request(msg, from, view, mappings, addrs, env)?.outcome)
        }
        rsip::Method::Options => Ok(Outcome {
            reply: Some(Reply::OK),
            ..Outcome::default()
        }),
        // An ACK outside a dialog acknowledges a non-2xx final answer: hop by hop, the
        // transaction layer absorbs it (RFC 3261 §17.2.1).
        rsip::Method::Ack => Ok(Outcome::default()),
        other => Err(TranslateError::MethodNotAllowed(
            crate::wire::sip::method_name(other).to_string(),
        )),
    }
}
