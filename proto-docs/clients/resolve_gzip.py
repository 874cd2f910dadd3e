#!/usr/bin/env python3
"""Streams a segment as gzip over the socket and writes the decoded rows to stdout.

    python3 resolve_gzip.py segmentd.sock '{"id": 1, "format": "csv"}' > audience.csv
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


if __name__ == "__main__":
    final = resolve_gzip(sys.argv[1], json.loads(sys.argv[2]), sys.stdout.buffer)
    print(json.dumps(final), file=sys.stderr)
