#!/bin/sh
# SPDX-License-Identifier: MIT
# The whole test suite: install what is missing, then
#   1. make check, plain (-Werror), with a 2-minute soak and 300 fault rounds,
#      and make format-check
#   2. make distcheck (the release tarball builds and passes, shorter soak)
#   3. make check with AddressSanitizer+UBSan
#   4. make check with ThreadSanitizer (clang)
#   5. the daemon's tests with shmbusd under valgrind memcheck
#   6. the libFuzzer targets, 60 s each (scripts/fuzz.sh)
#   7. the Debian packages: built from a clean copy, lintian, installed, the
#      installed daemon and library used, purged (scripts/test-deb.sh; as root)
# SHMBUS_TEST_QUICK=1 runs only the plain build.
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
echo "=== make format-check: every C file in .clang-format's style"
make -C build format-check
if [ "${SHMBUS_TEST_QUICK:-0}" != 1 ]; then
        echo "=== make distcheck: the release tarball builds and passes from a read-only tree"
        SHMBUS_SOAK_SECONDS=15 SHMBUS_FAULT_ITERATIONS=60 \
                make -C build -j"$(nproc)" distcheck >build/distcheck.log 2>&1 || {
                tail -n 80 build/distcheck.log
                exit 1
        }
        grep -A1 "archives ready" build/distcheck.log
        run "asan+ubsan" "$(nproc)" build-asan --enable-werror --enable-asan --enable-ubsan
        run tsan "$(nproc)" build-tsan --enable-werror --enable-tsan CC=clang
        echo "=== make check: shmbusd under valgrind (test-daemon, test-cli)"
        SHMBUS_VALGRIND=1 make -C build -j"$(nproc)" check \
                TESTS="tests/test-daemon tests/test-cli" || {
                tail -n 80 build/tests/test-daemon.log build/tests/test-cli.log
                exit 1
        }
        sh scripts/fuzz.sh 60
        if [ "$(id -u)" -eq 0 ]; then
                sh scripts/install-deps.sh --deb
                sh scripts/test-deb.sh
        else
                echo "=== deb: skipped (installing packages needs root)"
        fi
fi
echo "=== all test runs passed"
