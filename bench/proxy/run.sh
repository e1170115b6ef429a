#!/usr/bin/env bash
# Side-by-side gRPC proxy benchmark: Greeter SayHello through HAProxy 2.6, nginx 1.22
# (grpc_pass), nghttpx 1.52, Caddy 2.6, `sluice proxy` (when built) and a direct no-proxy
# baseline, over several workloads (small calls, 1 MiB responses, 1 MiB requests, one call in
# flight), measured with h2load in interleaved rounds. See bench/proxy/README.md.
#
#   bench/proxy/run.sh [--quick] [--rounds R] [--duration S] [--workloads LIST] [--peers LIST]
#                      [--inflight N] [--connections C] [--out FILE]
#
#   --quick       1 round x 3 s (a check that everything runs; results to /tmp unless --out)
#   --workloads   comma list of: small small4 resp1m req1m latency (default: all of them)
#   --peers       comma list of: haproxy nginx nghttpx caddy (default: all of them)
#   --inflight, --connections   the `small` workload's h2load -m and -c (default 64 and 1)
#
# Environment: SKIP_BUILD=1 (use BUILD_DIR as it is), SKIP_INSTALL=1 (do not apt-get),
# KEEP_WORK=1 (keep the temporary directory with every raw output), BUILD_DIR (build),
# SLUICE_ACCESS_LOG=1 (also measure a sluice proxy writing --access-log to a file),
# SLUICE_BIN (the sluice binary to measure; default BUILD_DIR/bin/sluice).
set -euo pipefail

DURATION=10
ROUNDS=3
WARMUP=2
INFLIGHT=64
CONNECTIONS=1
WORKLOADS="small,small4,resp1m,req1m,latency"
PEERS="haproxy,nginx,nghttpx,caddy"
QUICK=0
CHECK_CALLS=20
OUT=""
DURATION_SET=0
ROUNDS_SET=0
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; DURATION_SET=1; shift 2 ;;
    --rounds) ROUNDS="$2"; ROUNDS_SET=1; shift 2 ;;
    --inflight) INFLIGHT="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --peers) PEERS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  [ "$DURATION_SET" = 1 ] || DURATION=3
  [ "$ROUNDS_SET" = 1 ] || ROUNDS=1
  WARMUP=1
fi
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

# ---- workloads: name -> h2load connections, calls in flight per connection, request message
# bytes (0: the small HelloRequest{name: "world"}), reply message bytes asked of the backend
# (0: its small reply), and the description the report prints.
MIB=$((1 << 20))
declare -A W_CONNS W_INFLIGHT W_REQUEST W_REPLY W_LABEL
define_workload() { W_CONNS[$1]="$2"; W_INFLIGHT[$1]="$3"; W_REQUEST[$1]="$4"; W_REPLY[$1]="$5"; W_LABEL[$1]="$6"; }
define_workload small "$CONNECTIONS" "$INFLIGHT" 0 0 "small calls, $CONNECTIONS connection$([ "$CONNECTIONS" = 1 ] || echo s) x $INFLIGHT in flight"
define_workload small4 4 64 0 0 "small calls, 4 connections x 64 in flight"
define_workload resp1m 1 8 0 "$MIB" "1 MiB responses, 1 connection x 8 in flight"
define_workload req1m 1 8 "$MIB" 0 "1 MiB requests, 1 connection x 8 in flight"
define_workload latency 1 1 0 0 "one small call in flight (latency), 1 connection x 1"
IFS=, read -r -a WL <<<"$WORKLOADS"
for w in "${WL[@]}"; do
  [ -n "${W_CONNS[$w]:-}" ] || { echo "run.sh: unknown workload '$w' (small small4 resp1m req1m latency)" >&2; exit 2; }
done
IFS=, read -r -a PEER_LIST <<<"$PEERS"
for p in "${PEER_LIST[@]}"; do
  case "$p" in haproxy|nginx|nghttpx|caddy) ;; *) echo "run.sh: unknown peer '$p' (haproxy nginx nghttpx caddy)" >&2; exit 2 ;; esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
if [ -z "$OUT" ]; then
  if [ "$QUICK" = 1 ]; then OUT=/tmp/sluice-proxy-compare-quick.md; else OUT=bench/results/proxy_compare.md; fi
fi
BUILD_DIR="${BUILD_DIR:-build}"
COMMAND="bench/proxy/run.sh$([ "$QUICK" = 1 ] && echo ' --quick' || true) --rounds $ROUNDS --duration $DURATION --workloads $WORKLOADS --peers $PEERS --inflight $INFLIGHT --connections $CONNECTIONS"
PY=/usr/bin/python3 # Debian's python: python3-grpcio is installed there
HELPER="$HERE/helper.py"
log() { echo "[proxy-bench $(date +%H:%M:%S)] $*" >&2; }

# ---- dependencies and build -------------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash "$HERE/install-peers.sh"
fi
for tool in h2load ss "$PY"; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  [ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
  log "building bench_greeter and sluice"
  cmake --build "$BUILD_DIR" -j 2 --target bench_greeter >&2
  # A sluice that does not build yet must not stop the peers' measurement.
  cmake --build "$BUILD_DIR" -j 2 --target sluice >&2 || log "warning: sluice did not build"
fi
BACKEND_BIN="$BUILD_DIR/bench/bench_greeter"
SLUICE="${SLUICE_BIN:-$BUILD_DIR/bin/sluice}"
[ -x "$BACKEND_BIN" ] || { echo "run.sh: $BACKEND_BIN missing (cmake --build $BUILD_DIR --target bench_greeter)" >&2; exit 1; }

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

mkdir -p "$WORK/meta" "$WORK/t" "$WORK/raw" "$WORK/body"
: >"$WORK/records.jsonl"
: >"$WORK/targets.list"
printf '%s\n' "${WL[@]}" >"$WORK/workloads.list"

# ---- backends ---------------------------------------------------------------------------------
BACKEND_IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
BACKEND_PORTS=()
BACKEND_PIDS=()
for ip in "${BACKEND_IPS[@]}"; do
  port="$("$PY" "$HELPER" freeport "$ip")"
  "$BACKEND_BIN" --ip "$ip" --port "$port" >"$WORK/raw/backend-$ip.log" 2>&1 &
  PIDS+=($!)
  BACKEND_PIDS+=($!)
  BACKEND_PORTS+=("$port")
  wait_port "$ip" "$port" $! || { echo "run.sh: bench_greeter on $ip:$port did not start" >&2; cat "$WORK/raw/backend-$ip.log" >&2; exit 1; }
done
B1="${BACKEND_IPS[0]}:${BACKEND_PORTS[0]}"
B2="${BACKEND_IPS[1]}:${BACKEND_PORTS[1]}"
B3="${BACKEND_IPS[2]}:${BACKEND_PORTS[2]}"
SS_FILTER="( dst $B1 or dst $B2 or dst $B3 )"
log "backends: $B1 $B2 $B3"

for w in "${WL[@]}"; do
  mkdir -p "$WORK/w/$w"
  "$PY" "$HELPER" body "$WORK/body/$w.bin" world "${W_REQUEST[$w]}"
  echo "${W_CONNS[$w]}" >"$WORK/w/$w/conns"
  echo "${W_INFLIGHT[$w]}" >"$WORK/w/$w/inflight"
  echo "${W_REQUEST[$w]}" >"$WORK/w/$w/request"
  echo "${W_REPLY[$w]}" >"$WORK/w/$w/reply"
  echo "${W_LABEL[$w]}" >"$WORK/w/$w/label"
done

# Target registry: name -> listen address and root PID ("" for direct).
declare -A ADDR ROOTPID
add_target() { # name label
  echo "$1" >>"$WORK/targets.list"
  mkdir -p "$WORK/t/$1"
  echo "$2" >"$WORK/t/$1/label"
}
set_status() { echo "$2" >"$WORK/t/$1/status"; }

# check NAME ADDR PHASE: real gRPC calls of every workload's kind through ADDR.
check() {
  local name="$1" addr="$2" phase="$3" w
  for w in "${WL[@]}"; do
    if ! "$PY" "$HELPER" check "$addr" "$CHECK_CALLS" "$WORK/body/$w.bin" "${W_REPLY[$w]}" \
        >"$WORK/t/$name/$phase-$w.json" 2>"$WORK/raw/$name-$phase-$w.err"; then
      CHECK_ERROR="$w: $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("first_error"))' "$WORK/t/$name/$phase-$w.json" 2>/dev/null || tail -1 "$WORK/raw/$name-$phase-$w.err")"
      return 1
    fi
  done
}

# ready_and_check NAME IP PORT PID: wait for the port, then check real gRPC calls through it.
ready_and_check() {
  local name="$1" ip="$2" port="$3" pid="$4"
  if ! wait_port "$ip" "$port" "$pid"; then
    set_status "$name" "FAILED: did not listen on $ip:$port (see log)"
    log "$name did not start:"; tail -5 "$WORK/raw/$name.log" >&2 || true
    return 1
  fi
  if check "$name" "$ip:$port" check; then
    set_status "$name" ok
    log "$name ready on $ip:$port: $(cat "$WORK/t/$name/check-${WL[0]}.json")"
    ADDR[$name]="$ip:$port"
    ROOTPID[$name]="$pid"
    return 0
  fi
  set_status "$name" "FAILED: gRPC check: $CHECK_ERROR"
  log "$name failed its gRPC check: $CHECK_ERROR"
  return 1
}

# ---- direct baseline --------------------------------------------------------------------------
add_target direct "direct (no proxy, client → $B1)"
if check direct "$B1" check; then
  set_status direct ok
  ADDR[direct]="$B1"
  ROOTPID[direct]=""
else
  set_status direct "FAILED: gRPC check against the backend: $CHECK_ERROR"
fi

# ---- the peers and sluice: each start_NAME writes its config, starts it and checks it ---------
start_haproxy() {
  add_target haproxy "HAProxy $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}') (h2 both sides, 1 thread)"
  local port; port="$("$PY" "$HELPER" freeport 127.0.0.1)"
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
    bind 127.0.0.1:$port proto h2
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
    ready_and_check haproxy 127.0.0.1 "$port" $! || true
  else
    set_status haproxy "FAILED: config rejected: $(tail -1 "$WORK/raw/haproxy.log")"
  fi
}

start_nginx() {
  add_target nginx "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (grpc_pass, 1 worker)"
  local port dir="$WORK/nginx"; port="$("$PY" "$HELPER" freeport 127.0.0.1)"
  mkdir -p "$dir/tmp"
  cat >"$WORK/t/nginx/config" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    client_max_body_size 0;        # the default 1m refuses a 1 MiB gRPC request (413)
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
        listen 127.0.0.1:$port http2;
        location / {
            grpc_pass grpc://greeters;
        }
    }
}
EOF
  if nginx -t -q -p "$dir" -e "$dir/error.log" -c "$WORK/t/nginx/config" >"$WORK/raw/nginx.log" 2>&1; then
    nginx -p "$dir" -e "$dir/error.log" -c "$WORK/t/nginx/config" >>"$WORK/raw/nginx.log" 2>&1 &
    PIDS+=($!)
    ready_and_check nginx 127.0.0.1 "$port" $! || true
  else
    set_status nginx "FAILED: config rejected: $(tail -1 "$WORK/raw/nginx.log")"
  fi
}

start_nghttpx() {
  add_target nghttpx "nghttpx $(nghttpx --version 2>/dev/null | awk '{print $2}') (-n1, backends proto=h2)"
  local port; port="$("$PY" "$HELPER" freeport 127.0.0.1)"
  : >"$WORK/t/nghttpx/empty.conf" # nghttpx reads /etc/nghttpx/nghttpx.conf unless told otherwise
  local cmd=(nghttpx --conf="$WORK/t/nghttpx/empty.conf" -n1 "--frontend=127.0.0.1,$port;no-tls")
  local b
  for b in "$B1" "$B2" "$B3"; do cmd+=("--backend=${b%:*},${b##*:};;proto=h2"); done
  cmd+=(--pid-file="$WORK/t/nghttpx/pid")
  echo "${cmd[*]}" >"$WORK/t/nghttpx/config"
  "${cmd[@]}" >"$WORK/raw/nghttpx.log" 2>&1 &
  PIDS+=($!)
  ready_and_check nghttpx 127.0.0.1 "$port" $! || true
}

start_caddy() {
  add_target caddy "Caddy $(caddy version 2>/dev/null | awk '{print $1}') (reverse_proxy h2c, GOMAXPROCS=1)"
  local port dir="$WORK/caddy"; port="$("$PY" "$HELPER" freeport 127.0.0.1)"
  mkdir -p "$dir"
  cat >"$WORK/t/caddy/config" <<EOF
{
    admin off
    auto_https off
    servers {
        protocols h1 h2 h2c
    }
}
http://127.0.0.1:$port {
    reverse_proxy h2c://$B1 h2c://$B2 h2c://$B3 {
        lb_policy round_robin
        flush_interval -1
    }
}
EOF
  # One core's worth of Go scheduler, like the one worker/thread of the others.
  HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" GOMAXPROCS=1 \
    caddy run --adapter caddyfile --config "$WORK/t/caddy/config" >"$WORK/raw/caddy.log" 2>&1 &
  PIDS+=($!)
  ready_and_check caddy 127.0.0.1 "$port" $! || true
}

start_sluice() { # [NAME LABEL EXTRA-FLAGS...]
  local name="${1:-sluice}" label="${2:-sluice proxy (round_robin, 1 worker)}"
  shift 2 || true
  add_target "$name" "$label"
  # CLI11 prints the top-level help and exits 0 for `sluice proxy --help` when `proxy` is not a
  # subcommand, so the help must also be the proxy's own (it names --listen).
  local help
  if [ -x "$SLUICE" ] && help="$(timeout 10 "$SLUICE" proxy --help 2>&1)" && grep -q -- "--listen" <<<"$help"; then
    local port; port="$("$PY" "$HELPER" freeport 127.0.0.1)"
    local cmd=("$SLUICE" proxy --listen "127.0.0.1:$port" --target "static://$B1,$B2,$B3" --policy round_robin --workers 1 "$@")
    echo "${cmd[*]}" >"$WORK/t/$name/config"
    "${cmd[@]}" >"$WORK/raw/$name.log" 2>&1 &
    PIDS+=($!)
    ready_and_check "$name" 127.0.0.1 "$port" $! || true
  else
    set_status "$name" "not built (\`sluice proxy --help\` is not the proxy's help)"
    log "sluice proxy not built: skipped"
  fi
}

for p in "${PEER_LIST[@]}"; do
  if command -v "$p" >/dev/null; then
    "start_$p"
  else
    add_target "$p" "$p"
    set_status "$p" "FAILED: $p not installed (bench/proxy/install-peers.sh)"
  fi
done
start_sluice
# SLUICE_ACCESS_LOG=1: a second sluice proxy with --access-log to a file, measured beside the
# first in the same rounds (the access log's cost).
if [ "${SLUICE_ACCESS_LOG:-0}" = 1 ]; then
  start_sluice sluice-log "sluice proxy with --access-log to a file" --access-log "$WORK/access.log"
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

measure() { # NAME WORKLOAD ROUND
  local name="$1" w="$2" round="$3" addr="${ADDR[$1]}" root="${ROOTPID[$1]}" tag="$1-$2-r$3"
  local pids="" p0=0 p1=0 b0 b1 sampler=""
  local url="http://$addr/Greeter/SayHello"
  local h2=(h2load -c "${W_CONNS[$w]}" -t 1 -m "${W_INFLIGHT[$w]}" -d "$WORK/body/$w.bin"
            -H "content-type: application/grpc" -H "te: trailers")
  [ "${W_REPLY[$w]}" -gt 0 ] && h2+=(-H "bench-reply-bytes: ${W_REPLY[$w]}")
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
  printf '{"target":"%s","workload":"%s","round":%d,"proxy_ticks":%s,"backend_ticks":%d,"upstream_conns":%s,"h2load":%s}\n' \
    "$name" "$w" "$round" "$proxy_ticks" $((b1 - b0)) "$upstream" "$parsed" >>"$WORK/records.jsonl"
  rm -f "$WORK/raw/$tag.log" # per-call log: large, already summarised
  log "$tag: $(grep -E '^finished in' "$WORK/raw/$tag.txt" || echo 'no result') proxy_ticks=$proxy_ticks upstream=$upstream"
}

ACTIVE=()
while read -r name; do
  [ -n "${ADDR[$name]:-}" ] && ACTIVE+=("$name")
done <"$WORK/targets.list"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "measuring ${ACTIVE[*]} on ${WL[*]}: $ROUNDS round(s) x ${DURATION}s each"
n=${#ACTIVE[@]}
for round in $(seq 1 "$ROUNDS"); do
  for wi in "${!WL[@]}"; do
    # The order rotates with the round and the workload, so no target always runs first.
    for i in $(seq 0 $((n - 1))); do
      measure "${ACTIVE[$(((i + round - 1 + wi) % n))]}" "${WL[$wi]}" "$round"
    done
  done
done

# The proxies must still answer real gRPC calls after the load.
for name in "${ACTIVE[@]}"; do
  check "$name" "${ADDR[$name]}" post_check ||
    log "$name failed its gRPC check after the rounds: $CHECK_ERROR"
done

# ---- report -----------------------------------------------------------------------------------
m() { printf '%s\n' "$2" >"$WORK/meta/$1"; }
m date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
m command "$COMMAND"
m git "$(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src bench 2>/dev/null || echo ' (uncommitted changes)')"
m machine "load average before the rounds: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -sr), loopback only; h2load, the proxy and the 3 backends share the cores"
m versions "$(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy", $3}'), $(nginx -v 2>&1 | sed 's/.*: //'), $(nghttpx --version 2>/dev/null | head -1), Caddy $(caddy version 2>/dev/null | awk '{print $1}'), $(h2load --version | head -1), python3-grpcio $("$PY" -c 'import grpc; print(grpc.__version__)')"
m backends "$B1, $B2, $B3"
m duration "$DURATION"
m rounds "$ROUNDS"
m warmup "$WARMUP"
m clk_tck "$(getconf CLK_TCK)"
mkdir -p "$(dirname "$OUT")"
"$PY" "$HERE/report.py" "$WORK" "$OUT"
cat "$OUT"
log "results written to $(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
