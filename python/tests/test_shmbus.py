# SPDX-License-Identifier: MIT
"""The binding against a private shmbusd: messages, zero-copy lifetimes,
timeouts, errors, threads."""
import builtins
import errno
import gc
import itertools
import os
import pydoc
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmbus


def test_version_and_help():
    assert shmbus.__version__ == shmbus.library_version()
    text = pydoc.render_doc(shmbus)
    for word in ("Client", "Subscriber", "peek", "claim", "BufferError", "TimeoutError"):
        assert word in text
    assert "zero copy" in shmbus.Subscriber.peek.__doc__


def test_exception_classes():
    assert issubclass(shmbus.Error, OSError)
    for name in ("PermissionError", "TimeoutError", "FileNotFoundError", "FileExistsError",
                 "BlockingIOError", "ConnectionError"):
        ours = getattr(shmbus, name)
        assert issubclass(ours, shmbus.Error)
        assert issubclass(ours, getattr(builtins, name))
    assert issubclass(shmbus.StaleError, shmbus.Error)
    # `from shmbus import *` must not shadow the built-in exceptions.
    assert "PermissionError" not in shmbus.__all__


def test_send_recv(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    pub.send(b"hello")
    pub.send(bytearray(b"bytearray"))
    pub.send(memoryview(b"xxview")[2:])
    assert sub.recv() == b"hello"
    assert sub.recv(timeout=1) == b"bytearray"
    assert sub.recv(1.0) == b"view"
    assert sub.received == 3 and sub.lost == 0
    assert chan.name == "test" and pub.max_msg == chan.max_msg == 16384


def test_iteration(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    for i in range(5):
        pub.send(b"%d" % i)
    assert list(itertools.islice(sub, 5)) == [b"0", b"1", b"2", b"3", b"4"]


def test_recv_into(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    pub.send(b"0123456789")
    small = bytearray(4)
    with pytest.raises(shmbus.Error) as e:
        sub.recv_into(small)
    assert e.value.errno == errno.EMSGSIZE
    buf = bytearray(64)
    assert sub.recv_into(buf, timeout=0) == 10  # the message stayed
    assert buf[:10] == b"0123456789"


def test_timeouts(chan):
    sub = chan.subscriber()
    with pytest.raises(BlockingIOError):
        sub.recv(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        sub.recv(timeout=0.05)
    assert time.monotonic() - t0 >= 0.045
    assert isinstance(e.value, shmbus.TimeoutError) and e.value.errno == errno.ETIMEDOUT
    with pytest.raises(TimeoutError):
        sub.peek(timeout=0.01)
    with pytest.raises(ValueError):
        sub.recv(timeout=-1)


def test_claim_commits_and_aborts(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    with pub.claim(5) as buf:
        assert isinstance(buf, memoryview) and not buf.readonly and len(buf) == 5
        buf[:] = b"abcde"
    assert sub.recv(timeout=1) == b"abcde"
    with pytest.raises(KeyError):
        with pub.claim(3) as buf:
            buf[:] = b"xyz"
            raise KeyError("the claim is aborted")
    with pytest.raises(BlockingIOError):
        sub.recv(timeout=0)
    # A claim dropped unfinished is aborted, and the channel goes on.
    c = pub.claim(4)
    assert c.state == "open"
    del c
    pub.send(b"next")
    assert sub.recv(timeout=1) == b"next"


def test_claim_view_unusable_after_commit(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    claim = pub.claim(3)
    with claim as buf:
        buf[:] = b"one"
    assert claim.state == "committed"
    with pytest.raises(ValueError):
        buf[0] = 1  # released: never writes published memory
    with pytest.raises(ValueError):
        memoryview(claim)
    with pytest.raises(ValueError):
        claim.commit()
    assert sub.recv(timeout=1) == b"one"


def test_claim_refuses_to_end_while_exported(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    claim = pub.claim(4)
    with pytest.raises(BufferError):
        with claim as buf:
            buf[:] = b"abcd"
            leaked = buf[1:3]  # shares the export
    assert claim.state == "open"
    assert leaked == b"bc"  # still the claimed, unpublished space
    with pytest.raises(BufferError):
        claim.commit()
    with pytest.raises(BufferError):
        pub.close()
    with pytest.raises(shmbus.Error) as e:
        pub.send(b"x")  # one claim at a time
    assert e.value.errno == errno.EBUSY
    del leaked
    claim.commit()
    assert sub.recv(timeout=1) == b"abcd"


def test_claim_too_big(chan):
    pub = chan.publisher()
    with pytest.raises(shmbus.Error) as e:
        pub.claim(chan.max_msg + 1)
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(shmbus.Error):
        pub.send(b"x" * (chan.max_msg + 1))


def test_peek_zero_copy(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    pub.send(b"borrowed")
    msg = sub.peek(timeout=1)
    with msg as view:
        assert view.readonly and view == b"borrowed" and len(msg) == 8
        assert view.obj is msg
        with pytest.raises(TypeError):
            view[0] = 1
    assert msg.released
    with pytest.raises(ValueError):
        view[0]  # released with the message: never reads a recycled record
    with pytest.raises(ValueError):
        memoryview(msg)
    with pytest.raises(ValueError):
        msg.tobytes()
    msg.release()  # idempotent


def test_peek_release_refused_while_exported(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    pub.send(b"first")
    pub.send(b"second")
    msg = sub.peek()
    view = memoryview(msg)
    with pytest.raises(BufferError):
        msg.release()
    with pytest.raises(BufferError):
        sub.recv(timeout=0)  # would release the borrowed message
    with pytest.raises(BufferError):
        sub.peek(timeout=0)
    with pytest.raises(BufferError):
        sub.close()
    assert view == b"first" and not msg.released
    view.release()
    msg.release()
    assert sub.recv(timeout=1) == b"second"


def test_peek_with_leaked_view(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    pub.send(b"leak")
    pub.send(b"after")
    with pytest.raises(BufferError):
        with sub.peek() as view:
            leaked = view[:]
    assert leaked == b"leak"  # still borrowed, so still the message
    del leaked
    gc.collect()
    assert sub.recv(timeout=1) == b"after"  # releases the old one first


def test_next_peek_releases_an_unexported_message(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    pub.send(b"a")
    pub.send(b"b")
    m1 = sub.peek()
    assert bytes(m1) == b"a"
    m2 = sub.peek()
    assert m1.released and not m2.released
    assert m2.tobytes() == b"b"
    with pytest.raises(ValueError):
        memoryview(m1)
    sub.close()
    assert m2.released


def test_numpy_frombuffer_is_zero_copy(chan):
    np = pytest.importorskip("numpy")
    pub, sub = chan.publisher(), chan.subscriber()
    values = np.arange(16, dtype=np.uint32)
    with pub.claim(values.nbytes) as buf:
        np.frombuffer(buf, dtype=np.uint32)  # a temporary export, gone at once
        buf[:] = values.tobytes()
    msg = sub.peek(timeout=1)
    arr = np.frombuffer(msg, dtype=np.uint32)
    assert (arr == values).all()
    assert not arr.flags.writeable
    with pytest.raises(BufferError):
        msg.release()  # the array still reads the shared memory
    del arr
    msg.release()


def test_gil_released_while_waiting(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    got = []
    t = threading.Thread(target=lambda: got.append(sub.recv(timeout=10)))
    t.start()
    time.sleep(0.05)
    # The waiting thread holds no GIL: this thread runs Python meanwhile.
    n, end = 0, time.monotonic() + 0.2
    while time.monotonic() < end:
        n += 1
    assert n > 1000
    with pytest.raises(RuntimeError):
        sub.recv(timeout=0)  # one thread per subscriber
    pub.send(b"wake")
    t.join(10)
    assert got == [b"wake"]


def test_publisher_blocks_without_gil(client):
    ch = client.open("small", publish=True, create=True, capacity=4096, max_msg=64)
    pub, sub = ch.publisher(), ch.subscriber()
    sent = 0
    with pytest.raises(BlockingIOError):
        while True:
            pub.send(b"x" * 64, timeout=0)
            sent += 1
    with pytest.raises(TimeoutError):
        pub.send(b"y", timeout=0.02)
    done = threading.Event()

    def publish():
        pub.send(b"last", timeout=10)
        done.set()

    t = threading.Thread(target=publish)
    t.start()
    for _ in range(sent):
        assert sub.recv(timeout=10) == b"x" * 64
    assert sub.recv(timeout=10) == b"last"
    t.join(10)
    assert done.is_set()


def test_overwrite_counts_lost_and_stale(client):
    ch = client.open("ow", publish=True, create=True, capacity=4096, max_msg=64,
                     policy="overwrite")
    pub, sub = ch.publisher(), ch.subscriber()
    pub.send(b"first")
    msg = sub.peek()
    for i in range(500):
        pub.send(b"%d" % i)
    with pytest.raises(shmbus.StaleError) as e:
        msg.release()
    assert e.value.errno == errno.ESTALE
    while True:
        try:
            last = sub.recv(timeout=0)
        except BlockingIOError:
            break
    assert last == b"499"
    assert sub.lost > 0


def test_errors_carry_the_daemons_message(client, daemon):
    with pytest.raises(FileNotFoundError) as e:
        client.open("missing")
    assert isinstance(e.value, shmbus.Error)
    assert e.value.errno == errno.ENOENT and e.value.filename == "missing"
    assert e.value.strerror == "no channel missing"
    with pytest.raises(shmbus.Error) as e:
        client.open("bad name!", create=True)
    assert e.value.errno == errno.EINVAL and "channel names" in e.value.strerror
    with pytest.raises(FileNotFoundError) as e:
        client.delete("missing")
    assert e.value.strerror == "no channel missing"
    with pytest.raises(ValueError):
        client.open("geometry", create=True, capacity=3000)  # not a power of two
    with pytest.raises(FileNotFoundError):
        shmbus.Client(os.path.join(daemon.dir, "no-such-socket"))


def test_permission_error(client, daemon):
    ch = client.open("ro", create=True)  # subscribe-only mapping
    with pytest.raises(PermissionError) as e:
        ch.publisher()
    assert isinstance(e.value, shmbus.PermissionError) and e.value.errno == errno.EACCES


def test_file_exists_and_direct_channels(daemon):
    d = os.path.join(daemon.dir, "direct")
    os.mkdir(d)
    with shmbus.Channel.create(d, "c", capacity=8192, max_msg=128) as ch:
        with pytest.raises(FileExistsError):
            shmbus.Channel.create(d, "c")
        pub = ch.publisher()
        sub = shmbus.Subscriber(shmbus.Channel.open(d, "c"), spin_us=0)
        pub.send(b"direct")
        assert sub.recv(timeout=1) == b"direct"
    shmbus.Channel.unlink(d, "c")
    with pytest.raises(FileNotFoundError):
        shmbus.Channel.open(d, "c")


def test_delete_and_request(client):
    client.open("gone", create=True).close()
    assert client.request({"op": "hello"})["ok"] is True
    assert client.request('{"op": "stat", "name": "gone"}')["name"] == "gone"
    client.delete("gone")
    with pytest.raises(FileNotFoundError):
        client.open("gone")


def test_closed_objects(client):
    ch = client.open("closing", publish=True, create=True)
    pub, sub = ch.publisher(), shmbus.Subscriber(ch)
    ch.close()
    pub.send(b"still works")  # publishers and subscribers hold the channel
    assert sub.recv(timeout=1) == b"still works"
    with pytest.raises(ValueError):
        ch.publisher()
    pub.close()
    sub.close()
    assert pub.closed and sub.closed and ch.closed
    with pytest.raises(ValueError):
        pub.send(b"x")
    with pytest.raises(ValueError):
        sub.recv()
    client.close()
    with pytest.raises(ValueError):
        client.open("closing")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_permission_error_carries_the_daemons_message(client, daemon):
    client.open("private", create=True)  # owned by root: nobody may not subscribe
    os.chmod(daemon.dir, 0o755)
    probe = subprocess.run([sys.executable, "-c", "import shmbus"], user=65534, group=65534,
                           capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip("user nobody cannot import the build tree's package (a private checkout)")
    code = ("import shmbus, sys\n"
            "try:\n"
            "    shmbus.Client(sys.argv[1]).open('private')\n"
            "except PermissionError as e:\n"
            "    assert isinstance(e, shmbus.PermissionError), type(e)\n"
            "    print(e.errno, e.filename, e.strerror, sep='|')\n")
    r = subprocess.run([sys.executable, "-c", code, daemon.sock], user=65534, group=65534,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "%d|private|permission denied on channel private" % errno.EACCES


def test_signal_interrupts_a_wait(chan):
    sub = chan.subscriber()

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            sub.recv()  # forever, but Ctrl-C still works
        assert time.monotonic() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not sub.closed
    with pytest.raises(BlockingIOError):
        sub.recv(timeout=0)  # usable again: not left busy


def test_sanitizer_runtime_is_loaded():
    """Under SHMBUS_SANITIZED=1 the extension runs with ASan really active."""
    if os.environ.get("SHMBUS_SANITIZED") != "1" or "asan" not in os.environ.get(
            "LD_PRELOAD", ""):
        pytest.skip("not an ASan build")
    with open("/proc/self/maps", encoding="utf-8") as f:
        assert "asan" in f.read()


def test_existing_channel_with_other_settings(client):
    client.open("geo", create=True, capacity=65536, max_msg=1024, policy="overwrite")
    with pytest.raises(FileExistsError) as e:
        client.open("geo", create=True, capacity=131072)
    assert "capacity" in e.value.strerror and e.value.filename == "geo"
    ch = client.open("geo", create=True, capacity=131072, accept_existing=True)
    assert (ch.capacity, ch.max_msg, ch.policy) == (65536, 1024, "overwrite")
    assert ch.max_subscribers >= 1 and ch.max_publishers >= 1


def test_history_untethered_and_seq(client):
    ch = client.open("hist", publish=True, create=True, capacity=65536)
    pub = ch.publisher()
    live = ch.subscriber()
    assert live.seq is None
    for i in range(10):
        pub.send(b"%d" % i)
    late = ch.subscriber(history=3)
    assert [late.recv(0) for _ in range(3)] == [b"7", b"8", b"9"]
    assert late.seq == 9
    everything = shmbus.Subscriber(ch, history=shmbus.HISTORY_ALL)
    assert everything.recv(0) == b"0" and everything.seq == 0
    assert live.recv(0) == b"0"
    msg = live.peek(0)
    assert msg.seq == 1 == live.seq and bytes(msg) == b"1"
    msg.release()
    # An untethered monitor never holds the block channel's publishers back.
    monitor = ch.subscriber(untethered=True)
    for s in (live, late, everything):
        s.close()
    sent = 0
    try:
        while True:
            pub.send(b"x" * 1000, timeout=0)
            sent += 1
            if sent > 1000:
                break
    except BlockingIOError:
        pass
    assert sent > 1000  # a tethered subscriber would have filled the ring at ~60
    got = 0
    while True:
        try:
            monitor.recv(0)
            got += 1
        except BlockingIOError:
            break
    assert monitor.lost > 0 and got + monitor.lost == sent


def test_client_timeout_wait_and_grants(daemon):
    with shmbus.Client(daemon.sock, timeout=2.5) as c:
        c.open("granted", create=True, grant_uids={65534: "subscribe"},
               grant_gids={65534: ("subscribe", "publish")})
        stat = c.request({"op": "stat", "name": "granted"})
        assert stat["ok"] and "65534" in str(stat)
        with pytest.raises(ValueError):
            c.open("bad-grant", create=True, grant_uids={1: "read"})
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        shmbus.Client(os.path.join(daemon.dir, "nobody-listens"), wait=0.2)
    assert 0.15 < time.monotonic() - t0 < 5
    with pytest.raises(ValueError):
        shmbus.Client(daemon.sock, timeout=0)
