"""Test 1: a subscription survives SIGKILL and restarts of the server, and delivers the
server's event log exactly: every event once, in cursor order, none missing, none doubled.

Each test prints one line starting with ``RELIABILITY`` (events, restarts, time from the
restarted server answering to the subscriber's first event after it); the README's
Reliability table is made of these figures.
"""
import asyncio
import threading
import time
import unittest

from _harness import VIP_RULE, Server, contacts, read_log, segmentd, wait_until

BACKOFF = segmentd.Backoff(initial=0.02, maximum=0.5, multiplier=2.0, jitter=0.5)
BATCHES = 24          # writer batches of BATCH contacts, each contact one "enter" event
BATCH = 25
KILL_AT = (8, 16)     # before these batches: SIGKILL, then start again on the same data dir
BIG_BEFORE_KILL = 1500  # events written just before the first kill: the subscriber is mid-backlog
DEADLINE = 30.0       # for the subscriber to catch up with the log at the end


def write(client, prefix, n, start=0, deadline=20.0):
    """Upserts until acknowledged (the server may be down): an upsert of the same contacts
    is idempotent, so a retry after a write that did commit fires nothing new."""
    end = time.monotonic() + deadline
    while True:
        try:
            return client.call("contacts.upsert", {"contacts": contacts(prefix, n, start=start)})
        except (segmentd.TransportError, segmentd.ShuttingDown, segmentd.Unavailable):
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def setup_trigger(server):
    with segmentd.Client(server.socket, timeout=10) as admin:
        segment = admin.call("segments.create", {"name": "VIP", "filters": VIP_RULE})
        admin.call("triggers.create", {"segment": segment["id"], "on": ["enter"]})


def check_exact(testcase, received, log):
    got = [event for _, event in received]
    cursors = [e["cursor"] for e in got]
    testcase.assertTrue(log, "the writer produced no events")
    testcase.assertEqual(len(cursors), len(set(cursors)), "an event was delivered twice")
    testcase.assertTrue(all(a < b for a, b in zip(cursors, cursors[1:])), "cursors are not strictly increasing")
    missing = sorted(set(e["cursor"] for e in log) - set(cursors))
    testcase.assertEqual(missing[:10], [], f"{len(missing)} events missing")
    testcase.assertEqual(got, log, "the subscriber's sequence differs from the server's log")


def resume_latencies(received, ready_times):
    out = []
    for ready in ready_times:
        after = [t for t, _ in received if t >= ready]
        if after:
            out.append(min(after) - ready)
    return out


def summary(kind, log, restarts, latencies, reconnects, kill_times, ready_times):
    ms = [round(x * 1000) for x in latencies]
    down = [round((r - k) * 1000) for k, r in zip(kill_times, ready_times)]
    return (f"RELIABILITY {kind}: events={len(log)} restarts={restarts} reconnects={reconnects} "
            f"server_down_ms={down} restart_to_first_event_ms={ms} (max {max(ms) if ms else 'n/a'})")


class KillRestartSync(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_subscriber_survives_sigkill_and_restarts(self):
        server = self.server
        setup_trigger(server)
        sub_client = segmentd.Client(server.socket, timeout=5)
        self.addCleanup(sub_client.close)
        sub = sub_client.subscribe(after=0, backoff=BACKOFF, heartbeat=2.0, timeout=5)
        received, errors = [], []
        stop = threading.Event()

        def consume():
            try:
                while not stop.is_set():
                    event = sub.get(timeout=0.2)
                    if event is not None:
                        received.append((time.monotonic(), event))
            except StopIteration:
                pass
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        consumer = threading.Thread(target=consume, name="subscriber", daemon=True)
        consumer.start()
        writer = segmentd.Client(server.socket, timeout=10)
        self.addCleanup(writer.close)
        ready_times, kill_times = [], []
        for i in range(BATCHES):
            if i == KILL_AT[0]:
                write(writer, "big", BIG_BEFORE_KILL)  # a backlog the subscriber is still reading
                server.kill()
                kill_times.append(time.monotonic())
                server.start()
                ready_times.append(time.monotonic())
            elif i == KILL_AT[1]:
                # The subscriber has resumed and caught up: kill it in the middle of live events.
                newest = read_log(writer)[-1]["cursor"]
                wait_until(lambda: errors or (received and received[-1][1]["cursor"] >= newest), DEADLINE,
                           what="the subscriber to resume after the first restart")
                # SIGKILL while a write is in flight: it commits entirely or not at all
                in_flight = threading.Thread(target=lambda: _try(write, writer, "mid", 400, 0, 5.0), daemon=True)
                in_flight.start()
                time.sleep(0.003)
                server.kill()
                kill_times.append(time.monotonic())
                server.start()
                ready_times.append(time.monotonic())
                in_flight.join(10)
                write(writer, "mid", 400)  # acknowledged now (fires only what had not committed)
            write(writer, f"b{i}-", BATCH)
        log = read_log(writer)
        wait_until(lambda: errors or (received and received[-1][1]["cursor"] >= log[-1]["cursor"]),
                   DEADLINE, what="the subscriber to reach the end of the log")
        stop.set()
        consumer.join(5)
        self.assertFalse(consumer.is_alive(), "the consumer thread did not end")
        sub.close()
        self.assertEqual(errors, [])
        check_exact(self, received, log)
        self.assertGreaterEqual(sub.reconnects, len(KILL_AT))
        latencies = resume_latencies(received, ready_times)
        self.assertEqual(len(latencies), len(KILL_AT))
        print("\n" + summary("sync", log, server.starts - 1, latencies, sub.reconnects, kill_times, ready_times), flush=True)


def _try(fn, *args):
    try:
        fn(*args)
    except segmentd.Error:
        pass


async def read_log_async(client):
    log, after = [], 0
    for _ in range(1000):
        page = await client.call("events.read", {"after": after, "limit": 10000})
        if not page["events"]:
            return log
        log.extend(page["events"])
        after = page["next"]
    raise AssertionError("event log did not end within 1000 pages")


async def newest_cursor(client):
    log = await read_log_async(client)
    return log[-1]["cursor"] if log else 0


class KillRestartAsync(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_async_subscriber_survives_sigkill_and_restarts(self):
        setup_trigger(self.server)
        asyncio.run(asyncio.wait_for(self._run(), 60))

    async def _run(self):
        server = self.server
        loop = asyncio.get_running_loop()
        received = []
        async with segmentd.AsyncClient(server.socket, timeout=5) as sub_client, \
                segmentd.AsyncClient(server.socket, timeout=10) as writer:
            sub = sub_client.subscribe(after=0, backoff=BACKOFF, heartbeat=2.0, timeout=5)

            async def consume():
                async for event in sub:
                    received.append((time.monotonic(), event))

            consumer = asyncio.ensure_future(consume())

            async def write_async(prefix, n, deadline=20.0):
                end = time.monotonic() + deadline
                while True:
                    try:
                        return await writer.call("contacts.upsert", {"contacts": contacts(prefix, n)})
                    except (segmentd.TransportError, segmentd.ShuttingDown, segmentd.Unavailable):
                        if time.monotonic() > end:
                            raise
                        await asyncio.sleep(0.02)

            ready_times, kill_times = [], []
            for i in range(BATCHES):
                if i == KILL_AT[0]:
                    await write_async("big", BIG_BEFORE_KILL)
                    await loop.run_in_executor(None, server.kill)
                    kill_times.append(time.monotonic())
                    await loop.run_in_executor(None, server.start)
                    ready_times.append(time.monotonic())
                elif i == KILL_AT[1]:
                    newest = await newest_cursor(writer)
                    end = time.monotonic() + DEADLINE
                    while not (received and received[-1][1]["cursor"] >= newest):
                        self.assertLess(time.monotonic(), end, "the subscriber did not resume after the restart")
                        self.assertFalse(consumer.done(), "the subscription ended")
                        await asyncio.sleep(0.01)
                    in_flight = asyncio.ensure_future(write_async("mid", 400, deadline=5.0))
                    await asyncio.sleep(0.003)
                    await loop.run_in_executor(None, server.kill)
                    kill_times.append(time.monotonic())
                    await loop.run_in_executor(None, server.start)
                    ready_times.append(time.monotonic())
                    try:
                        await asyncio.wait_for(in_flight, 10)
                    except segmentd.Error:
                        pass
                    await write_async("mid", 400)
                await write_async(f"b{i}-", BATCH)
            log = await read_log_async(writer)
            end = time.monotonic() + DEADLINE
            while not (received and received[-1][1]["cursor"] >= log[-1]["cursor"]):
                if consumer.done():
                    consumer.result()  # raises the subscriber's error
                    self.fail("the subscription ended early")
                if time.monotonic() > end:
                    self.fail(f"the subscriber did not reach the end of the log within {DEADLINE} s")
                await asyncio.sleep(0.01)
            consumer.cancel()  # cancelling the consuming task sends rpc.cancel
            try:
                await consumer
            except asyncio.CancelledError:
                pass
            self.assertTrue(sub.closed)
            check_exact(self, received, log)
            self.assertGreaterEqual(sub.reconnects, len(KILL_AT))
            latencies = resume_latencies(received, ready_times)
            self.assertEqual(len(latencies), len(KILL_AT))
            print("\n" + summary("asyncio", log, server.starts - 1, latencies, sub.reconnects, kill_times,
                                   ready_times), flush=True)


class SubscriberTimeoutResume(unittest.TestCase):
    """-32004: a subscriber that stops reading is ended by the server; the Subscription
    resumes after its last cursor and still delivers every event exactly once."""

    EVENTS = 12000  # ~2.3 MB of events: more than the asyncio client's HIGH_WATER plus socket buffers

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--subscriber-timeout", "0.5")
        cls.addClassCleanup(cls.server.cleanup)
        cls.server.start()
        setup_trigger(cls.server)
        with segmentd.Client(cls.server.socket, timeout=20) as c:
            for start in range(0, cls.EVENTS, 6000):
                c.call("contacts.upsert", {"contacts": contacts("t", 6000, start=start)})
            cls.log = read_log(c)

    def wait_for_server_to_drop_subscriber(self):
        """Polls on another connection until nothing is in flight: the server ended the
        subscription that is not being read (its -32004 waits unread behind the events)."""
        with segmentd.Client(self.server.socket, timeout=10) as observer:
            wait_until(lambda: observer.call("server.stats")["rpc"]["requests_in_flight"] == 1, 30,
                       interval=0.05, what="the server to end the stalled subscription")

    def test_sync_resumes_after_subscriber_timeout(self):
        with segmentd.Client(self.server.socket, timeout=10) as client:
            with client.subscribe(after=0, backoff=BACKOFF) as sub:
                got = [sub.get(timeout=10)]
                self.wait_for_server_to_drop_subscriber()  # nothing read meanwhile: -32004
                while got[-1] is not None and got[-1]["cursor"] < self.log[-1]["cursor"]:
                    got.append(sub.get(timeout=10))
                self.assertIsInstance(sub.last_error, segmentd.Overloaded)
                self.assertGreaterEqual(sub.reconnects, 1)
        self.assertEqual(got, self.log)

    def test_async_resumes_after_subscriber_timeout(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=10) as client:
                async with client.subscribe(after=0, backoff=BACKOFF) as sub:
                    got = [await sub.get(timeout=10)]
                    # Take nothing: the reader stops at HIGH_WATER and the server's writes wait.
                    await asyncio.get_running_loop().run_in_executor(None, self.wait_for_server_to_drop_subscriber)
                    while got[-1] is not None and got[-1]["cursor"] < self.log[-1]["cursor"]:
                        got.append(await sub.get(timeout=10))
                    return got, sub.reconnects, sub.last_error
        got, reconnects, last_error = asyncio.run(asyncio.wait_for(run(), 40))
        self.assertEqual(got, self.log)
        # The reader stopped reading at HIGH_WATER, so the server saw a stalled subscriber.
        self.assertGreaterEqual(reconnects, 1)
        self.assertIsInstance(last_error, segmentd.Overloaded)


if __name__ == "__main__":
    unittest.main()
