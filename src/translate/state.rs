//! What the translator remembers between messages, as plain data.
//!
//! The translator reads these through a [`View`] and asks for changes with [`Change`]s; the
//! correlation table (`crate::correlate::Table`) stores them and the node applies the changes.
//! Keys and values are small: ids are `Bytes` (slices of the message they came from, shared,
//! not copied), so a clone is a reference-count increment.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::mapping::Service;
use crate::wire::sdp::Setup;

/// Which network a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The OMA CPM 2.0 network.
    Cpm,
    /// The OMA SIMPLE IM 2.0 network.
    Simple,
}

impl Side {
    /// The other network.
    pub fn other(self) -> Side {
        match self {
            Side::Cpm => Side::Simple,
            Side::Simple => Side::Cpm,
        }
    }
}

/// The CPM conversation identities of one message or session (CPM 2.0 SD 5.2.1.1): SIP header
/// values, opaque tokens compared exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversationIds {
    /// `Conversation-ID`: the same for every message and session of a conversation.
    #[serde(with = "text_bytes")]
    pub conversation_id: Bytes,
    /// `Contribution-ID`: one per standalone message or session.
    #[serde(with = "text_bytes")]
    pub contribution_id: Bytes,
    /// `InReplyTo-Contribution-ID`: the contribution this one answers, when it answers one.
    #[serde(with = "opt_text_bytes", default)]
    pub in_reply_to: Option<Bytes>,
}

/// A conversation between one CPM user and one SIMPLE IM user, by their addresses of record
/// (normalised by the translator: scheme, user and host, host lower-cased). SIMPLE IM has no
/// conversation identity of its own, so the pair of users is what ties its messages to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConversationKey {
    /// The CPM user's address of record.
    #[serde(with = "text_bytes")]
    pub cpm_user: Bytes,
    /// The SIMPLE IM user's address of record.
    #[serde(with = "text_bytes")]
    pub simple_user: Bytes,
}

/// What is remembered of a conversation between a CPM user and a SIMPLE IM user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversationState {
    /// The conversation's `Conversation-ID`, reused for everything either user sends next.
    #[serde(with = "text_bytes")]
    pub conversation_id: Bytes,
    /// The `Contribution-ID` of the last message or session the CPM user sent: what a SIMPLE
    /// IM user's next message answers (`InReplyTo-Contribution-ID`, CPM 2.0 SD 5.2.1.1).
    #[serde(with = "opt_text_bytes", default)]
    pub last_cpm_contribution: Option<Bytes>,
}

/// One device of a user (CPM 2.0 §4.2 multi-device): what is needed to reach that device and no
/// other. The translator prefers the GRUU (RFC 5627, as Request-URI), then the instance id
/// (RFC 5626 `+sip.instance`, in Accept-Contact with `require;explicit`, RFC 3841 §9).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    /// The user's address of record (From of the original message).
    #[serde(with = "text_bytes")]
    pub aor: Bytes,
    /// A GRUU the device registered (`pub-gruu`, or a Contact URI with `gr`).
    #[serde(with = "opt_text_bytes", default)]
    pub gruu: Option<Bytes>,
    /// The device's `+sip.instance` value, with its quotes and angle brackets removed.
    #[serde(with = "opt_text_bytes", default)]
    pub instance: Option<Bytes>,
}

/// What is remembered of a message that crossed the gateway, keyed by its `imdn.Message-ID`
/// (RFC 5438 §6.3: unique per message), so that the notifications coming back find their way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageOrigin {
    /// The network the message came from: its notifications go back there.
    pub side: Side,
    /// The device that sent it: its notifications go to that device only.
    pub device: Device,
    /// The recipient's address of record, as addressed by the sender.
    #[serde(with = "text_bytes")]
    pub recipient: Bytes,
    /// The conversation identities the message had (or was given) on the CPM side.
    pub conversation: Option<ConversationIds>,
}

/// A dialog of one side of a B2BUA session, by its Call-ID (the gateway writes its own Call-ID
/// on each leg, RFC 7092 §3.1, so a Call-ID names one leg).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DialogKey {
    /// The side of this leg.
    pub side: Side,
    /// The leg's Call-ID.
    #[serde(with = "text_bytes")]
    pub call_id: Bytes,
}

/// The other leg of a B2BUA session and what the session carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialogPeer {
    /// The Call-ID of the other leg.
    #[serde(with = "text_bytes")]
    pub call_id: Bytes,
    /// The session's CPM conversation identities.
    pub conversation: Option<ConversationIds>,
    /// The MSRP session-id of the gateway's endpoint on this leg (RFC 4975 §6), when the
    /// session carries MSRP.
    #[serde(with = "opt_text_bytes", default)]
    pub msrp_session: Option<Bytes>,
    /// The service of the session (its tags on each side, docs/interworking-notes.md §1).
    pub service: Service,
    /// This leg's dialog as the gateway holds it.
    pub leg: LegDialog,
}

/// The dialog of one leg as the gateway, a user agent on it, holds it (RFC 3261 §12.1): what
/// it needs to send a request inside the dialog (§12.2.1.1) and to answer one (§12.2.2).
/// Header values are kept as they were written on the leg, tags apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LegDialog {
    /// The gateway's tag on this leg: its From tag where it sent the INVITE, its To tag where
    /// it answered one.
    #[serde(with = "text_bytes")]
    pub local_tag: Bytes,
    /// The far end's tag; `None` until the far end answers the gateway's INVITE.
    #[serde(with = "opt_text_bytes", default)]
    pub remote_tag: Option<Bytes>,
    /// The gateway's address on this leg as From of its requests (`name-addr`, no tag).
    #[serde(with = "text_bytes")]
    pub local_uri: Bytes,
    /// The far end's address as To of the gateway's requests (`name-addr`, no tag).
    #[serde(with = "text_bytes")]
    pub remote_uri: Bytes,
    /// The far end's Contact URI: the Request-URI of requests inside the dialog.
    #[serde(with = "text_bytes")]
    pub remote_target: Bytes,
    /// The route set as a `Route` value, first hop first (§12.1.1: Record-Route of the request
    /// in order; §12.1.2: of the response, reversed).
    #[serde(with = "opt_text_bytes", default)]
    pub route_set: Option<Bytes>,
    /// The CSeq number of the gateway's last request on this leg (0: none sent yet).
    pub local_cseq: u32,
    /// The gateway's `a=setup` role on this leg's MSRP connection (RFC 6135 §4), kept for
    /// re-offers.
    pub msrp_setup: Option<Setup>,
}

/// The other leg of a back-to-back MSRP session, keyed by the session-id of the gateway's own
/// MSRP URI on one leg.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MsrpPeer {
    /// The side of the leg whose session-id is the key.
    pub side: Side,
    /// The session-id of the gateway's endpoint on the other leg.
    #[serde(with = "text_bytes")]
    pub peer_session: Bytes,
    /// The Call-ID of the SIP dialog that set this leg up.
    #[serde(with = "text_bytes")]
    pub call_id: Bytes,
    /// The far end's `a=path` on this leg (RFC 4975 §8.2: URIs separated by spaces, first hop
    /// first), once its SDP is known: the To-Path of what the gateway sends on this leg.
    #[serde(with = "opt_text_bytes", default)]
    pub remote_path: Option<Bytes>,
}

/// The key of one table entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Key {
    /// By `imdn.Message-ID`.
    Message(#[serde(with = "text_bytes")] Bytes),
    /// By pair of users.
    Conversation(ConversationKey),
    /// By leg Call-ID.
    Dialog(DialogKey),
    /// By the gateway's MSRP session-id on one leg.
    Msrp(#[serde(with = "text_bytes")] Bytes),
}

/// One table entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A message's origin.
    Message(#[serde(with = "text_bytes")] Bytes, Box<MessageOrigin>),
    /// A conversation's state.
    Conversation(ConversationKey, ConversationState),
    /// A leg and its peer (boxed: a dialog is several times the size of the other entries).
    Dialog(DialogKey, Box<DialogPeer>),
    /// An MSRP leg and its peer.
    Msrp(#[serde(with = "text_bytes")] Bytes, MsrpPeer),
}

impl Entry {
    /// The entry's key.
    pub fn key(&self) -> Key {
        match self {
            Entry::Message(k, _) => Key::Message(k.clone()),
            Entry::Conversation(k, _) => Key::Conversation(k.clone()),
            Entry::Dialog(k, _) => Key::Dialog(k.clone()),
            Entry::Msrp(k, _) => Key::Msrp(k.clone()),
        }
    }
}

/// A change the translator asks for; the caller applies it to the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Insert or replace an entry (its time to live starts again).
    Insert(Entry),
    /// Keep an entry alive for another time to live.
    Refresh(Key),
    /// Forget an entry.
    Remove(Key),
    /// The inserts of a pager message, packed ([`Remembered`]): the same as the
    /// [`Change::Insert`]s of [`Remembered::changes`], in that order. Not serialised (nothing
    /// serialises changes; the table's state is saved as [`Entry`]s).
    #[serde(skip)]
    Remember(Remembered),
}

impl Change {
    /// The changes in `changes` with every [`Change::Remember`] written as its inserts: what
    /// the table does with them, one plain change at a time (tests, tools).
    pub fn unpacked(changes: &[Change]) -> Vec<Change> {
        let mut out = Vec::with_capacity(changes.len() + 1);
        for c in changes {
            match c {
                Change::Remember(r) => out.extend(r.changes()),
                other => out.push(other.clone()),
            }
        }
        out
    }
}

/// What a CPM user's pager message asks the table to keep, in one buffer: the conversation's
/// state (its identities, under the pair of users) and, for a message that asks for
/// notifications, its origin (under its `imdn.Message-ID`). One `Bytes` and the places of the
/// values in it, where the plain [`Change::Insert`]s are two entries of ~270 bytes holding a
/// `Bytes` per value (about ten reference counts taken when they are made and given back when
/// they are dropped, each an atomic operation); the table takes its slices when it applies
/// the change. Built by the translator (`translate::pager`); read with
/// [`conversation`](Self::conversation), [`message`](Self::message) or
/// [`changes`](Self::changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The values, one after the other in the order of the `Part`s.
    pub(crate) buf: Bytes,
    /// Where each part ends in `buf` (it starts where the one before ends).
    pub(crate) ends: [u32; Part::COUNT],
    /// Bit `1 << part` set for each part present (a present part may be empty).
    pub(crate) present: u8,
    /// The message's `imdn.Message-ID` when it is not UTF-8 (kept apart, as it came: the
    /// buffer holds text); `None` in the usual case, where it is [`Part::MessageId`].
    pub(crate) raw_message_id: Option<Bytes>,
    /// The network the message came from.
    pub(crate) from: Side,
    /// Whether the conversation's state is to be kept (its two identities are present).
    pub(crate) conversation: bool,
    /// Whether the message's origin is to be kept.
    pub(crate) message: bool,
}

/// The values of a [`Remembered`], in the order they are in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The sender's address of record (From).
    FromAor,
    /// The recipient's address of record (To).
    ToAor,
    /// `Conversation-ID`.
    ConversationId,
    /// `Contribution-ID`.
    ContributionId,
    /// `InReplyTo-Contribution-ID`.
    InReplyTo,
    /// `imdn.Message-ID`.
    MessageId,
    /// The sending device's GRUU.
    Gruu,
    /// The sending device's `+sip.instance`.
    Instance,
}

impl Part {
    pub(crate) const COUNT: usize = 8;
}

impl Remembered {
    /// The part, a slice of the buffer (a reference count), when present.
    fn part(&self, p: Part) -> Option<Bytes> {
        let i = p as usize;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = match i.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(0);
        let (start, end) = (start as usize, end as usize);
        Some(match self.buf.get(start..end) {
            Some(_) => self.buf.slice(start..end),
            None => Bytes::new(),
        })
    }

    /// The pair of users, the CPM user first.
    pub(crate) fn key(&self) -> ConversationKey {
        let (from, to) = (
            self.part_or_empty(Part::FromAor),
            self.part_or_empty(Part::ToAor),
        );
        match self.from {
            Side::Cpm => ConversationKey {
                cpm_user: from,
                simple_user: to,
            },
            Side::Simple => ConversationKey {
                cpm_user: to,
                simple_user: from,
            },
        }
    }

    fn part_or_empty(&self, p: Part) -> Bytes {
        self.part(p).unwrap_or_default()
    }

    /// The message's conversation identities, when it has the two required together.
    fn ids(&self) -> Option<ConversationIds> {
        Some(ConversationIds {
            conversation_id: self.part(Part::ConversationId)?,
            contribution_id: self.part(Part::ContributionId)?,
            in_reply_to: self.part(Part::InReplyTo),
        })
    }

    /// The conversation entry to insert, if any (what
    /// `translate::conversation::remember_cpm_contribution` makes).
    pub fn conversation(&self) -> Option<(ConversationKey, ConversationState)> {
        if !self.conversation {
            return None;
        }
        let ids = self.ids()?;
        Some((
            self.key(),
            ConversationState {
                conversation_id: ids.conversation_id,
                last_cpm_contribution: Some(ids.contribution_id),
            },
        ))
    }

    /// The message entry to insert, if any.
    pub fn message(&self) -> Option<(Bytes, MessageOrigin)> {
        if !self.message {
            return None;
        }
        let id = match &self.raw_message_id {
            Some(raw) => raw.clone(),
            None => self.part(Part::MessageId)?,
        };
        Some((
            id,
            MessageOrigin {
                side: self.from,
                device: Device {
                    aor: self.part_or_empty(Part::FromAor),
                    gruu: self.part(Part::Gruu),
                    instance: self.part(Part::Instance),
                },
                recipient: self.part_or_empty(Part::ToAor),
                conversation: self.ids(),
            },
        ))
    }

    /// The plain changes this one stands for, in the order the table applies them.
    pub fn changes(&self) -> impl Iterator<Item = Change> + use<> {
        let conversation = self
            .conversation()
            .map(|(k, v)| Change::Insert(Entry::Conversation(k, v)));
        let message = self
            .message()
            .map(|(k, v)| Change::Insert(Entry::Message(k, Box::new(v))));
        conversation.into_iter().chain(message)
    }
}

/// Read access to what is remembered, at the time the caller chose. Values are returned owned:
/// they are `Bytes`-backed, so this costs reference counts, and no lock outlives the call.
pub trait View {
    /// The origin of the message with this `imdn.Message-ID`.
    fn message(&self, message_id: &[u8]) -> Option<MessageOrigin>;
    /// The state of a conversation.
    fn conversation(&self, key: &ConversationKey) -> Option<ConversationState>;
    /// The peer of a leg.
    fn dialog(&self, key: &DialogKey) -> Option<DialogPeer>;
    /// The peer of an MSRP leg.
    fn msrp(&self, session_id: &[u8]) -> Option<MsrpPeer>;
}

/// `Bytes` as JSON text (`cpm-iwf translate --state`): ids are text on the wire; bytes that are
/// not UTF-8 are written lossily.
mod text_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        String::deserialize(d).map(Bytes::from)
    }
}

/// `Option<Bytes>` as JSON text or null.
mod opt_text_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&String::from_utf8_lossy(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        Option::<String>::deserialize(d).map(|o| o.map(Bytes::from))
    }
}
