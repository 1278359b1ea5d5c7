#!/usr/bin/env bash
# The performance harness of issue 9: one command per comparison, loopback only, each bounded
# in time, each printing a table and appending it to BENCHMARKS.md with the command, the machine,
# the date, both sides' figures and their ratio.
#
#   benches/load/bench.sh pager|chat|latency|memory|scaling|profile|all
#
#   pager    SIPp -> cpm-iwf -> SIPp versus SIPp -> Kamailio stateless forward -> SIPp, UDP and
#            TCP, stepping the rate (benches/load/pager.sh); highest rate with 0 failed and
#            < 0.1 % retransmissions, CPU seconds per 1,000 MESSAGEs at the highest rate both
#            sustain.                                                      (~4 min)
#   chat     cpm-iwf-load chat: N sessions of 1 KiB CPIM SENDs through the node, through
#            Kamailio's msrp relay (RFC 4976), and endpoint to endpoint.   (~1 min)
#   latency  cpm-iwf-load pager at 50 % of the node's highest pager rate (PAGER_MAX, else
#            measured by a short step run): RTT through the node minus RTT direct. (~1 min)
#   memory   cpm-iwf-load hold: node RSS per chat session at 10k and 100k sessions, per
#            correlation entry, and under a small table cap.             (~4 min)
#            MEMORY_SHARE=K (default 16): sessions share K MSRP connections per side
#            (node: [msrp] share_connections); MEMORY_SHARE=0: one connection per leg.
#            MEMORY_HOLD_S (default 40; 2 in SMOKE): how long the sessions are held before
#            RSS is read again, past the setup transactions' 32 s timers (RFC 6026 L/M).
#   scaling  the node's pager run with --workers 1 and --workers 2.       (~3 min)
#   profile  perf record -g of the node under pager load; top symbols.   (~1 min)
#   all      everything above, in that order.                            (~15 min)
#
# SMOKE=1: short versions (all of them: ~90 s) that only check that every comparison produces
# numbers and fail on a broken run (CI; nothing appended). NO_APPEND=1: print only. NO_BUILD=1: use the existing release binaries.
# Installs sip-tester, kamailio, linux-perf with apt-get when missing.
set -u -o pipefail  # a generator that exits non-zero fails its comparison even when it printed figures
source "$(dirname "$0")/lib.sh"
what=${1:-}
cmdline="benches/load/bench.sh $*"
for v in WORKERS PAGER_MAX CHAT_SESSIONS CHAT_SECS MEMORY_SESSIONS MEMORY_SHARE MEMORY_HOLD_S SMOKE; do
  [ -n "${!v:-}" ] && [ "${!v}" != 0 ] && cmdline="$v=${!v} $cmdline"
done
fail() { echo "bench.sh: $*" >&2; exit 1; }
# Generator output is shown with `tee -a /dev/stderr`: without -a, tee reopens a stderr that is
# redirected to a file and truncates it (a CI log loses everything before).
# num WHAT VALUE...: every VALUE is a number, or the run is broken.
num() {
  local what=$1 v; shift
  for v in "$@"; do
    [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || fail "$what: no figure (got '$v')"
  done
}

# Highest passing rate and its CPU per MESSAGE from pager.sh's STEP lines on stdin:
# prints "rate cpu_us achieved" (0 0 0 when none passed).
best_step() {
  awk '/^STEP / { ok = 0; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
       if (v["result"] == "ok") { r = v["rate"]; c = v["cpu_us"]; a = v["achieved"] } }
       END { print (r == "" ? "0 0 0" : r " " c " " a) }'
}
# CPU per MESSAGE at a given rate (empty when that step did not pass).
cpu_at() { awk -v rate="$1" '/^STEP / && / result=ok / && $0 ~ (" rate=" rate " ") {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "cpu_us") print kv[2] } }'; }

run_pager() {
  local calls rates t tgt out
  if [ "$SMOKE" = 1 ]; then calls=1000 rates="1000"; else calls=20000 rates="1000 2000 4000 6000 8000 10000 12000"; fi
  need sipp sip-tester; need kamailio kamailio
  local table=""
  for t in u1 t1; do
    for tgt in node kamailio; do
      out="$tmpdir/pager-$tgt-$t.txt"
      # shellcheck disable=SC2086
      NO_BUILD=1 TARGET=$tgt TRANSPORT=$t bash "$here/benches/load/pager.sh" "$calls" $rates >"$out" 2>&1
      grep -v '^STEP ' "$out" | head -20
    done
    read -r n_rate n_cpu n_ach < <(best_step <"$tmpdir/pager-node-$t.txt")
    read -r k_rate k_cpu k_ach < <(best_step <"$tmpdir/pager-kamailio-$t.txt")
    [ "$n_rate" != 0 ] && [ "$k_rate" != 0 ] || fail "pager over $t: a side passed no rate (see above)"
    local common=$n_rate; [ "$k_rate" -lt "$common" ] && common=$k_rate
    local nc kc
    nc=$(cpu_at "$common" <"$tmpdir/pager-node-$t.txt"); kc=$(cpu_at "$common" <"$tmpdir/pager-kamailio-$t.txt")
    table+="| $t | $n_rate/s ($n_ach/s achieved) | $k_rate/s ($k_ach/s achieved) | $common/s | $(printf "%.3f" "$(echo "scale=4; $nc / 1000" | bc)") s | $(printf "%.3f" "$(echo "scale=4; $kc / 1000" | bc)") s | **$(ratio "$nc" "$kc")** |"$'\n'
    num "pager over $t" "$nc" "$kc"
    echo "RESULT pager transport=$t node_max=$n_rate kamailio_max=$k_rate common=$common node_cpu_us=$nc kamailio_cpu_us=$kc ratio=$(ratio "$nc" "$kc")"
  done
  {
    header "Pager: cpm-iwf versus Kamailio stateless forward" "$cmdline"
    echo "SIPp UAC \`tests/sipp/pager_uac.xml\` -> server -> SIPp UAS, $calls MESSAGEs per step at target rates $rates/s (\`benches/load/pager.sh\`; through the node the UAS is the strict \`pager_uas_simple.xml\`). A rate passes with 0 failed calls and < 0.1 % retransmissions. CPU: the server's utime+stime (all of Kamailio's processes) per 1,000 MESSAGEs, at the highest rate both pass; each MESSAGE is a request and its 200 through the server. Workers: ${WORKERS:-$(nproc)} (node runtime threads; Kamailio children / tcp_children)."
    echo
    echo "| transport | cpm-iwf highest rate | Kamailio highest rate | compared at | cpm-iwf CPU / 1,000 | Kamailio CPU / 1,000 | ratio (goal <= 0.75) |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s' "$table"
  } | append
}

run_chat() {
  local sessions secs
  if [ "$SMOKE" = 1 ]; then sessions=4 secs=1; else sessions=${CHAT_SESSIONS:-100} secs=${CHAT_SECS:-10}; fi
  need kamailio kamailio
  local workers=${WORKERS:-$(nproc)}
  local uas; uas=$(free_port)
  # The node: its CPU over the traffic window only (the generator prints after setup; we
  # sample around the whole run and subtract the setup-only run's CPU: simpler, the node
  # run: setup then traffic; its setup CPU is measured by a hold run of the same size).
  start_node udp "$uas"
  local c0 c1 node_line relay_line direct_line
  c0=$(cpu_tree "$node_pid")
  node_line=$(timeout $((secs + 120)) "$load" chat --via node --sip "$node_cpm" --uas "127.0.0.1:$uas" \
    --sessions "$sessions" --secs "$secs" | tee -a /dev/stderr | grep '^RESULT') || fail "chat via the node broke"
  c1=$(cpu_tree "$node_pid")
  stop_pid "$node_pid"
  local node_cpu=$((c1 - c0))
  local kport; kport=$(free_tcp)
  start_kamailio "$here/benches/load/kamailio/msrp.cfg" "LISTEN=tcp:127.0.0.1:$kport" \
    "USE_PATH=\"127.0.0.1:$kport\"" "WORKERS=$workers"
  c0=$(cpu_tree "$kam_pid")
  relay_line=$(timeout $((secs + 120)) "$load" chat --via relay --relay "127.0.0.1:$kport" \
    --sessions "$sessions" --secs "$secs" | tee -a /dev/stderr | grep '^RESULT') || fail "chat via Kamailio broke"
  c1=$(cpu_tree "$kam_pid")
  stop_pid "$kam_pid"
  local kam_cpu=$((c1 - c0))
  direct_line=$(timeout $((secs + 120)) "$load" chat --via direct --sessions "$sessions" --secs "$secs" \
    | tee -a /dev/stderr | grep '^RESULT') || fail "chat direct broke"
  local n_mps k_mps d_mps n_del k_del
  n_mps=$(field msg_per_s "$node_line") k_mps=$(field msg_per_s "$relay_line") d_mps=$(field msg_per_s "$direct_line")
  n_del=$(field delivered "$node_line") k_del=$(field delivered "$relay_line")
  local n_us k_us
  n_us=$(echo "scale=2; $node_cpu * 1000000 / $tck / $n_del" | bc)
  k_us=$(echo "scale=2; $kam_cpu * 1000000 / $tck / $k_del" | bc)
  num chat "$n_mps" "$k_mps" "$d_mps" "$n_us" "$k_us"
  echo "RESULT chat node_msg_per_s=$n_mps kamailio_msg_per_s=$k_mps direct_msg_per_s=$d_mps ratio=$(ratio "$n_mps" "$k_mps") node_cpu_us=$n_us kamailio_cpu_us=$k_us"
  {
    header "Chat relay: cpm-iwf versus Kamailio msrp relay versus endpoint to endpoint" "$cmdline"
    echo "\`cpm-iwf-load chat\` (one generator thread), $sessions sessions, ${secs} s of 1 KiB CPIM SENDs (8 outstanding per session), counted where they arrive. Through the node: each session an INVITE from the CPM side answered by the generator's SIMPLE-side UAS, then the sender connects to the node and the node to the receiver. Through Kamailio (\`benches/load/kamailio/msrp.cfg\`, RFC 4976): both endpoints AUTH, the sender SENDs along the receiver's Use-Path; Kamailio answers each SEND hop by hop. Server CPU: utime+stime over the whole run (session setup included: for the node that is $sessions INVITE transactions, for Kamailio $((2 * sessions)) AUTHs) divided by the SENDs delivered. Workers: $workers."
    echo
    echo "| path | SENDs/s | MB/s | server CPU per SEND |"
    echo "|---|---|---|---|"
    echo "| cpm-iwf (B2BUA, both MSRP legs) | $n_mps | $(field mb_per_s "$node_line") | $n_us µs |"
    echo "| Kamailio msrp relay | $k_mps | $(field mb_per_s "$relay_line") | $k_us µs |"
    echo "| direct (ceiling: the generator alone) | $d_mps | $(field mb_per_s "$direct_line") | |"
    echo
    echo "Ratio cpm-iwf / Kamailio: **$(ratio "$n_mps" "$k_mps")x** in SENDs/s (goal >= 1.5x), **$(ratio "$n_us" "$k_us")x** in CPU per SEND."
  } | append
}

# The node's highest pager rate over UDP: PAGER_MAX, else a short step run.
pager_max() {
  if [ -n "${PAGER_MAX:-}" ]; then echo "$PAGER_MAX"; return; fi
  # The smoke checks the latency run, not the ceiling (the pager comparison finds that).
  if [ "$SMOKE" = 1 ]; then echo 1000; return; fi
  local calls=10000 rates="2000 4000 6000 8000 10000 12000"
  [ "$SMOKE" = 1 ] && calls=1000 rates="500 1000"
  # shellcheck disable=SC2086
  NO_BUILD=1 TARGET=node bash "$here/benches/load/pager.sh" "$calls" $rates 2>/dev/null | best_step | cut -d' ' -f1
}

run_latency() {
  local max rate secs
  max=$(pager_max); [ "$max" -gt 0 ] 2>/dev/null || fail "no pager rate passed"
  rate=$((max / 2)); secs=10; [ "$SMOKE" = 1 ] && secs=1
  # A warm-up at the same rate first (LATENCY_WARM_S, default 3 s), through the node and
  # direct alike: a fresh process pays first-touch page faults and first allocations that a
  # node in service has long paid. Its figures are reported too, as the cold start.
  local warm=${LATENCY_WARM_S:-3}; [ "$SMOKE" = 1 ] && warm=1
  local uas; uas=$(free_port)
  start_node udp "$uas"
  local via direct cold
  cold=$(timeout $((warm + 60)) "$load" pager --target "$node_cpm" --uas "127.0.0.1:$uas" --rate "$rate" --secs "$warm" \
    | tee -a /dev/stderr | grep '^RESULT') || fail "pager warm-up through the node broke"
  via=$(timeout $((secs + 60)) "$load" pager --target "$node_cpm" --uas "127.0.0.1:$uas" --rate "$rate" --secs "$secs" \
    | tee -a /dev/stderr | grep '^RESULT') || fail "pager through the node broke"
  stop_pid "$node_pid"
  local uas2; uas2=$(free_port)
  timeout $((warm + 60)) "$load" pager --target "127.0.0.1:$uas2" --uas "127.0.0.1:$uas2" --rate "$rate" --secs "$warm" \
    >/dev/null || fail "pager warm-up direct broke"
  direct=$(timeout $((secs + 60)) "$load" pager --target "127.0.0.1:$uas2" --uas "127.0.0.1:$uas2" --rate "$rate" --secs "$secs" \
    | tee -a /dev/stderr | grep '^RESULT') || fail "pager direct broke"
  local row="" p
  for p in p50_us p99_us p999_us; do
    local a b
    a=$(field "$p" "$via") b=$(field "$p" "$direct")
    num "latency $p" "$a" "$b"
    row+=" $(echo "scale=1; $a - $b" | bc) µs ($a - $b) |"
  done
  echo "RESULT latency rate=$rate added:$row"
  {
    header "Latency added by the node at 50 % of its highest pager rate" "$cmdline"
    echo "\`cpm-iwf-load pager\` at $rate MESSAGE/s (half of $max/s, the node's highest passing pager rate over UDP) for ${secs} s, after a ${warm} s warm-up at the same rate (through the node and direct alike): the generator's UAC sends each MESSAGE (CPIM, IMDN request) over UDP and times it to its 200; its own UAS answers. Added = percentile through the node minus the same percentile UAC -> UAS direct (same generator, same rate). $(field answered "$via") of $(field total "$via") answered through the node, $(field failed "$via") failed, $(field lost "$via") unanswered."
    echo
    echo "| | p50 | p99 | p99.9 |"
    echo "|---|---|---|---|"
    echo "| through the node | $(field p50_us "$via") µs | $(field p99_us "$via") µs | $(field p999_us "$via") µs |"
    echo "| through the node, cold (the warm-up, fresh process) | $(field p50_us "$cold") µs | $(field p99_us "$cold") µs | $(field p999_us "$cold") µs |"
    echo "| direct | $(field p50_us "$direct") µs | $(field p99_us "$direct") µs | $(field p999_us "$direct") µs |"
    echo "| **added** (goal p99 <= 250 µs) |$row"
  } | append
}

run_memory() {
  local counts
  if [ "$SMOKE" = 1 ]; then counts="200"; else counts=${MEMORY_SESSIONS:-"10000 100000"}; fi
  # MEMORY_SHARE=K (default 16): the generator multiplexes the sessions over K MSRP connections
  # per side (RFC 4975 §5.4 connection reuse) and the node runs with [msrp] share_connections,
  # so descriptors no longer bound the count. MEMORY_SHARE=0: one connection per leg, as before.
  local share=${MEMORY_SHARE:-16}
  # Steady state: the setup's SIP transactions live up to 32 s (RFC 3261 Timer J/K, RFC 6026
  # Timer L/M) and the node trims its heap every 10 s; per session is read after that.
  local hold=${MEMORY_HOLD_S:-40}
  [ "$SMOKE" = 1 ] && hold=${MEMORY_HOLD_S:-2}
  # Without sharing each session holds 2 TCP connections in the node (and 2 in the generator):
  # raise the descriptor limit as far as the machine lets us; past it, run at the most that fits.
  ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  local fds; fds=$(ulimit -n)
  local fit=$(( (fds - 500) / 2 ))
  [ "$share" -gt 0 ] && fit=10000000
  local rows="" n
  for n in $counts; do
    if [ "$n" -gt "$fit" ]; then
      rows+="| $n chat sessions | | | not run: RLIMIT_NOFILE is $fds here and cannot be raised (ulimit -n 1048576: Operation not permitted, no CAP_SYS_RESOURCE in this container); $n sessions need $((2 * n)) node-side descriptors. Run at $fit instead | |"$'\n'
      [ "${ran_fit:-0}" = 1 ] && continue
      n=$fit ran_fit=1
    fi
    local uas; uas=$(free_port)
    local addrs=$(( n / 20000 + 1 )); [ "$addrs" -gt 250 ] && addrs=250
    local node_extra="" conns_arg=""
    if [ "$share" -gt 0 ]; then
      node_extra=$'\n[msrp]\nshare_connections = true\nmax_sessions_per_connection = '"$(( n / share + 1000 ))"
      conns_arg="--conns $share"
    fi
    start_node udp "$uas" "max_sessions = $((n + 1000))$node_extra"
    local line
    # shellcheck disable=SC2086
    line=$(timeout 900 "$load" --threads 2 hold --sip "$node_cpm" --uas "127.0.0.1:$uas" --sessions "$n" \
      --addrs "$addrs" --setup-concurrency 128 $conns_arg --node-pid "$node_pid" --admin "$node_admin" --hold-secs "$hold" 2>&1 \
      | tee -a /dev/stderr | grep -E '^RESULT|cpm-iwf-load:' | tail -1)
    stop_pid "$node_pid"
    case $line in
      RESULT*) num "memory per session" "$(field bytes_per_session "$line")"
        local how="one MSRP connection per leg"
        [ "$share" -gt 0 ] && how="$share shared MSRP connections per side"
        rows+="| $n chat sessions held ($how) | $(field rss0_kib "$line") KiB | $(field rss1_kib "$line") KiB | **$(field bytes_per_session "$line") B per session** (goal <= 2,048); $(field sessions "$line") up, $(field failed "$line") failed to set up | +$(field table_entries "$line") table entries |"$'\n' ;;
      *) rows+="| $n chat sessions | | | did not complete: ${line#cpm-iwf-load: } | |"$'\n'
         [ "$SMOKE" = 1 ] && fail "memory smoke broke: $line" ;;
    esac
  done
  # Correlation entries: pager MESSAGEs leave one entry each (imdn Message-ID -> origin)
  # until it expires; RSS growth per entry. Then a table cap smaller than the load.
  local msgs=50000 rate=5000 cap=20000
  [ "$SMOKE" = 1 ] && msgs=1000 rate=1000 cap=500
  local uas; uas=$(free_port)
  start_node udp "$uas"
  local pl; pl=$(timeout 120 "$load" pager --target "$node_cpm" --uas "127.0.0.1:$uas" --rate "$rate" \
    --secs "$(echo "scale=2; $msgs / $rate" | bc)" --node-pid "$node_pid" --admin "$node_admin" | tee -a /dev/stderr | grep '^RESULT') ||
    fail "pager for the table broke"
  stop_pid "$node_pid"
  num "memory per entry" "$(field bytes_per_entry "$pl")"
  rows+="| $msgs pager MESSAGEs | $(field rss0_kib "$pl") KiB | $(field rss1_kib "$pl") KiB | **$(field bytes_per_entry "$pl") B per MESSAGE held** (its transactions and its correlation entry) | $(field entries0 "$pl") -> $(field entries1 "$pl") entries |"$'\n'
  uas=$(free_port)
  start_node udp "$uas" "table_cap = $cap"
  pl=$(timeout 120 "$load" pager --target "$node_cpm" --uas "127.0.0.1:$uas" --rate "$rate" \
    --secs "$(echo "scale=2; $msgs / $rate" | bc)" --node-pid "$node_pid" --admin "$node_admin" | tee -a /dev/stderr | grep '^RESULT')
  stop_pid "$node_pid"
  rows+="| $msgs pager MESSAGEs, table_cap = $cap | $(field rss0_kib "$pl") KiB | $(field rss1_kib "$pl") KiB | RSS under the cap: $(field answered "$pl") answered 2xx, $(field failed "$pl") answered with an error (the table full) | $(field entries1 "$pl") entries |"$'\n'
  echo "$rows"
  {
    header "Memory: RSS per chat session and per correlation entry" "$cmdline"
    echo "VmRSS of the node (\`/proc/<pid>/status\`) before and after; table entries from its \`/metrics\` (\`cpm_iwf_table_entries\`, all kinds). Sessions: \`cpm-iwf-load hold\` sets each up through the node (INVITE over UDP, then the two MSRP connections, spread over several 127.0.0.x addresses) and holds them; the second RSS is read $hold s after the last one is up (past the setup transactions' 32 s timers); \`ulimit -n\` $(ulimit -n). Pager rows: the generator's MESSAGEs at $rate/s, RSS read right after the last answer, so the growth counts everything a MESSAGE leaves behind for a while (its server and client transactions, kept for RFC 3261 Timers J and K, and its correlation entry), divided by the entries added."
    echo
    echo "| load | RSS before | RSS after | per unit | table |"
    echo "|---|---|---|---|---|"
    printf '%s' "$rows"
  } | append
}

run_scaling() {
  local calls=20000 rates="1000 2000 4000 6000 8000 10000 12000"
  [ "$SMOKE" = 1 ] && calls=1000 rates="1000"
  local rows="" w
  for w in 1 2; do
    local out="$tmpdir/scaling-$w.txt"
    # shellcheck disable=SC2086
    NO_BUILD=1 WORKERS=$w TARGET=node bash "$here/benches/load/pager.sh" "$calls" $rates >"$out" 2>&1
    grep -v '^STEP ' "$out"
    local r c a
    read -r r c a < <(best_step <"$out")
    if [ "$r" = 0 ]; then
      [ "$SMOKE" = 1 ] && fail "scaling: no rate passed with $w worker(s)"
      r="none passed" c=n/a a=0
    else
      num "scaling cpu" "$c"
    fi
    local rt="$r/s ($a/s achieved)"; [ "$a" = 0 ] && rt=$r
    rows+="| $w | $rt | $c µs | $(grep '^STEP ' "$out" | sed 's/.* rate=\([0-9]*\) result=\([A-Za-z]*\).*cpu_us=\([0-9.]*\).*/\1 (\2): \3;/' | tr '\n' ' ') |"$'\n'
  done
  printf '%s' "$rows"
  {
    header "Scaling: the node's pager run with 1 and 2 runtime threads" "$cmdline"
    echo "\`benches/load/pager.sh $calls $rates\` with \`WORKERS=1\` and \`WORKERS=2\` (\`cpm-iwf run --workers N\`), UDP. SIPp's two processes share the same 2 cores."
    echo
    echo "| workers | highest passing rate | node CPU per MESSAGE there | each step: rate (result): CPU µs per MESSAGE |"
    echo "|---|---|---|---|"
    printf '%s' "$rows"
  } | append
}

run_profile() {
  need perf linux-perf
  perf stat -e task-clock true >/dev/null 2>&1 || fail "perf does not run here"
  local rate=3000 calls=30000
  [ "$SMOKE" = 1 ] && rate=1000 calls=1000
  local uas; uas=$(free_port)
  start_node udp "$uas"
  perf record -g -F 999 -p "$node_pid" -o "$tmpdir/perf.data" >/dev/null 2>&1 &
  local perf_pid=$!
  SIPP_TIMEOUT=$((calls / rate + 30)) bash "$here/tests/sipp/run.sh" "$node_cpm" "127.0.0.1:$uas" pager-simple u1 \
    "$calls" "$rate" >"$tmpdir/profile-sipp.out" 2>&1 || { cat "$tmpdir/profile-sipp.out"; fail "pager load for the profile broke"; }
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null
  stop_pid "$node_pid"
  local top
  top=$(perf report -i "$tmpdir/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -25)
  [ -n "$top" ] || fail "perf recorded nothing"
  echo "$top"
  local bydso
  bydso=$(perf report -i "$tmpdir/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -6)
  {
    header "Profile of the node under pager load" "$cmdline"
    echo "\`perf record -g -F 999 -p <node>\` while SIPp sends $calls pager MESSAGEs at $rate/s over UDP through the node (strict UAS). Self time (\`perf report --no-children\`), by object and then the top symbols:"
    echo
    echo '```'
    echo "$bydso"
    echo
    echo "$top"
    echo '```'
  } | append
}

build || exit 1
case $what in
  pager) run_pager ;;
  chat) run_chat ;;
  latency) run_latency ;;
  memory) run_memory ;;
  scaling) run_scaling ;;
  profile) run_profile ;;
  all)
    t0=$(date +%s)
    run_pager
    run_chat; run_latency; run_memory; run_scaling; run_profile
    echo "harness: all comparisons in $(( $(date +%s) - t0 )) s"
    ;;
  *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
