//! `Table`: every kind of correlation entry the translator asks for, one [`ExpiringMap`] per
//! kind, each with its own cap and time to live.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::map::{ExpiringMap, MapStats, Millis, TableFull};
use super::packed::PackedDialog;
use crate::translate::state::{
    Change, ConversationKey, ConversationState, DialogKey, DialogPeer, Entry, Key, MessageOrigin,
    MsrpPeer, View,
};

/// Cap and time to live of one kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindLimits {
    /// Most entries of this kind; an insert beyond is refused (the caller answers 503).
    pub cap: usize,
    /// Milliseconds an entry lives after its last insert or refresh.
    pub ttl_ms: u64,
}

/// Limits of every kind. The defaults are sized for one node of a few hundred thousand users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Per `imdn.Message-ID`. Notifications may come days later (a displayed IMDN when the
    /// user reads the message): 7 days, after which a late IMDN is answered without routing
    /// state (the store backend keeps longer-lived origins when configured).
    pub messages: KindLimits,
    /// Per pair of users. A conversation is continued when a user answers within 24 h (the
    /// identities are refreshed by every message).
    pub conversations: KindLimits,
    /// Per B2BUA leg. Refreshed by in-dialog traffic; 12 h matches the session idle timeout of
    /// OpenSIPS' msrp_gateway.
    pub dialogs: KindLimits,
    /// Per MSRP leg; same lifetime as the dialog that set it up.
    pub msrp: KindLimits,
}

const HOUR_MS: u64 = 3_600_000;

impl Default for TableLimits {
    fn default() -> Self {
        TableLimits {
            messages: KindLimits {
                cap: 2_000_000,
                ttl_ms: 7 * 24 * HOUR_MS,
            },
            conversations: KindLimits {
                cap: 1_000_000,
                ttl_ms: 24 * HOUR_MS,
            },
            dialogs: KindLimits {
                cap: 200_000,
                ttl_ms: 12 * HOUR_MS,
            },
            msrp: KindLimits {
                cap: 200_000,
                ttl_ms: 12 * HOUR_MS,
            },
        }
    }
}

/// Counters of every kind, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub messages: MapStats,
    pub conversations: MapStats,
    pub dialogs: MapStats,
    pub msrp: MapStats,
}

/// The correlation table.
#[derive(Debug)]
pub struct Table {
    messages: ExpiringMap<Bytes, MessageOrigin>,
    conversations: ExpiringMap<ConversationKey, ConversationState>,
    /// Packed into one buffer each (`packed`): a `DialogPeer` is a few hundred bytes inline
    /// and an allocation per field; a chat session keeps two (issue 9: bytes per session).
    dialogs: ExpiringMap<DialogKey, PackedDialog>,
    msrp: ExpiringMap<Bytes, MsrpPeer>,
    /// Bumped by every insert or removal of a dialog or MSRP entry ([`Table::sessions_generation`]).
    sessions: AtomicU64,
}

impl Table {
    /// An empty table with these limits.
    pub fn new(limits: TableLimits) -> Self {
        let map = |k: KindLimits| (k.cap, k.ttl_ms);
        let (mc, mt) = map(limits.messages);
        let (cc, ct) = map(limits.conversations);
        let (dc, dt) = map(limits.dialogs);
        let (sc, st) = map(limits.msrp);
        Table {
            messages: ExpiringMap::new(mc, mt),
            conversations: ExpiringMap::new(cc, ct),
            dialogs: ExpiringMap::new(dc, dt),
            msrp: ExpiringMap::new(sc, st),
            sessions: AtomicU64::new(0),
        }
    }

    /// Changes whenever a dialog or MSRP entry is inserted (a session set up, a re-INVITE's new
    /// Contact or `a=path`), removed or swept: what is derived from them (the chat routes,
    /// `translate::chat::RouteCache`) is derived again when it differs. Read it before the view.
    pub fn sessions_generation(&self) -> u64 {
        self.sessions.load(Ordering::Acquire)
    }

    fn sessions_changed(&self) {
        self.sessions.fetch_add(1, Ordering::AcqRel);
    }

    /// A read view at time `now`, for the translator.
    pub fn view(&self, now: Millis) -> TableView<'_> {
        TableView { table: self, now }
    }

    /// Apply the translator's changes in order. Stops at the first refused insert and reports
    /// it: the caller answers 503 and the changes before it stay (each is valid on its own:
    /// remembering more than was used does no harm, and it expires).
    pub fn apply(&self, changes: &[Change], now: Millis) -> Result<(), TableFull> {
        for change in changes {
            match change {
                Change::Insert(entry) => self.insert(entry, now)?,
                Change::Refresh(key) => {
                    self.refresh(key, now);
                }
                Change::Remove(key) => self.remove(key, now),
                // The packed inserts of a pager message, in their order: each value a slice
                // of the change's one buffer.
                Change::Remember(r) => {
                    if let Some((k, v)) = r.conversation() {
                        self.conversations.insert(k, v, now).map(drop)?;
                    }
                    if let Some((k, v)) = r.message() {
                        self.messages.insert(k, v, now).map(drop)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn insert(&self, entry: &Entry, now: Millis) -> Result<(), TableFull> {
        match entry {
            Entry::Message(k, v) => self
                .messages
                .insert(k.clone(), MessageOrigin::clone(v), now)
                .map(drop),
            Entry::Conversation(k, v) => self
                .conversations
                .insert(k.clone(), v.clone(), now)
                .map(drop),
            Entry::Dialog(k, v) => {
                let r = self
                    .dialogs
                    .insert(k.clone(), PackedDialog::pack(v), now)
                    .map(drop);
                self.sessions_changed();
                r
            }
            Entry::Msrp(k, v) => {
                let r = self.msrp.insert(k.clone(), v.clone(), now).map(drop);
                self.sessions_changed();
                r
            }
        }
    }

    fn refresh(&self, key: &Key, now: Millis) -> bool {
        match key {
            Key::Message(k) => self.messages.refresh(k, now),
            Key::Conversation(k) => self.conversations.refresh(k, now),
            Key::Dialog(k) => self.dialogs.refresh(k, now),
            Key::Msrp(k) => self.msrp.refresh(k, now),
        }
    }

    fn remove(&self, key: &Key, now: Millis) {
        match key {
            Key::Message(k) => drop(self.messages.remove(k, now)),
            Key::Conversation(k) => drop(self.conversations.remove(k, now)),
            Key::Dialog(k) => {
                drop(self.dialogs.remove(k, now));
                self.sessions_changed();
            }
            Key::Msrp(k) => {
                drop(self.msrp.remove(k, now));
                self.sessions_changed();
            }
        }
    }

    /// Remove every expired entry; returns how many went. The node calls this from a timer.
    pub fn sweep(&self, now: Millis) -> usize {
        let sessions = self.dialogs.sweep(now) + self.msrp.sweep(now);
        if sessions > 0 {
            self.sessions_changed();
        }
        self.messages.sweep(now) + self.conversations.sweep(now) + sessions
    }

    /// Gives back the room of kinds whose entries have mostly gone (`node::memory`); returns
    /// how many kinds shrank.
    pub fn shrink_if_sparse(&self) -> usize {
        usize::from(self.messages.shrink_if_sparse())
            + usize::from(self.conversations.shrink_if_sparse())
            + usize::from(self.dialogs.shrink_if_sparse())
            + usize::from(self.msrp.shrink_if_sparse())
    }

    /// Every live entry, for saving state (`cpm-iwf translate --state`); inserting them into a
    /// new table gives them a fresh time to live.
    pub fn entries(&self, now: Millis) -> Vec<Entry> {
        let mut out = Vec::new();
        out.extend(
            self.messages
                .snapshot(now)
                .into_iter()
                .map(|(k, v, _)| Entry::Message(k, Box::new(v))),
        );
        out.extend(
            self.conversations
                .snapshot(now)
                .into_iter()
                .map(|(k, v, _)| Entry::Conversation(k, v)),
        );
        out.extend(
            self.dialogs
                .snapshot(now)
                .into_iter()
                .filter_map(|(k, v, _)| Some(Entry::Dialog(k, Box::new(v.unpack()?)))),
        );
        out.extend(
            self.msrp
                .snapshot(now)
                .into_iter()
                .map(|(k, v, _)| Entry::Msrp(k, v)),
        );
        out
    }

    /// Counters per kind.
    pub fn stats(&self) -> TableStats {
        TableStats {
            messages: self.messages.stats(),
            conversations: self.conversations.stats(),
            dialogs: self.dialogs.stats(),
            msrp: self.msrp.stats(),
        }
    }
}

/// The table as the translator sees it: read-only, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct TableView<'a> {
    table: &'a Table,
    now: Millis,
}

impl View for TableView<'_> {
    fn message(&self, message_id: &[u8]) -> Option<MessageOrigin> {
        self.table.messages.get(message_id, self.now)
    }
    fn conversation(&self, key: &ConversationKey) -> Option<ConversationState> {
        self.table.conversations.get(key, self.now)
    }
    fn dialog(&self, key: &DialogKey) -> Option<DialogPeer> {
        self.table
            .dialogs
            .get_with(key, self.now, PackedDialog::unpack)
            .flatten()
    }
    fn msrp(&self, session_id: &[u8]) -> Option<MsrpPeer> {
        self.table.msrp.get(session_id, self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::state::{Device, Side};

    fn origin() -> MessageOrigin {
        MessageOrigin {
            side: Side::Cpm,
            device: Device {
                aor: Bytes::from_static(b"sip:alice@cpm.example"),
                gruu: None,
                instance: Some(Bytes::from_static(b"urn:gsma:imei:35-1")),
            },
            recipient: Bytes::from_static(b"sip:bob@simple.example"),
            conversation: None,
        }
    }

    fn small() -> TableLimits {
        let k = KindLimits {
            cap: 2,
            ttl_ms: 1_000,
        };
        TableLimits {
            messages: k,
            conversations: k,
            dialogs: k,
            msrp: KindLimits { cap: 2, ttl_ms: 50 },
        }
    }

    #[test]
    fn changes_apply_and_the_view_sees_them_until_they_expire() {
        let t = Table::new(small());
        let id = Bytes::from_static(b"Msg-1");
        t.apply(
            &[Change::Insert(Entry::Message(
                id.clone(),
                Box::new(origin()),
            ))],
            Millis(0),
        )
        .unwrap();
        assert_eq!(t.view(Millis(999)).message(b"Msg-1"), Some(origin()));
        t.apply(&[Change::Refresh(Key::Message(id.clone()))], Millis(900))
            .unwrap();
        assert_eq!(t.view(Millis(1_500)).message(b"Msg-1"), Some(origin()));
        assert_eq!(t.view(Millis(1_900)).message(b"Msg-1"), None);
        t.apply(&[Change::Remove(Key::Message(id))], Millis(0))
            .unwrap();
        assert_eq!(t.stats().messages.len, 0);
    }

    #[test]
    fn a_dialog_is_read_back_as_inserted_and_saved_with_the_rest() {
        use crate::mapping::Service;
        use crate::translate::state::LegDialog;
        let t = Table::new(small());
        let key = DialogKey {
            side: Side::Cpm,
            call_id: Bytes::from_static(b"call-1"),
        };
        let peer = DialogPeer {
            call_id: Bytes::from_static(b"call-2"),
            conversation: None,
            msrp_session: Some(Bytes::from_static(b"sid")),
            service: Service::Chat,
            leg: LegDialog {
                local_tag: Bytes::from_static(b"t1"),
                remote_tag: None,
                local_uri: Bytes::from_static(b"<sip:a@cpm.example>"),
                remote_uri: Bytes::from_static(b"<sip:b@simple.example>"),
                remote_target: Bytes::from_static(b"sip:b@192.0.2.1"),
                route_set: None,
                local_cseq: 7,
                msrp_setup: None,
            },
        };
        let entry = Entry::Dialog(key.clone(), Box::new(peer.clone()));
        t.apply(&[Change::Insert(entry.clone())], Millis(0))
            .unwrap();
        assert_eq!(t.view(Millis(1)).dialog(&key), Some(peer));
        assert_eq!(t.entries(Millis(1)), vec![entry]);
        assert_eq!(t.view(Millis(1_000)).dialog(&key), None, "expired");
    }

    #[test]
    fn each_kind_has_its_own_cap_and_ttl() {
        let t = Table::new(small());
        let peer = |n: &'static [u8]| MsrpPeer {
            side: Side::Simple,
            peer_session: Bytes::from_static(n),
            call_id: Bytes::from_static(b"c"),
            remote_path: None,
        };
        let ins = |k: &'static [u8]| Change::Insert(Entry::Msrp(Bytes::from_static(k), peer(k)));
        t.apply(&[ins(b"s1"), ins(b"s2")], Millis(0)).unwrap();
        assert_eq!(t.apply(&[ins(b"s3")], Millis(0)), Err(TableFull { cap: 2 }));
        // The other kinds are not affected by the MSRP cap.
        t.apply(
            &[Change::Insert(Entry::Message(
                Bytes::from_static(b"m"),
                Box::new(origin()),
            ))],
            Millis(0),
        )
        .unwrap();
        assert_eq!(t.sweep(Millis(60)), 2);
        assert_eq!(t.view(Millis(60)).msrp(b"s1"), None);
        assert!(t.view(Millis(60)).message(b"m").is_some());
        let stats = t.stats();
        assert_eq!((stats.msrp.refused, stats.msrp.expired), (1, 2));
    }
}
