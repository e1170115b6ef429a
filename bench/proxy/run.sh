#!/usr/bin/env bash
# Side-by-side gRPC proxy benchmark: Greeter SayHello through HAProxy 2.6 (h2 both sides),
# nginx 1.22 (grpc_pass), `sluice proxy` (when built) and a direct no-proxy baseline, with
# h2load (C connections, N calls in flight on each) in interleaved rounds. See
# bench/proxy/README.md.
#
#   bench/proxy/run.sh [--duration S] [--inflight N] [--connections C] [--rounds R] [--out FILE]
#
# Environment: SKIP_BUILD=1 (use build/bin as it is), SKIP_INSTALL=1 (do not apt-get),
# KEEP_WORK=1 (keep the temporary directory with every raw output), BUILD_DIR (build),
# SLUICE_BIN (the sluice binary to measure; default BUILD_DIR/bin/sluice).
set -euo pipefail

DURATION=10
INFLIGHT=64
ROUNDS=3
CONNECTIONS=1
WARMUP=2
CHECK_CALLS=30
OUT=""
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --inflight) INFLIGHT="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in DURATION INFLIGHT ROUNDS CONNECTIONS; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
    echo "run.sh: --${v,,} must be a positive integer" >&2; exit 2
  fi
done
if [ "$DURATION" -gt 120 ] || [ "$ROUNDS" -gt 10 ] || [ "$INFLIGHT" -gt 1000 ] ||
   [ "$CONNECTIONS" -gt 64 ]; then
  echo "run.sh: refusing a long run (duration <= 120 s, rounds <= 10, inflight <= 1000," \
       "connections <= 64)" >&2
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-bench/results/proxy_compare.md}"
BUILD_DIR="${BUILD_DIR:-build}"
COMMAND="bench/proxy/run.sh --duration $DURATION --inflight $INFLIGHT --connections $CONNECTIONS --rounds $ROUNDS"
PY=/usr/bin/python3 # Debian's python: python3-grpcio is installed there
HELPER="$HERE/helper.py"
log() { echo "[proxy-bench $(date +%H:%M:%S)] $*" >&2; }

# ---- dependencies and build -------------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash "$HERE/install-peers.sh"
fi
for tool in haproxy nginx h2load ss "$PY"; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  [ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
  log "building greeter_server and sluice"
  cmake --build "$BUILD_DIR" -j 2 --target greeter_server >&2
  # A sluice that does not build yet must not stop the peers' measurement.
  cmake --build "$BUILD_DIR" -j 2 --target sluice >&2 || log "warning: sluice did not build"
fi
GREETER="$BUILD_DIR/bin/greeter_server"
SLUICE="${SLUICE_BIN:-$BUILD_DIR/bin/sluice}"
[ -x "$GREETER" ] || { echo "run.sh: $GREETER missing (make build)" >&2; exit 1; }

# ---- processes and cleanup --------------------------------------------------------------------
WORK="$(mktemp -d /tmp/sluice-proxy-bench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "raw outputs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port IP PORT PID: until IP:PORT accepts a connection (at most 10 s) or PID dies.
wait_port() {
  local i
  for i in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

mkdir -p "$WORK/meta" "$WORK/t" "$WORK/raw"
: >"$WORK/records.jsonl"
: >"$WORK/targets.list"

# ---- backends ---------------------------------------------------------------------------------
BACKEND_IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
BACKEND_PORTS=()
BACKEND_PIDS=()
for ip in "${BACKEND_IPS[@]}"; do
  port="$("$PY" "$HELPER" freeport "$ip")"
  "$GREETER" --ip "$ip" --port "$port" --quiet >"$WORK/raw/greeter-$ip.log" 2>&1 &
  PIDS+=($!)
  BACKEND_PIDS+=($!)
  BACKEND_PORTS+=("$port")
  wait_port "$ip" "$port" $! || { echo "run.sh: greeter_server on $ip:$port did not start" >&2; cat "$WORK/raw/greeter-$ip.log" >&2; exit 1; }
done
B1="${BACKEND_IPS[0]}:${BACKEND_PORTS[0]}"
B2="${BACKEND_IPS[1]}:${BACKEND_PORTS[1]}"
B3="${BACKEND_IPS[2]}:${BACKEND_PORTS[2]}"
SS_FILTER="( dst $B1 or dst $B2 or dst $B3 )"
log "backends: $B1 $B2 $B3"

BODY="$WORK/body.bin"
"$PY" "$HELPER" body "$BODY" world

# Target registry: name -> listen address and root PID ("" for direct).
declare -A ADDR ROOTPID
add_target() { # name label
  echo "$1" >>"$WORK/targets.list"
  mkdir -p "$WORK/t/$1"
  echo "$2" >"$WORK/t/$1/label"
}
set_status() { echo "$2" >"$WORK/t/$1/status"; }

# start_proxy NAME IP PORT PID: wait for the port, then check real gRPC calls through it.
ready_and_check() {
  local name="$1" ip="$2" port="$3" pid="$4"
  if ! wait_port "$ip" "$port" "$pid"; then
    set_status "$name" "FAILED: did not listen on $ip:$port (see log)"
    log "$name did not start:"; tail -5 "$WORK/raw/$name.log" >&2 || true
    return 1
  fi
  if "$PY" "$HELPER" check "$ip:$port" "$CHECK_CALLS" >"$WORK/t/$name/check.json" 2>"$WORK/raw/$name-check.err"; then
    set_status "$name" ok
    log "$name ready on $ip:$port: $(cat "$WORK/t/$name/check.json")"
    ADDR[$name]="$ip:$port"
    ROOTPID[$name]="$pid"
    return 0
  fi
  set_status "$name" "FAILED: gRPC check: $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("first_error"))' "$WORK/t/$name/check.json" 2>/dev/null || tail -1 "$WORK/raw/$name-check.err")"
  log "$name failed its gRPC check: $(cat "$WORK/t/$name/check.json" "$WORK/raw/$name-check.err")"
  return 1
}

# ---- direct baseline --------------------------------------------------------------------------
add_target direct "direct (no proxy, client → $B1)"
if "$PY" "$HELPER" check "$B1" "$CHECK_CALLS" >"$WORK/t/direct/check.json"; then
  set_status direct ok
  ADDR[direct]="$B1"
  ROOTPID[direct]=""
else
  set_status direct "FAILED: gRPC check against the backend"
fi

# ---- HAProxy ----------------------------------------------------------------------------------
add_target haproxy "HAProxy $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}') (h2 both sides, 1 thread)"
HA_PORT="$("$PY" "$HELPER" freeport 127.0.0.1)"
cat >"$WORK/t/haproxy/config" <<EOF
global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend grpc_in
    bind 127.0.0.1:$HA_PORT proto h2
    default_backend greeters

backend greeters
    balance roundrobin
    server g1 $B1 proto h2
    server g2 $B2 proto h2
    server g3 $B3 proto h2
EOF
if haproxy -c -q -f "$WORK/t/haproxy/config" >"$WORK/raw/haproxy.log" 2>&1; then
  haproxy -db -f "$WORK/t/haproxy/config" >>"$WORK/raw/haproxy.log" 2>&1 &
  PIDS+=($!)
  ready_and_check haproxy 127.0.0.1 "$HA_PORT" $! || true
else
  set_status haproxy "FAILED: config rejected: $(tail -1 "$WORK/raw/haproxy.log")"
fi

# ---- nginx ------------------------------------------------------------------------------------
add_target nginx "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (grpc_pass, 1 worker)"
NG_PORT="$("$PY" "$HELPER" freeport 127.0.0.1)"
NG_DIR="$WORK/nginx"
mkdir -p "$NG_DIR/tmp"
cat >"$WORK/t/nginx/config" <<EOF
worker_processes 1;
daemon off;
pid $NG_DIR/nginx.pid;
error_log $NG_DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NG_DIR/tmp/body;
    proxy_temp_path $NG_DIR/tmp/proxy;
    fastcgi_temp_path $NG_DIR/tmp/fastcgi;
    uwsgi_temp_path $NG_DIR/tmp/uwsgi;
    scgi_temp_path $NG_DIR/tmp/scgi;
    keepalive_requests 10000000;   # client side: no GOAWAY after 1000 calls
    keepalive_timeout 300s;
    upstream greeters {
        server $B1;
        server $B2;
        server $B3;
        keepalive 256;             # nginx carries one call per upstream connection at a time
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NG_PORT http2;
        location / {
            grpc_pass grpc://greeters;
        }
    }
}
EOF
if nginx -t -q -p "$NG_DIR" -e "$NG_DIR/error.log" -c "$WORK/t/nginx/config" >"$WORK/raw/nginx.log" 2>&1; then
  nginx -p "$NG_DIR" -e "$NG_DIR/error.log" -c "$WORK/t/nginx/config" >>"$WORK/raw/nginx.log" 2>&1 &
  PIDS+=($!)
  ready_and_check nginx 127.0.0.1 "$NG_PORT" $! || true
else
  set_status nginx "FAILED: config rejected: $(tail -1 "$WORK/raw/nginx.log")"
fi

# ---- sluice proxy -----------------------------------------------------------------------------
add_target sluice "sluice proxy (round_robin, 1 worker)"
# CLI11 prints the top-level help and exits 0 for `sluice proxy --help` when `proxy` is not a
# subcommand, so the help must also be the proxy's own (it names --listen).
if [ -x "$SLUICE" ] && help="$(timeout 10 "$SLUICE" proxy --help 2>&1)" && grep -q -- "--listen" <<<"$help"; then
  SL_PORT="$("$PY" "$HELPER" freeport 127.0.0.1)"
  SL_CMD=("$SLUICE" proxy --listen "127.0.0.1:$SL_PORT" --target "static://$B1,$B2,$B3" --policy round_robin --workers 1)
  echo "${SL_CMD[*]}" >"$WORK/t/sluice/config"
  "${SL_CMD[@]}" >"$WORK/raw/sluice.log" 2>&1 &
  PIDS+=($!)
  ready_and_check sluice 127.0.0.1 "$SL_PORT" $! || true
else
  set_status sluice "not built (\`sluice proxy --help\` is not the proxy's help)"
  log "sluice proxy not built: skipped"
fi

# ---- measurement ------------------------------------------------------------------------------
ticks() { [ $# -eq 0 ] && { echo 0; return; }; "$PY" "$HELPER" ticks "$@"; }

# sample_upstream PIDS OUTFILE STOPFILE: once a second, the number of ESTABLISHED connections
# that the PIDS own towards the backends; bounded by the run's length.
sample_upstream() {
  local pids="$1" out="$2" stop="$3" re i
  re="pid=($(tr ' ' '|' <<<"$pids")),"
  for i in $(seq 1 $((DURATION + 30))); do
    [ -e "$stop" ] && break
    ss -tnpH state established "$SS_FILTER" 2>/dev/null | grep -cE "$re" >>"$out" || true
    sleep 1
  done
}

measure() { # NAME ROUND
  local name="$1" round="$2" addr="${ADDR[$1]}" root="${ROOTPID[$1]}" tag="$1-r$2"
  local pids="" p0=0 p1=0 b0 b1 sampler=""
  local url="http://$addr/Greeter/SayHello"
  local h2=(h2load -c "$CONNECTIONS" -t 1 -m "$INFLIGHT" -d "$BODY" -H "content-type: application/grpc" -H "te: trailers")
  # Warm-up (not measured): connections, caches, the proxy's upstream pools.
  timeout $((WARMUP + 30)) "${h2[@]}" -D "$WARMUP" "$url" >"$WORK/raw/$tag-warmup.txt" 2>&1 || true
  [ -n "$root" ] && pids="$("$PY" "$HELPER" tree "$root")"
  : >"$WORK/raw/$tag-upstream.txt"
  rm -f "$WORK/raw/$tag-stop"
  if [ -n "$pids" ]; then
    sample_upstream "$pids" "$WORK/raw/$tag-upstream.txt" "$WORK/raw/$tag-stop" &
    sampler=$!
  fi
  b0="$(ticks "${BACKEND_PIDS[@]}")"
  [ -n "$root" ] && p0="$(ticks "$root")"
  timeout $((DURATION + 30)) "${h2[@]}" -D "$DURATION" --log-file "$WORK/raw/$tag.log" "$url" \
    >"$WORK/raw/$tag.txt" 2>&1 || log "h2load exited non-zero for $tag"
  [ -n "$root" ] && p1="$(ticks "$root")"
  b1="$(ticks "${BACKEND_PIDS[@]}")"
  touch "$WORK/raw/$tag-stop"
  [ -n "$sampler" ] && wait "$sampler" 2>/dev/null || true
  local upstream=null
  if [ -s "$WORK/raw/$tag-upstream.txt" ]; then upstream="$(sort -n "$WORK/raw/$tag-upstream.txt" | tail -1)"; fi
  local proxy_ticks=null
  [ -n "$root" ] && proxy_ticks=$((p1 - p0))
  local parsed
  parsed="$("$PY" "$HELPER" h2load "$WORK/raw/$tag.txt" "$WORK/raw/$tag.log")"
  printf '{"target":"%s","round":%d,"proxy_ticks":%s,"backend_ticks":%d,"upstream_conns":%s,"h2load":%s}\n' \
    "$name" "$round" "$proxy_ticks" $((b1 - b0)) "$upstream" "$parsed" >>"$WORK/records.jsonl"
  rm -f "$WORK/raw/$tag.log" # per-call log: large, already summarised
  log "$tag: $(grep -E '^finished in' "$WORK/raw/$tag.txt" || echo 'no result') proxy_ticks=$proxy_ticks upstream=$upstream"
}

ACTIVE=()
for name in direct haproxy nginx sluice; do
  [ -n "${ADDR[$name]:-}" ] && ACTIVE+=("$name")
done
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "measuring ${ACTIVE[*]}: $ROUNDS rounds x ${DURATION}s, $INFLIGHT in flight"
for round in $(seq 1 "$ROUNDS"); do
  n=${#ACTIVE[@]}
  for i in $(seq 0 $((n - 1))); do
    measure "${ACTIVE[$(((i + round - 1) % n))]}" "$round"
  done
done

# The proxies must still answer real gRPC calls after the load.
for name in "${ACTIVE[@]}"; do
  "$PY" "$HELPER" check "${ADDR[$name]}" "$CHECK_CALLS" >"$WORK/t/$name/post_check.json" ||
    log "$name failed its gRPC check after the rounds: $(cat "$WORK/t/$name/post_check.json")"
done

# ---- report -----------------------------------------------------------------------------------
m() { printf '%s\n' "$2" >"$WORK/meta/$1"; }
m date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
m command "$COMMAND"
m git "$(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
m machine "load average before the rounds: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -sr), loopback only; h2load, the proxy and the 3 backends share the cores"
m versions "$(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy", $3}'), $(nginx -v 2>&1 | sed 's/.*: //'), $(h2load --version | head -1), python3-grpcio $("$PY" -c 'import grpc; print(grpc.__version__)')"
m backends "$B1, $B2, $B3"
m body_hex "$(od -An -tx1 "$BODY" | tr -s ' \n' ' ' | sed 's/^ //;s/ $//')"
m duration "$DURATION"
m inflight "$INFLIGHT"
m connections "$CONNECTIONS"
m rounds "$ROUNDS"
m warmup "$WARMUP"
m clk_tck "$(getconf CLK_TCK)"
mkdir -p "$(dirname "$OUT")"
"$PY" "$HELPER" report "$WORK" "$OUT"
log "wrote $OUT"
cat "$OUT"
