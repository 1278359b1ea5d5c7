//! SIP transactions (RFC 3261 §17, with the INVITE fixes of RFC 6026) as sans-IO state machines.
//!
//! A transaction never touches a socket or a clock: the node feeds it what arrived and the time
//! (`now`), and drains what it wants done: bytes to (re)transmit ([`poll_transmit`]), events for
//! the transaction user ([`poll_event`]), and the next instant it needs to be woken
//! ([`poll_timeout`]), as quinn-proto does for QUIC. The tests below run every timer of §17 with
//! a fake clock.
//!
//! Messages are handled as already-serialised `Bytes`: a transaction only needs to resend them
//! and to know status codes, never to look inside.
//!
//! [`poll_transmit`]: ClientTransaction::poll_transmit
//! [`poll_event`]: ClientTransaction::poll_event
//! [`poll_timeout`]: ClientTransaction::poll_timeout

use std::collections::VecDeque;

use bytes::Bytes;

use crate::time::Millis;

/// Timer base values (RFC 3261 §17.1.1.1, Table 4) and whether the transport is reliable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the RTT estimate: 500 ms.
    pub t1_ms: u64,
    /// T2, the longest retransmit interval for non-INVITE requests and INVITE responses: 4 s.
    pub t2_ms: u64,
    /// T4, the longest a message stays in the network: 5 s.
    pub t4_ms: u64,
    /// TCP (or TLS): no retransmissions, and the wait-for-retransmission timers are zero.
    pub reliable: bool,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            reliable: false,
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L and M.
    fn timeout(&self) -> u64 {
        self.t1_ms.saturating_mul(64)
    }
    /// A wait that is only needed to absorb retransmissions over an unreliable transport.
    fn unreliable(&self, ms: u64) -> u64 {
        if self.reliable { 0 } else { ms }
    }
}

/// The timers of RFC 3261 §17 (Table 4) and RFC 6026 §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit.
    A,
    /// INVITE transaction timeout.
    B,
    /// Wait for response retransmits (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit.
    E,
    /// Non-INVITE transaction timeout.
    F,
    /// INVITE response retransmit.
    G,
    /// Wait for ACK receipt.
    H,
    /// Wait for ACK retransmits.
    I,
    /// Wait for non-INVITE request retransmits.
    J,
    /// Wait for response retransmits (non-INVITE client, Completed).
    K,
    /// Wait for INVITE retransmits after a 2xx (RFC 6026, server Accepted).
    L,
    /// Wait for 2xx retransmits (RFC 6026, client Accepted).
    M,
}

/// The armed timers of one transaction: at most two run at once, so a small list.
#[derive(Debug, Clone, Default)]
struct Timers {
    armed: Vec<(Timer, Millis)>,
}

impl Timers {
    fn arm(&mut self, timer: Timer, at: Millis) {
        self.cancel(timer);
        self.armed.push((timer, at));
    }
    fn cancel(&mut self, timer: Timer) {
        self.armed.retain(|(t, _)| *t != timer);
    }
    fn clear(&mut self) {
        self.armed.clear();
    }
    fn next(&self) -> Option<Millis> {
        self.armed.iter().map(|(_, at)| *at).min()
    }
    /// The earliest timer due at `now`, removed from the armed list.
    fn take_due(&mut self, now: Millis) -> Option<Timer> {
        let (i, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.armed.swap_remove(i).0)
    }
}

/// What a transaction hands to the node: bytes to send, events for the user, timers to run.
#[derive(Debug, Default)]
struct Io {
    timers: Timers,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TransactionEvent>,
}

impl Io {
    /// The transaction is over: no more timers, and the user is told once.
    fn finish(&mut self) {
        self.timers.clear();
        self.events.push_back(TransactionEvent::Terminated);
    }
}

/// INVITE or any other method: the two have different state machines (§17.1.1 / §17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// INVITE.
    Invite,
    /// Any method but INVITE and ACK.
    NonInvite,
}

/// What the transaction user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionEvent {
    /// No final response in time (Timer B or F) or no ACK in time (Timer H).
    Timeout,
    /// The transaction is over; the node forgets it.
    Terminated,
}

/// Whether an incoming message goes up to the transaction user or was absorbed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Pass it to the transaction user.
    ToUser,
    /// A retransmission (or a message the state does not take): handled or dropped here.
    Absorbed,
}

/// States of a client transaction (Figures 5 and 6; Accepted from RFC 6026 §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing back yet.
    Calling,
    /// Non-INVITE sent, nothing back yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for INVITE); absorbing its retransmissions.
    Completed,
    /// A 2xx to INVITE arrived; its retransmissions go to the user (RFC 6026).
    Accepted,
    /// Over.
    Terminated,
}

/// A client transaction: sends a request, retransmits it over UDP, matches responses.
#[derive(Debug)]
pub struct ClientTransaction {
    kind: Kind,
    state: ClientState,
    config: TimerConfig,
    request: Bytes,
    /// The ACK for a non-2xx final response (§17.1.1.3), resent on every retransmission of it.
    ack: Option<Bytes>,
    /// Current retransmit interval of Timer A or E.
    interval: u64,
    io: Io,
}

impl ClientTransaction {
    /// Start a transaction that sends `request` now.
    pub fn new(kind: Kind, request: Bytes, config: TimerConfig, now: Millis) -> Self {
        let mut t = ClientTransaction {
            kind,
            state: match kind {
                Kind::Invite => ClientState::Calling,
                Kind::NonInvite => ClientState::Trying,
            },
            config,
            request: request.clone(),
            ack: None,
            interval: config.t1_ms,
            io: Io {
                transmits: VecDeque::from([request]),
                ..Io::default()
            },
        };
        let (retransmit, timeout) = match kind {
            Kind::Invite => (Timer::A, Timer::B),
            Kind::NonInvite => (Timer::E, Timer::F),
        };
        // §17.1.1.2 / §17.1.2.2: retransmit only over an unreliable transport.
        if !config.reliable {
            t.io.timers.arm(retransmit, now.after(config.t1_ms));
        }
        t.io.timers.arm(timeout, now.after(config.timeout()));
        t
    }

    /// The state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// A response matched this transaction (§17.1.3). `build_ack` is called once, for the first
    /// non-2xx final response to an INVITE, to build the ACK the transaction sends (§17.1.1.3).
    pub fn receive_response(
        &mut self,
        status: u16,
        now: Millis,
        build_ack: impl FnOnce() -> Bytes,
    ) -> Delivery {
        use ClientState::*;
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        if !provisional && matches!(self.state, Calling | Trying | Proceeding) {
            // The request is never sent again once a final response arrived (Timers A and E
            // stop): its bytes need not wait for Timer D/K/M.
            self.request = Bytes::new();
        }
        match (self.kind, self.state) {
            (_, Terminated) => Delivery::Absorbed,
            (Kind::Invite, Calling | Proceeding) if provisional => {
                self.state = Proceeding;
                self.io.timers.cancel(Timer::A);
                // Timer B guards Calling only: once the far end answers, the user (or a
                // proxy's Timer C) decides how long to ring.
                self.io.timers.cancel(Timer::B);
                Delivery::ToUser
            }
            (Kind::Invite, Calling | Proceeding) if success => {
                // RFC 6026 §8.4: Accepted, so that 2xx retransmissions reach the user, which
                // acknowledges them (the ACK to a 2xx is its own transaction, §13.2.2.4).
                self.state = Accepted;
                self.io.timers.clear();
                self.io
                    .timers
                    .arm(Timer::M, now.after(self.config.timeout()));
                Delivery::ToUser
            }
            (Kind::Invite, Calling | Proceeding) => {
                self.state = Completed;
                self.io.timers.clear();
                let ack = build_ack();
                self.io.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                self.io
                    .timers
                    .arm(Timer::D, now.after(self.config.unreliable(32_000)));
                self.wake_if_zero(now);
                Delivery::ToUser
            }
            (Kind::Invite, Completed) => {
                // A retransmitted final response: resend the ACK, tell no one (§17.1.1.2).
                if let Some(ack) = &self.ack
                    && status >= 300
                {
                    self.io.transmits.push_back(ack.clone());
                }
                Delivery::Absorbed
            }
            (Kind::Invite, Accepted) if success => Delivery::ToUser,
            (Kind::NonInvite, Trying | Proceeding) if provisional => {
                self.state = Proceeding;
                Delivery::ToUser
            }
            (Kind::NonInvite, Trying | Proceeding) => {
                self.state = Completed;
                self.io.timers.clear();
                self.io.timers.arm(
                    Timer::K,
                    now.after(self.config.unreliable(self.config.t4_ms)),
                );
                self.wake_if_zero(now);
                Delivery::ToUser
            }
            _ => Delivery::Absorbed,
        }
    }

    /// The transport reported that the request could not be sent (§17.1.4): the transaction
    /// ends and the user is told as for a timeout (RFC 3261 §8.1.3.1 treats both as 503/408).
    pub fn transport_error(&mut self) {
        self.io.timers.clear();
        self.io.events.push_back(TransactionEvent::Timeout);
        self.terminate();
    }

    /// Run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(timer) = self.io.timers.take_due(now) {
            match timer {
                Timer::A | Timer::E => {
                    self.io.transmits.push_back(self.request.clone());
                    // §17.1.1.2: A doubles each time; §17.1.2.2: E doubles up to T2, and is T2
                    // once a provisional response arrived.
                    self.interval = self.interval.saturating_mul(2);
                    if timer == Timer::E {
                        self.interval = if self.state == ClientState::Proceeding {
                            self.config.t2_ms
                        } else {
                            self.interval.min(self.config.t2_ms)
                        };
                    }
                    self.io.timers.arm(timer, now.after(self.interval));
                }
                Timer::B | Timer::F => {
                    self.io.timers.clear();
                    self.io.events.push_back(TransactionEvent::Timeout);
                    self.terminate();
                }
                Timer::D | Timer::K | Timer::M => self.terminate(),
                _ => {}
            }
        }
    }

    /// A wait of zero (reliable transport) ends the transaction at once.
    fn wake_if_zero(&mut self, now: Millis) {
        if self.io.timers.next().is_some_and(|at| at <= now) {
            self.handle_timeout(now);
        }
    }

    fn terminate(&mut self) {
        if self.state != ClientState::Terminated {
            self.state = ClientState::Terminated;
            self.io.finish();
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.io.timers.next()
    }

    /// Whether bytes wait to be sent (a timer's retransmission, say).
    pub fn has_transmit(&self) -> bool {
        !self.io.transmits.is_empty()
    }

    /// Bytes to send to the peer, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.io.transmits.pop_front()
    }

    /// Events for the transaction user, oldest first.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.io.events.pop_front()
    }
}

/// States of a server transaction (Figures 7 and 8; Accepted from RFC 6026 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, the user has not answered.
    Trying,
    /// A provisional response was sent (INVITE: from the start, with 100 Trying).
    Proceeding,
    /// A final response was sent (non-2xx for INVITE); resending it on request retransmissions.
    Completed,
    /// INVITE only: the ACK arrived; absorbing its retransmissions.
    Confirmed,
    /// INVITE only: a 2xx was sent (RFC 6026); INVITE retransmissions are absorbed.
    Accepted,
    /// Over.
    Terminated,
}

/// A response the user tried to send in a state that does not take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no response can be sent in state {0:?}")]
pub struct InvalidState(pub ServerState);

/// A server transaction: absorbs request retransmissions, retransmits the final response.
#[derive(Debug)]
pub struct ServerTransaction {
    kind: Kind,
    state: ServerState,
    config: TimerConfig,
    last_response: Option<Bytes>,
    interval: u64,
    io: Io,
}

impl ServerTransaction {
    /// A request created this transaction. For INVITE, `trying` is the 100 (Trying) the node built
    /// for it: sent at once, because the B2BUA's answer waits on the other network, longer than
    /// the 200 ms §17.2.1 allows.
    pub fn new(kind: Kind, config: TimerConfig, trying: Option<Bytes>) -> Self {
        let mut t = ServerTransaction {
            kind,
            state: match kind {
                Kind::Invite => ServerState::Proceeding,
                Kind::NonInvite => ServerState::Trying,
            },
            config,
            last_response: None,
            interval: config.t1_ms,
            io: Io::default(),
        };
        if let (Kind::Invite, Some(trying)) = (kind, trying) {
            t.io.transmits.push_back(trying.clone());
            t.last_response = Some(trying);
        }
        t
    }

    /// The state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// A request matched this transaction (§17.2.3): a retransmission of the one that created
    /// it, or (INVITE) the ACK of a non-2xx final response.
    pub fn receive_request(&mut self, is_ack: bool, now: Millis) -> Delivery {
        use ServerState::*;
        match (self.kind, self.state, is_ack) {
            (Kind::Invite, Completed, true) => {
                self.state = Confirmed;
                self.io.timers.cancel(Timer::G);
                self.io.timers.cancel(Timer::H);
                self.io.timers.arm(
                    Timer::I,
                    now.after(self.config.unreliable(self.config.t4_ms)),
                );
                self.wake_if_zero(now);
                Delivery::Absorbed
            }
            // RFC 6026 §7.1: an ACK matching the Accepted transaction goes to the user.
            (Kind::Invite, Accepted, true) => Delivery::ToUser,
            (_, Proceeding | Completed, false) => {
                // §17.2.1 / §17.2.2: answer a retransmission with the last response sent.
                if let Some(r) = &self.last_response {
                    self.io.transmits.push_back(r.clone());
                }
                Delivery::Absorbed
            }
            _ => Delivery::Absorbed,
        }
    }

    /// The user answers with `response` of status `status`.
    pub fn send_response(
        &mut self,
        status: u16,
        response: Bytes,
        now: Millis,
    ) -> Result<(), InvalidState> {
        use ServerState::*;
        let provisional = status < 200;
        match (self.kind, self.state) {
            (_, Trying | Proceeding) if provisional => {
                self.state = Proceeding;
            }
            (Kind::Invite, Proceeding) if (200..300).contains(&status) => {
                // RFC 6026 §7.1: Accepted, Timer L; the user retransmits the 2xx (§13.3.1.4).
                self.state = Accepted;
                self.io
                    .timers
                    .arm(Timer::L, now.after(self.config.timeout()));
            }
            (Kind::Invite, Accepted) if (200..300).contains(&status) => {}
            (Kind::Invite, Proceeding) => {
                self.state = Completed;
                if !self.config.reliable {
                    self.io.timers.arm(Timer::G, now.after(self.config.t1_ms));
                }
                self.io
                    .timers
                    .arm(Timer::H, now.after(self.config.timeout()));
            }
            (Kind::NonInvite, Trying | Proceeding) => {
                self.state = Completed;
                self.io.timers.arm(
                    Timer::J,
                    now.after(self.config.unreliable(self.config.timeout())),
                );
            }
            (_, state) => return Err(InvalidState(state)),
        }
        self.io.transmits.push_back(response.clone());
        self.last_response = Some(response);
        self.wake_if_zero(now);
        Ok(())
    }

    /// The transport could not deliver a response (§17.2.4): the transaction ends.
    pub fn transport_error(&mut self) {
        self.terminate();
    }

    /// Run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(timer) = self.io.timers.take_due(now) {
            match timer {
                Timer::G => {
                    if let Some(r) = &self.last_response {
                        self.io.transmits.push_back(r.clone());
                    }
                    self.interval = self.interval.saturating_mul(2).min(self.config.t2_ms);
                    self.io.timers.arm(Timer::G, now.after(self.interval));
                }
                Timer::H => {
                    self.io.events.push_back(TransactionEvent::Timeout);
                    self.terminate();
                }
                Timer::I | Timer::J | Timer::L => self.terminate(),
                _ => {}
            }
        }
    }

    fn wake_if_zero(&mut self, now: Millis) {
        if self.io.timers.next().is_some_and(|at| at <= now) {
            self.handle_timeout(now);
        }
    }

    fn terminate(&mut self) {
        if self.state != ServerState::Terminated {
            self.state = ServerState::Terminated;
            self.io.finish();
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.io.timers.next()
    }

    /// Whether bytes wait to be sent (a timer's retransmission, say).
    pub fn has_transmit(&self) -> bool {
        !self.io.transmits.is_empty()
    }

    /// Bytes to send to the peer, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.io.transmits.pop_front()
    }

    /// Events for the transaction user, oldest first.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.io.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: Bytes = Bytes::from_static(b"INVITE");
    const ACK: Bytes = Bytes::from_static(b"ACK");

    fn udp() -> TimerConfig {
        TimerConfig::default()
    }

    fn tcp() -> TimerConfig {
        TimerConfig {
            reliable: true,
            ..TimerConfig::default()
        }
    }

    fn drain(t: &mut ClientTransaction) -> Vec<Bytes> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    /// Run the client's timers up to `until`, returning the instants at which it transmitted.
    fn run_client(t: &mut ClientTransaction, until: u64) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(at) = t.poll_timeout().filter(|at| at.0 <= until) {
            t.handle_timeout(at);
            for _ in drain(t) {
                sent.push(at.0);
            }
        }
        sent
    }

    #[test]
    fn invite_client_retransmits_with_timer_a_and_times_out_with_b() {
        let mut t = ClientTransaction::new(Kind::Invite, REQ, udp(), Millis(0));
        assert_eq!(drain(&mut t), vec![REQ]);
        // Timer A: T1, 2T1, 4T1, ... until Timer B at 64*T1 = 32 s (§17.1.1.2).
        let sent = run_client(&mut t, 40_000);
        assert_eq!(sent, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        assert_eq!(t.poll_event(), Some(TransactionEvent::Timeout));
        assert_eq!(t.poll_event(), Some(TransactionEvent::Terminated));
        assert_eq!(t.state(), ClientState::Terminated);
    }

    #[test]
    fn invite_client_over_tcp_does_not_retransmit() {
        let mut t = ClientTransaction::new(Kind::Invite, REQ, tcp(), Millis(0));
        drain(&mut t);
        assert_eq!(t.poll_timeout(), Some(Millis(32_000)));
        assert!(run_client(&mut t, 40_000).is_empty());
        assert_eq!(t.poll_event(), Some(TransactionEvent::Timeout));
    }

    #[test]
    fn invite_client_acks_a_failure_and_absorbs_its_retransmissions() {
        let mut t = ClientTransaction::new(Kind::Invite, REQ, udp(), Millis(0));
        drain(&mut t);
        assert_eq!(
            t.receive_response(180, Millis(100), || ACK),
            Delivery::ToUser
        );
        assert_eq!(t.state(), ClientState::Proceeding);
        // No more retransmissions, no Timer B, once ringing.
        assert_eq!(t.poll_timeout(), None);
        let mut built = 0;
        let d = t.receive_response(486, Millis(200), || {
            built += 1;
            ACK
        });
        assert_eq!((d, built), (Delivery::ToUser, 1));
        assert_eq!(drain(&mut t), vec![ACK]);
        assert_eq!(t.state(), ClientState::Completed);
        // A retransmitted 486: ACK again, not passed up, ACK not rebuilt.
        let d = t.receive_response(486, Millis(700), || unreachable!());
        assert_eq!(d, Delivery::Absorbed);
        assert_eq!(drain(&mut t), vec![ACK]);
        // Timer D: 32 s after the final response.
        assert_eq!(t.poll_timeout(), Some(Millis(32_200)));
        t.handle_timeout(Millis(32_200));
        assert_eq!(t.poll_event(), Some(TransactionEvent::Terminated));
    }

    #[test]
    fn invite_client_accepted_passes_2xx_retransmissions_up() {
        let mut t = ClientTransaction::new(Kind::Invite, REQ, tcp(), Millis(0));
        drain(&mut t);
        assert_eq!(
            t.receive_response(200, Millis(10), || ACK),
            Delivery::ToUser
        );
        assert_eq!(t.state(), ClientState::Accepted);
        assert!(drain(&mut t).is_empty(), "the ACK of a 2xx is the user's");
        assert_eq!(
            t.receive_response(200, Millis(20), || ACK),
            Delivery::ToUser
        );
        assert_eq!(
            t.receive_response(180, Millis(20), || ACK),
            Delivery::Absorbed
        );
        // Timer M, 64*T1 (RFC 6026 §8.4).
        assert_eq!(t.poll_timeout(), Some(Millis(32_010)));
    }

    #[test]
    fn invite_client_over_tcp_terminates_right_after_a_failure() {
        let mut t = ClientTransaction::new(Kind::Invite, REQ, tcp(), Millis(0));
        drain(&mut t);
        t.receive_response(603, Millis(5), || ACK);
        assert_eq!(drain(&mut t), vec![ACK]);
        assert_eq!(t.state(), ClientState::Terminated);
        assert_eq!(t.poll_event(), Some(TransactionEvent::Terminated));
    }

    #[test]
    fn non_invite_client_timer_e_caps_at_t2_and_f_times_out() {
        let mut t = ClientTransaction::new(Kind::NonInvite, REQ, udp(), Millis(0));
        drain(&mut t);
        let sent = run_client(&mut t, 40_000);
        // 500, +1000, +2000, +4000 then every T2 = 4 s until F at 32 s (§17.1.2.2).
        assert_eq!(
            sent,
            vec![
                500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
            ]
        );
        assert_eq!(t.poll_event(), Some(TransactionEvent::Timeout));
    }

    #[test]
    fn non_invite_client_proceeding_retransmits_every_t2_then_completes() {
        let mut t = ClientTransaction::new(Kind::NonInvite, REQ, udp(), Millis(0));
        drain(&mut t);
        t.handle_timeout(Millis(500));
        drain(&mut t);
        assert_eq!(
            t.receive_response(100, Millis(600), || ACK),
            Delivery::ToUser
        );
        t.handle_timeout(Millis(1_500));
        assert_eq!(drain(&mut t), vec![REQ]);
        assert_eq!(
            t.poll_timeout(),
            Some(Millis(5_500)),
            "E = T2 in Proceeding"
        );
        assert_eq!(t.request, REQ, "kept while it may be sent again");
        assert_eq!(
            t.receive_response(202, Millis(2_000), || ACK),
            Delivery::ToUser
        );
        assert!(t.request.is_empty(), "not kept once a final response came");
        assert_eq!(
            t.receive_response(202, Millis(2_100), || ACK),
            Delivery::Absorbed
        );
        assert!(drain(&mut t).is_empty(), "no ACK for non-INVITE");
        // Timer K = T4.
        assert_eq!(t.poll_timeout(), Some(Millis(7_000)));
        t.handle_timeout(Millis(7_000));
        assert_eq!(t.state(), ClientState::Terminated);
    }

    #[test]
    fn transport_error_ends_a_client_transaction() {
        let mut t = ClientTransaction::new(Kind::NonInvite, REQ, tcp(), Millis(0));
        t.transport_error();
        assert_eq!(t.poll_event(), Some(TransactionEvent::Timeout));
        assert_eq!(t.poll_event(), Some(TransactionEvent::Terminated));
        assert_eq!(t.poll_timeout(), None);
    }

    const TRYING: Bytes = Bytes::from_static(b"100");
    const BUSY: Bytes = Bytes::from_static(b"486");
    const OK: Bytes = Bytes::from_static(b"200");

    fn drain_s(t: &mut ServerTransaction) -> Vec<Bytes> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    #[test]
    fn invite_server_sends_trying_and_retransmits_a_failure_until_ack() {
        let mut t = ServerTransaction::new(Kind::Invite, udp(), Some(TRYING));
        assert_eq!(drain_s(&mut t), vec![TRYING]);
        // A retransmitted INVITE gets the last provisional again.
        assert_eq!(t.receive_request(false, Millis(400)), Delivery::Absorbed);
        assert_eq!(drain_s(&mut t), vec![TRYING]);
        t.send_response(486, BUSY, Millis(1_000)).unwrap();
        assert_eq!(drain_s(&mut t), vec![BUSY]);
        // Timer G: T1, 2T1, 4T1, then T2.
        let mut sent = Vec::new();
        while let Some(at) = t.poll_timeout().filter(|at| at.0 <= 12_000) {
            t.handle_timeout(at);
            sent.extend(drain_s(&mut t).into_iter().map(|_| at.0));
        }
        assert_eq!(sent, vec![1_500, 2_500, 4_500, 8_500]);
        assert_eq!(t.receive_request(true, Millis(12_100)), Delivery::Absorbed);
        assert_eq!(t.state(), ServerState::Confirmed);
        // ACK retransmissions are absorbed; Timer I = T4 ends it.
        assert_eq!(t.receive_request(true, Millis(12_200)), Delivery::Absorbed);
        assert_eq!(t.poll_timeout(), Some(Millis(17_100)));
        t.handle_timeout(Millis(17_100));
        assert_eq!(t.state(), ServerState::Terminated);
        assert_eq!(t.poll_event(), Some(TransactionEvent::Terminated));
    }

    #[test]
    fn invite_server_times_out_without_ack() {
        let mut t = ServerTransaction::new(Kind::Invite, udp(), None);
        t.send_response(480, BUSY, Millis(0)).unwrap();
        let mut last = Millis(0);
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at);
            last = at;
        }
        assert_eq!(last, Millis(32_000), "Timer H = 64*T1");
        assert_eq!(t.poll_event(), Some(TransactionEvent::Timeout));
        assert_eq!(t.poll_event(), Some(TransactionEvent::Terminated));
    }

    #[test]
    fn invite_server_accepted_absorbs_invite_and_passes_ack() {
        let mut t = ServerTransaction::new(Kind::Invite, tcp(), Some(TRYING));
        drain_s(&mut t);
        t.send_response(200, OK.clone(), Millis(0)).unwrap();
        assert_eq!(t.state(), ServerState::Accepted);
        assert_eq!(drain_s(&mut t), vec![OK.clone()]);
        assert_eq!(t.receive_request(false, Millis(10)), Delivery::Absorbed);
        assert!(
            drain_s(&mut t).is_empty(),
            "RFC 6026: INVITE retransmission absorbed"
        );
        assert_eq!(t.receive_request(true, Millis(20)), Delivery::ToUser);
        // The user retransmits its 2xx through the transaction.
        t.send_response(200, OK.clone(), Millis(30)).unwrap();
        assert_eq!(drain_s(&mut t), vec![OK]);
        assert_eq!(
            t.send_response(486, BUSY, Millis(40)),
            Err(InvalidState(ServerState::Accepted))
        );
        assert_eq!(t.poll_timeout(), Some(Millis(32_000)), "Timer L");
    }

    #[test]
    fn non_invite_server_absorbs_then_replays_final_until_timer_j() {
        let mut t = ServerTransaction::new(Kind::NonInvite, udp(), None);
        assert_eq!(t.receive_request(false, Millis(100)), Delivery::Absorbed);
        assert!(drain_s(&mut t).is_empty(), "Trying: nothing to replay yet");
        t.send_response(200, OK.clone(), Millis(200)).unwrap();
        assert_eq!(drain_s(&mut t), vec![OK.clone()]);
        assert_eq!(t.receive_request(false, Millis(300)), Delivery::Absorbed);
        assert_eq!(drain_s(&mut t), vec![OK.clone()]);
        assert_eq!(t.poll_timeout(), Some(Millis(32_200)), "Timer J = 64*T1");
        assert_eq!(
            t.send_response(500, OK, Millis(400)),
            Err(InvalidState(ServerState::Completed))
        );
        t.handle_timeout(Millis(32_200));
        assert_eq!(t.state(), ServerState::Terminated);
    }

    #[test]
    fn non_invite_server_over_tcp_ends_with_its_final_response() {
        let mut t = ServerTransaction::new(Kind::NonInvite, tcp(), None);
        t.send_response(100, TRYING, Millis(0)).unwrap();
        assert_eq!(t.state(), ServerState::Proceeding);
        t.send_response(200, OK, Millis(1)).unwrap();
        assert_eq!(t.state(), ServerState::Terminated);
        assert_eq!(drain_s(&mut t).len(), 2);
    }
}
