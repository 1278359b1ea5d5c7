//! `conformance run --target` through the library: a real node on ephemeral loopback ports
//! whose next hops are the runner's peer sockets (also ephemeral), the cases of
//! `conformance/cases` played against it. The runner maps the cases' fixed node addresses
//! (127.0.0.1:5060/5062, MSRP 2855/2856) to the node's actual ones, so no fixed port is bound
//! and the tests may run in parallel with others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cpm_iwf::config::{Config, Peer, Transport};
use cpm_iwf::conformance::target::{
    NodeAddrs, Outcome, Peers, TargetOptions, TargetResult, TargetRunner, case_files,
};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::node::run::Node;

fn lo0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn cases() -> Vec<PathBuf> {
    case_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/cases")).expect("cases")
}

/// A node whose next hops are `peers`.
async fn node(peers: (SocketAddr, SocketAddr)) -> (Node, NodeAddrs) {
    let mut config = Config::default();
    for (side, peer) in [(&mut config.cpm, peers.0), (&mut config.simple, peers.1)] {
        side.sip_udp = vec![lo0()];
        side.sip_tcp = vec![];
        side.msrp_listen = lo0();
        side.next_hops = vec![Peer {
            address: peer,
            transport: Transport::Udp,
        }];
    }
    config.admin_listen = lo0();
    let node = Node::start(config, Mappings::embedded().expect("mappings"))
        .await
        .expect("node starts");
    let l = node.listening.clone();
    let addrs = NodeAddrs {
        cpm_sip: l.cpm_udp[0],
        simple_sip: l.simple_udp[0],
        cpm_msrp: l.cpm_msrp,
        simple_msrp: l.simple_msrp,
    };
    (node, addrs)
}

fn opts() -> TargetOptions {
    TargetOptions {
        wait: Duration::from_secs(2),
        settle: Duration::from_millis(100),
        run_timeout: Duration::from_secs(240),
    }
}

/// `(report, failed names)`.
fn summary(results: &[TargetResult]) -> (String, Vec<String>) {
    let mut report = String::new();
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for r in results {
        match &r.outcome {
            Outcome::Passed => passed += 1,
            Outcome::Failed(why) => {
                failed.push(r.name.clone());
                report.push_str(&format!("FAIL {}: {why}\n", r.name));
            }
            Outcome::Skipped(_) => skipped += 1,
        }
    }
    report.push_str(&format!(
        "{passed} passed, {} failed, {skipped} skipped\n",
        failed.len()
    ));
    (report, failed)
}

/// Only the cases with an `msrp_leg` step (c001-c010) are skipped, and each says why.
fn assert_skips(results: &[TargetResult], report: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/cases");
    for r in results {
        let lone_chunk = std::fs::read_to_string(dir.join(&r.name))
            .expect("case file")
            .contains("msrp_leg");
        match &r.outcome {
            Outcome::Skipped(why) => {
                assert!(lone_chunk, "{} skipped: {why}\n{report}", r.name);
                assert!(why.contains("msrp_leg"), "{why}");
            }
            _ => assert!(!lone_chunk, "{} not skipped\n{report}", r.name),
        }
    }
}

/// Each case against a node of its own (what the offline runner assumes: an empty table):
/// every playable case passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_against_a_fresh_node() {
    let peers = Peers::bind(lo0(), lo0()).await.expect("peers bind");
    let hops = peers.sip_addrs().expect("peer addresses");
    let (first, addrs) = node(hops).await;
    let mut runner = TargetRunner::start(peers, addrs, opts()).expect("runner");
    first.shutdown(Duration::from_millis(100)).await;
    let mut results = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(300), async {
        for case in cases() {
            let (node, addrs) = node(hops).await;
            runner.set_node(addrs);
            results.push(runner.run_case(&case).await.expect("case readable"));
            node.shutdown(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(all.is_ok(), "the run finished in time");
    let (report, failed) = summary(&results);
    eprintln!("{report}");
    assert!(results.len() >= 80, "{report}");
    assert!(failed.is_empty(), "{report}");
    assert_skips(&results, &report);
}

/// All cases in one run against one node, as `cpm-iwf conformance run --target` does: the
/// node keeps its table between cases. Only p013 depends on an empty table (a notification
/// about an unknown message gets a conversation of its own, unless the node already holds one
/// between the same two users, which the earlier pager cases leave).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_for_all_cases() {
    let peers = Peers::bind(lo0(), lo0()).await.expect("peers bind");
    let (node, addrs) = node(peers.sip_addrs().expect("peer addresses")).await;
    let mut runner = TargetRunner::start(peers, addrs, opts()).expect("runner");
    let mut results = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(300), async {
        for case in cases() {
            results.push(runner.run_case(&case).await.expect("case readable"));
        }
    })
    .await;
    node.shutdown(Duration::from_millis(100)).await;
    assert!(all.is_ok(), "the run finished in time");
    let (report, failed) = summary(&results);
    eprintln!("{report}");
    assert!(failed.iter().all(|f| f.starts_with("p013-")), "{report}");
    assert_skips(&results, &report);
}
