#!/bin/sh
# SPDX-License-Identifier: MIT
# The whole test suite: install what is missing, then build and run `make check`
# three times: plain, with AddressSanitizer+UBSan, and with ThreadSanitizer; and
# `make distcheck`. SHMBUS_TEST_QUICK=1 runs only the plain build.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh

run() {
        name=$1
        jobs=$2
        shift 2
        echo "=== make check: $name"
        sh scripts/build.sh "$@"
        if ! make -C "$1" -j"$jobs" check; then
                for f in "$1"/tests/*.log; do
                        echo "--- $f"
                        tail -n 60 "$f"
                done
                exit 1
        fi
}

run plain "$(nproc)" build --enable-werror
if [ "${SHMBUS_TEST_QUICK:-0}" != 1 ]; then
        echo "=== make distcheck: the release tarball builds and passes from a read-only tree"
        make -C build -j"$(nproc)" distcheck >build/distcheck.log 2>&1 || {
                tail -n 80 build/distcheck.log
                exit 1
        }
        grep -A1 "archives ready" build/distcheck.log
        run "asan+ubsan" "$(nproc)" build-asan --enable-werror --enable-asan --enable-ubsan
        run tsan "$(nproc)" build-tsan --enable-werror --enable-tsan CC=clang
fi
echo "=== all test runs passed"
