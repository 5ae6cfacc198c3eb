#!/bin/sh
# SPDX-License-Identifier: MIT
# The systemd side: the units verify, their security exposure is what
# docs/DEPLOYMENT.md says, the service starts only by its socket, shmbusd
# serves a socket passed by socket activation, and it works with the /proc
# that ProcSubset=pid leaves it. (A socket of the wrong type, and the notify
# protocol, are tested in test-daemon, which can hand the daemon any
# descriptor it likes.)
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

# 3. The service is started by its socket, never at boot by itself (DEPLOYMENT.md says why).
grep -q '^WantedBy=' "$b/systemd/shmbusd.service" && fail "shmbusd.service is WantedBy= a target"
grep -q '^Also=shmbusd.socket' "$b/systemd/shmbusd.service" || fail "enable does not enable the socket"
echo "PASS: started by socket activation only"

# 4. Socket activation: the daemon serves the socket it is given.
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

# 5. ProcSubset=pid: /proc holds only process directories. The daemon's end-to-end
# tests (dead clients released by their /proc/PID) pass with such a /proc, in a
# private mount namespace where the kernel and our privileges allow one.
if [ -x "$b/tests/test-daemon" ] &&
        unshare -m --propagation private sh -c 'mount -t proc -o subset=pid proc /proc' 2>/dev/null; then
        # shellcheck disable=SC2016 # $1 is expanded by the inner shell
        unshare -m --propagation private sh -c \
                'mount -t proc -o subset=pid proc /proc && exec "$1"' sh "$b/tests/test-daemon" \
                >"$tmp/procsubset.log" 2>&1 ||
                fail "test-daemon with /proc subset=pid: $(tail -n 30 "$tmp/procsubset.log")"
        echo "PASS: shmbusd with /proc as ProcSubset=pid leaves it"
else
        echo "SKIP (this step): no private mount namespace with /proc subset=pid here"
fi
