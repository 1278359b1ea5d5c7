#!/usr/bin/env bash
# The whole test suite: installs the real peers the tests need, then runs every test,
# the ones that need a peer included. A missing peer fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the peer tests run: prometheus (promtool, a real Prometheus for the dashboard), SIPp (tests/sipp/README.md).
# redis-server: tests/store_redis.rs starts its own instances on free loopback ports.
# dovecot-imapd: tests/record_dovecot.rs starts its own Dovecot (the MSS) on a free loopback port.
# kamailio: the performance harness's smoke run (benches/load/bench.sh) compares against it.
PEERS=(prometheus sip-tester redis-server dovecot-imapd kamailio)
missing=()
for p in "${PEERS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
# The redis package may start a system redis on 6379; the tests run their own instances.
service redis-server stop >/dev/null 2>&1 || true
# Likewise the dovecot package may start a system Dovecot; the tests run their own.
service dovecot stop >/dev/null 2>&1 || true
# And a system Kamailio would hold 5060; the harness runs its own.
service kamailio stop >/dev/null 2>&1 || true

# Unit, property, integration and conformance tests, plus one pass over each benchmark
# (criterion runs a bench once in test mode, so benches cannot rot).
cargo test --all-targets --release
cargo test --doc --release
# Tests that need an external peer are #[ignore]d in a bare `cargo test`; here they run.
cargo test --release -- --ignored
# The performance harness in its seconds-long form (benches/load/bench.sh): fails on a broken run.
SMOKE=1 bash benches/load/bench.sh all
