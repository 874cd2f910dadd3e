"""Test 2: an error reply is an exception, never a hang -- for calls, at the start of a
stream and in the middle of one; a broken or silent connection raises too."""
import asyncio
import base64
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest
import zlib

from _harness import VIP_RULE, contacts, segmentd, start_server, wait_until

BAD_FILTER = [{"dimension": "field", "field": "city", "op": "greater_than", "value": 3}]


class ErrorReplies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls)
        with segmentd.Client(cls.server.socket, timeout=10) as c:
            c.call("fields.define", {"name": "city", "type": "text"})
            c.call("contacts.upsert", {"contacts": contacts("e", 50)})
            cls.segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]

    def setUp(self):
        self.client = segmentd.Client(self.server.socket, timeout=10)
        self.addCleanup(self.client.close)

    def test_bad_filter_is_typed_invalid_params_with_path(self):
        with self.assertRaises(segmentd.InvalidParams) as caught:
            self.client.call("segments.count", {"filters": BAD_FILTER})
        e = caught.exception
        self.assertIsInstance(e, segmentd.SegmentdError)
        self.assertEqual((e.code, e.type, e.path), (-32602, "invalid_params", "filters[0].op"))
        self.assertIn("greater_than", e.message)
        self.assertEqual(e.data["path"], "filters[0].op")
        self.assertEqual(e.method, "segments.count")
        self.assertIn("filters[0].op", str(e))
        # the connection is still fine
        self.assertTrue(self.client.ping())

    def test_unknown_method(self):
        with self.assertRaises(segmentd.MethodNotFound) as caught:
            self.client.call("no.such.method")
        e = caught.exception
        self.assertEqual((e.code, e.type, e.path), (-32601, "method_not_found", None))
        self.assertEqual(e.data["method"], "no.such.method")

    def test_not_found_and_conflict(self):
        with self.assertRaises(segmentd.NotFound) as caught:
            self.client.call("segments.get", {"id": 404})
        self.assertEqual(caught.exception.code, -32001)
        with self.assertRaises(segmentd.Conflict):
            self.client.call("segments.create", {"name": "vip", "filters": VIP_RULE})

    def test_refused_cursor_says_where_to_go_on_as_data(self):
        # This book has no events: newest_cursor 0, and a cursor from the future is refused.
        self.assertEqual(self.client.call("events.read", {"after": 0})["newest_cursor"], 0)
        with self.assertRaises(segmentd.CursorRefused) as caught:
            self.client.call("events.read", {"after": 5})
        e = caught.exception
        self.assertIsInstance(e, segmentd.InvalidParams)
        self.assertEqual((e.code, e.path, e.newest_cursor, e.resume_after), (-32602, "after", 0, None))
        with self.client.subscribe(after=5) as sub:  # not resumable: raises from the iteration
            with self.assertRaises(segmentd.CursorRefused) as caught:
                sub.get(timeout=10)
            self.assertTrue(sub.closed)
        self.assertEqual(caught.exception.newest_cursor, 0)

        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=10) as client:
                async with client.subscribe(after=5) as sub:
                    try:
                        await sub.get(timeout=10)
                    except segmentd.CursorRefused as e:
                        return e, sub.closed
        e, closed = asyncio.run(asyncio.wait_for(run(), 20))
        self.assertEqual((e.newest_cursor, closed), (0, True))

    def test_error_on_a_streaming_method_before_any_row(self):
        stream = self.client.resolve({"id": self.segment, "columns": ["email", "shoe_size"]})
        with self.assertRaises(segmentd.InvalidParams) as caught:
            list(stream)
        self.assertEqual(caught.exception.path, "columns[1]")
        self.assertIs(stream.error, caught.exception)
        self.assertIsNone(stream.result)
        with self.assertRaises(segmentd.NotFound):
            for _ in self.client.export({"id": 999}):
                pass
        with self.assertRaises(segmentd.InvalidParams) as caught:
            list(self.client.resolve({"filters": BAD_FILTER}))
        self.assertEqual(caught.exception.path, "filters[0].op")

    def test_subscribe_errors_that_cannot_be_resumed_raise(self):
        with self.client.subscribe(after=10 ** 9) as sub:  # a cursor from the future
            with self.assertRaises(segmentd.InvalidParams) as caught:
                sub.get(timeout=10)
            self.assertEqual(caught.exception.path, "after")
            self.assertTrue(sub.closed)
        with self.client.subscribe(after=0, book="nosuchbook") as sub:
            with self.assertRaises(segmentd.NotFound):
                sub.get(timeout=10)

    def test_client_side_errors(self):
        with self.assertRaises(TypeError):
            self.client.call("rpc.ping", [1])  # segmentd takes named params only
        with self.assertRaises(ValueError):
            self.client.call("contacts.upsert", {"contacts": [{"email": "a@b.c", "fields": {"x": float("nan")}}]})
        with self.assertRaises(segmentd.TooLarge):  # refused before sending: no -32003 with id null
            self.client.call("contacts.upsert", {"contacts": [{"email": "x" * (2 << 20)}]})
        self.assertTrue(self.client.ping())
        closed = segmentd.Client(self.server.socket)
        closed.close()
        with self.assertRaises(segmentd.ConnectionClosed):
            closed.call("rpc.ping")

    def test_no_server_is_a_transport_error(self):
        missing = os.path.join(self.server.dir, "nobody.sock")
        started = time.monotonic()
        with self.assertRaises(segmentd.TransportError) as caught:
            segmentd.Client(missing, connect_timeout=2).call("rpc.ping")
        self.assertNotIsInstance(caught.exception, segmentd.SegmentdError)
        self.assertLess(time.monotonic() - started, 5)

    def test_async_error_replies(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=10) as client:
                results = await asyncio.gather(
                    client.call("segments.count", {"filters": BAD_FILTER}),
                    client.call("no.such.method"),
                    client.call("rpc.ping"),
                    return_exceptions=True)
                with self.assertRaises(segmentd.InvalidParams) as caught:
                    async for _ in client.resolve({"id": self.segment, "columns": ["nope"]}):
                        pass
                self.assertEqual(caught.exception.path, "columns[0]")
                async with client.subscribe(after=10 ** 9) as sub:
                    with self.assertRaises(segmentd.InvalidParams):
                        await sub.get(timeout=10)
                return results
        bad, unknown, pong = asyncio.run(asyncio.wait_for(run(), 30))
        self.assertIsInstance(bad, segmentd.InvalidParams)
        self.assertEqual((bad.code, bad.type, bad.path), (-32602, "invalid_params", "filters[0].op"))
        self.assertIsInstance(unknown, segmentd.MethodNotFound)
        self.assertEqual(pong, {"pong": True})


class ErrorInTheMiddleOfAStream(unittest.TestCase):
    """The real server ends a raw events.subscribe stream with -32004 after events: the
    stream yields the events, then raises (the resuming Subscription is test_reliability)."""

    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls, "--subscriber-timeout", "0.5")
        with segmentd.Client(cls.server.socket, timeout=20) as c:
            segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]
            c.call("triggers.create", {"segment": segment})
            c.call("contacts.upsert", {"contacts": contacts("m", 6000)})

    def test_raw_stream_raises_after_its_rows(self):
        with segmentd.Client(self.server.socket, timeout=10) as client:
            stream = client.stream("events.subscribe", {"after": 0})
            got = [next(stream)]
            # Read nothing until the server ended the subscription (-32004, after 0.5 s stalled).
            with segmentd.Client(self.server.socket, timeout=10) as observer:
                wait_until(lambda: observer.call("server.stats")["rpc"]["requests_in_flight"] == 1, 30,
                           interval=0.05, what="the server to end the stalled subscription")
            with self.assertRaises(segmentd.Overloaded) as caught:
                for event in stream:
                    got.append(event)
            e = caught.exception
            self.assertEqual((e.code, e.type), (-32004, "overloaded"))
            self.assertEqual(e.data["last_cursor"], got[-1]["cursor"])  # everything up to it arrived
            self.assertLess(len(got), 6000)
            self.assertEqual([x["cursor"] for x in got], list(range(1, len(got) + 1)))
            self.assertTrue(client.ping())  # the connection stays usable


class RetentionEndsTheSubscription(unittest.TestCase):
    """Retention prunes events the subscriber has not read: resuming would lose them, so the
    Subscription raises EventsPruned (the only test here that lets the server's clock tick)."""

    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls, "--event-retention-count", "100", "--reevaluate-every", "1")
        with segmentd.Client(cls.server.socket, timeout=20) as c:
            segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]
            c.call("triggers.create", {"segment": segment})

    def test_pruned_events_raise(self):
        with segmentd.Client(self.server.socket, timeout=10) as client:
            client.call("contacts.upsert", {"contacts": contacts("r", 5000)})
            got = []
            with client.subscribe(after=0) as sub:
                # Usually: some events, then EventsPruned once the tick pruned through 4900.
                # Should the tick come before the subscription starts: CursorRefused at once.
                with self.assertRaises((segmentd.EventsPruned, segmentd.CursorRefused)) as caught:
                    got.append(sub.get(timeout=10))
                    # Unread until the tick pruned: the server cannot send the rest meanwhile.
                    with segmentd.Client(self.server.socket, timeout=10) as observer:
                        wait_until(lambda: pruned(observer), 30, interval=0.05, what="retention to prune")
                    for _ in range(5000):
                        event = sub.get(timeout=10)
                        self.assertIsNotNone(event, "neither an event nor an error within 10 s")
                        got.append(event)
                self.assertTrue(sub.closed)
            e = caught.exception
            if isinstance(e, segmentd.EventsPruned):
                self.assertEqual((e.code, e.type), (-32001, "not_found"))
                self.assertEqual(e.resume_after, 4900)
                self.assertEqual(e.oldest_cursor, 4901)
                self.assertEqual(e.data["last_cursor"], got[-1]["cursor"])
                self.assertEqual([x["cursor"] for x in got], list(range(1, len(got) + 1)))
            else:  # refused at the start, saying where one could go on (skipping the pruned)
                self.assertIsInstance(e, segmentd.CursorRefused)
                self.assertEqual((e.path, e.resume_after), ("after", 4900))


def pruned(client):
    try:
        client.call("events.read", {"after": 0, "limit": 1})
        return False
    except segmentd.CursorRefused as e:
        return e.resume_after == 4900


class FakeServer:
    """A scripted JSON-RPC peer on a Unix socket, for misbehaviour a real server never shows."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sd", dir="/tmp")
        self.path = os.path.join(self.dir, "f.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.received = []
        self.connections = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        self.listener.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        def send(obj):
            conn.sendall((obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\n")

        try:
            for line in conn.makefile("rb"):
                request = json.loads(line)
                self.received.append(request)
                rid, method = request.get("id"), request["method"]
                if method == "rpc.ping":
                    send({"jsonrpc": "2.0", "id": rid, "result": {"pong": True}})
                elif method == "rpc.hello":
                    send({"jsonrpc": "2.0", "id": rid, "result": {"server": "fake", "limits": {}}})
                elif method == "mid.error":
                    for i in range(2):
                        send({"jsonrpc": "2.0", "method": "segments.rows", "params": {"id": rid, "rows": [{"n": i}]}})
                    send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": "disk on fire",
                                                                  "data": {"type": "internal"}}})
                elif method == "mid.close":
                    send({"jsonrpc": "2.0", "method": "segments.rows", "params": {"id": rid, "rows": [{"n": 0}]}})
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                elif method == "gzip.truncated":
                    whole = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                    data = whole.compress(b"email\r\na@example.com\r\n") + whole.flush()
                    send({"jsonrpc": "2.0", "method": "segments.rows",
                          "params": {"id": rid, "gzip": base64.b64encode(data[:-8]).decode()}})
                    send({"jsonrpc": "2.0", "id": rid, "result": {"rows": 1, "complete": True}})
                elif method == "garbage":
                    send("this is not json")
                elif method == "silent":
                    pass  # never answers
        except OSError:
            pass


class MisbehavingPeer(unittest.TestCase):
    def setUp(self):
        self.fake = FakeServer()
        self.addCleanup(self.fake.close)

    def test_sync(self):
        with segmentd.Client(self.fake.path, timeout=5) as client:
            rows = []
            with self.assertRaises(segmentd.InternalError) as caught:
                for row in client.stream("mid.error"):
                    rows.append(row)
            self.assertEqual(rows, [{"n": 0}, {"n": 1}])
            self.assertEqual(caught.exception.message, "disk on fire")
            with self.assertRaises(segmentd.ProtocolError):
                list(client.stream("gzip.truncated", {"format": "csv", "compress": "gzip"}))
            started = time.monotonic()
            with self.assertRaises(segmentd.Timeout):
                client.call("silent", timeout=0.3)
            self.assertLess(time.monotonic() - started, 3)
            self.assertTrue(client.ping())  # answered after the fake read the cancel (one connection, in order)
            silent_id = [r for r in self.fake.received if r["method"] == "silent"][-1]["id"]
            cancels = [r for r in self.fake.received if r["method"] == "rpc.cancel"]
            self.assertEqual(cancels[-1]["params"], {"id": silent_id})
            with self.assertRaises(segmentd.ProtocolError):
                client.call("garbage")
        with segmentd.Client(self.fake.path, timeout=5) as client:
            rows = []
            with self.assertRaises(segmentd.ConnectionClosed):
                for row in client.stream("mid.close"):
                    rows.append(row)
            self.assertEqual(rows, [{"n": 0}])
            self.assertTrue(client.ping())  # a new connection

    def test_async(self):
        async def run():
            async with segmentd.AsyncClient(self.fake.path, timeout=5) as client:
                rows = []
                with self.assertRaises(segmentd.InternalError):
                    async for row in client.stream("mid.error"):
                        rows.append(row)
                self.assertEqual(rows, [{"n": 0}, {"n": 1}])
                with self.assertRaises(segmentd.ProtocolError):
                    async for _ in client.stream("gzip.truncated", {"format": "csv", "compress": "gzip"}):
                        pass
                with self.assertRaises(segmentd.Timeout):
                    await client.call("silent", timeout=0.3)
                self.assertTrue(await client.ping())
                rows = []
                with self.assertRaises(segmentd.ConnectionClosed):
                    async for row in client.stream("mid.close"):
                        rows.append(row)
                self.assertEqual(rows, [{"n": 0}])
                self.assertTrue(await client.ping())
        asyncio.run(asyncio.wait_for(run(), 20))


if __name__ == "__main__":
    unittest.main()
