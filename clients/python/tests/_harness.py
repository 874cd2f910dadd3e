"""Starts and stops real segmentd servers for the tests.

The binary is ``$SEGMENTD_BIN``, else ``../../.build/debug/segmentd`` relative to the
package (a ``swift build`` of this repository). Each server lives in its own
``/tmp/sdXXXX`` directory (short: a Unix socket path must stay under ~100 bytes) and is
always stopped: by the test's cleanup, and by ``atexit`` should a test runner die.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
if str(PACKAGE_ROOT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_ROOT))  # test the source tree, installed or not

import segmentd  # noqa: E402  (the tests import it from here)

__all__ = ["segmentd", "Server", "server_binary", "start_server", "wait_until", "read_log", "contacts",
           "raw_ping", "free_port", "VIP_RULE", "PACKAGE_ROOT"]

_LIVE = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers():
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


atexit.register(_kill_leftovers)


def server_binary():
    """The segmentd binary, or raises SkipTest naming what was looked for."""
    candidates = []
    if os.environ.get("SEGMENTD_BIN"):
        candidates.append(Path(os.environ["SEGMENTD_BIN"]))
    candidates.append(PACKAGE_ROOT.parent.parent / ".build" / "debug" / "segmentd")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise unittest.SkipTest("segmentd binary not found (set SEGMENTD_BIN, or swift build): looked at "
                            + ", ".join(str(c) for c in candidates))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_ping(address, timeout=0.5, token=None):
    """True if a segmentd answers rpc.ping at ``address`` (a socket path or (host, port);
    with ``token``, after rpc.hello)."""
    try:
        if isinstance(address, tuple):
            s = socket.create_connection(address, timeout=timeout)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with s:
            if not isinstance(address, tuple):
                s.settimeout(timeout)
                s.connect(address)
            if token is not None:
                s.sendall(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "rpc.hello",
                                      "params": {"token": token}}).encode() + b"\n")
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"rpc.ping"}\n')
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                data += chunk
                for line in data.split(b"\n")[:-1]:
                    reply = json.loads(line)
                    if reply.get("id") == 1:
                        return reply.get("result") == {"pong": True}
    except (OSError, ValueError):
        return False


class Server:
    """One segmentd process on a temporary data directory; restartable on the same one."""

    def __init__(self, *args, tcp=False, token=None):
        self.binary = server_binary()
        self.dir = tempfile.mkdtemp(prefix="sd", dir="/tmp")
        self.socket = os.path.join(self.dir, "s.sock")
        self.data_dir = os.path.join(self.dir, "data")
        self.export_dir = os.path.join(self.dir, "exports")
        self.args = list(args)
        self.token = token
        self.tcp = tcp
        self.port = None
        self.proc = None
        self.starts = 0
        self.log_path = os.path.join(self.dir, "server.log")

    def command(self):
        cmd = [self.binary, "serve", "--data-dir", self.data_dir, "--socket", self.socket,
               "--export-dir", self.export_dir, "--reevaluate-every", "86400", "--log-level", "warning"]
        if self.tcp:
            cmd += ["--tcp", f"127.0.0.1:{self.port}", "--token", self.token]
        return cmd + self.args

    def start(self, deadline=15.0):
        """Starts the server and returns once it answers rpc.ping (on the socket and TCP)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        end = time.monotonic() + deadline
        for _ in range(5):  # a TCP port taken meanwhile: try another
            if self.tcp and (self.port is None or self.starts == 0):
                self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
            with _LIVE_LOCK:
                _LIVE.add(self.proc)
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                if raw_ping(self.socket) and (not self.tcp or raw_ping(("127.0.0.1", self.port), token=self.token)):
                    self.starts += 1
                    return self
                time.sleep(0.01)
            if self.proc.poll() is None:
                self.kill()
                raise RuntimeError(f"segmentd did not answer within {deadline} s:\n{self.log_tail()}")
            if not self.tcp or "in use" not in self.log_tail():
                raise RuntimeError(f"segmentd exited with {self.proc.returncode}:\n{self.log_tail()}")
            self.port = None
            self.starts = 0
        raise RuntimeError("could not find a free TCP port")

    def kill(self):
        """SIGKILL: no drain, no cleanup (the socket file stays behind)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(self.proc)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


def start_server(testcase_cls, *args, **kw):
    """Starts a Server for a TestCase class and registers its cleanup (also on failure)."""
    server = Server(*args, **kw)
    testcase_cls.addClassCleanup(server.cleanup)
    return server.start()


def wait_until(predicate, timeout, interval=0.01, what="condition"):
    """Polls ``predicate`` until true; fails (AssertionError) after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_log(client, book=None):
    """The book's whole event log, by events.read pages (bounded)."""
    events, after = [], 0
    for _ in range(1000):
        page = client.call("events.read", {"after": after, "limit": 10000}, book=book)
        events.extend(page["events"])
        if not page["events"]:
            return events
        after = page["next"]
    raise AssertionError("event log did not end within 1000 pages")


VIP_RULE = [{"dimension": "label", "op": "contains", "value": "vip"}]


def contacts(prefix, n, vip=True, start=0):
    return [{"email": f"{prefix}{i}@example.com", "labels": ["vip"] if vip else ["plain"]}
            for i in range(start, start + n)]
