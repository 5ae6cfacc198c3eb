# SPDX-License-Identifier: MIT
"""asyncio for shmbus: coroutines on the subscribers' and publishers' descriptors.

Subscriber.recv_async(), peek_async(), `async for` and Publisher.send_async()
call these. Each try is the non-blocking call (timeout=0); when it says
BlockingIOError, that also re-armed the object's descriptor (fileno()), so
waiting for the descriptor in the running loop (add_reader) cannot miss a
message committed after the try. A wake-up may be spurious: the next try then
says BlockingIOError again and re-arms. Nothing blocks the loop.

One task waits on an object at a time: a loop has one reader callback per
descriptor, so a second waiter would silently replace the first.
"""
import asyncio
import errno

from . import _shmbus

_waiting = set()  # descriptors a task is waiting on


def _deadline(timeout):
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be None or a number >= 0")
    return asyncio.get_running_loop().time() + timeout


async def _wait_readable(obj, deadline):
    loop = asyncio.get_running_loop()
    fd = obj.fileno()
    if fd in _waiting:
        raise RuntimeError("another task is waiting on this %s; use one task per %s"
                           % (type(obj).__name__, type(obj).__name__))
    fut = loop.create_future()

    def ready():
        if not fut.done():
            fut.set_result(None)

    _waiting.add(fd)
    loop.add_reader(fd, ready)
    try:
        if deadline is None:
            await fut
        else:
            left = deadline - loop.time()
            if left <= 0:
                raise _shmbus.TimeoutError(errno.ETIMEDOUT, "timed out")
            try:
                await asyncio.wait_for(fut, left)
            except asyncio.TimeoutError:
                raise _shmbus.TimeoutError(errno.ETIMEDOUT, "timed out") from None
    finally:
        loop.remove_reader(fd)
        _waiting.discard(fd)


async def _retry(obj, attempt, timeout):
    if timeout == 0:
        return attempt()
    deadline = _deadline(timeout)
    # Made before the first try: a publisher's descriptor follows the tries made after it.
    obj.fileno()
    while True:
        try:
            return attempt()
        except _shmbus.BlockingIOError:
            pass
        await _wait_readable(obj, deadline)


async def recv_async(sub, timeout=None):
    """The next message as bytes; see Subscriber.recv_async()."""
    return await _retry(sub, lambda: sub.recv(0), timeout)


async def peek_async(sub, timeout=None):
    """The next message borrowed, a Message; see Subscriber.peek_async()."""
    return await _retry(sub, lambda: sub.peek(0), timeout)


async def send_async(pub, data, timeout=None):
    """Send, waiting for room in the loop; see Publisher.send_async()."""
    return await _retry(pub, lambda: pub.send(data, 0), timeout)
