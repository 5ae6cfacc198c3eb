#!/bin/sh
# SPDX-License-Identifier: MIT
# The whole test suite: install what is missing, then build and run `make check`
# three times: plain, with AddressSanitizer+UBSan, and with ThreadSanitizer.
# SHMBUS_TEST_QUICK=1 runs only the plain build.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh

run() {
        name=$1
        shift
        echo "=== make check: $name"
        sh scripts/build.sh "$@"
        if ! make -C "$1" -j"$(nproc)" check; then
                for f in "$1"/tests/*.log; do
                        echo "--- $f"
                        tail -n 60 "$f"
                done
                exit 1
        fi
}

run plain build --enable-werror
if [ "${SHMBUS_TEST_QUICK:-0}" != 1 ]; then
        run "asan+ubsan" build-asan --enable-werror --enable-asan --enable-ubsan
        run tsan build-tsan --enable-werror --enable-tsan CC=clang
fi
echo "=== all test runs passed"
