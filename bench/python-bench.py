# SPDX-License-Identifier: MIT
"""How fast a Python subscriber receives, against the usual Python IPC.

    PYTHONPATH=build/python/pkg LD_LIBRARY_PATH=build/.libs \\
        /usr/bin/python3 bench/python-bench.py [--quick] [--rounds N]

Two measurements, 64 B and 4 KiB messages, every transport in the same run:

stream  A writer process sends N messages as fast as it can; the reader (this
        process's child) counts them and times first to last. Transports:
        multiprocessing.Pipe (send_bytes/recv_bytes), a socketpair
        (AF_UNIX SOCK_SEQPACKET, so one recv is one message), and shmbus with
        the publisher's send() and the subscriber's recv() (a copy, as bytes)
        or peek() (zero copy: the message is borrowed, its length read, and
        released). Every writer sends the same bytes object each time.

drain   shmbus only: the ring is filled first, then the subscriber empties it
        alone; this is the subscriber's own cost, recv() against peek().

Readers check every message's length, and the count; nothing is dropped. Each
figure is the median of the rounds. Writer and reader are pinned to different
CPUs when there are two. Not part of make check: a benchmark measures.
"""
import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

import shmbus

CAPACITY_STREAM = 1 << 20  # the library's default ring
CAPACITY_DRAIN = 64 << 20
SIZES = (64, 4096)


# Taken once: a process pinned for one measurement must not narrow the next one's choice.
CPUS = sorted(os.sched_getaffinity(0))


def pin(cpu):
    if len(CPUS) > 1:
        os.sched_setaffinity(0, {CPUS[cpu % len(CPUS)]})


def unpin():
    os.sched_setaffinity(0, CPUS)


def run_pair(reader, writer, *args):
    """Run reader and writer in two processes; return the reader's rate."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    out = ctx.Queue()
    r = ctx.Process(target=reader, args=(ready, out, *args))
    w = ctx.Process(target=writer, args=(ready, *args))
    r.start()
    w.start()
    w.join(300)
    rate = out.get(timeout=300)
    r.join(300)
    if r.exitcode or w.exitcode:
        raise RuntimeError("a benchmark process failed")
    return rate


def timed(recv_one, n, size):
    recv_one()  # the first message starts the clock
    t0 = time.perf_counter()
    for _ in range(n - 1):
        if recv_one() != size:
            raise RuntimeError("wrong message length")
    return (n - 1) / (time.perf_counter() - t0)


# ---- multiprocessing.Pipe --------------------------------------------------------------

def pipe_reader(ready, out, conns, n, size):
    pin(0)
    rd, wr = conns
    wr.close()
    ready.set()
    out.put(timed(lambda: len(rd.recv_bytes()), n, size))


def pipe_writer(ready, conns, n, size):
    pin(1)
    rd, wr = conns
    rd.close()
    payload = b"x" * size
    ready.wait()
    for _ in range(n):
        wr.send_bytes(payload)


# ---- socketpair -------------------------------------------------------------------------

def sock_reader(ready, out, socks, n, size):
    pin(0)
    rd, wr = socks
    wr.close()
    ready.set()
    recv = rd.recv
    out.put(timed(lambda: len(recv(65536)), n, size))


def sock_writer(ready, socks, n, size):
    pin(1)
    rd, wr = socks
    rd.close()
    payload = b"x" * size
    ready.wait()
    for _ in range(n):
        wr.send(payload)


# ---- shmbus -----------------------------------------------------------------------------

def shm_reader(ready, out, where, n, size, mode):
    pin(0)
    sub = shmbus.Channel.open(*where).subscriber()
    ready.set()
    if mode == "recv":
        recv = sub.recv
        out.put(timed(lambda: len(recv()), n, size))
    else:
        peek = sub.peek

        def one():
            m = peek()
            k = len(m)
            m.release()
            return k

        out.put(timed(one, n, size))


def shm_writer(ready, where, n, size, mode):
    pin(1)
    pub = shmbus.Channel.open(*where, publish=True).publisher()
    send = pub.send
    payload = b"x" * size
    ready.wait()
    for _ in range(n):
        send(payload)


def drain(where, n, size, mode):
    """Fill the ring, then time emptying it; again until n messages were timed."""
    pin(0)
    chan = shmbus.Channel.open(*where, publish=True)
    sub, pub = chan.subscriber(), chan.publisher()
    payload = b"x" * size
    if mode == "recv":
        recv = sub.recv

        def one():
            return len(recv(0))
    else:
        peek = sub.peek

        def one():
            m = peek(0)
            k = len(m)
            m.release()
            return k

    done, elapsed = 0, 0.0
    while done < n:
        k = 0
        try:
            while k < n - done:
                pub.send(payload, timeout=0)
                k += 1
        except BlockingIOError:
            pass  # full
        t0 = time.perf_counter()
        for _ in range(k):
            if one() != size:
                raise RuntimeError("wrong message length")
        elapsed += time.perf_counter() - t0
        done += k
    return n / elapsed


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="shmbus-pybench-", dir="/dev/shm")
        self.serial = 0

    def channel(self, capacity):
        self.serial += 1
        name = "bench%d" % self.serial
        shmbus.Channel.create(self.dir, name, capacity=capacity, max_msg=65536).close()
        return (self.dir, name)

    def count(self, size, drain_mode=False):
        n = 400_000 if size <= 64 else 100_000
        if drain_mode:
            n *= 2
        return n // (4 if self.args.quick else 1)

    def one_round(self, size):
        n = self.count(size)
        res = {}
        res["pipe"] = run_pair(pipe_reader, pipe_writer, multiprocessing.Pipe(duplex=False), n,
                               size)
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in pair:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        res["socketpair"] = run_pair(sock_reader, sock_writer, pair, n, size)
        for s in pair:
            s.close()
        for mode in ("recv", "peek"):
            where = self.channel(CAPACITY_STREAM)
            res["shmbus " + mode] = run_pair(shm_reader, shm_writer, where, n, size, mode)
            shmbus.Channel.unlink(*where)
        nd = self.count(size, drain_mode=True)
        for mode in ("recv", "peek"):
            where = self.channel(CAPACITY_DRAIN)
            try:
                res["drain " + mode] = drain(where, nd, size, mode)
            finally:
                unpin()
            shmbus.Channel.unlink(*where)
        return res

    def run(self):
        print("shmbus %s, Python %s, %d CPUs, %d rounds%s" % (
            shmbus.library_version(), sys.version.split()[0], os.cpu_count(),
            self.args.rounds, " (quick)" if self.args.quick else ""))
        for size in SIZES:
            rounds = [self.one_round(size) for _ in range(self.args.rounds)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print("\n%d B messages (stream: %d, drain: %d)" % (
                size, self.count(size), self.count(size, drain_mode=True)))
            print("  %-20s %12s %8s   %s" % ("transport", "messages/s", "ratio",
                                            "rounds (M msg/s)"))

            def line(k, base):
                each = " ".join("%.2f" % (r[k] / 1e6) for r in rounds)
                print("  %-20s %12.0f %7.2fx   %s" % (k, med[k], med[k] / med[base], each))

            for k in ("pipe", "socketpair", "shmbus recv", "shmbus peek"):
                line(k, "pipe")
            for k in ("drain recv", "drain peek"):
                line(k, "drain recv")
            print("  (medians; stream ratios to the pipe, drain ratios to drain recv)")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per figure (median)")
    b = Bench(ap.parse_args())
    try:
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
