#!/usr/bin/env bash
# Run one SIPp scenario pair: a UAS (SIMPLE side) and a UAC (CPM side), both bounded in time.
#
#   tests/sipp/run.sh UAC_TARGET UAS_LISTEN PAIR TRANSPORT CALLS RATE
#
#   UAC_TARGET  host:port the UAC sends to: the node's CPM-side SIP address, or UAS_LISTEN for
#               the SIPp-to-SIPp proof.
#   UAS_LISTEN  host:port the UAS listens on: the node's SIMPLE-side next hop.
#   PAIR        pager         pager_uac.xml -> pager_uas.xml (checks valid both ways)
#               pager-simple  pager_uac.xml -> pager_uas_simple.xml (strict: through the node only)
#               invite        invite_msrp_uac.xml -> invite_msrp_uas.xml (checks valid both ways)
#               invite-simple invite_msrp_uac.xml -> invite_msrp_uas_simple.xml (strict: node only)
#   TRANSPORT   u1 (UDP) or t1 (TCP, one connection).
#   CALLS RATE  number of calls (-m) and calls per second (-r).
#
# Environment (all optional):
#   SIPP             sipp binary (default: sipp on PATH).
#   SIPP_TIMEOUT     seconds each SIPp may run (default 60); both are killed after it + 10 s.
#   SIPP_LOG_DIR     where logs go (default: a new temporary directory, printed).
#   SIPP_BUFF_SIZE   socket send/receive buffer of each SIPp, bytes (default 4194304).
#   SIPP_UAC_IP      local address of the UAC (default 127.0.0.1).
#   SIPP_SERVICE     user part of the Request-URI and To (default +15551234567).
#   SIPP_PAUSE_MS    invite: session length between ACK and BYE (default 200).
#   UAC_MSRP         invite: MSRP host:port the UAC offers (default 127.0.0.1:7001).
#   UAS_MSRP         invite: MSRP host:port the UAS answers with (default 127.0.0.1:7002).
#   UAC_EXPECT_MSRP  invite: a=path authority the UAC requires in the 200 (default UAS_MSRP;
#                    through the node: the node's CPM-side MSRP address).
#   UAS_EXPECT_MSRP  invite: a=path authority the UAS requires in the INVITE (default UAC_MSRP;
#                    through the node: the node's SIMPLE-side MSRP address).
#
# The UAS runs with -m CALLS in the foreground of its own background job (not -bg): SIPp then
# exits non-zero when any call failed, including a failed <ereg check_it> (PEERS.md). Exit
# status: 0 when both SIPps exited 0, 1 when either failed or timed out, 2 on bad usage.
set -u

usage() { sed -n '2,32p' "$0" >&2; exit 2; }
[ $# -eq 6 ] || usage
uac_target=$1 uas_listen=$2 pair=$3 transport=$4 calls=$5 rate=$6
here=$(cd "$(dirname "$0")" && pwd)
sipp=${SIPP:-sipp}
limit=${SIPP_TIMEOUT:-60}
uac_ip=${SIPP_UAC_IP:-127.0.0.1}
service=${SIPP_SERVICE:-+15551234567}

case $transport in u1|t1) ;; *) echo "run.sh: transport must be u1 or t1" >&2; exit 2 ;; esac
case $calls$rate in *[!0-9]*) echo "run.sh: CALLS and RATE must be numbers" >&2; exit 2 ;; esac
uas_ip=${uas_listen%:*} uas_port=${uas_listen##*:}
[ -n "$uas_ip" ] && [ -n "$uas_port" ] && [ "$uas_ip" != "$uas_listen" ] || usage

uac_extra=() uas_extra=()
case $pair in
  pager) uac_sf=pager_uac.xml uas_sf=pager_uas.xml ;;
  pager-simple) uac_sf=pager_uac.xml uas_sf=pager_uas_simple.xml ;;
  invite|invite-simple)
    uac_sf=invite_msrp_uac.xml uas_sf=invite_msrp_uas.xml
    [ "$pair" = invite-simple ] && uas_sf=invite_msrp_uas_simple.xml
    uac_msrp=${UAC_MSRP:-127.0.0.1:7001} uas_msrp=${UAS_MSRP:-127.0.0.1:7002}
    uac_extra=(-key local_msrp "$uac_msrp" -set expect_msrp "${UAC_EXPECT_MSRP:-$uas_msrp}"
               -d "${SIPP_PAUSE_MS:-200}")
    uas_extra=(-key local_msrp "$uas_msrp" -set expect_msrp "${UAS_EXPECT_MSRP:-$uac_msrp}")
    ;;
  *) echo "run.sh: unknown pair $pair" >&2; exit 2 ;;
esac

command -v "$sipp" >/dev/null 2>&1 || { echo "run.sh: $sipp not found (apt-get install sip-tester)" >&2; exit 1; }
logs=${SIPP_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sipp-run.XXXXXX")}
mkdir -p "$logs"
echo "run.sh: $pair over $transport, $calls calls at $rate/s, $uac_target -> $uas_listen, logs in $logs"

# Each SIPp: -nostdin (no terminal), -timeout + -timeout_error (a stuck run fails, never hangs),
# -trace_err (unexpected messages) and -trace_stat/-trace_screen for the post-mortem.
# -buff_size: the kernel's default 208 KiB receive buffer holds ~150 MESSAGEs; a SIPp that is
# descheduled for a moment on a busy 2-core machine loses the rest of a burst there, and the
# retransmissions then count against the node (SIPP_BUFF_SIZE, bytes; net.core.rmem_max caps it).
common=(-nostdin -t "$transport" -timeout "${limit}s" -timeout_error -max_recv_loops 5000
        -buff_size "${SIPP_BUFF_SIZE:-4194304}" -trace_err -trace_screen -trace_stat -fd 1)
(cd "$logs" && exec timeout -k 5 $((limit + 10)) "$sipp" -sf "$here/$uas_sf" -i "$uas_ip" -p "$uas_port" \
    -m "$calls" "${common[@]}" "${uas_extra[@]}" >uas.out 2>&1) &
uas_pid=$!

# Wait (bounded) until the UAS is bound, so the first request is not lost.
proto=u; [ "$transport" = t1 ] && proto=t
for _ in $(seq 1 100); do
  if command -v ss >/dev/null 2>&1; then
    ss -Hln"$proto" "sport = :$uas_port" 2>/dev/null | grep -q . && break
  else
    sleep 0.5; break
  fi
  kill -0 "$uas_pid" 2>/dev/null || break
  sleep 0.05
done

(cd "$logs" && exec timeout -k 5 $((limit + 10)) "$sipp" -sf "$here/$uac_sf" -i "$uac_ip" -s "$service" \
    -m "$calls" -r "$rate" "${common[@]}" "${uac_extra[@]}" "$uac_target" >uac.out 2>&1) &
uac_pid=$!

# Both are bounded by -timeout and by timeout(1). A UAS that failed (bad scenario, a check
# that failed on a call) ends the run at once instead of leaving the UAC to time out.
uac_rc= uas_rc=
while [ -z "$uac_rc" ] || [ -z "$uas_rc" ]; do
  if [ -z "$uas_rc" ] && ! kill -0 "$uas_pid" 2>/dev/null; then
    wait "$uas_pid"; uas_rc=$?
    if [ "$uas_rc" -ne 0 ] && [ -z "$uac_rc" ]; then
      kill "$uac_pid" 2>/dev/null  # timeout(1) passes TERM on to its SIPp
    fi
  fi
  if [ -z "$uac_rc" ] && ! kill -0 "$uac_pid" 2>/dev/null; then
    wait "$uac_pid"; uac_rc=$?
  fi
  sleep 0.1
done
echo "run.sh: uac exit $uac_rc, uas exit $uas_rc"
if [ "$uac_rc" -ne 0 ] || [ "$uas_rc" -ne 0 ]; then
  for f in "$logs"/uac.out "$logs"/uas.out "$logs"/*_errors.log; do
    [ -f "$f" ] && { echo "--- $f (last 3000 bytes)"; tail -c 3000 "$f"; echo; }
  done
  exit 1
fi
exit 0
