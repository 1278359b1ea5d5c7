//! MSRP connection sharing: several sessions on one TCP connection, a "link" (RFC 4975 §5.4:
//! a connection may carry more than one session; RFC 4976 relays share them).
//!
//! A connection of one leg stays what it was (its leg's reader task, its write half in the
//! leg's queue): no [`Link`] is allocated for it (issue 9). It becomes a link when:
//! - inbound (always on): a request on it names another session that waits for its peer
//!   (the session-id of the To-Path's last URI, RFC 4975 §6): the reader binds that session
//!   here too, moves the write half into a [`Link`] ([`Handoff`] when the first leg's writer
//!   holds it) and carries on as the link's reader;
//! - outbound (`share_connections`): an active leg joins the node's connection to the same
//!   host:port from the same side when it has room, else dials one; a dial in progress to that
//!   host:port is waited for rather than doubled ([`Dials`]).
//!
//! The link's reader hands each frame to its session by To-Path session-id: a request for one
//! not on the link binds it when it waits for its peer, else gets 481 (RFC 4975 §7.3); a
//! response goes to the session whose URI it is addressed to (§7.2: a response's To-Path is
//! the request's From-Path, the node's URI on that leg), which looks its transaction up. A
//! full link answers a new inbound session 403. A SEND whose target queue stays full for
//! `share_wait` gets 413 (§7.3.1, §10.5: stop sending this message) instead of holding up
//! every session behind it. Writes from the sessions' writers are serialized on the link.
//! The link failing (EOF, reset, stall, idle, a failed write) fails every leg on it as a
//! leg's own connection failing does ([`Inner::leg_failed`]: taken over or ended).

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::codec::Decoder;

use super::decide::{self, Pending, PendingKind};
use super::{
    Conn, EndReason, Inner, MsrpCodec, Queue, Reader, RelayEvent, Session, Step, Woke, Writer,
    is_blank, lock, read_ready, start_writer, uri_bytes,
};
use crate::translate::state::Side;
use crate::wire::msrp::{Frame, Message, Method, MsrpUri};

/// How a leg writes: its own connection's write half, or its link's.
pub(super) enum Wr {
    Own(OwnedWriteHalf),
    Shared(Arc<Link>),
}

impl Wr {
    /// Not an `async fn`: its own state on top of the write's made the writer's future 24 B
    /// larger (issue 9); the link's write is boxed, the usual one is the same future as before.
    pub(super) fn write_all<'a>(
        &'a mut self,
        b: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        match self {
            Wr::Own(w) => Either::Left(w.write_all(b)),
            Wr::Shared(l) => Either::Right(Box::pin(l.write(b))),
        }
    }

    /// A write failed: on a link, every session on it is over with it.
    pub(super) fn fail(&self, reason: &EndReason) {
        if let Wr::Shared(l) = self {
            l.fail(reason.clone());
        }
    }
}

/// A first leg's write half asked for by the link its connection became: its writer task puts
/// it in the (locked) slot at its next batch ([`hand_over`]); the link's other writers wait on
/// the lock meanwhile.
pub(super) struct Handoff {
    link: Arc<Link>,
    slot: OwnedMutexGuard<Option<OwnedWriteHalf>>,
}

/// Give the write half to the link that asked for it, if one did.
pub(super) fn hand_over(queue: &Queue, wr: &mut Wr) {
    let Some(h) = queue.take_handoff() else {
        return;
    };
    let Handoff { link, mut slot } = *h;
    match std::mem::replace(wr, Wr::Shared(link)) {
        Wr::Own(w) => *slot = Some(w),
        // Never (only a connection of one leg is handed over): keep what it had.
        other => *wr = other,
    }
}

/// Host (as written in the URI), port and side of an outbound connection.
pub(super) type DialKey = (Side, Bytes, u16);

/// One TCP connection carrying one or more sessions' legs, all on one side.
pub(super) struct Link {
    side: Side,
    /// The write half, one write at a time: a leg's writer writes a whole batch under it. An
    /// async lock on purpose: writing is the critical section (a std lock is never held across
    /// an await here).
    wr: Arc<tokio::sync::Mutex<Option<OwnedWriteHalf>>>,
    legs: Mutex<Legs>,
    /// Poked when the link breaks (a writer failed).
    poke: Notify,
    broken: OnceLock<EndReason>,
    /// The peer's first hop: where responses to unreadable requests go (RFC 4975 §7.2).
    peer_hop: Bytes,
    /// The session-id of the first leg: the node's URI in those responses.
    local_sid: Bytes,
    /// Where it was dialed to, when other outbound legs may reuse it.
    key: Option<DialKey>,
}

struct Legs {
    /// By the session-id of the node's URI on the leg; at most `max_sessions_per_connection`.
    map: HashMap<Bytes, Arc<Session>>,
    /// No leg may join any more (closing).
    closed: bool,
}

impl Link {
    fn new(
        side: Side,
        peer_hop: Bytes,
        local_sid: Bytes,
        key: Option<DialKey>,
        wr: Option<OwnedWriteHalf>,
    ) -> Link {
        Link {
            side,
            wr: Arc::new(tokio::sync::Mutex::new(wr)),
            legs: Mutex::new(Legs {
                map: HashMap::new(),
                closed: false,
            }),
            poke: Notify::new(),
            broken: OnceLock::new(),
            peer_hop,
            local_sid,
            key,
        }
    }

    async fn write(&self, b: &[u8]) -> io::Result<()> {
        let mut wr = self.wr.lock().await;
        match wr.as_mut() {
            Some(w) => w.write_all(b).await,
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the shared MSRP connection is closed",
            )),
        }
    }

    fn fail(&self, reason: EndReason) {
        let _ = self.broken.set(reason);
        self.poke.notify_waiters();
    }

    /// Bind a session's leg here when there is room.
    fn join(&self, sid: Bytes, session: Arc<Session>, most: usize) -> bool {
        let mut legs = lock(&self.legs);
        if legs.closed || self.broken.get().is_some() || legs.map.len() >= most {
            return false;
        }
        if legs.map.contains_key(&sid) {
            return false;
        }
        legs.map.insert(sid, session);
        true
    }

    fn has_room(&self, most: usize) -> bool {
        let legs = lock(&self.legs);
        !legs.closed && legs.map.len() < most
    }

    fn get(&self, sid: &[u8]) -> Option<Arc<Session>> {
        lock(&self.legs).map.get(sid).cloned()
    }

    fn remove(&self, sid: &[u8], session: &Arc<Session>) {
        let mut legs = lock(&self.legs);
        if legs.map.get(sid).is_some_and(|s| Arc::ptr_eq(s, session)) {
            legs.map.remove(sid);
        }
    }

    fn is_open(&self) -> bool {
        !lock(&self.legs).closed && self.broken.get().is_none()
    }

    /// Sessions on the link.
    pub(super) fn len(&self) -> usize {
        lock(&self.legs).map.len()
    }

    /// Closed for new legs when it has none left; `true` then.
    fn close_if_empty(&self) -> bool {
        let mut legs = lock(&self.legs);
        if legs.map.is_empty() {
            legs.closed = true;
        }
        legs.closed
    }

    fn conn(self: &Arc<Self>, inner: &Arc<Inner>, session: Arc<Session>) -> Conn {
        Conn {
            inner: inner.clone(),
            session,
            side: self.side,
            shared: true,
            peer_hop: self.peer_hop.clone(),
        }
    }

    /// Write an answer the link's reader makes itself (481, 403, 400): bounded by
    /// `share_wait`, so that a busy link does not hold up its reader.
    async fn answer(&self, inner: &Inner, msg: Option<Message>) {
        let Some(msg) = msg else { return };
        let wire = msg.to_bytes();
        drop(msg);
        // Not written in time: dropped, the request's sender times out (RFC 4975 §7.1.1).
        if let Ok(Err(e)) = timeout(inner.cfg.share_wait, self.write(&wire)).await {
            self.fail(EndReason::Io(e.to_string()));
        }
    }

    /// Hand one frame to its session (by To-Path session-id), or answer it.
    async fn frame(self: &Arc<Self>, inner: &Arc<Inner>, frame: Frame) {
        let m = match frame {
            Frame::Rejected {
                transaction_id,
                error,
            } => {
                // Its paths could not be read: to the peer's first hop (RFC 4975 §7.2).
                let local = inner.local_uri(self.side, &self.local_sid);
                if let Ok(hop) = MsrpUri::parse(self.peer_hop.clone()) {
                    let r = decide::rejected_response(transaction_id, &error, &hop, &local);
                    self.answer(inner, r).await;
                }
                return;
            }
            Frame::Message(m) => m,
        };
        let is_request = m.method().is_some();
        let Some(sid) = to_session_id(&m) else {
            if is_request {
                self.answer(inner, decide::answer(&m, 481)).await;
            }
            return;
        };
        // A session that ended is off the link (the tick would drop it): 481 from now on.
        let found = self.get(&sid).filter(|s| {
            let over = s.is_stopped();
            if over {
                self.remove(&sid, s);
            }
            !over
        });
        match found {
            Some(session) => {
                let conn = self.conn(inner, session.clone());
                if !conn.handle(Frame::Message(m)).await {
                    self.remove(&sid, &session);
                }
            }
            None if is_request => self.bind(inner, m).await,
            // A response for no session here (it ended): absorbed.
            None => {}
        }
    }

    /// A request for a session not on the link: bind it here when it waits for its peer on
    /// this side (RFC 4975 §5.4) and there is room (else 403); anything else gets 481 (§7.3).
    async fn bind(self: &Arc<Self>, inner: &Arc<Inner>, m: Message) {
        let most = inner.cfg.max_sessions_per_connection;
        if !self.has_room(most) {
            return self.answer(inner, decide::answer(&m, 403)).await;
        }
        let session = match inner.claim(self.side, &m) {
            Ok(s) => s,
            Err(code) => return self.answer(inner, decide::answer(&m, code)).await,
        };
        // The leg's own copy of its session-id as the key: `sid` is a slice of the frame, and
        // a key kept for the session's life would keep the link's whole read buffer alive
        // (16 KB per session at 10k sessions, issue 9).
        let sid = session.leg(self.side).local_sid.clone();
        if !self.join(sid.clone(), session.clone(), most) {
            inner.unclaim(self.side, &session);
            return self.answer(inner, decide::answer(&m, 403)).await;
        }
        if !attach(inner, self, &session) {
            self.remove(&sid, &session);
            return;
        }
        let conn = self.conn(inner, session.clone());
        if !conn.handle(Frame::Message(m)).await {
            self.remove(&sid, &session);
        }
    }

    /// Drop the sessions that are over; answer for the transactions of the others that timed
    /// out (408, RFC 4975 §7.1.1). Runs every tick of the link's reader.
    async fn sweep(self: &Arc<Self>, inner: &Arc<Inner>) {
        let now = Instant::now();
        let due: Vec<(Bytes, Arc<Session>)> = {
            let mut legs = lock(&self.legs);
            legs.map.retain(|_, s| !s.is_stopped());
            if legs.map.capacity() > 4 * legs.map.len() + 16 {
                legs.map.shrink_to_fit();
            }
            legs.map
                .iter()
                .filter(|(_, s)| {
                    lock(&s.leg(self.side).outstanding)
                        .next_deadline(inner.cfg.transaction_timeout)
                        .is_some_and(|at| at <= now)
                })
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect()
        };
        for (sid, session) in due {
            if !self.conn(inner, session.clone()).expire().await {
                self.remove(&sid, &session);
            }
        }
    }

    /// The link is over: no leg joins any more, the dial registry forgets it, its write half
    /// is shut, and every leg still on it fails with `reason` (taken over or ended, as its own
    /// connection failing would) or, when it ended quietly, closes.
    async fn close(self: &Arc<Self>, inner: &Arc<Inner>, reason: Option<EndReason>) {
        let legs: Vec<Arc<Session>> = {
            let mut legs = lock(&self.legs);
            legs.closed = true;
            legs.map.drain().map(|(_, s)| s).collect()
        };
        if let Some(r) = &reason {
            self.fail(r.clone());
        }
        inner.dials.forget(self);
        for session in legs {
            match &reason {
                Some(r) => {
                    Box::pin(inner.leg_failed(&session, self.side, r.clone())).await;
                }
                None => session.leg(self.side).queue.close_unclaimed(),
            }
        }
        // A writer still writing keeps the lock until its stall timeout; then the half goes
        // with the link.
        if let Ok(mut wr) = timeout(Duration::from_millis(200), self.wr.lock()).await
            && let Some(mut w) = wr.take()
        {
            let _ = timeout(Duration::from_millis(200), w.shutdown()).await;
        }
    }

    /// A connection of one leg becomes a link: its write half moves into the link (now, or by
    /// its writer at its next batch). `None` when the leg's queue is not in a state to give it
    /// (the session ending).
    fn upgrade(conn: &Conn) -> Option<Arc<Link>> {
        let leg = conn.session.leg(conn.side);
        let link = Arc::new(Link::new(
            conn.side,
            conn.peer_hop.clone(),
            leg.local_sid.clone(),
            None,
            None,
        ));
        // A fresh lock: taking it cannot fail.
        let mut slot = link.wr.clone().try_lock_owned().ok()?;
        {
            let mut st = lock(&leg.queue.state);
            match std::mem::replace(&mut st.writer, Writer::Closed) {
                Writer::Idle(Wr::Own(w)) => {
                    *slot = Some(w);
                    st.writer = Writer::Idle(Wr::Shared(link.clone()));
                }
                Writer::Running(None) => {
                    st.writer = Writer::Running(Some(Box::new(Handoff {
                        link: link.clone(),
                        slot,
                    })));
                }
                other => {
                    st.writer = other;
                    return None;
                }
            }
        }
        lock(&link.legs)
            .map
            .insert(leg.local_sid.clone(), conn.session.clone());
        Some(link)
    }
}

/// A bound leg's queue writes through the link from now on; the B2BUA hears it is connected.
/// `false` when its queue was closed (the session ended) or claimed already.
fn attach(inner: &Arc<Inner>, link: &Arc<Link>, session: &Arc<Session>) -> bool {
    match session.leg(link.side).queue.claim(Wr::Shared(link.clone())) {
        Err(()) => return false,
        Ok(Some(wr)) => start_writer(inner, session, link.side, wr),
        Ok(None) => {}
    }
    // Informational: never let a slow event consumer hold up relaying.
    let _ = inner.events.try_send(RelayEvent::LegConnected {
        id: session.id,
        side: link.side,
    });
    true
}

/// The session-id of a message's To-Path's last URI (RFC 4975 §6: what names the session at
/// the node); `None` when that URI does not parse or has none.
pub(super) fn to_session_id(m: &Message) -> Option<Bytes> {
    let mut last = None;
    for u in m.to_path_uris() {
        last = u.ok();
    }
    last?.session_id
}

impl Inner {
    /// Undo [`Inner::claim`] for a session that could not be bound after all: it waits for its
    /// peer again.
    pub(super) fn unclaim(&self, side: Side, session: &Arc<Session>) {
        let leg = session.leg(side);
        leg.bound.store(false, Ordering::Release);
        if !session.is_stopped() {
            lock(&self.passive).insert((side, leg.local_sid.clone()), session.clone());
        }
    }
}

impl Reader {
    /// A frame on a connection of one leg. A request naming another session that waits for
    /// its peer on this side binds it here too (RFC 4975 §5.4): the connection becomes a link.
    pub(super) async fn solo_frame(&mut self, frame: Frame) -> Step {
        let m = match frame {
            Frame::Message(m) if m.method().is_some() => m,
            other => return self.solo_handle(other).await,
        };
        let Some(session) = self.claim_other(&m) else {
            return self.solo_handle(Frame::Message(m)).await;
        };
        let inner = self.conn.inner.clone();
        if inner.cfg.max_sessions_per_connection <= 1 {
            inner.unclaim(self.conn.side, &session);
            let answer = decide::answer(&m, 403);
            drop(m);
            let Some(a) = answer else { return Step::Go };
            return if self.conn.enqueue(self.conn.side, a).await {
                Step::Go
            } else {
                Step::Over
            };
        }
        let Some(link) = Link::upgrade(&self.conn) else {
            inner.unclaim(self.conn.side, &session);
            return self.solo_handle(Frame::Message(m)).await;
        };
        let sid = session.leg(self.conn.side).local_sid.clone();
        lock(&link.legs).map.insert(sid.clone(), session.clone());
        if attach(&inner, &link, &session) {
            let conn = link.conn(&inner, session.clone());
            if !conn.handle(Frame::Message(m)).await {
                link.remove(&sid, &session);
            }
        } else {
            link.remove(&sid, &session);
        }
        // From now on the first leg's frames go through the link too.
        self.conn.shared = true;
        Step::Shared(link)
    }

    async fn solo_handle(&self, frame: Frame) -> Step {
        if self.conn.handle(frame).await {
            Step::Go
        } else {
            Step::Over
        }
    }

    /// The session another session-id on this connection names, claimed, when one waits for
    /// its peer on this side. Cheap for the usual request: the To-Path's bytes are looked at
    /// first, and only one that does not carry this leg's session-id is parsed.
    fn claim_other(&self, m: &Message) -> Option<Arc<Session>> {
        let leg = self.conn.session.leg(self.conn.side);
        let raw = m.header("To-Path")?;
        let own = leg.local_sid.as_ref();
        if own.is_empty() || raw.windows(own.len()).any(|w| w == own) {
            return None;
        }
        let sid = to_session_id(m)?;
        if sid == leg.local_sid || self.conn.session.is_stopped() {
            return None;
        }
        self.conn.inner.claim(self.conn.side, m).ok()
    }

    /// The link's reader, until the link is over; then every leg still on it is failed or
    /// closed ([`Link::close`]).
    pub(super) async fn run_shared(&mut self) {
        let Some(link) = self.link.clone() else {
            return;
        };
        let ended = self.shared_loop(&link).await;
        let inner = self.conn.inner.clone();
        link.close(&inner, ended).await;
    }

    /// Read and dispatch frames until the link fails (`Some`), or closes quietly (`None`: no
    /// session left for `connection_idle`, or the relay stopping). One timer for the
    /// stall/idle deadline, the tick (transaction sweep, ended sessions) and the idle close.
    async fn shared_loop(&mut self, link: &Arc<Link>) -> Option<EndReason> {
        let inner = self.conn.inner.clone();
        let cfg = &inner.cfg;
        let tick =
            (cfg.transaction_timeout / 8).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut last_read = Instant::now();
        let mut partial_since: Option<Instant> = (!is_blank(&self.buf)).then(Instant::now);
        let mut next_tick = last_read + tick;
        let mut empty_since: Option<Instant> = None;
        let mut timer = pin!(sleep_until(next_tick));
        loop {
            loop {
                let frame = match self.codec.decode(&mut self.buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return Some(EndReason::Framing(e.to_string())),
                };
                link.frame(&inner, frame).await;
                // Time spent waiting for a session's queue is not the peer's.
                partial_since = (!is_blank(&self.buf)).then(Instant::now);
            }
            if self.buf.is_empty() {
                self.buf = BytesMut::new();
            }
            let mut poked = pin!(link.poke.notified());
            poked.as_mut().enable();
            if let Some(r) = link.broken.get() {
                return Some(r.clone());
            }
            if inner.shutdown.is_cancelled() {
                return None;
            }
            let now = Instant::now();
            if now >= next_tick {
                link.sweep(&inner).await;
                next_tick = Instant::now() + tick;
            }
            if link.len() == 0 {
                let since = *empty_since.get_or_insert(now);
                if now >= since + cfg.connection_idle && link.close_if_empty() {
                    return None;
                }
            } else {
                empty_since = None;
            }
            let deadline = match partial_since {
                Some(t) => t + cfg.stall_timeout,
                None => last_read + cfg.idle_timeout,
            };
            let mut at = deadline.min(next_tick);
            if let Some(e) = empty_since {
                at = at.min(e + cfg.connection_idle);
            }
            timer.as_mut().reset(at);
            let woke = poll_fn(|cx| {
                if poked.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Poked);
                }
                if let Poll::Ready(r) = self.rd.as_ref().poll_read_ready(cx) {
                    return Poll::Ready(Woke::Readable(r));
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Woke::Timer),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match woke {
                Woke::Poked => {}
                Woke::Timer if Instant::now() < deadline => {}
                Woke::Timer if partial_since.is_some() => return Some(EndReason::Stalled),
                Woke::Timer => return Some(EndReason::Idle),
                Woke::Readable(Err(e)) => return Some(EndReason::Io(e.to_string())),
                Woke::Readable(Ok(())) => {
                    if let Err(r) = read_ready(
                        &self.rd,
                        &mut self.codec,
                        &mut self.buf,
                        &mut last_read,
                        &mut partial_since,
                    ) {
                        return Some(r);
                    }
                }
            }
        }
    }
}

/// A dial in progress to one host:port: who waits for it learns how it went.
#[derive(Default)]
struct Dialing {
    done: Notify,
    result: OnceLock<Result<(), String>>,
}

impl Dialing {
    fn finish(&self, r: Result<(), String>) {
        let _ = self.result.set(r);
        self.done.notify_waiters();
    }

    async fn wait(&self) -> Result<(), String> {
        loop {
            let mut n = pin!(self.done.notified());
            // Registered before the check: a finish between the two still wakes it.
            n.as_mut().enable();
            if let Some(r) = self.result.get() {
                return r.clone();
            }
            n.await;
        }
    }
}

#[derive(Default)]
struct Slot {
    links: Vec<Arc<Link>>,
    dialing: Option<Arc<Dialing>>,
}

/// The node's reusable outbound links by where they go, and the dial in progress to each
/// host:port. Bounded: an entry lives while a link to it is open or a dial runs.
#[derive(Default)]
pub(super) struct Dials {
    map: Mutex<HashMap<DialKey, Slot>>,
}

enum Pick {
    Joined(Arc<Link>),
    Wait(Arc<Dialing>),
    Dial(Arc<Dialing>),
}

impl Dials {
    fn pick(&self, key: &DialKey, sid: &Bytes, session: &Arc<Session>, most: usize) -> Pick {
        let mut map = lock(&self.map);
        let slot = map.entry(key.clone()).or_default();
        slot.links.retain(|l| l.is_open());
        for l in &slot.links {
            if l.join(sid.clone(), session.clone(), most) {
                return Pick::Joined(l.clone());
            }
        }
        if let Some(d) = &slot.dialing {
            return Pick::Wait(d.clone());
        }
        let d = Arc::new(Dialing::default());
        slot.dialing = Some(d.clone());
        Pick::Dial(d)
    }

    /// The dial to `key` is over (with its link when it worked).
    fn dialed(&self, key: &DialKey, link: Option<Arc<Link>>) {
        let mut map = lock(&self.map);
        if let Some(slot) = map.get_mut(key) {
            slot.dialing = None;
            slot.links.extend(link);
            if slot.links.is_empty() {
                map.remove(key);
            }
        }
    }

    /// A link closed: not reused any more.
    fn forget(&self, link: &Arc<Link>) {
        let Some(key) = &link.key else { return };
        let mut map = lock(&self.map);
        if let Some(slot) = map.get_mut(key) {
            slot.links.retain(|l| !Arc::ptr_eq(l, link));
            if slot.links.is_empty() && slot.dialing.is_none() {
                map.remove(key);
            }
        }
    }

    /// Links open.
    #[cfg(test)]
    pub(super) fn links(&self) -> usize {
        lock(&self.map).values().map(|s| s.links.len()).sum()
    }
}

/// An active leg with `share_connections`: join a link to the same host:port with room, wait
/// for the dial in progress to it, or dial one. `Some` when this leg dialed: its task becomes
/// the new link's reader.
pub(super) async fn dial_shared(
    inner: Arc<Inner>,
    session: Arc<Session>,
    side: Side,
) -> Option<Reader> {
    let leg = session.leg(side);
    let expected = leg.expected();
    let first = expected.first()?;
    let host = String::from_utf8_lossy(&first.host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = first.port.unwrap_or_default();
    let key: DialKey = (side, first.host.clone(), port);
    let most = inner.cfg.max_sessions_per_connection;
    let sid = leg.local_sid.clone();
    // Bounded in time: a round joins, waits for one dial, or dials.
    let until = Instant::now() + inner.cfg.connect_timeout;
    while Instant::now() < until {
        match inner.dials.pick(&key, &sid, &session, most) {
            Pick::Joined(link) => {
                bind_on(&inner, &session, &link, &expected).await;
                return None;
            }
            Pick::Wait(d) => {
                let r = tokio::select! {
                    _ = session.stopped() => return None,
                    r = tokio::time::timeout_at(until, d.wait()) => r,
                };
                match r {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => {
                        inner.end(&session, side, EndReason::ConnectFailed(e)).await;
                        return None;
                    }
                    Err(_) => break,
                }
            }
            Pick::Dial(d) => {
                let connected = tokio::select! {
                    _ = session.stopped() => {
                        d.finish(Err("the dialing session ended".into()));
                        inner.dials.dialed(&key, None);
                        return None;
                    }
                    r = tokio::time::timeout_at(until, TcpStream::connect((host.as_str(), port))) => r,
                };
                let stream = match connected {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        d.finish(Err(e.to_string()));
                        inner.dials.dialed(&key, None);
                        inner
                            .end(&session, side, EndReason::ConnectFailed(e.to_string()))
                            .await;
                        return None;
                    }
                    Err(_) => {
                        d.finish(Err("connect timed out".into()));
                        inner.dials.dialed(&key, None);
                        break;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (rd, wr) = stream.into_split();
                let link = Arc::new(Link::new(
                    side,
                    uri_bytes(first),
                    sid.clone(),
                    Some(key.clone()),
                    Some(wr),
                ));
                let _ = link.join(sid.clone(), session.clone(), most.max(1));
                inner.dials.dialed(&key, Some(link.clone()));
                d.finish(Ok(()));
                bind_on(&inner, &session, &link, &expected).await;
                let conn = link.conn(&inner, session.clone());
                return Some(Reader {
                    conn,
                    rd,
                    codec: MsrpCodec::new(inner.cfg.limits.clone()),
                    buf: BytesMut::new(),
                    link: Some(link),
                });
            }
        }
    }
    inner.end(&session, side, EndReason::ConnectTimeout).await;
    None
}

/// Bind an active leg on a link: its bodiless SEND (RFC 4975 §5.4) goes first, before
/// anything queued for it, then its queue writes through the link.
async fn bind_on(inner: &Arc<Inner>, session: &Arc<Session>, link: &Arc<Link>, path: &[MsrpUri]) {
    let side = link.side;
    let leg = session.leg(side);
    let tid = inner.tids.next();
    let mut bind = Message::request(tid.clone(), Method::Send);
    bind.set_to_path(path);
    bind.set_from_path(&[inner.local_uri(side, &leg.local_sid)]);
    bind.set_header("Message-ID", inner.tids.next());
    leg.track(Pending {
        transaction_id: tid,
        at: Instant::now(),
        kind: PendingKind::Bind,
    });
    let wire = bind.to_bytes();
    drop(bind);
    let written = tokio::select! {
        _ = session.stopped() => {
            link.remove(&leg.local_sid, session);
            return;
        }
        r = timeout(inner.cfg.stall_timeout, link.write(&wire)) => r,
    };
    let failed = match written {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(EndReason::Io(e.to_string())),
        Err(_) => Some(EndReason::Stalled),
    };
    if let Some(reason) = failed {
        link.fail(reason.clone());
        link.remove(&leg.local_sid, session);
        inner.end(session, side, reason).await;
        return;
    }
    leg.bound.store(true, Ordering::Release);
    if !attach(inner, link, session) {
        link.remove(&leg.local_sid, session);
    }
}

#[cfg(test)]
mod tests;
