#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the libFuzzer targets (clang, ASan+UBSan) and run each for a while,
# starting from the seed corpus in fuzz/corpus/. New inputs go to a scratch
# directory, not into the tree; a crash leaves its input as build-fuzz/crash-*
# and fails the run: copy it into fuzz/corpus/TARGET/ so that `make check`
# replays it from then on.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
cd "$top"
sh scripts/install-deps.sh
sh scripts/build.sh build-fuzz --enable-werror --enable-fuzzing CC=clang
make -C build-fuzz -j"$(nproc)" fuzz/fuzz-request fuzz/fuzz-config fuzz/fuzz-recording >/dev/null
for target in request config recording; do
        scratch=$(mktemp -d)
        echo "=== fuzz-$target for ${secs}s"
        (cd build-fuzz && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                ./fuzz/fuzz-"$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
                -max_len=4096 -print_final_stats=1 "$scratch" "$top/fuzz/corpus/$target" 2>&1 |
                grep -E "^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|.*crash-)" || true)
        status=$(ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* 2>/dev/null | head -n1 || true)
        rm -rf "$scratch"
        if [ -n "$status" ]; then
                echo "fuzz-$target found a failing input: $status" >&2
                exit 1
        fi
done
echo "=== fuzzing found nothing"
