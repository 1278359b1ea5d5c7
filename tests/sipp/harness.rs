//! Running SIPp scenario pairs from Rust tests through `tests/sipp/run.sh` (the one place
//! that knows how to run a pair). Include with `#[path = "sipp/harness.rs"] mod sipp_harness;`.
//!
//! SIPp-to-SIPp: [`run_pair`]. Through a node: [`run_script`] with the node's CPM-side SIP
//! address as `target` and the SIMPLE-side next hop as `listen`, e.g.
//! `run_script("node-pager-udp", "127.0.0.1:5060", "127.0.0.1:5080", "pager-simple", "u1",
//! 2000, 500, &[])`, or for `invite` with `UAC_EXPECT_MSRP` / `UAS_EXPECT_MSRP` set to the
//! node's MSRP addresses on each side.
#![allow(dead_code)] // each test file uses its own subset

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds each SIPp may run (run.sh's SIPP_TIMEOUT).
pub const SIPP_TIMEOUT_S: u64 = 40;
/// How long this harness waits for run.sh: SIPp's limit, timeout(1)'s grace, and margin.
pub const HARNESS_DEADLINE: Duration = Duration::from_secs(SIPP_TIMEOUT_S + 30);

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/run.sh")
}

/// Fail (not skip) when SIPp is not installed.
pub fn require_sipp() {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    match found {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("SIPp"),
                "`sipp -v` did not print a SIPp version: {text}"
            );
        }
        Err(e) => panic!("sipp is missing ({e}): apt-get install -y sip-tester"),
    }
}

/// A free loopback port for `transport` (u1: UDP, t1: TCP), read back from a port-0 bind.
pub fn free_port(transport: &str) -> u16 {
    if transport == "t1" {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
        l.local_addr().expect("local addr").port()
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        s.local_addr().expect("local addr").port()
    }
}

/// What run.sh said, and how it ended.
pub struct Run {
    pub success: bool,
    pub output: String,
}

/// Run one pair SIPp-to-SIPp: the UAC sends to the UAS's own address.
pub fn run_pair(
    name: &str,
    pair: &str,
    transport: &str,
    calls: u32,
    rate: u32,
    env: &[(&str, &str)],
) -> Run {
    let target = format!("127.0.0.1:{}", free_port(transport));
    run_script(name, &target, &target, pair, transport, calls, rate, env)
}

/// Run one pair with run.sh: the UAC sends to `target`, the UAS listens on `listen`.
#[allow(clippy::too_many_arguments)]
pub fn run_script(
    name: &str,
    target: &str,
    listen: &str,
    pair: &str,
    transport: &str,
    calls: u32,
    rate: u32,
    env: &[(&str, &str)],
) -> Run {
    require_sipp();
    let logs = std::env::temp_dir().join(format!("cpm-iwf-sipp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).expect("create the log directory");
    // Output to a file, not a pipe: a full pipe would block run.sh until the deadline.
    let out_path = logs.join("run.out");
    let out_file = std::fs::File::create(&out_path).expect("create run.out");
    let err_file = out_file.try_clone().expect("clone run.out");
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .args([target, listen, pair, transport])
        .arg(calls.to_string())
        .arg(rate.to_string())
        .env("SIPP_TIMEOUT", SIPP_TIMEOUT_S.to_string())
        .env("SIPP_LOG_DIR", &logs)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start bash tests/sipp/run.sh");
    let started = Instant::now();
    // Bounded wait: poll until it exits or the deadline passes (then kill it by its id).
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for run.sh") {
            break Some(status);
        }
        if started.elapsed() > HARNESS_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = std::fs::read_to_string(&out_path).unwrap_or_default();
    if status.is_none() {
        output.push_str("\n(run.sh killed: harness deadline passed)");
    }
    output.push_str(&format!("\n(logs in {})", logs.display()));
    let success = status.is_some_and(|s| s.success());
    if success {
        let _ = std::fs::remove_dir_all(&logs);
    }
    Run { success, output }
}

pub fn assert_passes(run: Run) {
    assert!(run.success, "SIPp pair failed:\n{}", run.output);
    assert!(
        run.output.contains("uac exit 0, uas exit 0"),
        "{}",
        run.output
    );
}

/// The pair failed, and for the reason given: `evidence` is in SIPp's error log.
pub fn assert_fails(run: Run, why: &str, evidence: &str) {
    assert!(!run.success, "expected a failure ({why}):\n{}", run.output);
    assert!(
        run.output.contains(evidence),
        "failed, but not with {evidence:?} ({why}):\n{}",
        run.output
    );
}
