#!/usr/bin/env python3
"""Streams a segment as gzip, writes the decoded rows to stdout, the final result to stderr.

    python3 resolve_gzip.py SOCKET '{"id": 1, "format": "csv"}' > audience.csv

An error reply prints "error CODE TYPE at PATH: MESSAGE" on stderr and exits with status 2.
"""
import json
import os
import sys

# Import segmentd from this repository; an installed package needs no such line.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import segmentd  # noqa: E402


def main(socket_path, params):
    with segmentd.Client(socket_path) as client:
        try:  # the client asks for gzip, decodes it and checks the gzip trailer
            final = client.resolve(dict(params, compress="gzip")).write_to(sys.stdout.buffer)
        except segmentd.SegmentdError as e:
            where = f" at {e.path}" if e.path else ""
            print(f"error {e.code} {e.type}{where}: {e.message}", file=sys.stderr)
            return 2
    print(json.dumps(final), file=sys.stderr)  # rows, as_of, version, complete, ...
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
