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
    // Each node would share the default store file: these tests are not about the store.
    config.store.location = None;
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
/// node keeps its table between cases, so a case that depends on an empty table names users of
/// its own (p013: a notification about an unknown message gets a conversation of its own only
/// when none is held between the two users).
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
    assert!(failed.is_empty(), "{report}");
    assert_skips(&results, &report);
}

/// A temporary directory of cases: p006 as it is, and altered copies.
fn temp_cases(tag: &str, cases: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cpm-iwf-conformance-target-{tag}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (name, text) in cases {
        std::fs::write(dir.join(name), text).expect("write case");
    }
    dir
}

fn p006() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/cases/p006-cpm-pager-new-leg.toml"
    ))
    .expect("case file")
    .replace(
        "input_file = \"../../tests/",
        &format!("input_file = \"{}/tests/", env!("CARGO_MANIFEST_DIR")),
    )
}

/// A wrong expectation fails against the node too, and so does a `gen-N` unified with two
/// different tokens (the From tag and the Call-ID the node drew are not the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_fails_against_the_node() {
    let good = p006();
    let wrong_value = good.replace("\"Max-Forwards\" = \"70\"", "\"Max-Forwards\" = \"69\"");
    let one_var_two_tokens = good.replace("tag=gen-1", "tag=gen-2");
    assert_ne!(good, wrong_value);
    assert_ne!(good, one_var_two_tokens);
    let dir = temp_cases(
        "wrong",
        &[
            ("a-good.toml", &good),
            ("b-wrong-value.toml", &wrong_value),
            ("c-one-var-two-tokens.toml", &one_var_two_tokens),
        ],
    );
    let peers = Peers::bind(lo0(), lo0()).await.expect("peers bind");
    let (node, addrs) = node(peers.sip_addrs().expect("peer addresses")).await;
    let results = tokio::time::timeout(
        Duration::from_secs(60),
        cpm_iwf::conformance::target::run_target_dir(&dir, peers, addrs, opts()),
    )
    .await
    .expect("in time")
    .expect("cases readable");
    node.shutdown(Duration::from_millis(100)).await;
    let (report, failed) = summary(&results);
    assert_eq!(
        failed,
        vec!["b-wrong-value.toml", "c-one-var-two-tokens.toml"],
        "{report}"
    );
    assert!(
        report.contains("Max-Forwards: Some(\"70\"), expected \"69\""),
        "{report}"
    );
    assert!(report.contains("From: Some("), "{report}");
    // The Via the node writes cannot be checked absent from outside: said, not passed.
    assert!(
        results[0]
            .not_checked
            .iter()
            .any(|n| n == "step 1: absent Via"),
        "{:?}",
        results[0].not_checked
    );
}

/// The binary as an operator runs it: `--target` names a live node's SIP addresses, `--peers`
/// the next hops it was configured with; one line per case, skipped cases and the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_runs_cases_against_a_node() {
    // Ephemeral peer ports for the node's configuration, released for the command to bind.
    let hops = {
        let a = std::net::UdpSocket::bind(lo0()).expect("bind");
        let b = std::net::UdpSocket::bind(lo0()).expect("bind");
        (a.local_addr().expect("addr"), b.local_addr().expect("addr"))
    };
    let (node, addrs) = node(hops).await;
    // A case about one chunk alone (`msrp_leg`): offline only.
    let lone_chunk = r#"clause = "RFC 4975 §7.1"
description = "A lone chunk, its other leg named by msrp_leg."

[[step]]
from = "cpm"
input = '''
MSRP tx000001 SEND
To-Path: msrp://127.0.0.1:2855/gen-1;tcp
From-Path: msrp://192.0.2.10:9/s111271x;tcp
Message-ID: chat-0001
Byte-Range: 1-*/*
Content-Type: text/plain

Hey Bob
-------tx000001$
'''
msrp_leg = { local = "msrp://127.0.0.1:2856/gen-2;tcp", remote_path = "msrp://203.0.113.5:7394/bobsess;tcp", sender = "sip:+15557654321@ims.example.net", recipient = "sip:+15551234567@ims.example.net" }
[step.expect]
send = "simple"
"#
    .to_string();
    let dir = temp_cases(
        "cli",
        &[("a-p006.toml", &p006()), ("b-c001.toml", &lone_chunk)],
    );
    let pair = |a: SocketAddr, b: SocketAddr| format!("{a},{b}");
    let args = vec![
        "conformance".to_string(),
        "run".into(),
        "--target".into(),
        pair(addrs.cpm_sip, addrs.simple_sip),
        "--target-msrp".into(),
        pair(addrs.cpm_msrp, addrs.simple_msrp),
        "--peers".into(),
        pair(hops.0, hops.1),
        "--wait-ms".into(),
        "2000".into(),
        "--run-timeout-s".into(),
        "30".into(),
        dir.display().to_string(),
    ];
    // The command bounds its own run (--run-timeout-s); the test bounds the wait for it too.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
                .args(&args)
                .output()
        }),
    )
    .await
    .expect("in time")
    .expect("joined")
    .expect("the binary runs");
    node.shutdown(Duration::from_millis(100)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok   a-p006.toml"), "{stdout}");
    assert!(
        stdout.contains("not checked: step 1: absent Via"),
        "{stdout}"
    );
    assert!(stdout.contains("skip b-c001.toml"), "{stdout}");
    assert!(
        stdout.contains("\n1 skipped (offline only: b-c001.toml)\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("\n1 passed, 0 failed\n"), "{stdout}");
}
