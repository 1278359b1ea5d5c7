# Shared pieces of the load harness (sourced by the scripts in benches/load/).
# Every script: loopback only, ephemeral ports, every peer bounded by timeout(1).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin="${NODE_BIN:-$here/target/release/cpm-iwf}"  # NODE_BIN: another build of the node (an A/B run)
load="$here/target/release/cpm-iwf-load"
tck=$(getconf CLK_TCK)
SMOKE=${SMOKE:-0}

# Release builds of the node and the generator (skipped with NO_BUILD=1).
build() {
  [ "${NO_BUILD:-0}" = 1 ] && return 0
  cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin cpm-iwf --bin cpm-iwf-load
}

# Debian packages, installed when missing (sip-tester: SIPp; kamailio: the reference peer).
need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
  command -v "$1" >/dev/null 2>&1 || { echo "$1 not available" >&2; exit 1; }
}

free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_tcp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A port free for both UDP and TCP.
free_port() {
  local p
  for _ in $(seq 1 20); do
    p=$(free_udp)
    python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p))" 2>/dev/null && { echo "$p"; return; }
  done
  echo "$p"
}

# utime+stime of a process in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
machine() { echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"; }

pids_started=()
cleanup() {
  local p
  for p in "${pids_started[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids_started[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${tmpdir:-}" ] && rm -rf "$tmpdir"
  return 0
}
trap cleanup EXIT
tmpdir=$(mktemp -d /tmp/cpm-iwf-bench.XXXXXX)

# start_node TRANSPORT(udp|tcp) UAS_PORT [EXTRA_LIMITS_TOML]: starts the release node, sets
# node_pid, node_cpm (its CPM SIP address), node_admin. WORKERS: runtime threads. Its store is a
# fresh file in the run's directory: with the default (data/cpm-iwf.redb, kept between runs) a
# run that ended with MESSAGEs stored for a timed-out UAS had the next run deliver them first,
# to a UAS that counts them as its own calls.
start_node() {
  local transport=$1 uas_port=$2 limits=${3:-}
  local cpm_port simple_port admin_port udp tcp
  cpm_port=$(free_port) simple_port=$(free_port) admin_port=$(free_tcp)
  if [ "$transport" = tcp ]; then udp='[]' tcp="[\"127.0.0.1:PORT\"]"; else udp="[\"127.0.0.1:PORT\"]" tcp='[]'; fi
  cat >"$tmpdir/node.toml" <<CFG
admin_listen = "127.0.0.1:$admin_port"
log_level = "warn"
[timers]
probe_interval_ms = 0
[store]
location = "$tmpdir/store.redb"
[cpm]
sip_udp = ${udp//PORT/$cpm_port}
sip_tcp = ${tcp//PORT/$cpm_port}
msrp_listen = "127.0.0.1:0"
[simple]
sip_udp = ${udp//PORT/$simple_port}
sip_tcp = ${tcp//PORT/$simple_port}
msrp_listen = "127.0.0.1:0"
next_hops = [{ address = "127.0.0.1:$uas_port", transport = "$transport" }]
[limits]
$limits
CFG
  RUST_LOG=warn "$bin" run --config "$tmpdir/node.toml" ${WORKERS:+--workers "$WORKERS"} \
    >"$tmpdir/node.log" 2>&1 &
  node_pid=$!
  pids_started+=("$node_pid")
  node_cpm="127.0.0.1:$cpm_port" node_admin="127.0.0.1:$admin_port"
  for _ in $(seq 1 50); do
    curl -sf "http://$node_admin/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the node did not start:"; cat "$tmpdir/node.log"; exit 1
}

stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; return 0; }

# Append a section (stdin) to BENCHMARKS.md unless NO_APPEND=1 (the smoke run).
append() {
  if [ "${NO_APPEND:-0}" = 1 ] || [ "$SMOKE" = 1 ]; then cat >/dev/null; else cat >>"$here/BENCHMARKS.md"; fi
}
header() { # header TITLE COMMAND
  printf '\n### %s (%s)\n\nCommand: `%s`. Machine: %s. Load average at the start: %s.\n\n' \
    "$1" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$2" "$(machine)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2f' % (a/b) if b else 'n/a')" "$1" "$2"; }
# field KEY LINE: the value of KEY=... in a RESULT line.
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

# start_kamailio CFG DEFINE...: Kamailio in the foreground (-DD -E) with its own run dir; sets
# kam_pid. Its CPU is that of the main process and all its children (cpu_tree).
start_kamailio() {
  local cfg=$1; shift
  local defs=() d
  for d in "$@"; do defs+=(-A "$d"); done
  kamailio -c -f "$cfg" "${defs[@]}" >"$tmpdir/kam-check.log" 2>&1 ||
    { echo "kamailio -c failed:"; cat "$tmpdir/kam-check.log"; exit 1; }
  mkdir -p "$tmpdir/kam"
  kamailio -DD -E -f "$cfg" "${defs[@]}" -Y "$tmpdir/kam" -m 1024 -M 32 >"$tmpdir/kam.log" 2>&1 &
  kam_pid=$!
  pids_started+=("$kam_pid")
  sleep 1.5
  kill -0 "$kam_pid" 2>/dev/null || { echo "kamailio did not start:"; tail -20 "$tmpdir/kam.log"; exit 1; }
}

# utime+stime (clock ticks) of a process and its children (Kamailio forks its workers).
cpu_tree() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1"); do t=$((t + $(cpu_ticks "$p" | cut -d. -f1))); done
  echo "$t"
}
