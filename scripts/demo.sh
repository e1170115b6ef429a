#!/usr/bin/env bash
# make demo: a local etcd, three Greeter backends registered at 127.0.0.11-13:50051,
# `sluice ls`, then the seed's Greeter client balancing every call while one backend stops
# gracefully, one is killed with -9 and a new one registers. Stops everything it started on
# exit or Ctrl-C.
set -euo pipefail

BUILD_DIR=${1:-build}
BIN="$BUILD_DIR/bin"
CALLS=${DEMO_CALLS:-40}
INTERVAL=${DEMO_INTERVAL:-250ms}
STEP=${DEMO_STEP:-2}
WORK=$(mktemp -d /tmp/sluice-demo-XXXXXX)
PIDS=()

cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  echo "demo: stopped everything it started"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# etcd on 2379 when free, else on any free port.
ETCD_PORT=2379
if (echo > /dev/tcp/127.0.0.1/$ETCD_PORT) 2>/dev/null; then ETCD_PORT=$(free_port); fi
PEER_PORT=$(free_port)
ETCD="127.0.0.1:$ETCD_PORT"
echo "demo: starting etcd on $ETCD (data in $WORK/etcd)"
etcd --name demo --data-dir "$WORK/etcd" \
  --listen-client-urls "http://$ETCD" --advertise-client-urls "http://$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "demo=http://127.0.0.1:$PEER_PORT" --log-level warn \
  > "$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  if etcdctl --endpoints "$ETCD" endpoint health > /dev/null 2>&1; then break; fi
  sleep 0.1
done

for ip in 127.0.0.11 127.0.0.12 127.0.0.13; do
  echo "demo: starting greeter_server on $ip:50051, registered under services/greeter"
  "$BIN/greeter_server" --ip "$ip" --port 50051 --etcd "$ETCD" --service greeter \
    > "$WORK/greeter-$ip.log" 2>&1 &
  PIDS+=($!)
done

for _ in $(seq 100); do
  n=$("$BIN/sluice" ls --etcd "$ETCD" greeter --json 2>/dev/null | grep -c '"address"' || true)
  [ "$n" -ge 3 ] && break
  sleep 0.1
done

echo
echo "\$ sluice ls --etcd $ETCD"
"$BIN/sluice" ls --etcd "$ETCD"
echo
echo "\$ greeter_client --target etcd://$ETCD/services/greeter --calls $CALLS --interval $INTERVAL"
echo "  (while it runs: 127.0.0.11 stops gracefully, 127.0.0.12 is killed with -9,"
echo "   and a new backend registers at 127.0.0.14)"
# The client's replies stream live, so the events below show up between them.
"$BIN/greeter_client" --target "etcd://$ETCD/services/greeter" \
  --calls "$CALLS" --interval "$INTERVAL" > >(grep --line-buffered -v " INFO ") 2>&1 &
CLIENT=$!
PIDS+=($CLIENT)
step() { sleep "$1"; echo "demo: $2"; }
step "$STEP" "SIGTERM to 127.0.0.11 (graceful: deregisters, drains, exits)"
kill -TERM "${PIDS[1]}"
step "$STEP" "kill -9 127.0.0.12 (a crash: its key stays until the lease expires)"
kill -KILL "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true  # no "Killed" job notice from the shell
step "$STEP" "starting a new backend at 127.0.0.14:50051"
"$BIN/greeter_server" --ip 127.0.0.14 --port 50051 --etcd "$ETCD" --service greeter \
  > "$WORK/greeter-127.0.0.14.log" 2>&1 &
PIDS+=($!)
CLIENT_RC=0
wait "$CLIENT" || CLIENT_RC=$?
sleep 0.2  # let the output filter print the client's last lines
echo
echo "demo: calls each backend received (each prints every name it is sent):"
for ip in 127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14; do
  printf '  %s:50051  %s\n' "$ip" "$(grep -c '^name: ' "$WORK/greeter-$ip.log" || true)"
done
echo
echo "\$ sluice ls --etcd $ETCD   (127.0.0.12 stays listed until its 10 s lease expires)"
"$BIN/sluice" ls --etcd "$ETCD"
if [ "$CLIENT_RC" -ne 0 ]; then echo "demo: the client saw failed calls"; exit 1; fi
