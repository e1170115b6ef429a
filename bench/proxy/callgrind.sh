#!/usr/bin/env bash
# Instructions the proxy executes per call, counted by callgrind (noise-free, unlike CPU time on
# a shared machine): the proxy runs under valgrind twice, for SMALL and LARGE calls from h2load
# (1 connection, 64 in flight) to three local Greeter backends; the difference divided by
# LARGE - SMALL leaves out startup and shutdown.
#
#   bench/proxy/callgrind.sh [SLUICE_BIN] [SMALL] [LARGE]    (defaults: build/bin/sluice 2000 12000)
#
# Needs valgrind and h2load (nghttp2-client); prints "instructions/call: N".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/build/bin/sluice}"
SMALL="${2:-2000}"
LARGE="${3:-12000}"
GREETER="$ROOT/build/bin/greeter_server"
for tool in valgrind callgrind_annotate h2load; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool not found" >&2; exit 1; }
done
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

TARGETS=()
for i in 1 2 3; do
  port="$(free_port)"
  "$GREETER" --ip "127.0.0.1$i" --port "$port" --quiet >/dev/null 2>&1 &
  PIDS+=($!)
  TARGETS+=("127.0.0.1$i:$port")
done
sleep 0.5
printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$WORK/body.bin"

measure() { # CALLS -> total instructions of one proxy run
  local calls="$1" port out="$WORK/callgrind.$1"
  port="$(free_port)"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" proxy --listen "127.0.0.1:$port" \
    --target "static://$(IFS=,; echo "${TARGETS[*]}")" --policy round_robin --workers 1 \
    >"$WORK/proxy.$calls.log" 2>&1 &
  local proxy=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  h2load -n "$calls" -c 1 -t 1 -m 64 -d "$WORK/body.bin" -H "content-type: application/grpc" \
    -H "te: trailers" "http://127.0.0.1:$port/Greeter/SayHello" >"$WORK/h2load.$calls.txt" 2>&1
  grep -q "$calls succeeded" "$WORK/h2load.$calls.txt" ||
    { echo "callgrind.sh: h2load did not complete $calls calls" >&2; cat "$WORK/h2load.$calls.txt" >&2; exit 1; }
  kill -TERM "$proxy"
  wait "$proxy" || true
  # awk reads everything: stopping early would kill callgrind_annotate with SIGPIPE
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}
small="$(measure "$SMALL")"
large="$(measure "$LARGE")"
echo "instructions/call: $(( (large - small) / (LARGE - SMALL) ))  ($SMALL calls: $small, $LARGE calls: $large)"
