# SPDX-License-Identifier: MIT
"""Fixtures: a private shmbusd per test, started from the build tree.

Like tests/testdaemon.h for the C tests: a private directory under /dev/shm
holds the socket, the channel directory and the daemon's log, so nothing
global is touched and a daemon already running on the machine does not matter.
tests/test-python.sh sets SHMBUS_BUILDDIR and makes `import shmbus` find the
package the build assembled.
"""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import shmbus

BUILDDIR = os.environ.get(
    "SHMBUS_BUILDDIR", os.path.join(os.path.dirname(__file__), "..", "..", "build")
)


class Daemon:
    def __init__(self, tmp):
        self.dir = tmp
        self.sock = os.path.join(tmp, "shmbusd.sock")
        self.shm = os.path.join(tmp, "channels")
        self.log = os.path.join(tmp, "shmbusd.log")
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [os.path.join(BUILDDIR, "daemon", "shmbusd"), "-s", self.sock, "-d", self.shm,
                 "-u", "300"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                shmbus.Client(self.sock).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.01)
        raise RuntimeError("shmbusd did not start:\n" + self.log_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return "(no log)"

    def client(self):
        return shmbus.Client(self.sock)

    cli_path = os.path.join(BUILDDIR, "cli", "shmbus-cli")

    def cli(self, *args, **kw):
        """Run shmbus-cli against this daemon."""
        return subprocess.run([self.cli_path, "--no-color", "-s", self.sock, *args],
                              capture_output=True, timeout=60, check=False, **kw)

    def stat(self, name):
        with self.client() as c:
            reply = c.request({"op": "stat", "name": name})
        assert reply["ok"], reply
        return reply


@pytest.fixture
def daemon(request):
    tmp = tempfile.mkdtemp(prefix="shmbus-pytest-", dir="/dev/shm")
    d = Daemon(tmp)
    try:
        d.start()
        yield d
    finally:
        d.stop()
        if getattr(request.node, "rep_failed", False):
            print("--- shmbusd log:\n" + d.log_text())
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def client(daemon):
    with daemon.client() as c:
        yield c


@pytest.fixture
def chan(client):
    """A fresh 64 KiB "block" channel opened for publishing."""
    with client.open("test", publish=True, create=True, capacity=65536) as ch:
        yield ch


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.rep_failed = True
