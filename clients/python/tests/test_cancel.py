"""Test 5: cancelling a stream and a subscription sends rpc.cancel; the server confirms
(it counted the rpc.cancel, the call ends with its final reply, nothing stays in flight) and
the connection stays usable (the same connection number answers afterwards).

A stream cancelled while the client keeps reading may still run on for a while before the
server acts on the cancel (see the README's notes); with ROWS rows at batch_size 1 it does
not reach the end, and should it, the final reply says so (``rows == ROWS``)."""
import asyncio
import threading
import time
import unittest

from _harness import VIP_RULE, contacts, segmentd, start_server, wait_until

ROWS = 20000  # with batch_size 1, far more than the socket buffers hold: the stream cannot finish early


def in_flight(client):
    """Requests in flight on the server besides this server.stats call."""
    return client.call("server.stats")["rpc"]["requests_in_flight"] - 1


def cancels(client):
    """rpc.cancel requests (and notifications) the server has received so far."""
    return client.call("server.stats")["rpc"]["requests_by_method"].get("rpc.cancel", 0)


class Cancellation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls)
        with segmentd.Client(cls.server.socket, timeout=30) as c:
            for start in range(0, ROWS, 10000):
                c.call("contacts.upsert", {"contacts": contacts("c", 10000, start=start)})
            cls.segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]
            # 50 events for the subscriptions: a trigger on a small segment, existing members included
            c.call("contacts.upsert", {"contacts": [{"email": f"few{i}@example.com", "labels": ["few"]}
                                                    for i in range(50)]})
            few = c.call("segments.create", {"name": "Few", "filters": [
                {"dimension": "label", "op": "contains", "value": "few"}]})["id"]
            c.call("triggers.create", {"segment": few, "include_existing": True})

    def setUp(self):
        self.client = segmentd.Client(self.server.socket, timeout=10)
        self.addCleanup(self.client.close)
        self.connection = self.client.hello()["connection"]
        self.cancels = cancels(self.client)

    def assert_same_connection_idle(self, client=None):
        client = client or self.client
        wait_until(lambda: in_flight(client) == 0, 10, what="the server to finish the cancelled request")
        self.assertGreater(cancels(client), self.cancels, "the server received no rpc.cancel")
        self.assertEqual(client.hello()["connection"], self.connection)
        self.assertTrue(client.ping())

    def assert_cut_short(self, result):
        self.assertIsInstance(result, dict, "no final reply")
        self.assertTrue(result["complete"] is False or result["rows"] == ROWS, result)

    def test_cancel_stream(self):
        stream = self.client.resolve({"id": self.segment, "batch_size": 1, "compress": "gzip"})
        first = next(stream)
        self.assertEqual(first["email"], "c0@example.com")
        result = stream.cancel()
        self.assert_cut_short(result)  # the server's final reply: complete false
        self.assertIs(stream.result, result)
        self.assertEqual(list(stream), [])
        self.assert_same_connection_idle()

    def test_leaving_with_block_cancels(self):
        with self.client.resolve({"id": self.segment, "batch_size": 1, "format": "csv"}) as rows:
            for n, _ in enumerate(rows):
                if n == 5:
                    break
        self.assert_cut_short(rows.result)
        self.assert_same_connection_idle()

    def test_dropping_an_unfinished_stream_cancels(self):
        rows = iter(self.client.resolve({"id": self.segment, "batch_size": 1}))
        next(rows)
        del rows  # CPython finalizes it at once: rpc.cancel, its late rows are dropped
        self.assert_same_connection_idle()

    def test_cancel_subscription(self):
        with self.client.subscribe(after=0) as sub:
            events = [sub.get(timeout=10) for _ in range(3)]
            result = sub.cancel()
        self.assertEqual([e["cursor"] for e in events], [1, 2, 3])
        self.assertEqual(result["ended"], "cancelled")
        self.assertGreaterEqual(result["last_cursor"], 3)
        self.assertEqual(sub.last_cursor, 3)  # the last one delivered: resume after it
        self.assertTrue(sub.closed)
        self.assert_same_connection_idle()

    def test_close_subscription_from_another_thread(self):
        sub = self.client.subscribe()  # live only: blocks, nothing happens
        done = threading.Event()
        got = []

        def consume():
            for event in sub:
                got.append(event)
            done.set()

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        # after=None: the subscription first learns the newest cursor (last_cursor), then runs
        wait_until(lambda: sub.last_cursor is not None and in_flight(self.client) >= 1, 10,
                   what="the subscription to start")
        time.sleep(0.1)
        sub.close()
        self.assertTrue(done.wait(10), "iteration did not end after close()")
        self.assertEqual(got, [])
        self.assertTrue(sub.closed)
        # The server's final reply: {"ended": "cancelled", ...}, or -32800 (result None) had the
        # cancel beaten the subscription's start.
        self.assertIn(sub.result and sub.result["ended"], (None, "cancelled"))
        self.assert_same_connection_idle()

    def test_async_cancel_task_and_break(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=10) as client:
                connection = (await client.hello())["connection"]

                async def idle():
                    for _ in range(1000):
                        if (await client.call("server.stats"))["rpc"]["requests_in_flight"] == 1:
                            return
                        await asyncio.sleep(0.01)
                    self.fail("the cancelled request stayed in flight")

                # 1. cancelling the task that consumes a stream
                started = asyncio.Event()

                async def consume_slowly():
                    async for _ in client.resolve({"id": self.segment, "batch_size": 1}):
                        started.set()
                        await asyncio.sleep(0.01)

                task = asyncio.ensure_future(consume_slowly())
                await asyncio.wait_for(started.wait(), 10)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await task
                await idle()

                # 2. breaking out of async with
                async with client.resolve({"id": self.segment, "batch_size": 1}) as rows:
                    async for _ in rows:
                        break
                self.assert_cut_short(rows.result)
                await idle()

                # 3. cancelling the task that consumes a subscription
                got = []

                async def subscribe():
                    async for event in client.subscribe(after=0):
                        got.append(event)

                task = asyncio.ensure_future(subscribe())
                for _ in range(1000):
                    if len(got) >= 3:
                        break
                    await asyncio.sleep(0.01)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await task
                await idle()

                # 4. await sub.cancel() returns the server's confirmation
                sub = client.subscribe(after=0)
                first = await sub.get(timeout=10)
                result = await sub.cancel()

                # 5. cancelling a task awaiting a plain call also sends rpc.cancel
                call = asyncio.ensure_future(client.call("segments.count", {"id": self.segment}))
                await asyncio.sleep(0)
                call.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await call
                await idle()
                stats = await client.call("server.stats")
                return connection, (await client.hello())["connection"], len(got), first, result, \
                    stats["rpc"]["requests_by_method"].get("rpc.cancel", 0)

        before, after, got, first, result, cancelled = asyncio.run(asyncio.wait_for(run(), 40))
        self.assertGreaterEqual(cancelled - self.cancels, 5)  # one rpc.cancel per case
        self.assertEqual(before, after)  # one connection throughout
        self.assertGreaterEqual(got, 3)
        self.assertEqual(first["cursor"], 1)
        self.assertEqual(result["ended"], "cancelled")


if __name__ == "__main__":
    unittest.main()
