# SPDX-License-Identifier: MIT
"""shmbus: publish and receive messages through shared memory.

A channel is a ring of variable-size messages in shared memory that every
subscriber reads in publish order; after setup, publishing and receiving make
no system call. The daemon, shmbusd, creates channels and checks who may use
them.

    import shmbus

    with shmbus.Client() as client:              # $SHMBUS_SOCKET or the default socket
        chan = client.open("sensors", publish=True, create=True)
        pub = chan.publisher()
        sub = chan.subscriber()

        pub.send(b"hello")                       # a copy
        with pub.claim(4) as buf:                # zero copy: write in place
            buf[:] = b"abcd"                     # committed at the end of the block

        assert sub.recv(timeout=1.0) == b"hello" # a copy, as bytes
        with sub.peek(timeout=1.0) as view:      # zero copy: a read-only memoryview
            assert view == b"abcd"               # given back at the end of the block

Timeouts are in seconds as elsewhere in Python: None waits forever, 0 does not
wait (BlockingIOError), and a timeout that runs out raises TimeoutError. The
GIL is released while waiting.

Errors are OSError subclasses with errno, strerror (the daemon's explanation
where it gave one) and filename (the channel): shmbus.Error, and
shmbus.PermissionError, shmbus.FileNotFoundError, ... which are also the
built-in exceptions of the same name, so `except PermissionError` catches them.

Event loops: Subscriber.fileno() and Publisher.fileno() are descriptors for
select/selectors; WaitSet waits for many objects in one thread; in asyncio,
`await sub.recv_async()`, `async for msg in sub` and `await pub.send_async()`
wait in the running loop.

Zero-copy memory is never given back to the channel while Python can still
see it: Message.release(), Claim.commit() and the end of their `with` blocks
raise BufferError while views of them exist, and the memoryview a `with`
block gave out is released at its end, so using it afterwards raises
ValueError rather than reading recycled memory.
"""

from ._shmbus import (
    DEFAULT_SOCKET,
    HISTORY_ALL,
    POLICY_BLOCK,
    POLICY_OVERWRITE,
    BlockingIOError,
    Channel,
    Claim,
    Client,
    ConnectionError,
    Error,
    FileExistsError,
    FileNotFoundError,
    Message,
    PermissionError,
    Publisher,
    StaleError,
    Subscriber,
    TimeoutError,
    WaitSet,
    __version__,
    library_version,
    strerror,
)

# The exceptions named like built-ins (PermissionError, TimeoutError, ...) are
# left out, so that `from shmbus import *` cannot shadow the built-ins: use
# shmbus.PermissionError, or simply the built-in, which catches it too.
__all__ = [
    "Client",
    "Channel",
    "Publisher",
    "Claim",
    "Subscriber",
    "Message",
    "WaitSet",
    "Error",
    "StaleError",
    "DEFAULT_SOCKET",
    "HISTORY_ALL",
    "POLICY_BLOCK",
    "POLICY_OVERWRITE",
    "library_version",
    "strerror",
]
