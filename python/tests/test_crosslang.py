# SPDX-License-Identifier: MIT
"""C and Python on one channel, both ways, through a private shmbusd, with the
daemon's ledger (the stat counters) checked against what each side saw."""
import json
import subprocess
import time

N = 300


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_c_publisher_python_subscriber(daemon, client):
    chan = client.open("c2py", create=True, capacity=65536)
    sub = chan.subscriber()
    lines = "".join("c-message-%d\n" % i for i in range(N))
    r = daemon.cli("-t", "5000", "pub", "c2py", "-", input=lines.encode())
    assert r.returncode == 0, r.stderr
    got = [sub.recv(timeout=10) for _ in range(N)]
    assert got == [b"c-message-%d" % i for i in range(N)]
    assert sub.received == N and sub.lost == 0
    stat = daemon.stat("c2py")
    assert stat["published"] == N and stat["lost"] == 0
    (s,) = stat["subscribers"]
    assert s["received"] == N and s["lost"] == 0


def test_python_publisher_c_subscriber(daemon, client):
    chan = client.open("py2c", publish=True, create=True, capacity=65536)
    tail = subprocess.Popen(
        [daemon.cli_path, "--no-color", "-s", daemon.sock, "tail", "py2c", "-n", "0",
         "--follow", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: daemon.stat("py2c")["subscribers_active"] == 1), \
            tail.stderr.read1().decode() if tail.poll() is not None else "tail did not subscribe"
        pub = chan.publisher()
        for i in range(N):
            if i % 2:
                pub.send(b"py-message-%d" % i, timeout=10)
            else:
                payload = b"py-message-%d" % i
                with pub.claim(len(payload), timeout=10) as buf:
                    buf[:] = payload
        pub.send(b"\x00\x01\xff", timeout=10)  # binary: the C side shows it as hex
        out = [json.loads(tail.stdout.readline()) for _ in range(N + 1)]
    finally:
        tail.terminate()
        tail.wait(10)
    assert [o["text"] for o in out[:N]] == ["py-message-%d" % i for i in range(N)]
    assert out[N]["hex"] == "0001ff" and out[N]["len"] == 3
    seqs = [o["seq"] for o in out]
    assert seqs == list(range(seqs[0], seqs[0] + N + 1))
    stat = daemon.stat("py2c")
    assert stat["published"] == N + 1 and stat["lost"] == 0
