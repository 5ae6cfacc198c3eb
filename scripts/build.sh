#!/bin/sh
# SPDX-License-Identifier: MIT
# Configure and build shmbus out of tree: scripts/build.sh BUILDDIR [configure args...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
shift || true
cd "$top"
[ -x configure ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p "$builddir"
cd "$builddir"
if [ ! -f Makefile ] || [ "$top/configure" -nt config.status ]; then
        "$top/configure" --quiet "$@"
fi
make -j"$(nproc)" >/dev/null
echo "shmbus: built in $builddir"
