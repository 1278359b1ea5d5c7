//! Property tests of `wire::sdp`: generated MSRP offers parse to what was generated, serialise
//! back byte for byte, and setters keep the model equal to a fresh parse of its output.

use bytes::Bytes;
use cpm_iwf::wire::sdp::{Direction, MsrpProtocol, Sdp, Setup};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Offer {
    username: String,
    sess_id: u64,
    version: u64,
    v6: bool,
    host: String,
    session_c: bool,
    media_c: bool,
    audio_first: bool,
    port: u16,
    tls: bool,
    path: Vec<String>,
    accept: Vec<&'static str>,
    wrapped: Vec<&'static str>,
    max_size: Option<u64>,
    setup: Option<Setup>,
    cema: bool,
    direction: Option<Direction>,
    extra: Vec<(String, String)>,
    lf_only: bool,
}

const TYPES: &[&str] = &[
    "message/cpim",
    "text/plain",
    "text/html",
    "application/im-iscomposing+xml",
    "message/imdn+xml",
    "*",
];

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![
        Just(Setup::Active),
        Just(Setup::Passive),
        Just(Setup::Actpass),
        Just(Setup::Holdconn)
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::Sendrecv),
        Just(Direction::Sendonly),
        Just(Direction::Recvonly),
        Just(Direction::Inactive)
    ]
}

prop_compose! {
    fn offer()(
        username in "[a-z-]{1,8}",
        sess_id in any::<u64>(),
        version in 0u64..1_000_000_000_000,
        v6 in any::<bool>(),
        host in "[a-z0-9.]{1,20}",
        session_c in any::<bool>(),
        media_c in any::<bool>(),
        audio_first in any::<bool>(),
        port in any::<u16>(),
        tls in any::<bool>(),
        path in prop::collection::vec("msrps?://[a-z0-9.]{1,12}:[0-9]{1,5}/[A-Za-z0-9]{4,12};tcp", 1..4),
        accept in prop::collection::vec(prop::sample::select(TYPES), 1..5),
        wrapped in prop::collection::vec(prop::sample::select(TYPES), 0..4),
        max_size in prop::option::of(any::<u64>()),
        setup in prop::option::of(setup()),
        cema in any::<bool>(),
        direction in prop::option::of(direction()),
        extra in prop::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,30}"), 0..4),
        lf_only in any::<bool>(),
    ) -> Offer {
        Offer { username, sess_id, version, v6, host, session_c, media_c, audio_first, port, tls,
            path, accept, wrapped, max_size, setup, cema, direction, extra, lf_only }
    }
}

impl Offer {
    fn addrtype(&self) -> &'static str {
        if self.v6 { "IP6" } else { "IP4" }
    }

    fn render(&self) -> String {
        let mut l = vec![
            "v=0".to_string(),
            format!(
                "o={} {} {} IN {} {}",
                self.username,
                self.sess_id,
                self.version,
                self.addrtype(),
                self.host
            ),
            "s=-".to_string(),
        ];
        if self.session_c {
            l.push(format!("c=IN {} {}", self.addrtype(), self.host));
        }
        l.push("t=0 0".into());
        if self.audio_first {
            l.push("m=audio 49170 RTP/AVP 0".into());
            l.push("a=rtpmap:0 PCMU/8000".into());
        }
        let proto = if self.tls { "TCP/TLS/MSRP" } else { "TCP/MSRP" };
        l.push(format!("m=message {} {proto} *", self.port));
        if self.media_c {
            l.push(format!("c=IN {} media.{}", self.addrtype(), self.host));
        }
        l.push(format!("a=path:{}", self.path.join(" ")));
        l.push(format!("a=accept-types:{}", self.accept.join(" ")));
        if !self.wrapped.is_empty() {
            l.push(format!("a=accept-wrapped-types:{}", self.wrapped.join(" ")));
        }
        if let Some(m) = self.max_size {
            l.push(format!("a=max-size:{m}"));
        }
        if let Some(s) = self.setup {
            l.push(format!("a=setup:{}", s.as_str()));
        }
        if self.cema {
            l.push("a=msrp-cema".into());
        }
        if let Some(d) = self.direction {
            l.push(format!("a={}", d.as_str()));
        }
        for (n, v) in &self.extra {
            l.push(format!("a={n}:{v}"));
        }
        let eol = if self.lf_only { "\n" } else { "\r\n" };
        let mut s = l.join(eol);
        s.push_str(eol);
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_offers_parse_and_round_trip(o in offer()) {
        let text = o.render();
        let sdp = Sdp::parse(Bytes::from(text.clone())).unwrap();
        prop_assert_eq!(&sdp.to_bytes()[..], text.as_bytes());
        prop_assert_eq!(&Sdp::parse(sdp.to_bytes()).unwrap(), &sdp);
        let m = sdp.msrp_media().unwrap();
        prop_assert_eq!(m.port, o.port);
        prop_assert_eq!(m.protocol, if o.tls { MsrpProtocol::Tls } else { MsrpProtocol::Tcp });
        prop_assert_eq!(m.path.len(), o.path.len());
        prop_assert_eq!(&m.accept_types[..], &o.accept.iter().map(|s| Bytes::from_static(s.as_bytes())).collect::<Vec<_>>()[..]);
        prop_assert_eq!(m.accept_wrapped_types.len(), o.wrapped.len());
        prop_assert_eq!(m.max_size, o.max_size);
        prop_assert_eq!(m.setup, o.setup);
        prop_assert_eq!(m.msrp_cema, o.cema);
        prop_assert_eq!(m.direction, o.direction.unwrap_or_default());
        let expect_c = if o.media_c { Some(format!("media.{}", o.host)) }
            else if o.session_c { Some(o.host.clone()) } else { None };
        prop_assert_eq!(m.connection.map(|c| String::from_utf8_lossy(&c.address).into_owned()), expect_c);
        prop_assert_eq!(sdp.origin().unwrap().sess_version, o.version);
    }

    #[test]
    fn setters_keep_model_and_output_in_step(
        o in offer(),
        port in any::<u16>(),
        setup in setup(),
        cema in any::<bool>(),
        path in prop::collection::vec("msrp://[a-z0-9]{1,8}:[0-9]{1,5}/[a-z0-9]{4,8};tcp", 1..3),
        addr in "[0-9.]{7,15}",
    ) {
        let mut sdp = Sdp::parse(Bytes::from(o.render())).unwrap();
        let path: Vec<Bytes> = path.into_iter().map(Bytes::from).collect();
        sdp.set_port(port).unwrap();
        sdp.set_setup(setup).unwrap();
        sdp.set_msrp_cema(cema).unwrap();
        sdp.set_path(&path).unwrap();
        sdp.set_connection(b"IP4", addr.as_bytes()).unwrap();
        sdp.set_accept_wrapped_types(&[Bytes::from_static(b"text/plain")]).unwrap();
        sdp.bump_session_version();
        let again = Sdp::parse(sdp.to_bytes()).unwrap();
        prop_assert_eq!(&again, &sdp);
        let m = again.require_msrp();
        if port != 0 {
            let m = m.unwrap();
            prop_assert_eq!(m.port, port);
            prop_assert_eq!(m.setup, Some(setup));
            prop_assert_eq!(m.msrp_cema, cema);
            prop_assert_eq!(m.path, path);
            prop_assert_eq!(m.connection.unwrap().address, addr.as_bytes());
        }
        prop_assert_eq!(again.origin().unwrap().sess_version, o.version + 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let input = Bytes::from(data);
        if let Ok(sdp) = Sdp::parse(input.clone()) {
            prop_assert_eq!(sdp.to_bytes(), input);
            let _ = sdp.require_msrp();
        }
    }

    #[test]
    fn sdp_like_lines_never_panic(lines in prop::collection::vec("[vosctmabiz]=[ -~]{0,40}", 1..20)) {
        let text = format!("v=0\r\n{}\r\n", lines.join("\r\n"));
        if let Ok(sdp) = Sdp::parse(Bytes::from(text.clone())) {
            prop_assert_eq!(&sdp.to_bytes()[..], text.as_bytes());
        }
    }
}
