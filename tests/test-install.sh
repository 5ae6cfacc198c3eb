#!/bin/sh
# SPDX-License-Identifier: MIT
# make install puts everything where a Debian admin and a service author look
# for it, and a service builds against the installed library with pkg-config
# alone and runs against the installed daemon.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
s=$(cd "${top_srcdir:-.}" && pwd)
if [ "${SHMBUS_SANITIZED:-0}" = 1 ]; then
        echo "SKIP: sanitizer build (an installed, instrumented library needs its runtime)"
        exit 77
fi
tmp=$(mktemp -d /dev/shm/shmbus-test-install-XXXXXX)
dest="$tmp/root"
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

${MAKE:-make} -C "$b" install DESTDIR="$dest" >"$tmp/install.log" 2>&1 ||
        fail "make install: $(tail -20 "$tmp/install.log")"
eval "$(sed -n 's/^\(prefix\|exec_prefix\|libdir\|includedir\)=\(.*\)/\1="\2"/p' "$b/libclient/libshmbus.pc")"
for f in "$prefix/sbin/shmbusd" "$prefix/bin/shmbus-cli" "$libdir/libshmbus.so.1" \
        "$libdir/libshmbus.a" "$includedir/shmbus.h" "$includedir/shmbus/version.h" \
        "$libdir/pkgconfig/libshmbus.pc" "$prefix/share/man/man1/shmbus-cli.1" \
        "$prefix/share/man/man8/shmbusd.8" "$prefix/share/man/man3/shmbus.3" "$prefix/lib/systemd/system/shmbusd.service" \
        "$prefix/lib/systemd/system/shmbusd.socket" "$prefix/lib/sysusers.d/shmbus.conf" \
        "$prefix/lib/tmpfiles.d/shmbus.conf" "$prefix/etc/shmbus/shmbusd.json"; do
        [ -e "$dest$f" ] || fail "not installed: $f"
done
echo "PASS: all files installed"

readelf -d "$dest$libdir/libshmbus.so" | grep -q "SONAME.*\[libshmbus\.so\.1\]" ||
        fail "SONAME is not libshmbus.so.1"
grep -q "^ExecStart=$prefix/sbin/shmbusd --config $prefix/etc/shmbus/shmbusd.json$" \
        "$dest$prefix/lib/systemd/system/shmbusd.service" || fail "unit ExecStart"
"$dest$prefix/sbin/shmbusd" --check-config --config "$dest$prefix/etc/shmbus/shmbusd.json" >/dev/null ||
        fail "the installed example config does not validate"
echo "PASS: SONAME, unit paths, example config"

# A service built with pkg-config only, against the installed tree.
export PKG_CONFIG_PATH="$dest$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/heartbeat" "$s/examples/heartbeat.c" \
        $(pkg-config --cflags --libs libshmbus) || fail "dynamic build with pkg-config"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -static-libgcc -o "$tmp/heartbeat-static" "$s/examples/heartbeat.c" \
        $(pkg-config --cflags libshmbus) "$dest$libdir/libshmbus.a" \
        $(pkg-config --static --libs-only-l libshmbus | sed 's/-lshmbus//') ||
        fail "static build with pkg-config --static"
echo "PASS: example service builds (shared and static)"

"$dest$prefix/sbin/shmbusd" --socket "$tmp/sock" --shm-dir "$tmp/ch" 2>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 100); do
        [ -S "$tmp/sock" ] && break
        sleep 0.05
done
export SHMBUS_SOCKET="$tmp/sock"
LD_LIBRARY_PATH="$dest$libdir" "$tmp/heartbeat" 2 || fail "heartbeat (shared) failed"
"$tmp/heartbeat-static" 1 || fail "heartbeat (static) failed"
out=$("$dest$prefix/bin/shmbus-cli" --json status heartbeat)
echo "$out" | grep -q '"published":[[:space:]]*3' || fail "expected 3 heartbeats: $out"
"$dest$prefix/bin/shmbus-cli" tail heartbeat -n 1 | grep -q "^heartbeat 0 from " ||
        fail "last heartbeat not readable"
echo "PASS: the example service runs against the installed daemon"

# What a user reads is installed with the programs, and nothing that is not for them is.
for f in "$prefix/share/man/man5/shmbusd.json.5" "$prefix/share/doc/shmbus/PROTOCOL.md" \
        "$prefix/share/doc/shmbus/CONFIG.md" "$prefix/share/doc/shmbus/METRICS.md"; do
        [ -e "$dest$f" ] || fail "not installed: $f"
done
[ -e "$dest$prefix/bin/shmbus-demo" ] && fail "shmbus-demo is installed in bin (it is the quick start's)"
grep -q '^URL: .*\.invalid' "$dest$libdir/pkgconfig/libshmbus.pc" && fail "libshmbus.pc has a fake URL"
# Every key the daemon's configuration takes is in shmbusd.json(5): the keys of config.c's
# number table and its string compares (a new key added either way shows up here).
keys=$(sed -n -e 's/^[[:space:]]*{"\([a-z_]*\)", &c->.*/\1/p' \
        -e 's/.*strcmp(k, "\([a-z_]*\)").*/\1/p' -e 's/.*strcmp(item->string, "\([a-z_]*\)").*/\1/p' \
        "$s/daemon/config.c" | sort -u)
[ -n "$keys" ] || fail "no configuration keys found in daemon/config.c"
for k in $keys; do
        grep -qw "$k" "$dest$prefix/share/man/man5/shmbusd.json.5" ||
                fail "shmbusd.json(5) does not describe the key $k"
done
echo "PASS: man pages and docs installed, the demo and fake URLs not"
