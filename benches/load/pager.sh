#!/usr/bin/env bash
# Load run: SIPp UAC (CPM side) -> cpm-iwf (release build) -> SIPp UAS (SIMPLE side, strict
# checks), pager MESSAGEs with CPIM and IMDN requests, over UDP, at increasing rates.
#
#   benches/load/pager.sh [CALLS_PER_STEP] [RATE...]
#
# For each rate: CALLS_PER_STEP messages (default 20000) at that rate; prints the rate, whether
# every call passed (both SIPps exit 0), the wall time, and the node's CPU time per message
# (utime+stime of the cpm-iwf process from /proc, before and after). Stops at the first rate
# with a failure. Needs sipp (apt-get install sip-tester). Bounded: run.sh limits each SIPp.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
calls=${1:-20000}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(1000 2000 4000 6000 8000)

cargo build --release --quiet --manifest-path "$here/Cargo.toml" || exit 1
bin="$here/target/release/cpm-iwf"
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpm_port=$(free_port) simple_port=$(free_port) uas_port=$(free_port)
cfg=$(mktemp /tmp/cpm-iwf-load.XXXXXX.toml)
cat >"$cfg" <<CFG
admin_listen = "127.0.0.1:0"
[timers]
probe_interval_ms = 0
[cpm]
sip_udp = ["127.0.0.1:$cpm_port"]
sip_tcp = []
msrp_listen = "127.0.0.1:0"
[simple]
sip_udp = ["127.0.0.1:$simple_port"]
sip_tcp = []
msrp_listen = "127.0.0.1:0"
next_hops = [{ address = "127.0.0.1:$uas_port", transport = "udp" }]
CFG
# WORKERS: the node's runtime threads (`run --workers`; default one per core).
RUST_LOG=warn "$bin" run --config "$cfg" ${WORKERS:+--workers "$WORKERS"} >/dev/null 2>&1 &
node=$!
trap 'kill $node 2>/dev/null; rm -f "$cfg"' EXIT
sleep 1
kill -0 $node 2>/dev/null || { echo "the node did not start"; exit 1; }
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$node/stat"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%8s %8s %8s %10s %12s\n' rate result wall_s achieved cpu_us/msg
for rate in "${rates[@]}"; do
  before=$(cpu); start=$(date +%s.%N)
  if SIPP_TIMEOUT=$((calls / rate + 30)) bash "$here/tests/sipp/run.sh" "127.0.0.1:$cpm_port" \
      "127.0.0.1:$uas_port" pager-simple u1 "$calls" "$rate" >/tmp/cpm-iwf-load-$rate.out 2>&1; then
    result=ok
  else
    result=FAILED
  fi
  end=$(date +%s.%N); after=$(cpu)
  wall=$(echo "$end - $start" | bc)
  per=$(echo "scale=1; ($after - $before) * 1000000 / $tck / $calls" | bc)
  achieved=$(echo "$calls / $wall" | bc)
  printf '%8s %8s %8.1f %10s %12s\n' "$rate" "$result" "$wall" "$achieved" "$per"
  [ "$result" = ok ] || { echo "(run.sh output: /tmp/cpm-iwf-load-$rate.out)"; break; }
done
