//! The SDP of a chat session, rewritten for the other leg: the gateway is the MSRP endpoint of
//! each leg (a back-to-back MSRP relay, ARCHITECTURE.md), so each side sees the gateway's
//! address, port and MSRP URI (RFC 4975 §8.1, §8.2), a connection role (RFC 6135 §4), and the
//! content types that side's mapping lists (RFC 4975 §8.6). Everything else of the received SDP
//! (file-selector of RFC 5547, bandwidth, direction, unknown attributes) is kept as it came.

use std::net::SocketAddr;

use bytes::Bytes;

use super::TranslateError;
use crate::mapping::SideContent;
use crate::wire::sdp::{MsrpMedia, Origin, Sdp, Setup};

/// The gateway's MSRP endpoint on one leg of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpEndpoint {
    /// Where the gateway listens for this leg's MSRP connection.
    pub addr: SocketAddr,
    /// The session-id of the gateway's URI on this leg (RFC 4975 §6: it names the session).
    pub session_id: Bytes,
    /// `msrps` over TLS.
    pub secure: bool,
}

impl MsrpEndpoint {
    /// `msrp://host:port/session-id;tcp` (RFC 4975 §6, §9; IPv6 in brackets, RFC 3986 §3.2.2).
    pub fn uri(&self) -> String {
        let scheme = if self.secure { "msrps" } else { "msrp" };
        format!(
            "{scheme}://{}/{};tcp",
            self.addr,
            String::from_utf8_lossy(&self.session_id)
        )
    }

    /// [`Self::uri`] as `Bytes`, written on the stack first: one allocation, for the chat
    /// relay that needs it on every SEND.
    pub fn uri_bytes(&self) -> Bytes {
        use std::io::Write as _;
        let mut buf = [0u8; 128];
        let mut w = std::io::Cursor::new(&mut buf[..]);
        let scheme: &[u8] = if self.secure { b"msrps://" } else { b"msrp://" };
        let written = w.write_all(scheme).is_ok()
            && write!(w, "{}/", self.addr).is_ok()
            && std::str::from_utf8(&self.session_id).is_ok()
            && w.write_all(&self.session_id).is_ok()
            && w.write_all(b";tcp").is_ok();
        let len = usize::try_from(w.position()).unwrap_or(usize::MAX);
        match buf.get(..len) {
            Some(text) if written => Bytes::copy_from_slice(text),
            // Longer than the stack buffer, or a session-id that is not UTF-8.
            _ => Bytes::from(self.uri()),
        }
    }
}

/// The received SDP rewritten for the other leg, and the received MSRP stream (whose `a=path`
/// and role the node needs for its own connection on the received leg). A received SDP with no
/// usable MSRP stream is refused with 488 (RFC 3261 §21.4.26).
pub fn for_other_leg(
    received: &Sdp,
    endpoint: &MsrpEndpoint,
    setup: Setup,
    target: &SideContent,
) -> Result<(Sdp, MsrpMedia), TranslateError> {
    let media = received.require_msrp()?;
    let mut out = received.clone();
    let ip = endpoint.addr.ip();
    let (addrtype, address) = if ip.is_ipv4() {
        ("IP4", ip.to_string())
    } else {
        ("IP6", ip.to_string())
    };
    out.set_connection(addrtype.as_bytes(), address.as_bytes())?;
    out.set_port(endpoint.addr.port())?;
    out.set_path(&[Bytes::from(endpoint.uri())])?;
    out.set_setup(setup)?;
    // RFC 6714 negotiates CEMA per hop; the gateway terminates MSRP and offers plain
    // RFC 4975 behaviour on each leg.
    out.set_msrp_cema(false)?;
    let list = |v: &[String]| -> Vec<Bytes> { v.iter().map(|t| Bytes::from(t.clone())).collect() };
    out.set_accept_types(&list(&target.accept_types))?;
    out.set_accept_wrapped_types(&list(&target.accept_wrapped_types))?;
    // The origin names the gateway: the other network must not see (or try to reach) the far
    // side's address (RFC 4566 §5.2: o= is the originator of this description).
    if let Some(o) = out.origin().cloned() {
        out.set_origin(Origin {
            addrtype: Bytes::from_static(addrtype.as_bytes()),
            address: Bytes::from(address),
            ..o
        });
    }
    Ok((out, media))
}

/// The role the gateway takes on a leg where it answers an offer with role `offered`
/// (RFC 6135 §4.2, RFC 4145 §4.1): the opposite of an active or passive offerer; for `actpass`
/// (or no `a=setup`, which RFC 4975 §5.4 reads as an active offerer) the gateway lets the
/// offerer connect, so that clients behind NAT keep working.
pub fn answer_role(offered: Option<Setup>) -> Setup {
    match offered {
        Some(Setup::Passive) => Setup::Active,
        Some(Setup::Holdconn) => Setup::Holdconn,
        Some(Setup::Active | Setup::Actpass) | None => Setup::Passive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mappings;

    #[test]
    fn uri_bytes_is_the_uri() {
        let v4: SocketAddr = "127.0.0.1:2855".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:2856".parse().unwrap();
        for (addr, sid, secure) in [
            (v4, Bytes::from_static(b"abc123"), false),
            (v6, Bytes::from_static(b"s-1"), true),
            (v4, Bytes::from(vec![b'x'; 300]), false),
            (v6, Bytes::from_static(b"\xffbad"), false),
        ] {
            let e = MsrpEndpoint {
                addr,
                session_id: sid,
                secure,
            };
            assert_eq!(e.uri_bytes(), Bytes::from(e.uri()));
        }
    }

    const OFFER: &str = include_str!("../../tests/vectors/sdp/ours-cpm-chat-offer.txt");

    #[test]
    fn a_cpm_offer_becomes_the_gateways_offer_on_the_simple_leg() {
        let received = Sdp::parse(Bytes::from_static(OFFER.as_bytes())).expect("valid");
        let endpoint = MsrpEndpoint {
            addr: "127.0.0.1:2856".parse().expect("addr"),
            session_id: Bytes::from_static(b"gw7s2"),
            secure: false,
        };
        let m = Mappings::embedded().expect("mappings");
        let (out, media) =
            for_other_leg(&received, &endpoint, Setup::Active, &m.simple).expect("rewritten");
        assert_eq!(
            media.path,
            vec![Bytes::from_static(b"msrp://[2001:db8::10]:9/kSm2PVe7;tcp")]
        );
        assert!(media.msrp_cema);
        let text = String::from_utf8(out.to_bytes().to_vec()).expect("utf-8");
        let o = out.require_msrp().expect("still MSRP");
        assert_eq!(o.port, 2856);
        assert_eq!(
            o.path,
            vec![Bytes::from_static(b"msrp://127.0.0.1:2856/gw7s2;tcp")]
        );
        assert_eq!(o.setup, Some(Setup::Active));
        assert!(!o.msrp_cema);
        assert_eq!(
            o.accept_wrapped_types,
            vec![
                Bytes::from_static(b"text/plain"),
                Bytes::from_static(b"message/imdn+xml")
            ]
        );
        assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
        assert!(
            text.contains("o=- 3958640041 3958640041 IN IP4 127.0.0.1\r\n"),
            "{text}"
        );
        assert!(!text.contains("2001:db8::10"), "{text}");
        assert!(text.contains("a=sendrecv\r\n"), "kept: {text}");
    }

    #[test]
    fn no_msrp_stream_is_488_and_roles_answer_the_offer() {
        let audio = Sdp::parse(Bytes::from_static(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n",
        ))
        .expect("valid SDP");
        let endpoint = MsrpEndpoint {
            addr: "127.0.0.1:2855".parse().expect("addr"),
            session_id: Bytes::from_static(b"x"),
            secure: false,
        };
        let m = Mappings::embedded().expect("mappings");
        let err = for_other_leg(&audio, &endpoint, Setup::Passive, &m.cpm).expect_err("no MSRP");
        assert_eq!(err.status(), 488);
        assert_eq!(answer_role(Some(Setup::Active)), Setup::Passive);
        assert_eq!(answer_role(None), Setup::Passive);
        assert_eq!(answer_role(Some(Setup::Passive)), Setup::Active);
    }
}
