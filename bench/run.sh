#!/bin/sh
# SPDX-License-Identifier: MIT
# shmbus against the limit and its peers, in one run on this machine:
#   bench/run.sh [--quick] [--only LIST] [OUTDIR]   (OUTDIR defaults to bench/results;
#   LIST: rtt,sleep,stream,events,fanin,fanout,batch,matrix, all when not given)
# Installs what it needs (Debian 12, as root), builds an optimised tree in
# build-bench/, starts iceoryx's RouDi when iceoryx is installable, runs
# shmbus-bench, stops RouDi, and plots with gnuplot. The full run takes a few
# minutes, --quick well under one. Not part of `make check`: a benchmark
# measures, it does not pass or fail on speed. `events` also starts a private
# shmbusd from build-bench/ for its *-daemon rows (channels opened through it).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
quick=""
only=""
out="$top/bench/results"
while [ $# -gt 0 ]; do
        arg=$1
        shift
        case $arg in
        --quick) quick=--quick ;;
        --only)
                [ $# -gt 0 ] || {
                        echo "bench/run.sh: --only needs a list" >&2
                        exit 2
                }
                only="--only $1"
                shift
                ;;
        -h | --help)
                sed -n '3,11p' "$0" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
        -*)
                echo "bench/run.sh: unknown option $arg" >&2
                exit 2
                ;;
        *) out=$arg ;;
        esac
done

# The build needs its packages; iceoryx and gnuplot are wanted, not required.
sh "$top/scripts/install-deps.sh"
sh "$top/scripts/install-deps.sh" --bench ||
        echo "bench/run.sh: iceoryx or gnuplot could not be installed; going on without" >&2
sh "$top/scripts/build.sh" "$top/build-bench"
mkdir -p "$out"

iox=""
roudi=""
stop_roudi() {
        if [ -n "$roudi" ]; then
                kill "$roudi" 2>/dev/null || true
                wait "$roudi" 2>/dev/null || true
        fi
}
trap stop_roudi EXIT INT TERM
if grep -q '^#define HAVE_ICEORYX 1' "$top/build-bench/config.h" && command -v iox-roudi >/dev/null; then
        if [ -e /tmp/roudi ]; then
                echo "bench/run.sh: a RouDi is already running; measuring iceoryx against it" >&2
                iox=--iceoryx
        else
                iox-roudi -c "$top/bench/roudi.toml" -l warning >"$out/roudi.log" 2>&1 &
                roudi=$!
                # RouDi is ready when its socket exists.
                for _ in $(seq 100); do
                        [ -e /tmp/roudi ] && break
                        sleep 0.1
                done
                if [ -e /tmp/roudi ]; then
                        iox=--iceoryx
                else
                        echo "bench/run.sh: iox-roudi did not come up (see $out/roudi.log)" >&2
                fi
        fi
fi

# shellcheck disable=SC2086 # $only is two words or none
"$top/build-bench/bench/shmbus-bench" $quick $only $iox --out "$out" | tee "$out/results.txt"
stop_roudi
roudi=""

if command -v gnuplot >/dev/null; then
        gnuplot -e "dir='$out'" "$top/bench/plot.gp" && echo "Plots: $out/*.png"
else
        echo "bench/run.sh: no gnuplot; data files are in $out" >&2
fi
