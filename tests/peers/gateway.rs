//! A real node on loopback for the integration tests, with a SIP user agent playing each
//! network: the CPM side's UA is the node's next hop on the CPM side, the SIMPLE side's on
//! the SIMPLE side. Every port is ephemeral.

#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::time::Duration;

use cpm_iwf::config::{Config, Peer, Transport as CfgTransport};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::node::run::Node;
use cpm_iwf::translate::state::Side;
use cpm_iwf::wire::sip::SipMessage;

use super::sip_ua::{SipUa, Transport, UaConfig};

pub fn lo0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The node, the CPM-side UA (user alice at cpm.example.net) and the SIMPLE-side UA (user bob
/// at simple.example.net), all over `transport`.
pub struct Bed {
    pub node: Node,
    /// The node's store-and-forward directory (removed with the bed).
    pub store_dir: tempfile::TempDir,
    pub cpm: SipUa,
    pub simple: SipUa,
    pub transport: Transport,
}

impl Bed {
    pub async fn start(transport: Transport) -> Bed {
        Self::start_with(transport, |_| {}).await
    }

    /// A bed whose node configuration `tweak` adjusts (timers, limits).
    pub async fn start_with(transport: Transport, tweak: impl FnOnce(&mut Config)) -> Bed {
        let ua = |user: &str, domain: &str| UaConfig {
            user: user.into(),
            domain: domain.into(),
            t1: Duration::from_millis(200),
            ..UaConfig::default()
        };
        let cpm = SipUa::bind_with(transport, lo0(), ua("alice", "cpm.example.net"))
            .await
            .expect("CPM UA");
        let simple = SipUa::bind_with(transport, lo0(), ua("bob", "simple.example.net"))
            .await
            .expect("SIMPLE UA");
        let hop = |ua: &SipUa| Peer {
            address: ua.local_addr(),
            transport: match transport {
                Transport::Udp => CfgTransport::Udp,
                Transport::Tcp => CfgTransport::Tcp,
            },
        };
        let mut config = Config::default();
        for (side, peer) in [
            (&mut config.cpm, hop(&cpm)),
            (&mut config.simple, hop(&simple)),
        ] {
            side.sip_udp = vec![lo0()];
            side.sip_tcp = vec![lo0()];
            side.msrp_listen = lo0();
            side.next_hops = vec![peer];
        }
        config.admin_listen = lo0();
        let store_dir = tempfile::tempdir().expect("store dir");
        config.store.location = Some(store_dir.path().join("store.redb").display().to_string());
        config.timers.t1_ms = 200;
        // The test UAs do not answer OPTIONS: probing is turned on by the tests about it.
        config.timers.probe_interval_ms = 0;
        tweak(&mut config);
        let node = Node::start(config, Mappings::embedded().expect("mappings"))
            .await
            .expect("node starts");
        Bed {
            node,
            store_dir,
            cpm,
            simple,
            transport,
        }
    }

    /// The node's SIP address on the CPM side for this bed's transport.
    pub fn node_cpm(&self) -> SocketAddr {
        let l = &self.node.listening;
        match self.transport {
            Transport::Udp => l.cpm_udp[0],
            Transport::Tcp => l.cpm_tcp[0],
        }
    }

    /// The node's SIP address on the SIMPLE side.
    pub fn node_simple(&self) -> SocketAddr {
        let l = &self.node.listening;
        match self.transport {
            Transport::Udp => l.simple_udp[0],
            Transport::Tcp => l.simple_tcp[0],
        }
    }

    pub async fn stop(self) {
        self.node.shutdown(Duration::from_secs(2)).await;
    }

    /// A request sent through the node by the UA of side `from` (`Cpm`: Alice's), answered
    /// `status` by the other side's UA when it arrives: the sender's final answer (its status)
    /// and the request as the other side got it.
    pub async fn exchange(
        &mut self,
        from: Side,
        msg: SipMessage,
        status: u16,
        reason: &str,
    ) -> (u16, SipMessage) {
        let (node_cpm, node_simple) = (self.node_cpm(), self.node_simple());
        let (sender, receiver, node) = match from {
            Side::Cpm => (&mut self.cpm, &mut self.simple, node_cpm),
            Side::Simple => (&mut self.simple, &mut self.cpm, node_simple),
        };
        let method = msg.method().copied().expect("a request");
        let (answer, got) = tokio::join!(sender.request(node, msg), async {
            let tx = receiver
                .recv_method(method, None)
                .await
                .expect("the request through the node");
            receiver
                .respond(&tx, status, reason, &[], None)
                .await
                .expect("answer");
            tx.request
        });
        let answer = answer.expect("a final answer");
        (answer.status_code().unwrap_or(0), got)
    }

    /// `n` messages kept for Bob delivered to him (SIMPLE side) as pager MESSAGEs from Alice,
    /// each answered 200, then nothing else for `quiet`: their imdn.Message-IDs, in arrival
    /// order.
    pub async fn receive_kept(&mut self, n: usize, quiet: Duration) -> Vec<String> {
        let bob = self.simple.aor();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let tx = self
                .simple
                .recv_method(rsip::Method::Message, Some(Duration::from_secs(10)))
                .await
                .expect("kept message delivered");
            ids.push(imdn_message_id(&tx.request));
            assert_eq!(tx.request.request_uri(), Some(bob.as_bytes()));
            assert!(
                tx.request
                    .header("From")
                    .unwrap_or_default()
                    .contains("alice@cpm.example.net"),
                "{:?}",
                tx.request.header("From")
            );
            self.simple
                .respond(&tx, 200, "OK", &[], None)
                .await
                .expect("200");
        }
        assert!(
            self.simple.recv_request(Some(quiet)).await.is_err(),
            "nothing else reaches Bob after {ids:?}"
        );
        ids
    }

    /// Bob's delivered notification `cpim` (a CPIM-wrapped IMDN) for the message `of` sent
    /// through the node reaches Alice within `conversation` (CPM 2.0 SD 5.2.1.1).
    pub async fn delivered_reaches_alice(
        &mut self,
        cpim: bytes::Bytes,
        of: &str,
        conversation: &str,
    ) {
        let alice = self.cpm.aor();
        let imdn = self
            .simple
            .new_message(&alice, "message/cpim", cpim)
            .expect("MESSAGE");
        let (status, got) = self.exchange(Side::Simple, imdn, 200, "OK").await;
        assert_eq!(status, 200);
        assert_eq!(got.header("Conversation-ID"), Some(conversation));
        let body = String::from_utf8_lossy(got.body());
        assert!(body.contains("<delivered/>"), "{body}");
        assert!(body.contains(of), "{body}");
    }
}

/// The imdn.Message-ID of a CPIM body (RFC 5438 §6.3), empty when it has none.
pub fn imdn_message_id(m: &SipMessage) -> String {
    String::from_utf8_lossy(m.body())
        .lines()
        .find_map(|l| l.strip_prefix("imdn.Message-ID: "))
        .unwrap_or_default()
        .to_string()
}

/// No test may take longer than this, whatever happens.
pub async fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("finished in time")
}
