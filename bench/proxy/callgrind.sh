#!/usr/bin/env bash
# Instructions the proxy executes per call, counted by callgrind (noise-free, unlike CPU time on
# a shared machine): the proxy runs under valgrind twice, for SMALL and LARGE calls from h2load
# (1 connection, 64 in flight) to three local Greeter backends; the difference divided by
# LARGE - SMALL leaves out startup and shutdown.
#
#   bench/proxy/callgrind.sh [SLUICE_BIN] [SMALL] [LARGE]    (defaults: build/bin/sluice 2000 12000)
#
# Needs valgrind and h2load (nghttp2-client); prints "instructions/call: N".
#
# PROXY_ARGS (environment) adds proxy flags, @WORK@ standing for the run's scratch directory:
#   PROXY_ARGS='--access-log @WORK@/access.log' bench/proxy/callgrind.sh
#
# Large messages (environment): REQUEST_BYTES=N and/or REPLY_BYTES=N make every request message
# N bytes and/or ask the backends for N-byte replies; the backends are then build/bench/
# bench_greeter (it answers with the asked size) and h2load runs 8 in flight, as in run.sh's
# resp1m/req1m workloads. PROFILE=N also prints the N functions with the most instructions
# (self cost) in the larger run, e.g.
#   REPLY_BYTES=1048576 PROFILE=15 bench/proxy/callgrind.sh build/bin/sluice 100 400
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/build/bin/sluice}"
SMALL="${2:-2000}"
LARGE="${3:-12000}"
GREETER="$ROOT/build/bin/greeter_server"
REQUEST_BYTES="${REQUEST_BYTES:-0}"
REPLY_BYTES="${REPLY_BYTES:-0}"
PROXY_ARGS="${PROXY_ARGS:-}"
INFLIGHT=64
LARGE_MESSAGES=0
if [ "$REQUEST_BYTES" -gt 0 ] || [ "$REPLY_BYTES" -gt 0 ]; then
  GREETER="$ROOT/build/bench/bench_greeter"
  INFLIGHT=8
  LARGE_MESSAGES=1
fi
for tool in valgrind callgrind_annotate h2load; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool not found" >&2; exit 1; }
done
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
[ -n "${KEEP_OUT:-}" ] && cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; cp "$WORK"/callgrind.* "$KEEP_OUT"/ 2>/dev/null; rm -rf "$WORK"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

TARGETS=()
for i in 1 2 3; do
  port="$(free_port)"
  if [ "$LARGE_MESSAGES" = 1 ]; then
    "$GREETER" --ip "127.0.0.1$i" --port "$port" >/dev/null 2>&1 &
  else
    "$GREETER" --ip "127.0.0.1$i" --port "$port" --quiet >/dev/null 2>&1 &
  fi
  PIDS+=($!)
  TARGETS+=("127.0.0.1$i:$port")
done
sleep 0.5
if [ "$LARGE_MESSAGES" = 1 ]; then
  /usr/bin/python3 "$ROOT/bench/proxy/helper.py" body "$WORK/body.bin" world "$REQUEST_BYTES"
else
  printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$WORK/body.bin"
fi
EXTRA_HEADERS=()
[ "$REPLY_BYTES" -gt 0 ] && EXTRA_HEADERS=(-H "bench-reply-bytes: $REPLY_BYTES")

measure() { # CALLS -> total instructions of one proxy run
  local calls="$1" port out="$WORK/callgrind.$1"
  port="$(free_port)"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" proxy --listen "127.0.0.1:$port" \
    --target "static://$(IFS=,; echo "${TARGETS[*]}")" --policy round_robin --workers 1 \
    ${PROXY_ARGS//@WORK@/$WORK} >"$WORK/proxy.$calls.log" 2>&1 &
  local proxy=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  h2load -n "$calls" -c 1 -t 1 -m "$INFLIGHT" -d "$WORK/body.bin" -H "content-type: application/grpc" \
    -H "te: trailers" "${EXTRA_HEADERS[@]}" "http://127.0.0.1:$port/Greeter/SayHello" \
    >"$WORK/h2load.$calls.txt" 2>&1
  grep -q "$calls succeeded" "$WORK/h2load.$calls.txt" ||
    { echo "callgrind.sh: h2load did not complete $calls calls" >&2; cat "$WORK/h2load.$calls.txt" "$WORK/proxy.$calls.log" >&2; exit 1; }
  kill -TERM "$proxy"
  wait "$proxy" || true
  # awk reads everything: stopping early would kill callgrind_annotate with SIGPIPE
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}
small="$(measure "$SMALL")"
large="$(measure "$LARGE")"
echo "instructions/call: $(( (large - small) / (LARGE - SMALL) ))  ($SMALL calls: $small, $LARGE calls: $large)"
if [ "$LARGE_MESSAGES" = 1 ]; then
  mib=$(( (REQUEST_BYTES > REPLY_BYTES ? REQUEST_BYTES : REPLY_BYTES) ))
  echo "instructions/MiB: $(( (large - small) / (LARGE - SMALL) * 1048576 / mib ))  (request $REQUEST_BYTES B, reply $REPLY_BYTES B, $INFLIGHT in flight)"
fi
if [ "${PROFILE:-0}" -gt 0 ]; then
  echo "top ${PROFILE} functions, self cost, $LARGE-call run:"
  callgrind_annotate --threshold=99 "$WORK/callgrind.$LARGE" 2>/dev/null |
    awk -v n="$PROFILE" '/^-+$/ {dash++; next} dash >= 6 && NF >= 2 && shown < n {print "  " $0; shown++}'
  # Who copies: the callers of memcpy (the large-message cost is mostly copies).
  echo "callers of memcpy, $LARGE-call run:"
  callgrind_annotate --auto=no --tree=caller --threshold=99 "$WORK/callgrind.$LARGE" 2>/dev/null |
    awk '/^ *[0-9,]+ .*< / {buf[++k] = $0; next}
         /\* .*memcpy/ {for (i = 1; i <= k && i <= 8; i++) print "  " buf[i]; done = 1}
         {k = 0} done {exit}' || true
fi
