#!/bin/sh
# SPDX-License-Identifier: MIT
# The Debian packages (docs/PACKAGING.md), end to end, on this machine: build them
# from a clean copy of the tree (the tracked files as they are in the work tree, in a
# temporary directory: dpkg-buildpackage writes to ../), check them with lintian,
# install them with dpkg, run the installed shmbusd on a private socket and shm
# directory, build examples/heartbeat.c against the installed library with pkg-config
# and run it against that daemon, then purge the packages and remove what installing
# them made (the shmbus user, /dev/shm/shmbus) if it was not there before. Runs as
# root (it installs packages); refuses to touch shmbus packages already installed.
# The build runs the package's fast test subset (debian/rules); about a minute in all.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
        echo "test-deb: needs root (it installs and purges packages)" >&2
        exit 1
fi
pkgs="shmbusd shmbus-tools libshmbus-dev libshmbus1 python3-shmbus shmbus-bridge"
for p in $pkgs; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed"; then
                echo "test-deb: $p is already installed here; not replacing it (purge it first)" >&2
                exit 1
        fi
done

tmp=$(mktemp -d /tmp/shmbus-deb-XXXXXX)
had_user=0
getent passwd shmbus >/dev/null && had_user=1
had_dir=0
[ -e /dev/shm/shmbus ] && had_dir=1
policy=""
pid=""
installed=0
cleanup() {
        if [ -n "$pid" ]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        fi
        if [ "$installed" = 1 ]; then
                # shellcheck disable=SC2086
                dpkg --purge $pkgs >"$tmp/purge.log" 2>&1 || cat "$tmp/purge.log" >&2
        fi
        [ -n "$policy" ] && rm -f "$policy"
        # Debian never removes a system user or a tmpfiles directory on purge; a test
        # machine is left as it was found.
        [ "$had_dir" = 0 ] && rmdir /dev/shm/shmbus 2>/dev/null || true
        if [ "$had_user" = 0 ] && getent passwd shmbus >/dev/null; then
                userdel shmbus 2>/dev/null || true
                getent group shmbus >/dev/null && groupdel shmbus 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
        echo "FAIL: $*"
        exit 1
}

echo "=== deb: build from a clean copy in $tmp"
mkdir "$tmp/shmbus"
(cd "$top" && git ls-files -z -c -o --exclude-standard |
        tar --null --ignore-failed-read -T - -cf -) 2>/dev/null | tar -x -C "$tmp/shmbus"
(cd "$tmp/shmbus" && DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -us -uc -b) \
        >"$tmp/build.log" 2>&1 || {
        tail -n 60 "$tmp/build.log"
        fail "dpkg-buildpackage"
}
grep -q "dpkg-gensymbols: warning" "$tmp/build.log" &&
        fail "dpkg-gensymbols: $(grep -A10 "dpkg-gensymbols: warning" "$tmp/build.log")"
ver=$(cd "$tmp/shmbus" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
debs=""
for p in $pkgs; do
        debs="$debs $tmp/${p}_${ver}_$arch.deb"
done
echo "PASS: built$(for d in $debs; do printf ' %s' "$(basename "$d")"; done)"

# Every lintian tag that is not overridden (debian/*.lintian-overrides say why) fails.
if command -v lintian >/dev/null; then
        lintian --allow-root --pedantic --fail-on error,warning,info,pedantic \
                "$tmp/shmbus_${ver}_$arch.changes" >"$tmp/lintian.log" 2>&1 ||
                fail "lintian: $(cat "$tmp/lintian.log")"
        echo "PASS: lintian (pedantic) has nothing to say"
fi

echo "=== deb: install"
# Services must not start on this machine (Debian's policy-rc.d switch): the test runs
# its own shmbusd on a private socket.
if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
fi
installed=1
# shellcheck disable=SC2086
if ! dpkg -i $debs >"$tmp/install.log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq --no-install-recommends \
                >>"$tmp/install.log" 2>&1 || fail "install: $(tail -n 30 "$tmp/install.log")"
fi
for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" | grep -q "ok installed" || fail "$p not installed"
done
/usr/sbin/shmbusd --version | grep -q "^shmbusd $(echo "$ver" | sed 's/-[^-]*$//')\$" ||
        fail "installed shmbusd --version: $(/usr/sbin/shmbusd --version)"
getent passwd shmbus >/dev/null || fail "the shmbus system user was not created (sysusers)"
if command -v systemd-tmpfiles >/dev/null; then
        [ "$(stat -c %U:%a /dev/shm/shmbus 2>/dev/null)" = shmbus:755 ] ||
                fail "/dev/shm/shmbus is not shmbus's, mode 755 (tmpfiles)"
fi
dpkg -L libshmbus1 | grep -q '\.la$' && fail "libshmbus1 ships a .la file"
[ -e /usr/bin/shmbus-demo ] && fail "shmbus-demo is installed"
[ -e /usr/share/man/man5/shmbusd.json.5.gz ] || fail "shmbusd.json(5) missing"
/usr/sbin/shmbusd --check-config --config /etc/shmbus/shmbusd.json >/dev/null ||
        fail "the installed /etc/shmbus/shmbusd.json does not validate"
echo "PASS: installed; shmbusd --version, user, config, man pages"
# Installing over an installed version runs the upgrade paths of the maintainer scripts
# (prerm upgrade, postinst configure OLD): they must succeed a second time.
# shellcheck disable=SC2086
dpkg -i $debs >"$tmp/reinstall.log" 2>&1 || fail "reinstall (upgrade path): $(tail -n 30 "$tmp/reinstall.log")"
echo "PASS: installing again (the upgrade path of the maintainer scripts)"

echo "=== deb: the installed daemon and library"
/usr/sbin/shmbusd --socket "$tmp/sock" --shm-dir "$tmp/ch" 2>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 100); do
        [ -S "$tmp/sock" ] && break
        sleep 0.05
done
export SHMBUS_SOCKET="$tmp/sock"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/heartbeat" "$top/examples/heartbeat.c" \
        $(pkg-config --cflags --libs libshmbus) || fail "heartbeat.c does not build with pkg-config"
ldd "$tmp/heartbeat" | grep -q "libshmbus.so.1 => /.*lib/.*libshmbus.so.1 " || fail "not linked to the installed library: $(ldd "$tmp/heartbeat")"
"$tmp/heartbeat" 2 >/dev/null || fail "heartbeat against the installed shmbusd: $(cat "$tmp/daemon.log")"
out=$(shmbus-cli --json status heartbeat)
echo "$out" | grep -q '"published":[[:space:]]*2' || fail "expected 2 heartbeats: $out"
echo "PASS: heartbeat built with pkg-config runs against the installed shmbusd"
# The packaged Python module, against the same daemon (not the build tree's: cd away).
(cd / && /usr/bin/python3 -c '
import shmbus
with shmbus.Client() as c, c.open("heartbeat", publish=True) as ch, ch.publisher() as p:
    p.send(b"from python")
print(shmbus.__file__)
') >"$tmp/py.log" 2>&1 || fail "python3-shmbus: $(cat "$tmp/py.log")"
grep -q '^/usr/lib/python3/dist-packages/shmbus/' "$tmp/py.log" ||
        fail "python3 imported shmbus from elsewhere: $(cat "$tmp/py.log")"
echo "PASS: python3-shmbus imports and talks to the installed shmbusd"
/usr/bin/shmbus-bridge --help >/dev/null 2>&1 || fail "installed shmbus-bridge --help failed"
[ -f /lib/systemd/system/shmbus-bridge.service ] || fail "shmbus-bridge.service not installed"
echo "PASS: shmbus-bridge installed with its unit"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=""

echo "=== deb: purge"
# shellcheck disable=SC2086
dpkg --purge $pkgs >"$tmp/purge.log" 2>&1 || fail "purge: $(cat "$tmp/purge.log")"
installed=0
for f in /usr/sbin/shmbusd /usr/bin/shmbus-cli /usr/include/shmbus.h /etc/shmbus/shmbusd.json \
        /lib/systemd/system/shmbusd.socket; do
        [ -e "$f" ] && fail "$f is still there after purge"
done
echo "PASS: purged"
