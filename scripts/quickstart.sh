#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start: install what is missing, build, start shmbusd with its built-in
# defaults (socket /run/shmbus/shmbusd.sock, channels in /dev/shm/shmbus), and
# show traffic flowing through it. On a terminal the daemon then stays in the
# foreground until Ctrl-C; otherwise it is stopped after the demo.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh
sh scripts/build.sh build

daemon=
if ./build/cli/shmbus-cli version 2>/dev/null | grep -q "^shmbusd [0-9]"; then
        echo "=== a shmbusd is already serving /run/shmbus/shmbusd.sock: using it"
else
        ./build/daemon/shmbusd &
        daemon=$!
        trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT INT TERM
        for _ in $(seq 50); do
                ./build/cli/shmbus-cli version 2>/dev/null | grep -q "^shmbusd [0-9]" && break
                kill -0 $daemon 2>/dev/null || { echo "shmbusd failed to start" >&2; exit 1; }
                sleep 0.1
        done
fi

echo
echo "=== demo: a publisher and a subscriber process on channel \"demo\", through shmbusd"
./build/examples/shmbus-demo 5 100000
echo
echo "=== channels as shmbusd sees them"
ls -l /dev/shm/shmbus
echo
./build/cli/shmbus-cli list
if [ -t 0 ] && [ -n "$daemon" ]; then
        echo
        echo "shmbusd (pid $daemon) is serving /run/shmbus/shmbusd.sock. Ctrl-C stops it."
        echo "Try, in another terminal: ./build/cli/shmbus-cli tail demo -f"
        wait $daemon
fi
