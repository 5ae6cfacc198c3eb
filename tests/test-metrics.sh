#!/bin/bash
# SPDX-License-Identifier: MIT
# shmbus-cli's metrics (docs/METRICS.md) against a private shmbusd with some
# traffic: `stats --format prometheus` passes `promtool check metrics` without a
# word, `stats --format openmetrics` parses as OpenMetrics (with
# python3-prometheus-client, if installed), and `metrics --listen` serves both
# on GET /metrics, fresh for every scrape, and nothing else. bash for /dev/tcp:
# curl may not be installed. Skips (77) only without promtool (Debian package
# prometheus, which scripts/install-deps.sh installs).
set -eu
top=${top_builddir:-.}
cli="$top/cli/shmbus-cli"
daemon="$top/daemon/shmbusd"

if ! command -v promtool >/dev/null; then
        echo "SKIP: promtool not found (apt-get install prometheus, or scripts/install-deps.sh)"
        exit 77
fi

d=$(mktemp -d /dev/shm/shmbus-test-metrics-XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do
                kill "$p" 2>/dev/null || true
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$d"
}
trap cleanup EXIT
export SHMBUS_SOCKET="$d/sock"
fails=0
fail() {
        echo "FAIL: $*"
        fails=$((fails + 1))
}
pass() {
        echo "ok: $*"
}

# A python that can read OpenMetrics, or none.
py=""
for p in /usr/bin/python3 python3; do
        if "$p" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
                py=$p
                break
        fi
done
# Parse stdin as OpenMetrics, strictly (it insists on # EOF, metadata before samples, ...).
openmetrics_ok() {
        if [ -z "$py" ]; then
                grep -q '^# EOF$' && return 0
                return 1
        fi
        "$py" -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
n = sum(1 for _ in parse(sys.stdin.read()))
sys.exit(0 if n > 0 else 1)'
}

# Fetch METHOD PATH [ACCEPT] from the exporter into $d/resp; print the status code.
http() {
        local req
        req="$1 $2 HTTP/1.0"$'\r\nHost: localhost\r\n'
        [ -n "${3:-}" ] && req="${req}Accept: $3"$'\r\n'
        req="$req"$'\r\n'
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf '%s' "$req" >&3
        timeout 10 cat <&3 >"$d/resp"
        exec 3<&-
        head -n 1 "$d/resp" | tr -d '\r' | cut -d' ' -f2
}
# The body of the last response.
body() {
        sed '1,/^\r$/d' "$d/resp"
}
header() {
        sed -n '1,/^\r$/p' "$d/resp" | tr -d '\r' | sed -n "s/^$1: //Ip"
}

"$daemon" -s "$d/sock" -d "$d/channels" -u 300 >"$d/daemon.log" 2>&1 &
dpid=$!
pids+=("$dpid")
for _ in $(seq 200); do
        "$cli" version 2>/dev/null | grep -q '^shmbusd ' && break
        sleep 0.05
done
"$cli" version | grep -q '^shmbusd ' || {
        cat "$d/daemon.log"
        echo "FAIL: shmbusd did not start"
        exit 1
}

# Traffic: two channels, a subscriber that reads, messages.
"$cli" create prices --policy overwrite --capacity 65536 >/dev/null
"$cli" create quiet >/dev/null
"$cli" tail prices -f -n 0 >/dev/null &
pids+=("$!")
for _ in $(seq 200); do
        "$cli" stats --format prometheus 2>/dev/null |
                grep -q '^shmbus_channel_subscribers{channel="prices"} 1$' && break
        sleep 0.05
done
seq 3 | "$cli" pub prices >/dev/null

# The text format 0.0.4: promtool lints it, and must have nothing to say.
"$cli" stats --format prometheus >"$d/prom.txt"
if out=$(promtool check metrics <"$d/prom.txt" 2>&1) && [ -z "$out" ]; then
        pass "stats --format prometheus passes promtool check metrics"
else
        fail "promtool check metrics: $out"
fi
grep -q '^shmbus_daemon_up 1$' "$d/prom.txt" || fail "shmbus_daemon_up is not 1"
grep -q '^shmbus_channel_published_messages_total{channel="prices"} 3$' "$d/prom.txt" ||
        fail "published messages of prices is not 3"
grep -q '^# TYPE shmbus_channel_published_messages_total counter$' "$d/prom.txt" ||
        fail "a counter's TYPE line lacks _total in the text format"
grep -q '^shmbus_subscriber_lag_bytes{channel="prices",slot="0"} ' "$d/prom.txt" ||
        fail "no lag for subscriber slot 0 of prices"
grep -q '^shmbus_channel_capacity_bytes{channel="prices"} 65536$' "$d/prom.txt" ||
        fail "capacity of prices is not 65536"
grep -q '^# EOF' "$d/prom.txt" && fail "the text format has an OpenMetrics # EOF"

# OpenMetrics: counters named without _total in the metadata, units, # EOF last.
"$cli" stats --format openmetrics >"$d/om.txt"
if openmetrics_ok <"$d/om.txt"; then
        pass "stats --format openmetrics parses as OpenMetrics${py:+ ($py)}"
else
        fail "stats --format openmetrics does not parse"
fi
[ "$(tail -n 1 "$d/om.txt")" = "# EOF" ] || fail "OpenMetrics does not end with # EOF"
grep -q '^# TYPE shmbus_channel_published_messages counter$' "$d/om.txt" ||
        fail "OpenMetrics: counter family named with _total"
grep -q '^# UNIT shmbus_channel_capacity_bytes bytes$' "$d/om.txt" || fail "OpenMetrics: no UNIT"
[ -z "$py" ] && echo "note: python3-prometheus-client missing: OpenMetrics checked by hand only"

# Bad combinations are usage errors.
rc=0
"$cli" stats --format openmetrics --watch >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "stats --format openmetrics --watch: exit $rc, not 2"
rc=0
"$cli" metrics --listen 'no-port-here' >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "metrics --listen without a port: exit $rc, not 2"

# The exporter, on a free port it names on stdout.
"$cli" --shm-dir "$d/channels" metrics --listen 127.0.0.1:0 >"$d/metrics.out" 2>"$d/metrics.err" &
mpid=$!
pids+=("$mpid")
port=""
for _ in $(seq 200); do
        port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)/metrics$|\1|p' "$d/metrics.out")
        [ -n "$port" ] && break
        sleep 0.05
done
if [ -z "$port" ]; then
        fail "metrics --listen 127.0.0.1:0 did not say where it listens"
        cat "$d/metrics.out" "$d/metrics.err"
        exit 1
fi
pass "metrics listens on 127.0.0.1:$port"
[ -s "$d/metrics.err" ] && fail "a loopback listener warned: $(cat "$d/metrics.err")"

code=$(http GET /metrics)
[ "$code" = 200 ] || fail "GET /metrics: $code"
header Content-Type | grep -q '^text/plain; version=0.0.4' || fail "GET /metrics: not text 0.0.4"
if out=$(body | promtool check metrics 2>&1) && [ -z "$out" ]; then
        pass "GET /metrics passes promtool check metrics"
else
        fail "GET /metrics: promtool: $out"
fi

code=$(http GET /metrics 'application/openmetrics-text; version=1.0.0,text/plain;q=0.5')
[ "$code" = 200 ] || fail "GET /metrics (OpenMetrics): $code"
header Content-Type | grep -q '^application/openmetrics-text; version=1.0.0' ||
        fail "GET /metrics: OpenMetrics asked for, not served"
if body | openmetrics_ok; then
        pass "GET /metrics with Accept: OpenMetrics parses as OpenMetrics"
else
        fail "GET /metrics with Accept: OpenMetrics does not parse"
fi

# Every scrape is fresh.
seq 4 | "$cli" pub prices >/dev/null
http GET /metrics >/dev/null
body | grep -q '^shmbus_channel_published_messages_total{channel="prices"} 7$' ||
        fail "the scrape after publishing 4 more does not show 7"

code=$(http GET /)
[ "$code" = 404 ] || fail "GET /: $code, not 404"
code=$(http GET /metrics/extra)
[ "$code" = 404 ] || fail "GET /metrics/extra: $code, not 404"
code=$(http POST /elsewhere)
[ "$code" = 404 ] || fail "POST /elsewhere: $code, not 404"
code=$(http POST /metrics)
[ "$code" = 405 ] || fail "POST /metrics: $code, not 405"
code=$(http HEAD /metrics)
[ "$code" = 200 ] || fail "HEAD /metrics: $code"
[ -z "$(body)" ] || fail "HEAD /metrics has a body"
pass "only GET and HEAD /metrics are answered"

# The daemon goes away: the exporter reads the files and says so.
kill "$dpid"
wait "$dpid" 2>/dev/null || true
code=$(http GET /metrics)
[ "$code" = 200 ] || fail "GET /metrics with the daemon down: $code"
body >"$d/offline.txt"
grep -q '^shmbus_daemon_up 0$' "$d/offline.txt" || fail "shmbus_daemon_up is not 0 with the daemon down"
grep -q '^shmbus_channel_published_messages_total{channel="prices"} 7$' "$d/offline.txt" ||
        fail "offline: published messages of prices is not 7"
if out=$(promtool check metrics <"$d/offline.txt" 2>&1) && [ -z "$out" ]; then
        pass "offline metrics pass promtool check metrics"
else
        fail "offline: promtool: $out"
fi

# The daemon's own counters (shmbus_daemon_*, from its "stats" op), by value: a second
# daemon with room for two connections; a third is refused, and the refusal is counted.
# Per-uid use sums the channels each uid owns.
echo '{"max_connections": 2}' >"$d/limits.json"
"$daemon" -s "$d/sock2" -d "$d/channels2" -c "$d/limits.json" >"$d/daemon2.log" 2>&1 &
pids+=("$!")
export SHMBUS_SOCKET="$d/sock2"
for _ in $(seq 200); do
        "$cli" version 2>/dev/null | grep -q '^shmbusd ' && break
        sleep 0.05
done
"$cli" create one --capacity 65536 >/dev/null
"$cli" create two --capacity 131072 >/dev/null
"$cli" stats --format prometheus >"$d/d0.txt"
# Two held connections, then a third that is told EUSERS.
refused=$(/usr/bin/python3 - "$d/sock2" <<'PY'
import socket, sys
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    s.send(b'{"v":1,"op":"hello"}')
    s.settimeout(5)
    return s, s.recv(65536)
held = [conn(), conn()]
third, reply = conn()
print("EUSERS" in reply.decode())
PY
) || fail "could not hold connections with python3"
[ "$refused" = True ] || fail "a third connection over max_connections 2 was not refused: $refused"
"$cli" stats --format prometheus >"$d/d1.txt"
if out=$(promtool check metrics <"$d/d1.txt" 2>&1) && [ -z "$out" ]; then
        pass "daemon metrics pass promtool check metrics"
else
        fail "daemon metrics: promtool: $out"
fi
val() { sed -n "s/^$2 //p" "$1"; }
r0=$(val "$d/d0.txt" shmbus_daemon_connections_refused_total)
r1=$(val "$d/d1.txt" shmbus_daemon_connections_refused_total)
[ "$r0" = 0 ] && [ "$r1" = 1 ] || fail "refused connections: $r0 then $r1, not 0 then 1"
a0=$(val "$d/d0.txt" shmbus_daemon_connections_accepted_total)
a1=$(val "$d/d1.txt" shmbus_daemon_connections_accepted_total)
[ "$a1" = $((a0 + 3)) ] || fail "accepted connections: $a0 then $a1, not +3 (2 held, 1 CLI)"
[ "$(val "$d/d1.txt" shmbus_daemon_connections)" = 1 ] ||
        fail "current connections while the CLI asks is not 1"
h0=$(val "$d/d0.txt" 'shmbus_daemon_requests_total{op="hello"}')
h1=$(val "$d/d1.txt" 'shmbus_daemon_requests_total{op="hello"}')
# The held two, the CLI's; the refused one was answered EUSERS unserved.
[ "$h1" = $((h0 + 3)) ] || fail "hello requests: $h0 then $h1, not +3"
grep -q '^shmbus_daemon_requests_total{op="stats"} ' "$d/d1.txt" || fail "no stats request count"
grep -q '^shmbus_daemon_claims_unblocked_total 0$' "$d/d1.txt" || fail "claims unblocked is not 0"
grep -q '^shmbus_daemon_channels_adopted_total 0$' "$d/d1.txt" || fail "channels adopted is not 0"
grep -q '^shmbus_uid_channels{uid="'"$(id -u)"'"} 2$' "$d/d1.txt" || fail "uid channels is not 2"
grep -q '^shmbus_uid_capacity_bytes{uid="'"$(id -u)"'"} 196608$' "$d/d1.txt" ||
        fail "uid capacity is not 65536 + 131072"
"$cli" stats --format openmetrics >"$d/d1.om"
if openmetrics_ok <"$d/d1.om"; then
        pass "daemon metrics parse as OpenMetrics"
else
        fail "daemon metrics do not parse as OpenMetrics"
fi
grep -q '^# TYPE shmbus_daemon_requests counter$' "$d/d1.om" || fail "OpenMetrics: requests family"
# With the daemon down the daemon's counters have no samples (their metadata stays).
grep -q '^shmbus_daemon_connections' "$d/offline.txt" && fail "offline: daemon counters sampled"
grep -q '^shmbus_uid_channels{uid=' "$d/offline.txt" || fail "offline: no per-uid use"
pass "shmbus_daemon_* and shmbus_uid_* by value"

if [ "$fails" -ne 0 ]; then
        echo "--- shmbusd log:"
        cat "$d/daemon.log"
        exit 1
fi
echo "PASS"
