# SPDX-License-Identifier: MIT
# Plots for docs/PERFORMANCE.md from shmbus-bench's data files.
# Usage: gnuplot -e "dir='bench/results'" bench/plot.gp
if (!exists("dir")) dir = "bench/results"
set terminal pngcairo size 1000,560 font ",10" noenhanced
set grid ytics
set key outside right top

# Each plot only if its scenario ran (shmbus-bench writes data files for those alone).
have(name) = system("test -s ".dir."/".name." && echo yes") eq "yes"

# Round-trip latency percentiles, one cluster per transport and reader.
if (have("rtt.dat")) {
set output dir."/rtt.png"
set title "64 B round trip between two processes on two CPUs (lower is better)"
set ylabel "microseconds (log scale)"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30 left
plot dir."/rtt.dat" using 2:xtic(1) title "p50", \
     "" using 3 title "p90", \
     "" using 4 title "p99", \
     "" using 5 title "p99.9"
}

# The event-loop round trip (issue 18): both readers parked in epoll.
if (have("events-rtt.dat")) {
set output dir."/events-rtt.png"
set title "64 B round trip, both readers parked in epoll (lower is better)"
set ylabel "microseconds (log scale)"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30 left
plot dir."/events-rtt.dat" using 2:xtic(1) title "p50", \
     "" using 3 title "p90", \
     "" using 4 title "p99"
unset logscale y
}

# Streaming throughput against message size, messages and bytes.
if (have("stream-msgs.dat")) {
set style fill empty
set style data linespoints
set logscale xy
set xtics (64, 1024, 4096, 65536) norotate
set xlabel "message size (bytes)"
set key autotitle columnhead
cols = words(system("head -1 ".dir."/stream-msgs.dat"))

set output dir."/stream-msgs.png"
set title "One-way streaming, one publisher and one subscriber (higher is better)"
set ylabel "messages per second"
plot for [c=2:cols] dir."/stream-msgs.dat" using 1:c lw 2 pt 7

set output dir."/stream-mbs.png"
set ylabel "MB per second"
plot for [c=2:cols] dir."/stream-mbs.dat" using 1:c lw 2 pt 7
}

# The matrix (--only matrix): shmbus against an SPSC ring with the same ring bytes, per API.
do for [api in "copy zero-copy"] {
        f = dir."/matrix-".api.".dat"
        if (have("matrix-".api.".dat")) {
                reset
                set terminal pngcairo size 820,560 font ",10" noenhanced
                set output dir."/matrix-".api.".png"
                set title "shmbus ".api." streaming / SPSC ring with the same ring bytes, same round\n(1 = as fast; the target is 0.9 everywhere)"
                set xlabel "message size (bytes)"
                set ylabel "ring bytes"
                set cblabel "ratio"
                set cbrange [0:2]
                set palette defined (0 "#c0392b", 0.9 "#f5b041", 1 "#f9e79f", 2 "#27ae60")
                unset key
                set tics out nomirror
                plot f matrix rowheaders columnheaders using 1:2:($3 == $3 ? $3 : 1/0) with image, \
                     f matrix rowheaders columnheaders using 1:2:($3 == $3 ? sprintf("%.2f", $3) : "-") with labels
        }
}
