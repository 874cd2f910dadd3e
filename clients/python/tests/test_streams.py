"""Test 3: streams decode the same with and without gzip (NDJSON and CSV, resolve and
export), also with awkward values and many small chunks."""
import asyncio
import csv
import gzip
import hashlib
import io
import os
import unittest

from _harness import VIP_RULE, segmentd, start_server

AWKWARD = [
    {"email": "ana@example.com", "name": 'Ana, "the" first', "labels": ["vip", "gold"], "fields": {"city": "Jakarta"}},
    {"email": "umit@example.com", "name": "Ümit 🎉", "labels": ["vip"], "fields": {"city": "Bandung"}},
    {"email": "lines@example.com", "name": "two\nlines\r\nand CRLF", "labels": ["vip"]},
    {"email": "edge@example.com", "name": "  edge spaces ", "labels": ["vip", "a;b"]},
    {"email": "quote@example.com", "name": '"', "labels": ["vip"], "status": "unsubscribed"},
]
COLUMNS = ["email", "name", "status", "labels", "city"]


class GzipStreams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls)
        with segmentd.Client(cls.server.socket, timeout=20) as c:
            c.call("fields.define", {"name": "city", "type": "text"})
            c.call("contacts.upsert", {"contacts": AWKWARD})
            c.call("contacts.upsert", {"contacts": [
                {"email": f"bulk{i}@example.com", "name": f"Bulk, No. {i}", "labels": ["vip"],
                 "fields": {"city": "Surabaya" if i % 3 else "Medan"}} for i in range(3000)]})
            cls.segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]
        cls.expected_rows = 3000 + len(AWKWARD)

    def setUp(self):
        self.client = segmentd.Client(self.server.socket, timeout=20)
        self.addCleanup(self.client.close)

    def params(self, **kw):
        return dict({"id": self.segment, "audience": "all", "columns": COLUMNS}, **kw)

    def test_ndjson_gzip_gives_the_same_rows(self):
        plain = self.client.resolve(self.params())
        rows = list(plain)
        for batch_size in (7, 1000):
            zipped = self.client.resolve(self.params(compress="gzip", batch_size=batch_size))
            self.assertEqual(list(zipped), rows)
            self.assertEqual(zipped.result["compress"], "gzip")
            self.assertTrue(zipped.result["complete"])
            self.assertEqual(zipped.result["rows"], len(rows))
        self.assertEqual(len(rows), self.expected_rows)
        self.assertIsNone(plain.result["compress"])
        by_email = {r["email"]: r for r in rows}
        self.assertEqual(by_email["lines@example.com"]["name"], "two\nlines\r\nand CRLF")
        self.assertEqual(by_email["umit@example.com"]["name"], "Ümit 🎉")

    def test_csv_gzip_gives_the_same_records(self):
        plain = list(self.client.resolve(self.params(format="csv", batch_size=13)))
        zipped = list(self.client.resolve(self.params(format="csv", compress="gzip", batch_size=13)))
        self.assertEqual(zipped, plain)
        self.assertEqual(plain[0], ",".join(COLUMNS))
        self.assertEqual(len(plain), 1 + self.expected_rows)  # one record per row, line breaks inside quotes kept
        parsed = list(csv.reader(plain))
        self.assertTrue(all(len(record) == len(COLUMNS) for record in parsed))
        names = {r[0]: r[1] for r in parsed[1:]}
        self.assertEqual(names["ana@example.com"], 'Ana, "the" first')
        self.assertEqual(names["lines@example.com"], "two\nlines\r\nand CRLF")
        self.assertEqual(names["edge@example.com"], "  edge spaces ")

    def test_bytes_gzip_file_and_text(self):
        text = b"".join(self.client.resolve(self.params(format="csv")).iter_bytes())
        stream = self.client.resolve(self.params(format="csv", compress="gzip", batch_size=50))
        gz = b"".join(stream.iter_bytes(decompress=False))  # the .csv.gz file, as sent
        self.assertEqual(gz[:2], b"\x1f\x8b")
        self.assertEqual(gzip.decompress(gz), text)
        out = io.BytesIO()
        result = self.client.resolve(self.params(format="csv", compress="gzip")).write_to(out)
        self.assertEqual(out.getvalue(), text)
        self.assertTrue(result["complete"])
        self.assertEqual(list(csv.reader(io.StringIO(text.decode(), newline=""))),
                         list(csv.reader(self.client.resolve(self.params(format="csv")))))

    def test_export_stream_and_file(self):
        rows = list(self.client.resolve(self.params()))
        self.assertEqual(list(self.client.export(self.params(compress="gzip"))), rows)
        csv_text = b"".join(self.client.export(self.params(format="csv")).iter_bytes())
        exported = self.client.export(self.params(format="csv", compress="gzip", path="vip.csv.gz"))
        self.assertEqual(list(exported), [])  # a file export sends no rows
        result = exported.result
        path = os.path.join(self.server.export_dir, "default", result["path"])
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(hashlib.sha256(data).hexdigest(), result["sha256"])
        self.assertEqual(gzip.decompress(data), csv_text)

    def test_async_gzip_gives_the_same_rows(self):
        async def run():
            async with segmentd.AsyncClient(self.server.socket, timeout=20) as client:
                plain, zipped, plain_csv, zipped_csv = await asyncio.gather(
                    collect(client.resolve(self.params())),
                    collect(client.resolve(self.params(compress="gzip", batch_size=11))),
                    collect(client.export(self.params(format="csv"))),
                    collect(client.export(self.params(format="csv", compress="gzip"))))
                out = io.BytesIO()
                result = await client.resolve(self.params(format="csv", compress="gzip")).write_to(out)
                return plain, zipped, plain_csv, zipped_csv, out.getvalue(), result

        async def collect(stream):
            return [row async for row in stream]

        plain, zipped, plain_csv, zipped_csv, text, result = asyncio.run(asyncio.wait_for(run(), 30))
        self.assertEqual(len(plain), self.expected_rows)
        self.assertEqual(zipped, plain)
        self.assertEqual(zipped_csv, plain_csv)
        self.assertEqual(len(plain_csv), 1 + self.expected_rows)
        self.assertEqual(list(csv.reader(io.StringIO(text.decode(), newline=""))), list(csv.reader(plain_csv)))
        self.assertTrue(result["complete"])


if __name__ == "__main__":
    unittest.main()
