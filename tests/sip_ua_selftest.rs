//! The test SIP user agent (tests/peers/sip_ua.rs) proven against itself on 127.0.0.1, over
//! UDP and TCP: pager MESSAGE, INVITE/200/ACK/BYE, CANCEL/487, UDP retransmission and its
//! absorption, Timer F, two 2xx to one INVITE, a retransmitted 2xx ACKed again, garbage.
//! Every wait is bounded (the UA's own deadlines, and [`bounded`] around each test).

#[path = "peers/sip_ua.rs"]
mod sip_ua;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::wire::sip::{Limits, SipMessage, parse_datagram};
use rsip::Method;
use sip_ua::{SipUa, Transport, UaError};

const SDP_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=message 9 TCP/MSRP *\r\na=path:msrp://127.0.0.1:7001/a1;tcp\r\na=setup:active\r\n\
a=accept-types:message/cpim\r\n";
const SDP_ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=message 9 TCP/MSRP *\r\na=path:msrp://127.0.0.1:7002/b2;tcp\r\na=setup:passive\r\n\
a=accept-types:message/cpim\r\n";

/// No test may take longer than this, whatever happens.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test finished in time")
}

async fn pair(transport: Transport) -> (SipUa, SipUa) {
    let a = SipUa::bind(transport, "alice").await.expect("bind alice");
    let b = SipUa::bind(transport, "bob").await.expect("bind bob");
    (a, b)
}

fn short() -> Option<Duration> {
    Some(Duration::from_millis(300))
}

async fn pager(transport: Transport) {
    let (mut a, mut b) = pair(transport).await;
    let dest = b.local_addr();
    let msg = a
        .new_message(&b.aor(), "text/plain", Bytes::from_static(b"hello bob"))
        .expect("request");
    let (resp, got) = tokio::join!(a.request(dest, msg), async {
        let tx = b.recv_method(Method::Message, None).await?;
        b.respond(&tx, 200, "OK", &[], None).await?;
        Ok::<_, UaError>(tx)
    });
    let resp = resp.expect("final response");
    let got = got.expect("bob got the MESSAGE");
    assert_eq!(resp.status_code(), Some(200));
    assert_eq!(resp.to_tag(), Some(got.to_tag.as_str()));
    assert_eq!(got.request.body().as_ref(), b"hello bob");
    assert_eq!(got.request.content_type(), Some("text/plain"));
    assert_eq!(resp.call_id(), got.request.call_id());
    assert_eq!(a.invalid_count() + b.invalid_count(), 0);
}

#[tokio::test]
async fn pager_over_udp() {
    bounded(pager(Transport::Udp)).await;
}

#[tokio::test]
async fn pager_over_tcp() {
    bounded(pager(Transport::Tcp)).await;
}

/// INVITE with SDP, 180, 200 with SDP (retransmitted until ACK), ACK, then BYE from the
/// caller (`callee_hangs_up` false) or from the callee, 200.
async fn invite_ack_bye(transport: Transport, callee_hangs_up: bool) {
    let (mut a, mut b) = pair(transport).await;
    let dest = b.local_addr();
    let invite = a
        .new_invite(&b.aor(), Bytes::from_static(SDP_OFFER.as_bytes()))
        .expect("request");
    let (caller, callee) = tokio::join!(a.call(dest, invite), async {
        let tx = b.recv_method(Method::Invite, None).await?;
        b.respond(&tx, 180, "Ringing", &[], None).await?;
        let answer = Some(("application/sdp", Bytes::from_static(SDP_ANSWER.as_bytes())));
        let (dialog, ack) = b.respond_until_ack(&tx, 200, &[], answer).await?;
        Ok::<_, UaError>((tx, dialog, ack))
    });
    let (provisional, ok, dialog) = caller.expect("call answered");
    let (invite_tx, mut b_dialog, ack) = callee.expect("callee saw INVITE and ACK");
    let mut a_dialog = dialog.expect("a 2xx makes a dialog");

    assert_eq!(provisional.len(), 1);
    assert_eq!(provisional[0].status_code(), Some(180));
    assert_eq!(ok.status_code(), Some(200));
    assert_eq!(ok.body().as_ref(), SDP_ANSWER.as_bytes());
    assert_eq!(invite_tx.request.body().as_ref(), SDP_OFFER.as_bytes());
    // RFC 3261 §13.2.2.4: the ACK has the INVITE's CSeq number, its own branch, and goes to
    // the callee's Contact.
    assert_eq!(ack.cseq().map(|c| (c.seq, c.method)), Some((1, "ACK")));
    assert_ne!(ack.top_via_branch(), invite_tx.request.top_via_branch());
    assert_eq!(
        ack.request_uri(),
        Some(b.contact_uri().as_bytes()),
        "ACK to the 2xx's Contact"
    );
    assert_eq!(a_dialog.remote_tag, invite_tx.to_tag);
    assert_eq!(b_dialog.remote_tag, a_dialog.local_tag);

    let (mut hangs_up, mut hung_up, dialog) = if callee_hangs_up {
        (b, a, &mut b_dialog)
    } else {
        (a, b, &mut a_dialog)
    };
    let (bye_resp, bye) = tokio::join!(hangs_up.bye(dialog), async {
        let tx = hung_up.recv_method(Method::Bye, None).await?;
        hung_up.respond(&tx, 200, "OK", &[], None).await?;
        Ok::<_, UaError>(tx)
    });
    assert_eq!(bye_resp.expect("BYE answered").status_code(), Some(200));
    let bye = bye.expect("BYE received").request;
    assert_eq!(bye.call_id(), Some(dialog.call_id.as_str()));
    assert_eq!(bye.cseq().map(|c| c.method), Some("BYE"));
    assert_eq!(bye.to_tag(), Some(dialog.remote_tag.as_str()));
    assert_eq!(bye.from_tag(), Some(dialog.local_tag.as_str()));
    assert_eq!(dialog.local_cseq, 3 - u32::from(callee_hangs_up));
    // Nothing else arrived: no stray retransmission reached either side.
    assert!(hangs_up.recv_request(short()).await.is_err());
    assert!(hung_up.recv_request(short()).await.is_err());
}

#[tokio::test]
async fn invite_200_ack_bye_over_udp() {
    bounded(invite_ack_bye(Transport::Udp, false)).await;
}

#[tokio::test]
async fn invite_200_ack_bye_over_tcp_callee_hangs_up() {
    bounded(invite_ack_bye(Transport::Tcp, true)).await;
}

#[tokio::test]
async fn invite_200_ack_bye_over_tcp() {
    bounded(invite_ack_bye(Transport::Tcp, false)).await;
}

#[tokio::test]
async fn invite_200_ack_bye_over_udp_callee_hangs_up() {
    bounded(invite_ack_bye(Transport::Udp, true)).await;
}

/// INVITE, 180, CANCEL, 200 to the CANCEL, 487 to the INVITE, ACK of the 487 absorbed by the
/// callee's transaction layer (RFC 3261 §9, §17.1.1.3, §17.2.1).
async fn cancel_487(transport: Transport) {
    let (mut a, mut b) = pair(transport).await;
    let dest = b.local_addr();
    let invite = a
        .new_request(Method::Invite, &b.aor(), &b.aor())
        .expect("request");
    let mut tx = a.send_request(dest, invite).await.expect("INVITE sent");
    let inv = b.recv_method(Method::Invite, None).await.expect("INVITE");
    b.respond(&inv, 180, "Ringing", &[], None)
        .await
        .expect("180");
    let ringing = a.next_response(&mut tx, None).await.expect("180 back");
    assert_eq!(ringing.status_code(), Some(180));

    let mut cancel_tx = a.cancel(&tx).await.expect("CANCEL sent");
    let cancel = b.recv_method(Method::Cancel, None).await.expect("CANCEL");
    assert_eq!(
        cancel.request.top_via_branch(),
        inv.request.top_via_branch()
    );
    assert_eq!(
        cancel.request.cseq().map(|c| c.seq),
        inv.request.cseq().map(|c| c.seq)
    );
    assert_eq!(cancel.request.request_uri(), inv.request.request_uri());
    b.respond(&cancel, 200, "OK", &[], None)
        .await
        .expect("200 CANCEL");
    b.respond(&inv, 487, "Request Terminated", &[], None)
        .await
        .expect("487");
    let cancel_ok = a.final_response(&mut cancel_tx, None).await.expect("200");
    assert_eq!(cancel_ok.status_code(), Some(200));
    assert_eq!(cancel_ok.cseq().map(|c| c.method), Some("CANCEL"));
    // RFC 3261 §9.2: the CANCEL's response has the To tag of the INVITE's responses.
    assert_eq!(cancel_ok.to_tag(), Some(inv.to_tag.as_str()));
    let terminated = a.final_response(&mut tx, None).await.expect("487");
    assert_eq!(terminated.status_code(), Some(487));
    assert_eq!(terminated.to_tag(), Some(inv.to_tag.as_str()));
    // The ACK for the 487 went to bob and was absorbed there (it ends the server transaction).
    assert!(matches!(
        b.recv_request(short()).await,
        Err(UaError::Timeout { .. })
    ));
    assert_eq!(b.invalid_count(), 0);
}

#[tokio::test]
async fn cancel_487_over_udp() {
    bounded(cancel_487(Transport::Udp)).await;
}

#[tokio::test]
async fn cancel_487_over_tcp() {
    bounded(cancel_487(Transport::Tcp)).await;
}

/// Over UDP a MESSAGE is retransmitted (Timer E) until answered; the receiver's transaction
/// layer absorbs the copies, and a copy arriving after the answer gets the answer again.
#[tokio::test]
async fn udp_retransmissions_are_sent_and_absorbed() {
    bounded(async {
        let (mut a, mut b) = pair(Transport::Udp).await;
        a.set_t1(Duration::from_millis(20));
        let dest = b.local_addr();
        let msg = a
            .new_request(Method::Message, &b.aor(), &b.aor())
            .expect("request");
        let mut tx = a.send_request(dest, msg).await.expect("sent");
        let got = b.recv_method(Method::Message, None).await.expect("MESSAGE");
        // Let Timer E fire a few times (20, 40, 80 ms) before answering.
        let early = a
            .next_response(&mut tx, Some(Duration::from_millis(200)))
            .await;
        assert!(matches!(early, Err(UaError::Timeout { .. })), "{early:?}");
        b.respond(&got, 200, "OK", &[], None).await.expect("200");
        let resp = a.final_response(&mut tx, None).await.expect("200");
        assert_eq!(resp.status_code(), Some(200));
        // The copies never reached the test as new requests.
        assert!(b.recv_request(short()).await.is_err());
        // A late copy of the request (sent from elsewhere, to see the answer): bob answers it
        // again by itself, with the same To tag.
        let raw = RawPeer::bind().await;
        raw.send(&tx.request, dest).await;
        // Bob's transaction layer runs while the test awaits bob.
        let (nothing, (again, _)) = tokio::join!(b.recv_request(short()), raw.recv());
        assert!(nothing.is_err(), "the copy is not a new request");
        assert_eq!(again.status_code(), Some(200));
        assert_eq!(again.to_tag(), Some(got.to_tag.as_str()));
        assert!(b.recv_request(short()).await.is_err());
    })
    .await;
}

/// Nobody answers: Timer F (64·T1) ends the transaction.
#[tokio::test]
async fn timer_f_ends_an_unanswered_transaction() {
    bounded(async {
        let (mut a, b) = pair(Transport::Udp).await;
        a.set_t1(Duration::from_millis(10));
        let msg = a
            .new_request(Method::Message, &b.aor(), &b.aor())
            .expect("request");
        let mut tx = a.send_request(b.local_addr(), msg).await.expect("sent");
        let result = a.final_response(&mut tx, None).await;
        assert!(
            matches!(result, Err(UaError::TransactionTimeout { timer: 'F', .. })),
            "{result:?}"
        );
    })
    .await;
}

/// A forking proxy's view: two 2xx with different To tags to one INVITE (RFC 3261 §13.2.2.4);
/// the client reports both, each makes its own dialog.
#[tokio::test]
async fn two_2xx_to_one_invite_make_two_dialogs() {
    bounded(async {
        let (mut a, mut b) = pair(Transport::Udp).await;
        let dest = b.local_addr();
        let invite = a
            .new_request(Method::Invite, &b.aor(), &b.aor())
            .expect("request");
        let mut tx = a.send_request(dest, invite).await.expect("sent");
        let inv = b.recv_method(Method::Invite, None).await.expect("INVITE");
        let mut second = inv.clone();
        second.to_tag = "fork2".to_owned();
        b.respond(&inv, 200, "OK", &[], None)
            .await
            .expect("first 200");
        b.respond(&second, 200, "OK", &[], None)
            .await
            .expect("second 200");
        let first = a.next_response(&mut tx, None).await.expect("first");
        let other = a.next_response(&mut tx, None).await.expect("second");
        let mut d1 = a.dialog_from_response(&tx, &first).expect("dialog 1");
        let mut d2 = a.dialog_from_response(&tx, &other).expect("dialog 2");
        assert_ne!(d1.remote_tag, d2.remote_tag);
        a.ack(&mut d1).await.expect("ACK 1");
        a.ack(&mut d2).await.expect("ACK 2");
        let ack1 = b.recv_method(Method::Ack, None).await.expect("ACK 1 in");
        let ack2 = b.recv_method(Method::Ack, None).await.expect("ACK 2 in");
        let mut tags = [ack1.request.to_tag(), ack2.request.to_tag()];
        tags.sort();
        assert_eq!(tags, [Some("fork2"), Some(inv.to_tag.as_str())]);
    })
    .await;
}

/// RFC 3261 §13.2.2.4: a retransmitted 2xx gets the same ACK again, without the test's help.
#[tokio::test]
async fn a_retransmitted_2xx_is_acked_again() {
    bounded(async {
        let (mut a, mut b) = pair(Transport::Udp).await;
        let dest = b.local_addr();
        let invite = a
            .new_request(Method::Invite, &b.aor(), &b.aor())
            .expect("request");
        let (caller, callee) = tokio::join!(a.call(dest, invite), async {
            let tx = b.recv_method(Method::Invite, None).await?;
            let (dialog, ack) = b.respond_until_ack(&tx, 200, &[], None).await?;
            Ok::<_, UaError>((tx, dialog, ack))
        });
        caller.expect("answered");
        let (tx, _dialog, first_ack) = callee.expect("ACKed");
        let ok = b.response(&tx, 200, "OK", &[], None).expect("200");
        b.send_response(&tx, &ok).await.expect("200 again");
        // Alice's layer ACKs while the test waits for something else.
        assert!(a.recv_request(short()).await.is_err());
        let again = b.recv_method(Method::Ack, None).await.expect("ACK again");
        assert_eq!(again.request.serialize(), first_ack.serialize());
    })
    .await;
}

/// Garbage between valid messages is counted and skipped; the valid ones still arrive.
#[tokio::test]
async fn garbage_is_counted_and_valid_messages_still_arrive() {
    bounded(async {
        let (mut a, mut b) = pair(Transport::Udp).await;
        let dest = b.local_addr();
        a.send_raw(dest, Bytes::from_static(b"\x00\x01 not SIP at all\r\n\r\n"))
            .await
            .expect("garbage");
        let msg = a
            .new_request(Method::Message, &b.aor(), &b.aor())
            .expect("request");
        let (resp, got) = tokio::join!(a.request(dest, msg), async {
            let tx = b.recv_method(Method::Message, None).await?;
            b.respond(&tx, 202, "Accepted", &[], None).await?;
            Ok::<_, UaError>(())
        });
        got.expect("MESSAGE after the garbage");
        assert_eq!(resp.expect("answer").status_code(), Some(202));
        assert_eq!(b.invalid_count(), 1);
    })
    .await;
}

/// A wait for a request that never comes ends at its deadline with a typed error.
#[tokio::test]
async fn waits_are_bounded() {
    bounded(async {
        let (_a, mut b) = pair(Transport::Tcp).await;
        let started = std::time::Instant::now();
        let r = b.recv_request(Some(Duration::from_millis(100))).await;
        assert!(matches!(r, Err(UaError::Timeout { .. })), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    })
    .await;
}

/// A raw UDP peer that answers by hand, to see what the UA's transaction layer does with
/// retransmitted final responses.
struct RawPeer {
    sock: tokio::net::UdpSocket,
}

impl RawPeer {
    async fn bind() -> RawPeer {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind raw peer");
        RawPeer { sock }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.sock.local_addr().expect("raw peer address")
    }

    async fn recv(&self) -> (SipMessage, std::net::SocketAddr) {
        let mut buf = vec![0u8; 65_536];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
            .await
            .expect("a datagram in time")
            .expect("recv");
        buf.truncate(n);
        let msg = parse_datagram(Bytes::from(buf), &Limits::default()).expect("valid SIP");
        (msg, from)
    }

    async fn send(&self, msg: &SipMessage, to: std::net::SocketAddr) {
        self.sock.send_to(&msg.serialize(), to).await.expect("send");
    }

    /// Nothing arrives for a while.
    async fn quiet(&self) -> bool {
        let mut buf = vec![0u8; 65_536];
        tokio::time::timeout(Duration::from_millis(300), self.sock.recv_from(&mut buf))
            .await
            .is_err()
    }
}

/// RFC 3261 §17.1.1.2: each copy of a non-2xx final response to an INVITE gets the ACK again;
/// the test sees the response once.
#[tokio::test]
async fn a_retransmitted_non_2xx_is_acked_again() {
    bounded(async {
        let mut a = SipUa::bind(Transport::Udp, "alice").await.expect("bind");
        let raw = RawPeer::bind().await;
        let invite = a
            .new_request(Method::Invite, "sip:bob@127.0.0.1", "sip:bob@127.0.0.1")
            .expect("request");
        let mut tx = a.send_request(raw.addr(), invite).await.expect("sent");
        let (inv, from) = raw.recv().await;
        let mut busy = inv.response_to(486, "Busy Here");
        let to = inv.header("To").expect("To").to_owned();
        busy.set_header("To", &format!("{to};tag=raw1"))
            .expect("To tag");
        raw.send(&busy, from).await;
        let resp = a.final_response(&mut tx, None).await.expect("486");
        assert_eq!(resp.status_code(), Some(486));
        let (ack1, _) = raw.recv().await;
        assert_eq!(ack1.method(), Some(&Method::Ack));
        assert_eq!(
            ack1.top_via_branch(),
            inv.top_via_branch(),
            "same transaction"
        );
        assert_eq!(ack1.to_tag(), Some("raw1"));
        raw.send(&busy, from).await;
        // The copy is absorbed (never shown) and ACKed again.
        assert!(a.recv_response(short()).await.is_err());
        let (ack2, _) = raw.recv().await;
        assert_eq!(ack2.serialize(), ack1.serialize());
    })
    .await;
}

/// RFC 3261 §17.1.2.2: a copy of a non-INVITE final response after the transaction completed
/// is absorbed, and nothing is sent for it.
#[tokio::test]
async fn a_late_copy_of_a_final_response_is_absorbed() {
    bounded(async {
        let mut a = SipUa::bind(Transport::Udp, "alice").await.expect("bind");
        let raw = RawPeer::bind().await;
        let msg = a
            .new_request(Method::Message, "sip:bob@127.0.0.1", "sip:bob@127.0.0.1")
            .expect("request");
        let mut tx = a.send_request(raw.addr(), msg).await.expect("sent");
        let (req, from) = raw.recv().await;
        let ok = req.response_to(200, "OK");
        raw.send(&ok, from).await;
        let resp = a.final_response(&mut tx, None).await.expect("200");
        assert_eq!(resp.status_code(), Some(200));
        raw.send(&ok, from).await;
        assert!(a.recv_response(short()).await.is_err());
        assert!(
            raw.quiet().await,
            "no request retransmitted after the final response"
        );
    })
    .await;
}

/// TCP: a request written in two pieces, the second after a pause, is framed back into one
/// message by the stream decoder; keep-alive CRLFs around it are not messages.
#[tokio::test]
async fn a_request_split_over_two_tcp_writes_arrives_whole() {
    bounded(async {
        let (mut a, mut b) = pair(Transport::Tcp).await;
        let dest = b.local_addr();
        let msg = a
            .new_message(&b.aor(), "text/plain", Bytes::from_static(b"in two pieces"))
            .expect("request");
        let wire = msg.serialize();
        let (head, tail) = wire.split_at(wire.len() / 2);
        a.send_raw(dest, Bytes::from_static(b"\r\n\r\n"))
            .await
            .expect("ping");
        a.send_raw(dest, Bytes::copy_from_slice(head))
            .await
            .expect("first piece");
        assert!(
            b.recv_request(Some(Duration::from_millis(100)))
                .await
                .is_err()
        );
        a.send_raw(dest, Bytes::copy_from_slice(tail))
            .await
            .expect("second piece");
        let got = b
            .recv_method(Method::Message, None)
            .await
            .expect("whole MESSAGE");
        assert_eq!(got.request.body().as_ref(), b"in two pieces");
        assert_eq!(b.invalid_count(), 0);
    })
    .await;
}

/// TCP: when the connection a request came on is gone, the response goes on a new
/// connection to the top Via's sent-by (RFC 3261 §18.2.2).
#[tokio::test]
async fn a_tcp_response_follows_the_via_when_the_connection_is_gone() {
    bounded(async {
        let mut b = SipUa::bind(Transport::Tcp, "bob").await.expect("bind bob");
        let mut a = SipUa::bind(Transport::Tcp, "alice")
            .await
            .expect("bind alice");
        let msg = a
            .new_message(&b.aor(), "text/plain", Bytes::from_static(b"hi"))
            .expect("request");
        // Sent on a connection of its own that closes at once; the Via names alice's listener.
        let mut conn = tokio::net::TcpStream::connect(b.local_addr())
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut conn, &msg.serialize())
            .await
            .expect("write");
        drop(conn);
        let tx = b.recv_method(Method::Message, None).await.expect("MESSAGE");
        // Bob's reader sees the close (bounded wait).
        for _ in 0..200 {
            if !b.connected(tx.source) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !b.connected(tx.source),
            "the closed connection is forgotten"
        );
        b.respond(&tx, 200, "OK", &[], None).await.expect("200");
        let resp = a
            .recv_response(None)
            .await
            .expect("200 on a new connection");
        assert_eq!(resp.msg.status_code(), Some(200));
        assert_eq!(resp.msg.call_id(), msg.call_id());
    })
    .await;
}

#[test]
fn via_sent_by_reads_the_first_via() {
    assert_eq!(
        sip_ua::via_sent_by("SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1:5"),
        Some("127.0.0.1:5060".parse().expect("addr"))
    );
    assert_eq!(
        sip_ua::via_sent_by("SIP/2.0/UDP host.example;branch=x"),
        None
    );
    assert_eq!(sip_ua::via_sent_by("garbage"), None);
}
