#!/usr/bin/env bash
# Client instructions per call under callgrind: Sluice's UnaryCallAsync (Balancer, round_robin)
# against plain gRPC's callback API (a channel with the round_robin service config) over the
# same three greeter_server backends, at 1 and 8 connections per backend. Instruction counts do
# not move with other work on the machine, unlike calls/s or CPU seconds.
#
#   bench/client_callgrind.sh [--small N] [--large N] [--inflight N] [--rounds R] [--out FILE]
#                             [--quick]
#
# Each cell runs `client_e2e_bench --only SIDE --only-connections C --calls N` under valgrind
# twice, with SMALL and LARGE calls; (instructions(LARGE) - instructions(SMALL)) / (LARGE -
# SMALL) leaves out start-up and shutdown. The backends run outside valgrind. With --rounds R
# the whole set runs R times, sides interleaved, and the table gives each round and the median
# ratio (start-up varies by a few million instructions, ~1% at the default sizes). Writes
# bench/results/client_callgrind.md (default) and prints its path.
# Environment: SKIP_BUILD=1 (use build/ as it is), BUILD_DIR (build), KEEP_WORK=1.
set -euo pipefail

SMALL=2000
LARGE=10000
INFLIGHT=64
ROUNDS=1
OUT=""
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL="$2"; shift 2 ;;
    --large) LARGE="$2"; shift 2 ;;
    --inflight) INFLIGHT="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) SMALL=500; LARGE=2500; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "client_callgrind.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in SMALL LARGE INFLIGHT ROUNDS; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
    echo "client_callgrind.sh: --${v,,} must be a positive integer" >&2; exit 2
  fi
done
if [ "$LARGE" -le "$SMALL" ] || [ "$LARGE" -gt 100000 ]; then
  echo "client_callgrind.sh: need --small < --large <= 100000" >&2; exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-bench/results/client_callgrind.md}"
BENCH="$BUILD_DIR/bench/client_e2e_bench"
log() { echo "[client-callgrind $(date +%H:%M:%S)] $*" >&2; }
for tool in valgrind callgrind_annotate; do
  command -v "$tool" >/dev/null || {
    echo "client_callgrind.sh: $tool not found (bench/proxy/install-peers.sh installs valgrind)" >&2
    exit 1
  }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building client_e2e_bench and greeter_server"
  cmake --build "$BUILD_DIR" -j 2 --target client_e2e_bench greeter_server >&2
fi
[ -x "$BENCH" ] || { echo "client_callgrind.sh: $BENCH missing (make build)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/sluice-client-callgrind.XXXXXX)"
cleanup() {
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "raw outputs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# run SIDE CONNECTIONS CALLS: total instructions of one client run (all its threads). The
# callgrind output of the last round stays as callgrind.SIDE-CONNECTIONS-CALLS for the profile.
run() {
  local side="$1" conns="$2" calls="$3" tag="$1-$2-$3"
  # client_e2e_bench starts the greeter_server children itself; valgrind does not follow them.
  if ! valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.$tag" \
      "$BENCH" --only "$side" --only-connections "$conns" --calls "$calls" --rounds 1 \
      --inflight "$INFLIGHT" >"$WORK/$tag.txt" 2>"$WORK/$tag.err"; then
    echo "client_callgrind.sh: $side, $conns connections, $calls calls failed:" >&2
    tail -5 "$WORK/$tag.err" "$WORK/$tag.txt" >&2
    exit 1
  fi
  awk '/^totals:/ {print $2; found = 1} END {if (!found) exit 1}' "$WORK/callgrind.$tag"
}

declare -A TOTAL
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
# Interleaved: the two sides alternate within each connection count, in every round.
for round in $(seq 1 "$ROUNDS"); do
  for conns in 1 8; do
    for calls in "$SMALL" "$LARGE"; do
      for side in grpc sluice; do
        TOTAL[$round-$side-$conns-$calls]="$(run "$side" "$conns" "$calls")"
        log "round $round: $side, $conns connections, $calls calls:" \
          "${TOTAL[$round-$side-$conns-$calls]} instructions"
      done
    done
  done
done

# per_call ROUND SIDE CONNECTIONS
per_call() { echo $(( (TOTAL[$1-$2-$3-$LARGE] - TOTAL[$1-$2-$3-$SMALL]) / (LARGE - SMALL) )); }
# The median of the arguments (the lower middle one for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# Per function, where Sluice's instructions per call differ from gRPC's (the profile of a gap).
diff_profile() { # CONNECTIONS
  local f="$WORK/callgrind"
  /usr/bin/python3 "$ROOT/bench/callgrind_diff.py" "$SMALL" "$LARGE" \
    "$f.grpc-$1-$SMALL" "$f.grpc-$1-$LARGE" "$f.sluice-$1-$SMALL" "$f.sluice-$1-$LARGE" 12
}

mkdir -p "$(dirname "$OUT")"
{
  echo "# Client instructions per call: Sluice UnaryCallAsync vs gRPC's round_robin (callgrind)"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Command: \`bench/client_callgrind.sh --small $SMALL --large $LARGE --inflight $INFLIGHT --rounds $ROUNDS\`"
  echo "- Git: \`$(git rev-parse --short HEAD) on $(git rev-parse --abbrev-ref HEAD)$(git diff --quiet HEAD -- src bench || echo ' (uncommitted changes)')\`"
  echo "- Machine: $(nproc) cores, shared with other builds (load average $LOAD_BEFORE before," \
    "$(cut -d' ' -f1-3 /proc/loadavg) after). Instruction counts do not depend on that load;" \
    "only background work that runs by time (timers, pollers) can add a little, as runs under" \
    "valgrind are ~50x slower."
  echo "- $(valgrind --version), $(dpkg-query -W -f='libgrpc++ ${Version}' libgrpc++1.51 2>/dev/null || echo 'libgrpc++')"
  echo "- Each side: \`$BENCH --only SIDE --only-connections C --calls N --inflight $INFLIGHT\`" \
    "under \`valgrind --tool=callgrind\` (all client threads counted, the three greeter_server" \
    "backends not), for N = $SMALL and N = $LARGE; instructions/call = difference / $((LARGE - SMALL))." \
    "gRPC: a channel \`ipv4:a,b,c\` with the round_robin service config per connection; Sluice:" \
    "a Balancer(static://a,b,c, round_robin) per connection and UnaryCallAsync. Both: callback API," \
    "10 s deadline per call, $INFLIGHT calls in flight."
  echo
  echo "| connections per backend | round | gRPC instructions/call | Sluice instructions/call | Sluice / gRPC |"
  echo "|---:|---|---:|---:|---:|"
  declare -A MEDIAN
  for conns in 1 8; do
    ratios=()
    for round in $(seq 1 "$ROUNDS"); do
      g="$(per_call "$round" grpc "$conns")"
      s="$(per_call "$round" sluice "$conns")"
      ratio="$(awk -v s="$s" -v g="$g" 'BEGIN {printf "%.3f", s / g}')"
      ratios+=("$ratio")
      printf '| %d | %d | %s | %s | %s |\n' "$conns" "$round" "$g" "$s" "$ratio"
    done
    MEDIAN[$conns]="$(median "${ratios[@]}")"
  done
  echo
  echo "| connections per backend | median Sluice / gRPC over $ROUNDS round(s) | goal ≤ 1.05 |"
  echo "|---:|---:|---|"
  for conns in 1 8; do
    met="$(awk -v r="${MEDIAN[$conns]}" 'BEGIN {print (r <= 1.05) ? "met" : "missed"}')"
    printf '| %d | %s | %s |\n' "$conns" "${MEDIAN[$conns]}" "$met"
  done
  echo
  echo "Raw totals (instructions of the whole client run):"
  echo
  echo "| round | side | connections | $SMALL calls | $LARGE calls |"
  echo "|---|---|---:|---:|---:|"
  for round in $(seq 1 "$ROUNDS"); do
    for conns in 1 8; do
      for side in grpc sluice; do
        echo "| $round | $side | $conns | ${TOTAL[$round-$side-$conns-$SMALL]} | ${TOTAL[$round-$side-$conns-$LARGE]} |"
      done
    done
  done
  echo
  for conns in 1 8; do
    echo "## Where the instructions differ, $conns connection(s) per backend, last round (first side: gRPC, second: Sluice)"
    echo
    diff_profile "$conns"
    echo
  done
} >"$OUT"
cat "$OUT"
log "results written to $ROOT/$OUT"
