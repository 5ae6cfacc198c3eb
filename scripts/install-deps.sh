#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what building and testing shmbus needs on Debian 12, if it is missing.
# Idempotent: does nothing (and needs no network) when everything is there.
#   scripts/install-deps.sh           build and test
#   scripts/install-deps.sh --bench   also the benchmark's peers and plotting
#   scripts/install-deps.sh --deb     also what building and checking the Debian
#                                     packages takes (scripts/test-deb.sh)
set -eu
# prometheus ships promtool and python3-prometheus-client an OpenMetrics parser: both check
# shmbus-cli's metrics in tests/test-metrics.sh (the prometheus service itself is not used).
# nats-server and libnats-dev: shmbus-bridge and its tests (which start their own server on
# 127.0.0.1, never the system service the package enables).
pkgs="autoconf automake libtool autoconf-archive pkg-config make gcc clang
libclang-rt-14-dev clang-format libevent-dev libcjson-dev libcunit1-dev systemd binutils valgrind
prometheus python3-prometheus-client python3-dev python3-pytest python3-numpy
nats-server libnats-dev"
for arg in "$@"; do
        case "$arg" in
        --bench) pkgs="$pkgs iceoryx libiceoryx-binding-c-dev gnuplot-nox" ;;
        --deb) pkgs="$pkgs build-essential dpkg-dev debhelper fakeroot lintian dh-python python3-dev" ;;
        *)
                echo "install-deps: unknown option $arg (--bench, --deb)" >&2
                exit 2
                ;;
        esac
done
missing=""
for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
        echo "shmbus: missing packages:$missing (run as root, or install them)" >&2
        exit 1
fi
echo "shmbus: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Packages that ship a service (prometheus, nats-server) must not start it: the tests run
# their own instances on 127.0.0.1, and nothing of ours should listen on the machine's
# addresses. policy-rc.d is Debian's switch for that during an install.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ -n "$policy" ]; then
        rm -f "$policy"
fi
# On a machine booted with systemd, also keep them from starting at the next boot.
if [ -d /run/systemd/system ]; then
        for unit in prometheus nats-server; do
                systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
fi
