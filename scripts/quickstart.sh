#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start: install what is missing, build, and show traffic flowing through
# shmbus channels between processes (ping-pong and streaming, with baselines).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh
sh scripts/build.sh build
exec ./build/bench/shmbus-bench --quick
