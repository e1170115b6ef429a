#!/usr/bin/env bash
# Installs the reference peers of the proxy benchmark from Debian 12, if missing:
#   haproxy (2.6), nginx (1.22, with grpc_pass and http2), nghttp2-proxy (nghttpx 1.52),
#   caddy (2.6), nghttp2-client (h2load), python3-grpcio (the reply check), valgrind (the
#   callgrind scripts). Idempotent: installs only what is missing.
# Needs root (or sudo). Package postinst scripts are kept from starting the daemons (nginx on :80,
# haproxy, nghttpx, caddy): the benchmark starts its own copies with its own configs.
set -euo pipefail

PACKAGES=(haproxy nginx nghttp2-proxy caddy nghttp2-client python3-grpcio python3-protobuf iproute2
  procps valgrind)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-peers: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-peers: installing ${missing[*]}"
# Keep invoke-rc.d from starting the daemons during the install (only when no policy exists).
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
