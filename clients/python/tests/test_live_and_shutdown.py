"""Test 6: a live-only subscription (``after=None``) and a graceful shutdown.

* ``subscribe()`` without ``after`` starts after ``events.read``'s ``newest_cursor``: the
  events written before it are not delivered, those written after are, once each and in
  order, across SIGKILL restarts of the server (also one before it received anything).
* SIGTERM with subscriptions open: the server ends them at once with
  ``{"ended": "cancelled", "last_cursor": N}`` and exits long before its drain time
  (``--drain-seconds 60``; the test allows half of it), and the subscription resumes on the
  restarted server with every event once.
"""
import asyncio
import signal
import subprocess
import time
import unittest

from _harness import Server, read_log, segmentd, wait_until
from test_reliability import BACKOFF, setup_trigger, write

OLD = 30            # events written before subscribing
DEADLINE = 20.0     # for a subscriber to receive what was written
DRAIN = 60          # --drain-seconds of the SIGTERM test
EXIT_WITHIN = DRAIN / 2


def take(sub, n=None, through=None, deadline=DEADLINE):
    """``n`` events, or the events through cursor ``through``, from a sync Subscription."""
    got, end = [], time.monotonic() + deadline
    while (len(got) < n) if n is not None else ((sub.last_cursor or 0) < through):
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {deadline} s: {len(got)} events, last_cursor {sub.last_cursor}")
        event = sub.get(timeout=min(left, 1.0))
        if event is not None:
            got.append(event)
    return got


async def take_async(sub, n=None, through=None, deadline=DEADLINE):
    got, end = [], time.monotonic() + deadline
    while (len(got) < n) if n is not None else ((sub.last_cursor or 0) < through):
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {deadline} s: {len(got)} events, last_cursor {sub.last_cursor}")
        event = await sub.get(timeout=min(left, 1.0))
        if event is not None:
            got.append(event)
    return got


class ServerTestCase(unittest.TestCase):
    ARGS = ()

    def setUp(self):
        self.server = Server(*self.ARGS)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        setup_trigger(self.server)
        self.writer = segmentd.Client(self.server.socket, timeout=10)
        self.addCleanup(self.writer.close)
        write(self.writer, "old", OLD)

    def assert_once_each(self, got, start):
        """``got`` is exactly the server's log after cursor ``start``."""
        expected = [e for e in read_log(self.writer) if e["cursor"] > start]
        cursors = [e["cursor"] for e in got]
        self.assertEqual(len(cursors), len(set(cursors)), "an event was delivered twice")
        self.assertEqual(got, expected)


class LiveOnly(ServerTestCase):
    def test_sync_live_only_across_sigkill(self):
        server = self.server
        client = segmentd.Client(server.socket, timeout=5)
        self.addCleanup(client.close)
        sub = client.subscribe(backoff=BACKOFF, heartbeat=2.0, timeout=5)
        self.addCleanup(sub.close)
        self.assertIsNone(sub.get(timeout=0.3))  # starts it: none of the OLD events comes
        self.assertEqual(sub.last_cursor, OLD)   # where it started: events.read's newest_cursor
        # Killed before it received anything, "a" written before it noticed (a sync
        # subscription acts only inside get()): it must resume after OLD, not from "now".
        server.kill()
        server.start()
        write(self.writer, "a", 20)
        got = take(sub, n=5)
        server.kill()                            # 15 of "a" still in transit or unsent
        server.start()
        write(self.writer, "b", 20)
        got += take(sub, through=read_log(self.writer)[-1]["cursor"])
        self.assertEqual(len(got), 40)
        self.assert_once_each(got, OLD)
        self.assertGreaterEqual(sub.reconnects, 2)

    def test_async_live_only_across_sigkill(self):
        async def run():
            server = self.server
            loop = asyncio.get_running_loop()
            async with segmentd.AsyncClient(server.socket, timeout=5) as client:
                async with client.subscribe(backoff=BACKOFF, heartbeat=2.0, timeout=5) as sub:
                    self.assertIsNone(await sub.get(timeout=0.3))
                    self.assertEqual(sub.last_cursor, OLD)
                    await loop.run_in_executor(None, server.kill)  # as in the sync test
                    await loop.run_in_executor(None, server.start)
                    await loop.run_in_executor(None, write, self.writer, "a", 20)
                    got = await take_async(sub, n=5)
                    await loop.run_in_executor(None, server.kill)
                    await loop.run_in_executor(None, server.start)
                    await loop.run_in_executor(None, write, self.writer, "b", 20)
                    newest = (await loop.run_in_executor(None, read_log, self.writer))[-1]["cursor"]
                    got += await take_async(sub, through=newest)
                    return got, sub.reconnects
        got, reconnects = asyncio.run(asyncio.wait_for(run(), 40))
        self.assertEqual(len(got), 40)
        self.assert_once_each(got, OLD)
        self.assertGreaterEqual(reconnects, 2)


class LiveOnlyOnAPrunedLog(unittest.TestCase):
    """Retention pruned the log's start, so ``events.read`` refuses ``after: 0``: the
    subscription reads ``newest_cursor`` after ``data.resume_after`` instead."""

    def setUp(self):
        self.server = Server("--event-retention-count", "100", "--reevaluate-every", "1")
        self.addCleanup(self.server.cleanup)
        self.server.start()
        setup_trigger(self.server)

    def test_live_only_after_a_prune(self):
        with segmentd.Client(self.server.socket, timeout=10) as client:
            write(client, "old", 300)
            wait_until(lambda: refused(client), 20, interval=0.05, what="retention to prune")
            with client.subscribe(backoff=BACKOFF) as sub:
                self.assertIsNone(sub.get(timeout=0.3))
                self.assertEqual(sub.last_cursor, 300)
                write(client, "new", 5)
                got = take(sub, n=5)
        self.assertEqual([e["cursor"] for e in got], [301, 302, 303, 304, 305])
        self.assertEqual(sorted(e["email"] for e in got), [f"new{i}@example.com" for i in range(5)])


def refused(client):
    try:
        client.call("events.read", {"after": 0, "limit": 1})
        return False
    except segmentd.CursorRefused as e:
        return e.resume_after is not None


class GracefulShutdown(ServerTestCase):
    """SIGTERM ends open subscriptions at once instead of holding the drain."""
    ARGS = ("--drain-seconds", str(DRAIN))

    def sigterm_and_wait(self):
        """SIGTERM; returns the seconds until the server exited."""
        proc = self.server.proc
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            self.fail(f"the server still runs {EXIT_WITHIN} s after SIGTERM (--drain-seconds {DRAIN}): "
                      "an open subscription held the drain")
        return time.monotonic() - began

    def test_sync_sigterm_ends_subscriptions_and_they_resume(self):
        server = self.server
        client = segmentd.Client(server.socket, timeout=5)
        self.addCleanup(client.close)
        sub = client.subscribe(after=0, backoff=BACKOFF, heartbeat=2.0, timeout=5)
        self.addCleanup(sub.close)
        got = take(sub, n=OLD)                   # the backlog: now it waits for commits
        raw_client = segmentd.Client(server.socket, timeout=10)
        self.addCleanup(raw_client.close)
        # A raw subscription too, to see what the server sends; its one event shows it started.
        raw = raw_client.stream("events.subscribe", {"after": OLD - 1})
        self.assertEqual(next(raw)["cursor"], OLD)
        took = self.sigterm_and_wait()
        self.assertEqual(list(raw), [])          # then only the final reply
        self.assertEqual(raw.result, {"ended": "cancelled", "last_cursor": OLD})
        server.start()
        write(self.writer, "b", 20)
        got += take(sub, through=read_log(self.writer)[-1]["cursor"])
        self.assert_once_each(got, 0)
        self.assertEqual(len(got), OLD + 20)
        self.assertGreaterEqual(sub.reconnects, 1)
        print(f"\nSIGTERM sync: exited {took * 1000:.0f} ms after the signal (--drain-seconds {DRAIN})", flush=True)

    def test_async_sigterm_ends_subscriptions_and_they_resume(self):
        async def run():
            server = self.server
            loop = asyncio.get_running_loop()
            async with segmentd.AsyncClient(server.socket, timeout=5) as client, \
                    segmentd.AsyncClient(server.socket, timeout=10) as raw_client:
                async with client.subscribe(after=0, backoff=BACKOFF, heartbeat=2.0, timeout=5) as sub:
                    got = await take_async(sub, n=OLD)
                    raw = raw_client.stream("events.subscribe", {"after": OLD - 1})
                    self.assertEqual((await raw.__anext__())["cursor"], OLD)
                    # It blocks: beside the loop, which keeps reading both connections meanwhile.
                    took = await loop.run_in_executor(None, self.sigterm_and_wait)
                    rows = [row async for row in raw]
                    self.assertEqual(rows, [])
                    self.assertEqual(raw.result, {"ended": "cancelled", "last_cursor": OLD})
                    await loop.run_in_executor(None, server.start)
                    await loop.run_in_executor(None, write, self.writer, "b", 20)
                    newest = (await loop.run_in_executor(None, read_log, self.writer))[-1]["cursor"]
                    got += await take_async(sub, through=newest)
                    return got, sub.reconnects, took
        got, reconnects, took = asyncio.run(asyncio.wait_for(run(), 50))
        self.assert_once_each(got, 0)
        self.assertEqual(len(got), OLD + 20)
        self.assertGreaterEqual(reconnects, 1)
        print(f"\nSIGTERM asyncio: exited {took * 1000:.0f} ms after the signal (--drain-seconds {DRAIN})", flush=True)


if __name__ == "__main__":
    unittest.main()
