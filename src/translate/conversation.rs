//! CPM conversation identities across a network that has none (CPM 2.0 SD 5.2.1.1;
//! docs/interworking-notes.md §2).
//!
//! CPM -> SIMPLE: the identities a CPM user's message or session carries are remembered per pair
//! of users, so that what the SIMPLE IM user sends back is given the same `Conversation-ID` and
//! an `InReplyTo-Contribution-ID` naming what it answers.
//! SIMPLE -> CPM with nothing remembered: a new conversation, with a fresh `Conversation-ID`.
//! Either way a fresh `Contribution-ID` per standalone message or session.

use bytes::Bytes;

use super::state::{Change, ConversationIds, ConversationKey, ConversationState, Entry, View};

/// Where fresh identities come from. The node draws UUIDs from a random source (the values are
/// opaque tokens, UUIDs in practice: PROTOCOL-NOTES.md); tests use a counter, so that the
/// translator stays a pure function of its inputs.
pub trait IdSource {
    /// A new identity, never returned before.
    fn fresh_id(&mut self) -> Bytes;

    /// A new identity written at the end of `out`, as text (bytes that are not UTF-8 lossily):
    /// for an id that goes into a value the caller writes anyway (a From tag, a Call-ID), with
    /// no allocation of its own. The node's source writes it in place; the default copies
    /// [`fresh_id`](Self::fresh_id).
    fn fresh_id_into(&mut self, out: &mut String) {
        out.push_str(&String::from_utf8_lossy(&self.fresh_id()));
    }
}

/// What to remember after a CPM user's message or session with identities `ids` went to the
/// SIMPLE side.
pub fn remember_cpm_contribution(key: ConversationKey, ids: &ConversationIds) -> Change {
    Change::Insert(Entry::Conversation(
        key,
        ConversationState {
            conversation_id: ids.conversation_id.clone(),
            last_cpm_contribution: Some(ids.contribution_id.clone()),
        },
    ))
}

/// The identities for a message or session a SIMPLE IM user starts towards a CPM user, and the
/// change that keeps the conversation alive (a new one is remembered; a known one is refreshed
/// with its state unchanged).
pub fn for_simple_contribution(
    view: &dyn View,
    key: ConversationKey,
    ids: &mut dyn IdSource,
) -> (ConversationIds, Change) {
    let contribution_id = ids.fresh_id();
    match view.conversation(&key) {
        Some(state) => (
            ConversationIds {
                conversation_id: state.conversation_id.clone(),
                contribution_id,
                in_reply_to: state.last_cpm_contribution.clone(),
            },
            Change::Insert(Entry::Conversation(key, state)),
        ),
        None => {
            let conversation_id = ids.fresh_id();
            let state = ConversationState {
                conversation_id: conversation_id.clone(),
                last_cpm_contribution: None,
            };
            (
                ConversationIds {
                    conversation_id,
                    contribution_id,
                    in_reply_to: None,
                },
                Change::Insert(Entry::Conversation(key, state)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::{Millis, Table, TableLimits};

    struct Counter(u32);
    impl IdSource for Counter {
        fn fresh_id(&mut self) -> Bytes {
            self.0 += 1;
            Bytes::from(format!("id-{}", self.0))
        }
    }

    fn key() -> ConversationKey {
        ConversationKey {
            cpm_user: Bytes::from_static(b"sip:alice@cpm.example"),
            simple_user: Bytes::from_static(b"sip:bob@simple.example"),
        }
    }

    #[test]
    fn a_simple_user_starts_a_new_conversation() {
        let table = Table::new(TableLimits::default());
        let mut ids = Counter(0);
        let (first, change) = for_simple_contribution(&table.view(Millis(0)), key(), &mut ids);
        assert_eq!(first.in_reply_to, None);
        assert_ne!(first.conversation_id, first.contribution_id);
        table.apply(&[change], Millis(0)).unwrap();
        // The SIMPLE user's second message stays in the same conversation, new contribution.
        let (second, _) = for_simple_contribution(&table.view(Millis(1)), key(), &mut ids);
        assert_eq!(second.conversation_id, first.conversation_id);
        assert_ne!(second.contribution_id, first.contribution_id);
        assert_eq!(second.in_reply_to, None);
    }

    #[test]
    fn a_reply_from_simple_continues_the_cpm_conversation() {
        let table = Table::new(TableLimits::default());
        let cpm = ConversationIds {
            conversation_id: Bytes::from_static(b"conv-A"),
            contribution_id: Bytes::from_static(b"contrib-1"),
            in_reply_to: None,
        };
        table
            .apply(&[remember_cpm_contribution(key(), &cpm)], Millis(0))
            .unwrap();
        let (reply, change) =
            for_simple_contribution(&table.view(Millis(5)), key(), &mut Counter(0));
        assert_eq!(reply.conversation_id, cpm.conversation_id);
        assert_eq!(reply.in_reply_to, Some(cpm.contribution_id.clone()));
        assert_eq!(reply.contribution_id, Bytes::from_static(b"id-1"));
        table.apply(&[change], Millis(5)).unwrap();
        // A conversation with another user is another conversation.
        let other = ConversationKey {
            simple_user: Bytes::from_static(b"sip:carol@simple.example"),
            ..key()
        };
        let (fresh, _) = for_simple_contribution(&table.view(Millis(6)), other, &mut Counter(9));
        assert_ne!(fresh.conversation_id, cpm.conversation_id);
    }
}
