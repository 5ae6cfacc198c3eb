# SPDX-License-Identifier: MIT
"""Event loops: the subscribers' and publishers' descriptors, WaitSet, asyncio."""
import asyncio
import os
import select
import threading
import time

import pytest

import shmbus


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_fileno_polls_readable(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    fd = sub.fileno()
    assert fd == sub.fileno() >= 0
    with pytest.raises(BlockingIOError):
        sub.recv(0)  # drained: armed
    assert select.select([fd], [], [], 0)[0] == []
    pub.send(b"ready")
    assert select.select([fd], [], [], 5)[0] == [fd]
    assert sub.recv(0) == b"ready"
    with pytest.raises(BlockingIOError):
        sub.recv(0)
    assert select.select([fd], [], [], 0)[0] == []  # re-armed, not readable


def test_recv_async_and_async_for(chan):
    pub, sub = chan.publisher(), chan.subscriber()

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, pub.send, b"later")
        assert await sub.recv_async() == b"later"
        # A publisher in another thread, while the loop waits on the descriptor.
        t = threading.Thread(target=lambda: [pub.send(b"%d" % i, timeout=5) for i in range(100)])
        t.start()
        got = []
        async for msg in sub:
            got.append(msg)
            if len(got) == 100:
                break
        t.join()
        assert got == [b"%d" % i for i in range(100)]
        with pytest.raises(TimeoutError):
            await sub.recv_async(timeout=0.05)
        with pytest.raises(BlockingIOError):
            await sub.recv_async(timeout=0)
        pub.send(b"zero-copy")
        msg = await sub.peek_async(timeout=5)
        with msg as view:
            assert view == b"zero-copy"

    run(main())


def test_one_task_per_subscriber(chan):
    pub, sub = chan.publisher(), chan.subscriber()

    async def main():
        first = asyncio.ensure_future(sub.recv_async())
        await asyncio.sleep(0.02)
        with pytest.raises(RuntimeError):
            await sub.recv_async()
        pub.send(b"one")
        assert await first == b"one"

    run(main())


def test_loop_keeps_running_while_waiting(chan):
    pub, sub = chan.publisher(), chan.subscriber()
    ticks = []

    async def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
        pub.send(b"done")

    async def main():
        t = asyncio.ensure_future(ticker())
        assert await sub.recv_async(timeout=10) == b"done"
        await t

    run(main())
    assert len(ticks) == 5


def test_send_async_waits_for_room(client):
    ch = client.open("full", publish=True, create=True, capacity=4096, max_msg=64)
    pub, sub = ch.publisher(), ch.subscriber()
    n = 0
    with pytest.raises(BlockingIOError):
        while True:
            pub.send(b"x" * 64, timeout=0)
            n += 1

    async def main():
        loop = asyncio.get_running_loop()

        def drain():
            for _ in range(n):
                sub.recv(0)

        loop.call_later(0.05, drain)
        await pub.send_async(b"room", timeout=10)
        assert sub.recv(0) == b"room"
        pub.send(b"y" * 64)
        while True:
            try:
                pub.send(b"x" * 64, timeout=0)
            except BlockingIOError:
                break
        with pytest.raises(TimeoutError):
            await pub.send_async(b"z" * 64, timeout=0.05)

    run(main())


def test_waitset(client):
    a = client.open("a", publish=True, create=True)
    b = client.open("b", publish=True, create=True)
    pa, pb = a.publisher(), b.publisher()
    sa, sb = a.subscriber(), b.subscriber()
    with shmbus.WaitSet() as ws:
        ws.add(sa)
        ws.add(sb)
        assert len(ws) == 2
        with pytest.raises(FileExistsError):
            ws.add(sa)
        with pytest.raises(BlockingIOError):
            ws.wait(0)
        with pytest.raises(TimeoutError):
            ws.wait(0.02)
        pb.send(b"to b")
        assert ws.wait(5) == [sb]
        assert sb.recv(0) == b"to b"
        with pytest.raises(BlockingIOError):
            sb.recv(0)  # drained: re-armed
        with pytest.raises(RuntimeError):
            sa.close()  # still in the set
        t = threading.Thread(target=lambda: (time.sleep(0.05), pa.send(b"to a")))
        t.start()
        assert ws.wait(10) == [sa]  # the GIL is released while waiting
        t.join()
        assert sa.recv(0) == b"to a"
        with pytest.raises(BlockingIOError):
            sa.recv(0)
        assert select.select([ws.fileno()], [], [], 0)[0] == []
        ws.remove(sa)
        with pytest.raises(KeyError):
            ws.remove(sa)
        sa.close()
    sb.close()  # the closed set let go of it


def test_waitset_plain_descriptor():
    rd, wr = os.pipe()
    try:
        with shmbus.WaitSet() as ws:
            ws.add(rd)
            with pytest.raises(BlockingIOError):
                ws.wait(0)
            os.write(wr, b"x")
            assert ws.wait(5) == [rd]
    finally:
        os.close(rd)
        os.close(wr)


def test_c_publisher_async_subscriber(daemon, client):
    chan = client.open("c2aio", create=True, capacity=65536)
    sub = chan.subscriber()
    lines = "".join("c-%d\n" % i for i in range(200))

    async def main():
        proc = await asyncio.create_subprocess_exec(
            daemon.cli_path, "--no-color", "-s", daemon.sock, "-t", "5000", "pub", "c2aio", "-",
            stdin=asyncio.subprocess.PIPE)
        await proc.communicate(lines.encode())
        assert proc.returncode == 0
        return [await sub.recv_async(timeout=10) for _ in range(200)]

    assert run(main()) == [b"c-%d" % i for i in range(200)]
    assert daemon.stat("c2aio")["subscribers"][0]["received"] == 200


def test_ready_message_is_a_finished_awaitable(chan):
    pub, sub = chan.publisher(), chan.subscriber()

    async def main():
        pub.send(b"a")
        pub.send(b"b")
        pub.send(b"c")
        assert await sub.recv_async() == b"a"  # no suspension, no descriptor
        assert await asyncio.wait_for(sub.recv_async(), 5) == b"b"
        assert await asyncio.ensure_future(sub.recv_async(timeout=1)) == b"c"
        with pytest.raises(ValueError):
            sub.recv_async(timeout=-1)
        with pytest.raises(TypeError):
            sub.recv_async(bogus=1)

    run(main())
