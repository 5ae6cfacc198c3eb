#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what building and testing shmbus needs on Debian 12, if it is missing.
# Idempotent: does nothing (and needs no network) when everything is there.
#   scripts/install-deps.sh           build and test
#   scripts/install-deps.sh --bench   also the benchmark's peers and plotting
set -eu
pkgs="autoconf automake libtool autoconf-archive pkg-config make gcc clang
libclang-rt-14-dev clang-format libevent-dev libcjson-dev libcunit1-dev systemd binutils valgrind
python3-dev python3-pytest python3-numpy"
if [ "${1:-}" = --bench ]; then
        pkgs="$pkgs iceoryx libiceoryx-binding-c-dev gnuplot-nox"
fi
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
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
