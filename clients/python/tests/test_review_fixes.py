"""Fixes from a review, each with a test that fails without it:

1. a reply with id null fails the connection's calls at once and closes it; it never
   poisons later connections, and a subscription resumes after it;
2. rpc.hello on every connect (Unix socket too), and the server's limits are used:
   max_line_bytes refused before sending, max_in_flight waited for (sync client too);
3. asyncio: rpc.* take no in-flight slot; a heartbeat ping never fails the connection for
   want of a slot;
4. a close() that times out never leaves a subscription running on the server;
5. a corrupt gzip chunk ends the stream once (error set, rpc.cancel sent, unregistered);
   decoding errors at the end are ProtocolErrors;
6. asyncio: an unconsumed stream cannot buffer without bound while other requests keep the
   connection reading (StreamOverflow past MAX_BUFFERED).
"""
import asyncio
import base64
import threading
import time
import unittest
import zlib
from unittest import mock

from _harness import VIP_RULE, contacts, read_log, segmentd, start_server, wait_until
from test_errors import FakeServer

EVENTS = 30


def deep(n=70):
    """Params nested deeper than the server's JSON parser accepts (-32700, id null)."""
    params = {}
    cur = params
    for _ in range(n):
        cur["a"] = {}
        cur = cur["a"]
    return params


def in_flight(client):
    return client.call("server.stats")["rpc"]["requests_in_flight"] - 1


class NullIdAndSubscriptions(unittest.TestCase):
    """Items 1, 4 and 6 against a real server."""

    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls)
        with segmentd.Client(cls.server.socket, timeout=30) as c:
            c.call("contacts.upsert", {"contacts": contacts("r", 5000)})
            cls.segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]
            c.call("contacts.upsert", {"contacts": [{"email": f"ev{i}@example.com", "labels": ["ev"]}
                                                    for i in range(EVENTS)]})
            seg = c.call("segments.create", {"name": "Ev", "filters": [
                {"dimension": "label", "op": "contains", "value": "ev"}]})["id"]
            c.call("triggers.create", {"segment": seg, "include_existing": True})
            wait_until(lambda: len(c.call("events.read", {"after": 0, "limit": 1000})["events"]) >= EVENTS,
                       20, what="the trigger's events")

    def observer_idle(self):
        with segmentd.Client(self.server.socket, timeout=10) as observer:
            wait_until(lambda: in_flight(observer) == 0, 10, what="nothing in flight on the server")

    # 1 ---------------------------------------------------------------------------------
    def test_sync_null_id_fails_calls_at_once_and_subscription_resumes(self):
        with segmentd.Client(self.server.socket, timeout=5) as client:
            with client.subscribe(after=0, backoff=segmentd.Backoff(initial=0.01, maximum=0.05)) as sub:
                got = [sub.get(timeout=5)]
                conn = client._conn
                started = time.monotonic()
                with self.assertRaises(segmentd.ParseError):
                    client.call("contacts.count", deep())
                self.assertLess(time.monotonic() - started, 2, "the call waited instead of failing at once")
                self.assertTrue(conn.dead)
                self.assertEqual(conn._pending, {}, "pending entries left on the failed connection")
                # a later connection is not poisoned
                self.assertTrue(client.ping())
                self.assertIsNot(client._conn, conn)
                # the subscription resumes (never re-raises the stored error) and gets
                # the events written afterwards too
                client.call("contacts.upsert", {"contacts": [{"email": f"sync{i}@example.com", "labels": ["ev"]}
                                                             for i in range(3)]})
                log = [e["cursor"] for e in read_log(client)]
                while len(got) < len(log):
                    event = sub.get(timeout=5)
                    self.assertIsNotNone(event)
                    got.append(event)
                self.assertEqual([e["cursor"] for e in got], log)
                self.assertGreaterEqual(sub.reconnects, 1)
                self.assertIsInstance(sub.last_error, segmentd.ParseError)

    def test_sync_null_id_fails_a_stream_in_flight(self):
        with segmentd.Client(self.server.socket, timeout=5) as client:
            stream = client.resolve({"id": self.segment, "batch_size": 1})
            next(stream)
            with self.assertRaises(segmentd.ParseError):
                client.call("contacts.count", deep())
            started = time.monotonic()
            with self.assertRaises(segmentd.Error):
                for _ in stream:
                    pass
            self.assertLess(time.monotonic() - started, 2)
            self.assertTrue(client.ping())
        self.observer_idle()

    def test_async_null_id_fails_calls_and_subscription_resumes(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=5) as client:
                sub = client.subscribe(after=0, backoff=segmentd.Backoff(initial=0.01, maximum=0.05))
                async with sub:
                    got = [await sub.get(timeout=5)]
                    conn = client._conn
                    started = time.monotonic()
                    slow = asyncio.ensure_future(client.call("segments.count", {"id": self.segment}))
                    with self.assertRaises(segmentd.ParseError):
                        await client.call("contacts.count", deep())
                    self.assertLess(time.monotonic() - started, 2)
                    self.assertTrue(conn.dead)
                    self.assertEqual(conn._pending, {})
                    try:
                        await slow  # answered before the error line, or failed with it: never a timeout
                    except segmentd.ParseError:
                        pass
                    self.assertTrue(await client.ping())
                    self.assertIsNot(client._conn, conn)
                    await client.call("contacts.upsert", {"contacts": [
                        {"email": f"async{i}@example.com", "labels": ["ev"]} for i in range(3)]})
                    log = [e["cursor"] for e in (await client.call("events.read", {"after": 0, "limit": 10000}))["events"]]
                    while len(got) < len(log):
                        event = await sub.get(timeout=5)
                        self.assertIsNotNone(event)
                        got.append(event)
                    self.assertEqual([e["cursor"] for e in got], log)
                    self.assertGreaterEqual(sub.reconnects, 1)
                    self.assertIsInstance(sub.last_error, segmentd.ParseError)
        asyncio.run(asyncio.wait_for(run(), 30))

    # 4 ---------------------------------------------------------------------------------
    def test_sync_close_that_times_out_leaves_nothing_running(self):
        with segmentd.Client(self.server.socket, timeout=5) as client:
            sub = client.subscribe(timeout=0.3)  # live-only: events.read first
            entered, release = threading.Event(), threading.Event()
            original = sub._learn_newest

            def slow_learn(conn):
                entered.set()
                release.wait(10)
                original(conn)

            sub._learn_newest = slow_learn
            result = []

            def consume():
                try:
                    result.append(sub.get(timeout=5))
                except StopIteration:
                    result.append("stopped")

            consumer = threading.Thread(target=consume)
            consumer.start()
            self.assertTrue(entered.wait(5))
            sub.close()  # times out: the consumer holds the subscription
            self.assertTrue(sub.closed)
            release.set()
            consumer.join(10)
            self.assertFalse(consumer.is_alive())
            self.assertEqual(result, ["stopped"])
            self.assertIsNone(sub._pending)
            self.observer_idle()

    def test_async_close_that_times_out_leaves_nothing_running(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=5) as client:
                sub = client.subscribe(timeout=0.3)
                entered, release = asyncio.Event(), asyncio.Event()
                original = sub._learn_newest

                async def slow_learn(conn):
                    entered.set()
                    await release.wait()
                    await original(conn)

                sub._learn_newest = slow_learn
                consumer = asyncio.ensure_future(sub.get(timeout=5))
                await entered.wait()
                await sub.aclose()  # times out
                self.assertTrue(sub.closed)
                release.set()
                with self.assertRaises(StopAsyncIteration):
                    await consumer
                self.assertIsNone(sub._pending)
                await asyncio.sleep(0.1)
        asyncio.run(asyncio.wait_for(run(), 30))
        self.observer_idle()

    # 6 ---------------------------------------------------------------------------------
    def test_async_unconsumed_stream_is_capped(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=10) as client:
                stream = client.resolve({"id": self.segment, "batch_size": 1})
                await stream.__anext__()
                # something else waits: the connection must keep reading for it
                sub = client.subscribe()
                async with sub:
                    await sub.get(timeout=2)
                with self.assertRaises(segmentd.StreamOverflow):
                    async for _ in stream:
                        pass
                self.assertIsInstance(stream.error, segmentd.StreamOverflow)
                self.assertTrue(await client.ping())
        with mock.patch.object(segmentd.aio, "HIGH_WATER", 16 << 10), \
                mock.patch.object(segmentd.aio, "LOW_WATER", 4 << 10), \
                mock.patch.object(segmentd.aio, "MAX_BUFFERED", 64 << 10):
            asyncio.run(asyncio.wait_for(run(), 30))
        self.observer_idle()


class HelloAndLimits(unittest.TestCase):
    """Items 2 and 3: a server with max_in_flight 2 and max_line_bytes 4096."""

    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls, "--max-in-flight", "2", "--max-line-bytes", "4096")

    def test_sync_hello_on_unix_and_line_limit(self):
        with segmentd.Client(self.server.socket, timeout=5) as client:
            client.connect()
            conn = client._conn
            self.assertIsNotNone(conn.hello, "no rpc.hello on the Unix socket")
            self.assertEqual(conn.limits["max_line_bytes"], 4096)
            with self.assertRaises(segmentd.TooLarge) as caught:
                client.call("contacts.count", {"x": "y" * 5000})
            self.assertIn("refused by the client", caught.exception.message)
            self.assertIs(client._conn, conn)
            self.assertFalse(conn.dead)

    def test_sync_waits_for_an_in_flight_slot(self):
        with segmentd.Client(self.server.socket, timeout=5) as client:
            streams = [client.stream("events.subscribe", {"after": 0}).start() for _ in range(2)]
            result = []
            errors = []

            def third():
                try:
                    result.append(client.call("contacts.count"))
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

            t = threading.Thread(target=third)
            t.start()
            time.sleep(0.3)
            self.assertEqual((result, errors), ([], []), "the third request did not wait for a slot")
            streams[0].close()
            t.join(10)
            self.assertEqual(errors, [])
            self.assertEqual(len(result), 1)
            self.assertTrue(client.ping())  # rpc.* never wait for a slot
            streams[1].close()

    def test_async_hello_and_rpc_methods_take_no_slot(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=5) as client:
                await client.connect()
                self.assertIsNotNone(client._conn.hello)
                self.assertEqual(client._conn.limits["max_in_flight"], 2)
                streams = [await client.stream("events.subscribe", {"after": 0}).start() for _ in range(2)]
                self.assertTrue(await client.ping(timeout=1))
                for s in streams:
                    await s.aclose()
        asyncio.run(asyncio.wait_for(run(), 30))

    def test_async_heartbeat_without_a_free_slot_keeps_the_connection(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=5) as client:
                other = await client.stream("events.subscribe", {"after": 0}).start()
                sub = client.subscribe(heartbeat=0.2, timeout=1.0)
                async with sub:
                    self.assertIsNone(await sub.get(timeout=0.1))  # started: two slots taken
                    conn = client._conn
                    self.assertIsNone(await sub.get(timeout=1.5))  # heartbeats due
                    self.assertFalse(conn.dead, f"the heartbeat failed the connection: {sub.last_error}")
                    self.assertEqual(sub.reconnects, 0)
                self.assertFalse(other.finished)
                await other.aclose()
        asyncio.run(asyncio.wait_for(run(), 30))


class CorruptGzip(unittest.TestCase):
    """Item 5, against a scripted peer."""

    def setUp(self):
        self.fake = FakeServer()
        self.addCleanup(self.fake.close)
        original = self.fake._serve

        def serve(conn):  # adds gzip.corrupt / gzip.badutf8 to the fake's methods
            import json

            def send(obj):
                conn.sendall(json.dumps(obj).encode() + b"\n")

            def chunk(rid, raw):
                send({"jsonrpc": "2.0", "method": "segments.rows",
                      "params": {"id": rid, "gzip": base64.b64encode(raw).decode()}})

            reader = conn.makefile("rb")
            for line in reader:
                request = json.loads(line)
                self.fake.received.append(request)
                rid, method = request.get("id"), request["method"]
                if method == "rpc.hello":
                    send({"jsonrpc": "2.0", "id": rid, "result": {"limits": {}}})
                elif method == "rpc.ping":
                    send({"jsonrpc": "2.0", "id": rid, "result": {"pong": True}})
                elif method == "gzip.corrupt":
                    good = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                    head = good.compress(b"email\r\n") + good.flush(zlib.Z_SYNC_FLUSH)
                    chunk(rid, head)
                    chunk(rid, b"\xff" * 32)
                    chunk(rid, b"\x00" * 32)
                elif method == "gzip.badutf8":
                    whole = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                    chunk(rid, whole.compress(b"email\r\na@example.com\r\n\xc3") + whole.flush())
                    send({"jsonrpc": "2.0", "id": rid, "result": {"rows": 1, "complete": True}})
                elif method == "rpc.cancel":
                    cid = request["params"]["id"]
                    send({"jsonrpc": "2.0", "id": cid, "result": {"rows": 0, "complete": False}})

        self.fake._serve = serve
        del original

    def cancelled_ids(self):
        return [r["params"]["id"] for r in self.fake.received if r["method"] == "rpc.cancel"]

    def test_sync(self):
        with segmentd.Client(self.fake.path, timeout=3) as client:
            stream = client.stream("gzip.corrupt", {"format": "csv", "compress": "gzip"})
            rows = []
            with self.assertRaises(segmentd.ProtocolError):
                for row in stream:
                    rows.append(row)
            self.assertEqual(rows, ["email"])
            self.assertIsInstance(stream.error, segmentd.ProtocolError)
            self.assertTrue(stream.finished)
            self.assertEqual(list(stream), [])  # once: it ended
            self.assertTrue(client.ping())
            self.assertEqual(self.cancelled_ids(), [stream._pending.id])
            self.assertEqual(client._conn._pending, {})
            with self.assertRaises(segmentd.ProtocolError):
                list(client.stream("gzip.badutf8", {"format": "csv", "compress": "gzip"}))

    def test_async(self):
        async def run():
            async with segmentd.AsyncClient(self.fake.path, timeout=3) as client:
                stream = client.stream("gzip.corrupt", {"format": "csv", "compress": "gzip"})
                rows = []
                with self.assertRaises(segmentd.ProtocolError):
                    async for row in stream:
                        rows.append(row)
                self.assertEqual(rows, ["email"])
                self.assertIsInstance(stream.error, segmentd.ProtocolError)
                self.assertEqual([r async for r in stream], [])
                self.assertTrue(await client.ping())
                self.assertEqual(self.cancelled_ids(), [stream._pending.id])
                self.assertEqual(client._conn._pending, {})
                with self.assertRaises(segmentd.ProtocolError):
                    async for _ in client.stream("gzip.badutf8", {"format": "csv", "compress": "gzip"}):
                        pass
        asyncio.run(asyncio.wait_for(run(), 20))


if __name__ == "__main__":
    unittest.main()
