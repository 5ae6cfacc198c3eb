#!/bin/sh
# SPDX-License-Identifier: MIT
# shmbus-bridge's unit: it verifies, it is hardened (its exposure is what
# docs/DEPLOYMENT.md's bar for shmbusd allows a network client), it may reach
# the network while shmbusd's unit still may not, and it is ordered after
# shmbusd.socket.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
if [ ! -f "$b/systemd/shmbus-bridge.service" ]; then
        echo "SKIP: shmbus-bridge was not built (configure found no libnats)"
        exit 77
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "SKIP: systemd-analyze is not installed"
        exit 77
fi
tmp=$(mktemp -d /tmp/shmbus-test-bridge-unit-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
        echo "FAIL: $*"
        exit 1
}
unit=$b/systemd/shmbus-bridge.service
sed "s|^ExecStart=.*|ExecStart=$b/bridge/shmbus-bridge --config /dev/null|" "$unit" \
        > "$tmp/shmbus-bridge.service"
cp "$b/systemd/shmbusd.socket" "$tmp/shmbusd.socket"
out=$(systemd-analyze verify --man=no "$tmp/shmbus-bridge.service" 2>&1) ||
        fail "systemd-analyze verify: $out"
echo "$out" | grep -v "^$" | grep -v "user.*shmbus\|group.*shmbus\|shmbusd.socket\|nats-server\|network-online" |
        grep -q . && fail "systemd-analyze verify complained: $out"
echo "PASS: unit verifies"

score=$(systemd-analyze security --offline=true "$tmp/shmbus-bridge.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for shmbus-bridge.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score"
awk "BEGIN { exit !($score <= 2.0) }" || fail "exposure $score is above 2.0"
echo "PASS: systemd-analyze security exposure $score"

grep -q '^After=.*shmbusd.socket' "$unit" || fail "not ordered after shmbusd.socket"
grep -q '^RestrictAddressFamilies=.*AF_INET' "$unit" || fail "the bridge cannot reach NATS"
grep -q '^PrivateNetwork=yes' "$unit" && fail "the bridge has no network"
grep -q '^PrivateNetwork=yes' "$b/systemd/shmbusd.service" || fail "shmbusd lost PrivateNetwork=yes"
echo "PASS: the bridge reaches the network, shmbusd still does not"
