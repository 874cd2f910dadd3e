#!/usr/bin/env python3
"""Streams a segment as gzip over the socket and writes the decoded rows to stdout.

    python3 resolve_gzip.py segmentd.sock '{"id": 1, "format": "csv"}' > audience.csv

Standard library only. The final result goes to stderr. An error reply, a truncated gzip
stream or a connection that ends before the final reply is reported on stderr with exit
status 1: never a hang.
"""
import base64
import json
import socket
import sys
import zlib


def resolve_gzip(sock_path, params, out):
    params = dict(params, compress="gzip")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    sock.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "segments.resolve", "params": params}).encode() + b"\n")
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: expect a gzip header and trailer
    for line in sock.makefile("rb"):
        message = json.loads(line)
        if message.get("method") == "segments.rows":
            out.write(gunzip.decompress(base64.b64decode(message["params"]["gzip"])))
        elif message.get("id") == 1:
            if "error" in message:
                raise RuntimeError(message["error"])
            out.write(gunzip.flush())
            if not gunzip.eof:  # the gzip trailer (CRC-32, length) was not seen: truncated
                raise RuntimeError("incomplete gzip stream")
            return message["result"]
    raise RuntimeError("the connection ended before the final reply")


if __name__ == "__main__":
    sock_path = sys.argv[1] if len(sys.argv) > 1 else "segmentd.sock"
    params = json.loads(sys.argv[2] if len(sys.argv) > 2 else '{"id": 1, "format": "csv"}')
    try:
        final = resolve_gzip(sock_path, params, sys.stdout.buffer)
    except (OSError, RuntimeError, zlib.error) as error:
        sys.stdout.flush()
        print("segments.resolve:", error, file=sys.stderr)
        sys.exit(1)
    print(json.dumps(final), file=sys.stderr)
