#!/bin/sh
# SPDX-License-Identifier: MIT
# The systemd side: the units verify, their security exposure is what
# docs/DEPLOYMENT.md says, and shmbusd serves a socket passed by socket
# activation. (A socket of the wrong type, and the notify protocol, are tested
# in test-daemon, which can hand the daemon any descriptor it likes.)
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
s=$(cd "${top_srcdir:-.}" && pwd)
for tool in systemd-analyze systemd-socket-activate; do
        if ! command -v $tool >/dev/null 2>&1; then
                echo "SKIP: $tool is not installed"
                exit 77
        fi
done
tmp=$(mktemp -d /dev/shm/shmbus-test-systemd-XXXXXX)
pid=
cleanup() {
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
        echo "FAIL: $*"
        exit 1
}

# 1. The units as built, with ExecStart pointing into the build tree.
sed "s|^ExecStart=.*|ExecStart=$b/daemon/shmbusd --config $s/examples/shmbusd.json|" \
        "$b/systemd/shmbusd.service" > "$tmp/shmbusd.service"
cp "$b/systemd/shmbusd.socket" "$tmp/shmbusd.socket"
out=$(systemd-analyze verify --man=no "$tmp/shmbusd.socket" "$tmp/shmbusd.service" 2>&1) ||
        fail "systemd-analyze verify: $out"
echo "$out" | grep -v "^$" | grep -qv "Failed to .* group\|user.*shmbus" &&
        fail "systemd-analyze verify complained: $out"
echo "PASS: units verify"

# 2. Exposure: recorded in docs/DEPLOYMENT.md; fail if hardening regresses.
score=$(systemd-analyze security --offline=true "$tmp/shmbusd.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for shmbusd.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score"
awk "BEGIN { exit !($score <= 2.5) }" || fail "exposure $score is above 2.5"
echo "PASS: systemd-analyze security exposure $score"

# 3. Socket activation: the daemon serves the socket it is given.
systemd-socket-activate --seqpacket -l "$tmp/act.sock" \
        "$b/daemon/shmbusd" --shm-dir "$tmp/ch" 2>"$tmp/act.log" &
pid=$!
ok=
for _ in $(seq 100); do
        if "$b/cli/shmbus-cli" --socket "$tmp/act.sock" version 2>/dev/null | grep -q "^shmbusd [0-9]"; then
                ok=1
                break
        fi
        sleep 0.05
done
[ -n "$ok" ] || fail "no answer on the activated socket: $(cat "$tmp/act.log")"
"$b/cli/shmbus-cli" --socket "$tmp/act.sock" create activated >/dev/null ||
        fail "create over the activated socket"
[ -e "$tmp/ch/activated.ctl" ] || fail "channel file missing"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
echo "PASS: socket activation"
