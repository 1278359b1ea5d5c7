//! SIPp against a real node (issue 5's interop runs): SIPp as the CPM-side UAC, the node, SIPp
//! as the SIMPLE-side UAS that checks what the node produced (tests/sipp/*_simple.xml): 2,000
//! pager MESSAGEs with CPIM and IMDN requests over UDP and over TCP with no failure, and chat
//! INVITE/200/ACK/BYE with an MSRP offer whose rewritten `a=path` both SIPps check.
//!
//! `#[ignore]`d because they need SIPp; the README's test command installs it and runs them, and
//! they FAIL when `sipp` is missing. Every run is bounded (tests/sipp/harness.rs).

#[path = "peers/msrp_endpoint.rs"]
mod msrp_endpoint;
#[path = "sipp/harness.rs"]
mod sipp_harness;

use std::net::SocketAddr;
use std::time::Duration;

use cpm_iwf::config::{Config, Peer, Transport};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::node::run::Node;
use cpm_iwf::wire::msrp::Frame;
use sipp_harness::{HARNESS_DEADLINE, assert_passes, free_port, run_script};

fn lo0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A node whose SIMPLE-side next hop is `uas` over `transport`.
async fn node_towards(uas: SocketAddr, transport: Transport) -> Node {
    let mut config = Config::default();
    for side in [&mut config.cpm, &mut config.simple] {
        side.sip_udp = vec![lo0()];
        side.sip_tcp = vec![lo0()];
        side.msrp_listen = lo0();
    }
    config.simple.next_hops = vec![Peer {
        address: uas,
        transport,
    }];
    config.cpm.next_hops = Vec::new();
    config.admin_listen = lo0();
    // Each node would share the default store file: these tests are not about the store.
    config.store.location = None;
    // SIPp's UAS would count an OPTIONS probe as an unexpected message.
    config.timers.probe_interval_ms = 0;
    Node::start(config, Mappings::embedded().expect("mappings"))
        .await
        .expect("node starts")
}

/// An MSRP peer for the SIMPLE side (SIPp does not speak MSRP): accepts the node's
/// connections and answers its requests 200, until the test ends.
fn msrp_sink() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = msrp_endpoint::listen(None);
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let me = msrp_endpoint::uri(addr.port(), "sipp-uas");
                let (mut r, mut w) = msrp_endpoint::split(stream, me.clone(), me);
                loop {
                    match tokio::time::timeout(Duration::from_secs(30), r.recv_any()).await {
                        Ok(Some(Frame::Message(m))) if m.method().is_some() => {
                            if let Ok(ok) = cpm_iwf::wire::msrp::Message::response_to(&m, 200, None)
                            {
                                let _ = w.send(&ok).await;
                            }
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn pager(
    name: &str,
    transport: Transport,
    sipp_transport: &'static str,
    calls: u32,
    rate: u32,
) {
    let uas: SocketAddr = format!("127.0.0.1:{}", free_port(sipp_transport))
        .parse()
        .expect("address");
    let node = node_towards(uas, transport).await;
    let target = match transport {
        Transport::Udp => node.listening.cpm_udp[0],
        _ => node.listening.cpm_tcp[0],
    };
    let name = name.to_string();
    let run = tokio::task::spawn_blocking(move || {
        run_script(
            &name,
            &target.to_string(),
            &uas.to_string(),
            "pager-simple",
            sipp_transport,
            calls,
            rate,
            &[],
        )
    });
    let run = tokio::time::timeout(HARNESS_DEADLINE, run)
        .await
        .expect("SIPp finished in time")
        .expect("the harness ran");
    node.shutdown(Duration::from_secs(2)).await;
    assert_passes(run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester)"]
async fn sipp_2000_pager_messages_through_the_node_over_udp() {
    pager("node-pager-udp", Transport::Udp, "u1", 2000, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester)"]
async fn sipp_2000_pager_messages_through_the_node_over_tcp() {
    pager("node-pager-tcp", Transport::Tcp, "t1", 2000, 500).await;
}

async fn invite(name: &str, transport: Transport, sipp_transport: &'static str) {
    let uas: SocketAddr = format!("127.0.0.1:{}", free_port(sipp_transport))
        .parse()
        .expect("address");
    let node = node_towards(uas, transport).await;
    let (sink, sink_task) = msrp_sink();
    let target = match transport {
        Transport::Udp => node.listening.cpm_udp[0],
        _ => node.listening.cpm_tcp[0],
    };
    let env = [
        ("UAS_MSRP", sink.to_string()),
        ("UAC_EXPECT_MSRP", node.listening.cpm_msrp.to_string()),
        ("UAS_EXPECT_MSRP", node.listening.simple_msrp.to_string()),
    ];
    let name = name.to_string();
    let run = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_script(
            &name,
            &target.to_string(),
            &uas.to_string(),
            "invite-simple",
            sipp_transport,
            5,
            5,
            &env,
        )
    });
    let run = tokio::time::timeout(HARNESS_DEADLINE, run)
        .await
        .expect("SIPp finished in time")
        .expect("the harness ran");
    node.shutdown(Duration::from_secs(2)).await;
    sink_task.abort();
    assert_passes(run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester)"]
async fn sipp_chat_invite_with_msrp_through_the_node_over_udp() {
    invite("node-invite-udp", Transport::Udp, "u1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester)"]
async fn sipp_chat_invite_with_msrp_through_the_node_over_tcp() {
    invite("node-invite-tcp", Transport::Tcp, "t1").await;
}
