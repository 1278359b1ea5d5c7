//! Store-and-forward for a chat session whose leg drops mid-session (issue 7: "a chat-session
//! INVITE towards a user who is not available (... or an MSRP leg that dropped mid-session) is
//! accepted by the node on the recipient's behalf"; CPM 2.0 §4.2, "storing of chat messages
//! and associated notifications while a chat participant is not available").
//!
//! Why here and not by re-pointing the leg at the mailbox's MSRP endpoint: the chunks queued
//! for the dropped leg are already translated for the dropped user's network (exactly what the
//! mailbox stores), they sit in this relay's queue, and a second TCP hop would answer the
//! sender 200 before the store commit. So the relay hands them to a [`Keep`] the B2BUA gives it
//! (`node::mailbox::SessionKeeper`, the mailbox's own reassembly and store path) and answers
//! the sender only with the store's verdict.
//!
//! Which drops count ([`counts`]): the peer closed its connection (EOF), the socket failed
//! (reset), or the peer stalled (a write blocked, or a message it began was not finished, for
//! `msrp_stall_ms`), while the other leg is connected. Not a framing error (a broken peer), an
//! idle timeout, or a leg that never connected: those end the session as before.
//!
//! After the drop:
//! - every SEND already written to the dropped peer and not answered yet is kept first, in
//!   the order written: only the peer's 200 says it has a chunk (RFC 4975 §7.1.1), so the leg
//!   holds each written SEND until then (`decide::Outstanding::hold`, at most `queue_depth`
//!   messages and `queue_bytes` bytes per leg; one let go beyond that, or sent with
//!   `Failure-Report: partial`/`no`, whose arrival no 200 confirms, is not kept and gets the
//!   usual 408 REPORT at the transaction timeout when a failure report was asked for); then
//!   what the writer was writing, then every SEND still queued. A chunk whose message began
//!   in a part the peer did answer cannot be kept whole: the keeper refuses it (413), which
//!   becomes a REPORT to its sender (RFC 4975 §7.1.2);
//! - a message is kept once per imdn.Message-ID within a takeover (`SessionKeeper`): the
//!   same message again (the sender retrying it) is answered 200 and not stored twice;
//! - each later SEND towards the dropped user is answered only once kept: 200 after the store
//!   commit, else the store's MSRP status (RFC 4975 §7.2). A message whose beginning the node
//!   did not see (half-written when the leg dropped) gets 413, "stop sending this message"
//!   (RFC 4975 §7.3.1 / §10): kept whole or refused, never a 200 for a part that is not kept;
//! - isComposing is answered and dropped (RFC 3994 §4: stale later); REPORTs and responses for
//!   the dropped peer are dropped (nobody to read them);
//! - the B2BUA ends the dropped user's dialog with BYE; the other user's session stays up with
//!   the node as its peer until they end it (`[store] on_msrp_drop`, default "store"; "end"
//!   ends the whole session instead, as without a store).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use super::decide::{self, RequestAction};
use super::{Conn, EndReason, Inner, Out, Session};
use crate::translate::state::Side;
use crate::wire::msrp::{Message, Method};

/// What keeping one chunk costs to wait for: the status code to answer it with.
pub type KeepFuture<'a> = Pin<Box<dyn Future<Output = u16> + Send + 'a>>;

/// Where the chunks towards a dropped user go: durably kept, or refused.
pub trait Keep: Send + Sync {
    /// Keep one SEND chunk `msg`, translated for the dropped user's network, in the order
    /// given. 200 once the message it completes is durable (or it is a part, or something not
    /// kept, such as isComposing); else the status to answer (413, 503, ...).
    fn keep<'a>(&'a self, msg: &'a Message) -> KeepFuture<'a>;
}

/// Whether a leg that failed for `reason` dropped mid-session: the peer closed, reset, or
/// stalled. Framing errors, idle timeouts and connect failures end the session.
pub fn counts(reason: &EndReason) -> bool {
    matches!(
        reason,
        EndReason::PeerClosed | EndReason::Io(_) | EndReason::Stalled
    )
}

/// Whether the failure of a leg is taken over: it counts ([`counts`]), both legs were bound
/// (the session was established), the session is not ending, and the other leg did not drop
/// already (then nobody is left to talk to).
pub fn should_take_over(
    reason: &EndReason,
    this_bound: bool,
    other_bound: bool,
    other_dropped: bool,
    ended: bool,
) -> bool {
    counts(reason) && this_bound && other_bound && !other_dropped && !ended
}

impl Inner {
    /// A bound leg failed: take it over ([`Keep`]) when [`should_take_over`] and the session's
    /// translator gives a keeper, else end the session. `true` when the leg is taken over
    /// (now or by an earlier call: its reader and writer both get here).
    pub(super) async fn leg_failed(
        self: &Arc<Self>,
        session: &Arc<Session>,
        side: Side,
        reason: EndReason,
    ) -> bool {
        let leg = session.leg(side);
        if leg.is_dropped() {
            return true;
        }
        let other = session.leg(side.other());
        if should_take_over(
            &reason,
            leg.bound.load(Ordering::Acquire),
            other.bound.load(Ordering::Acquire),
            other.is_dropped(),
            session.ended.load(Ordering::Acquire),
        ) {
            if leg.taking.swap(true, Ordering::AcqRel) {
                // The leg's other task got here first and decides.
                return true;
            }
            if let Some(keep) = session.translator.on_drop(side, &reason) {
                tracing::info!(id = session.id, ?side, %reason, "MSRP leg dropped: its messages are kept");
                // Set before `dropped`: whoever sees the leg dropped finds its keeper.
                let _ = leg.kept.set(keep);
                leg.set_dropped();
                // A leg with nothing queued has no writer task: start one, it drains the
                // queue into the keeper from now on (after `dropped`: see `Queue::park`).
                if let Some(wr) = leg.queue.wake() {
                    super::start_writer(self, session, side, wr);
                }
                return true;
            }
        }
        self.end(session, side, reason).await;
        false
    }
}

/// The dropped leg's queue, drained into its keeper until the session ends: the SENDs written
/// to the dropped peer and not answered ([`decide::Outstanding::take_held`]) first, then `held`
/// (what the writer had taken and not finished writing when the leg dropped), then everything
/// queued, one message at a time, in order. Acts as the dropped leg's peer: a kept chunk is its
/// 200, a refusal its failure (a REPORT to the sender when asked for, RFC 4975 §7.1.2), and
/// written chunks that were not held time out (408, §7.1.1). Each message's slot is free once
/// taken, its
/// bytes of budget once kept (as the writer gives them back once written): the backpressure
/// on the senders is the queue's as before.
pub(super) async fn drain(inner: Arc<Inner>, session: Arc<Session>, side: Side, held: Vec<Out>) {
    let leg = session.leg(side);
    // Always set before `dropped` is cancelled; `None`: the session ended instead.
    let Some(keep) = leg.kept.get().cloned() else {
        return;
    };
    let conn = Conn {
        inner: inner.clone(),
        session: session.clone(),
        side,
        shared: false,
        // Only used to answer the dropped peer's unreadable requests: none come any more.
        peer_hop: Bytes::new(),
    };
    let queue = &leg.queue;
    // Written, never answered: the peer may not have read them (RFC 4975 §7.1.1).
    let written = super::lock(&leg.outstanding).take_held();
    for (pending, msg) in written {
        let code = keep.keep(&msg).await;
        drop(msg);
        // Its sender had its 200 when it was forwarded: a refusal becomes its REPORT.
        if !conn.responded(&pending, code, None).await {
            return;
        }
    }
    for out in held {
        if !kept(&conn, &*keep, out).await {
            return;
        }
    }
    let timeout = inner.cfg.transaction_timeout;
    loop {
        // Enabled before the checks: a poke (the session's end, a first tracked request)
        // after them still wakes the wait below.
        let poked = leg.wake.notified();
        tokio::pin!(poked);
        poked.as_mut().enable();
        if session.is_stopped() {
            break;
        }
        let sweep_at = super::lock(&leg.outstanding).next_deadline(timeout);
        if sweep_at.is_some_and(|at| at <= Instant::now()) {
            if !conn.expire().await {
                break;
            }
            continue;
        }
        if let Some(out) = queue.take_one() {
            if !kept(&conn, &*keep, out).await {
                break;
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = &mut poked => {}
            _ = sleep_until(sweep_at.unwrap_or_else(Instant::now)), if sweep_at.is_some() => {}
            _ = queue.ready.notified() => {}
        }
    }
    // The session ended (a BYE): what was queued was accepted; keep it too (bounded by the
    // queue's depth; the writer closes the queue once this returns).
    while let Some(out) = queue.take_one() {
        let Out {
            msg, bytes, done, ..
        } = out;
        if msg.method() == Some(&Method::Send) {
            let code = keep.keep(&msg).await;
            if let Some(done) = done {
                let _ = done.send(code);
            }
        }
        drop(msg);
        queue.budget.add_permits(bytes as usize);
    }
}

/// Keep one queued message, then give back its bytes of budget; `false` when the session is
/// over.
async fn kept(conn: &Conn, keep: &dyn Keep, out: Out) -> bool {
    let queue = &conn.session.leg(conn.side).queue;
    let Out {
        msg, bytes, done, ..
    } = out;
    if msg.method() != Some(&Method::Send) {
        // A response or a REPORT for the dropped peer: nobody reads it any more.
        drop(msg);
        queue.budget.add_permits(bytes as usize);
        return true;
    }
    let code = keep.keep(&msg).await;
    let transaction_id = msg.transaction_id.clone();
    drop(msg);
    queue.budget.add_permits(bytes as usize);
    if let Some(done) = done {
        let _ = done.send(code);
        return true;
    }
    // Queued before the drop: its sender already has its 200; a refusal becomes its REPORT.
    let pending = super::lock(&conn.session.leg(conn.side).outstanding).take(&transaction_id);
    match pending {
        Some(p) => conn.responded(&p, code, None).await,
        None => true,
    }
}

impl Conn {
    /// A request from this leg's peer while the other leg is taken over: a SEND towards the
    /// dropped user is answered with what its keeping says, once it is kept; anything else for
    /// the dropped user is dropped. `false` when the session is over.
    pub(super) async fn towards_kept(&self, req: &Message, action: RequestAction) -> bool {
        match action {
            RequestAction::Ignore => true,
            RequestAction::Answer(a) => self.enqueue(self.side, a).await,
            RequestAction::Forward { out, .. } if out.method() == Some(&Method::Send) => {
                let Some(code) = self.enqueue_kept(out).await else {
                    return false;
                };
                match decide::answer(req, code) {
                    Some(a) => self.enqueue(self.side, a).await,
                    None => true,
                }
            }
            RequestAction::Forward { .. } => true,
        }
    }

    /// Queue a SEND on the taken-over leg (behind what is already queued, so that order is
    /// kept, with the queue's backpressure) and wait for the status its keeping gives; `None`
    /// when the session is over.
    async fn enqueue_kept(&self, msg: Message) -> Option<u16> {
        let (tx, rx) = oneshot::channel();
        if !self.enqueue_with(self.side.other(), msg, Some(tx)).await {
            return None;
        }
        tokio::select! {
            _ = self.session.stopped() => None,
            // Dropped unanswered (cannot happen once the drain runs): not kept.
            r = rx => Some(r.unwrap_or(408)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_closes_resets_and_stalls_of_an_established_session_are_taken_over() {
        let yes = [
            EndReason::PeerClosed,
            EndReason::Io("connection reset by peer".into()),
            EndReason::Stalled,
        ];
        for r in &yes {
            assert!(counts(r), "{r}");
            assert!(should_take_over(r, true, true, false, false), "{r}");
            // Not before both legs are connected, not when the other leg dropped already,
            // not when the session is ending (a BYE).
            assert!(!should_take_over(r, false, true, false, false));
            assert!(!should_take_over(r, true, false, false, false));
            assert!(!should_take_over(r, true, true, true, false));
            assert!(!should_take_over(r, true, true, false, true));
        }
        let no = [
            EndReason::Framing("bad start line".into()),
            EndReason::Idle,
            EndReason::ConnectTimeout,
            EndReason::ConnectFailed("refused".into()),
            EndReason::BindRefused(481),
        ];
        for r in &no {
            assert!(!counts(r), "{r}");
            assert!(!should_take_over(r, true, true, false, false), "{r}");
        }
    }
}
