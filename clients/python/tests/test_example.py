"""Test 7: ``examples/resolve_gzip.py``, the program the protocol docs show, run as a user
would (``python3 resolve_gzip.py SOCKET PARAMS``, not installed) against a real server."""
import csv
import io
import json
import subprocess
import sys
import unittest

from _harness import PACKAGE_ROOT, VIP_RULE, segmentd, start_server

EXAMPLE = PACKAGE_ROOT / "examples" / "resolve_gzip.py"
PEOPLE = [
    {"email": "ana@example.com", "name": 'Ana, "the" first', "labels": ["vip"]},
    {"email": "umit@example.com", "name": "Ümit", "labels": ["vip", "gold"]},
    {"email": "lines@example.com", "name": "two\nlines", "labels": ["vip"]},
    {"email": "budi@example.com", "name": "Budi", "labels": ["plain"]},  # not in the segment
]


class ResolveGzipExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server(cls)
        with segmentd.Client(cls.server.socket, timeout=20) as c:
            c.call("contacts.upsert", {"contacts": PEOPLE})
            cls.segment = c.call("segments.create", {"name": "VIP", "filters": VIP_RULE})["id"]

    def run_example(self, params):
        # From another directory and with a clean environment: it finds the package by itself.
        return subprocess.run([sys.executable, str(EXAMPLE), self.server.socket, json.dumps(params)],
                              capture_output=True, timeout=30, cwd=self.server.dir,
                              env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})

    def plain(self, params):
        """The error a plain resolve gets, or its CSV as bytes (no gzip)."""
        with segmentd.Client(self.server.socket, timeout=20) as client:
            try:
                return b"".join(client.resolve(params).iter_bytes())
            except segmentd.SegmentdError as e:
                return e

    def test_output_is_the_plain_csv(self):
        params = {"id": self.segment, "format": "csv", "columns": ["email", "name", "labels"]}
        run = self.run_example(params)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout, self.plain(params))
        final = json.loads(run.stderr)          # the final result, on stderr
        self.assertEqual((final["rows"], final["complete"], final["compress"]), (3, True, "gzip"))
        rows = list(csv.reader(io.StringIO(run.stdout.decode("utf-8"), newline="")))
        self.assertEqual(rows[0], ["email", "name", "labels"])
        self.assertEqual(sorted(r[1] for r in rows[1:]), sorted(p["name"] for p in PEOPLE[:3]))

    def test_error_reply_exits_2(self):
        for params in ({"id": 9999, "format": "csv"}, {"id": "one", "format": "csv"},
                       {"id": self.segment, "columns": ["nope"]}):
            with self.subTest(params=params):
                run = self.run_example(params)
                expected = self.plain(params)
                self.assertIsInstance(expected, segmentd.SegmentdError)
                where = f" at {expected.path}" if expected.path else ""
                line = f"error {expected.code} {expected.type}{where}: {expected.message}\n"
                self.assertEqual((run.returncode, run.stdout, run.stderr.decode("utf-8")), (2, b"", line))
        self.assertIn(" at columns[0]: ", line)  # the last one names the offending param


if __name__ == "__main__":
    unittest.main()
