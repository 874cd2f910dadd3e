"""Test 4: TCP with a token (a good token works, a bad or missing one raises a typed error)
and the ``book`` param (client default and per call; books do not share data)."""
import asyncio
import unittest

from _harness import VIP_RULE, contacts, segmentd, start_server

TOKEN = "test-token-0123456789abcdef"


class TcpToken(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls, tcp=True, token=TOKEN)
        cls.address = f"127.0.0.1:{cls.server.port}"

    def test_good_token(self):
        with segmentd.Client(self.address, token=TOKEN, timeout=10) as client:
            hello = client.hello()
            self.assertEqual(hello["transport"], "tcp")
            self.assertEqual(hello["books"]["access"], "admin")
            self.assertTrue(client.ping())
            self.assertEqual(client.call("contacts.count")["total"], 0)

    def test_bad_or_missing_token(self):
        for token in ("wrong-token-0123456789", ""):
            with self.assertRaises(segmentd.Unauthorized) as caught:
                segmentd.Client(self.address, token=token, timeout=10).connect()
            e = caught.exception
            self.assertEqual((e.code, e.type), (-32005, "unauthorized"))
            self.assertEqual(e.method, "rpc.hello")
        with self.assertRaises(segmentd.Unauthorized):
            segmentd.Client(host="127.0.0.1", port=self.server.port, timeout=10).call("rpc.ping")

    def test_async_tcp(self):
        async def run():
            async with segmentd.AsyncClient(self.address, token=TOKEN, timeout=10) as client:
                hello = await client.hello()
                pongs = await asyncio.gather(*(client.ping() for _ in range(40)))  # > max_in_flight
                with self.assertRaises(segmentd.Unauthorized):
                    await segmentd.AsyncClient(self.address, token="nope-nope-nope-nope", timeout=10).connect()
                return hello, pongs
        hello, pongs = asyncio.run(asyncio.wait_for(run(), 30))
        self.assertEqual(hello["transport"], "tcp")
        self.assertEqual(pongs, [True] * 40)

    def test_tcp_stream_and_subscription(self):
        with segmentd.Client(self.address, token=TOKEN, timeout=10) as client:
            client.call("books.create", {"name": "tcpbook"})
            client.call("contacts.upsert", {"contacts": contacts("t", 20)}, book="tcpbook")
            segment = client.call("segments.create", {"name": "VIP", "filters": VIP_RULE}, book="tcpbook")["id"]
            rows = list(client.resolve({"id": segment, "compress": "gzip"}, book="tcpbook"))
            self.assertEqual(len(rows), 20)
            client.call("triggers.create", {"segment": segment}, book="tcpbook")
            with client.subscribe(after=0, book="tcpbook") as sub:
                client.call("contacts.upsert", {"contacts": contacts("u", 3)}, book="tcpbook")
                events = [sub.get(timeout=10) for _ in range(3)]
            self.assertEqual([e["email"] for e in events], [f"u{i}@example.com" for i in range(3)])


class Books(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls)

    def test_book_param(self):
        with segmentd.Client(self.server.socket, timeout=10) as admin:
            admin.call("books.create", {"name": "acme"})
            with self.assertRaises(segmentd.Conflict):
                admin.call("books.create", {"name": "acme"})
        with segmentd.Client(self.server.socket, book="acme", timeout=10) as acme:
            acme.call("contacts.upsert", {"contacts": contacts("a", 5)})
            acme.call("segments.create", {"name": "VIP", "filters": VIP_RULE})
            self.assertEqual(acme.call("contacts.count")["total"], 5)
            self.assertEqual(acme.call("contacts.count", book="default")["total"], 0)  # per call override
            self.assertEqual(len(list(acme.resolve({"id": 1}))), 5)
            with self.assertRaises(segmentd.NotFound):  # segment 1 belongs to acme only
                list(acme.resolve({"id": 1}, book="default"))
            # not book-scoped methods never get the client's default book
            names = [b["name"] for b in acme.call("books.list")["books"]]
            self.assertTrue({"acme", "default"} <= set(names), names)
            self.assertIn("acme", acme.call("server.stats")["books"])
            with self.assertRaises(segmentd.NotFound) as caught:
                acme.call("contacts.count", book="acmee")
            self.assertIn("acmee", caught.exception.message)
            with self.assertRaises(segmentd.InvalidParams) as caught:
                acme.call("contacts.count", book="ACME")
            self.assertEqual(caught.exception.path, "book")
        with segmentd.Client(self.server.socket, timeout=10) as default:
            self.assertEqual(default.call("contacts.count")["total"], 0)
            self.assertEqual(default.call("contacts.count", {"book": "acme"})["total"], 5)

    def test_async_book_param(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=10) as admin:
                await admin.call("books.create", {"name": "globex"})
            async with segmentd.AsyncClient(self.server.socket, book="globex", timeout=10) as globex:
                await globex.call("contacts.upsert", {"contacts": contacts("g", 3)})
                return (await globex.call("contacts.count"))["total"], \
                    (await globex.call("contacts.count", book="default"))["total"]
        in_globex, in_default = asyncio.run(asyncio.wait_for(run(), 20))
        self.assertEqual((in_globex, in_default), (3, 0))


if __name__ == "__main__":
    unittest.main()
