#!/usr/bin/env python3
"""Fills the expected reply lines of proto-docs transcripts from a live server.

    swift build && python3 proto-docs/tools/fill_transcripts.py proto-docs/segments.md

For each ```transcript block, the `> ` lines are sent to a fresh server (one per file, clock
frozen at 2026-01-15T12:00:00Z, exactly like the test suite) and the `< ` lines after each are
replaced by what the server answered within a short wait. Read the result before committing:
the test suite then holds the server to it. Expected values may be replaced by "<any>" by hand.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BIN = subprocess.run(["swift", "build", "--show-bin-path"], capture_output=True, text=True).stdout.strip() + "/segmentd"


def keep_placeholders(old, new):
    """`new` with "<any>" wherever `old` (the reply written before) has it."""
    if old == "<any>":
        return "<any>"
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: keep_placeholders(old[k], v) if k in old else v for k, v in new.items()}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [keep_placeholders(o, n) for o, n in zip(old, new)]
    return new


def merged(reply, old_line):
    """The reply as written: its own text, unless the old one had placeholders to keep."""
    if old_line is None or '"<any>"' not in old_line:
        return reply
    try:
        old, new = json.loads(old_line), json.loads(reply)
    except ValueError:
        return reply
    if old.get("id") != new.get("id"):
        return reply
    return json.dumps(keep_placeholders(old, new), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def replay(path):
    with open(path) as f:
        lines = f.read().split("\n")
    # Replies written before, in order: "<any>" in them (values that vary between runs) is kept.
    old_replies = [line[2:] for line in lines if line.startswith("< ")]
    tmp = tempfile.mkdtemp(prefix="segd-doc-", dir="/tmp")
    server = subprocess.Popen([BIN, "serve", "--frozen-clock", "2026-01-15T12:00:00Z", "--log-level", "error"], cwd=tmp)
    sock_path = os.path.join(tmp, "segmentd.sock")
    # Ready when it accepts a connection (the socket file appears a moment before listen()).
    sock = None
    for _ in range(200):
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(sock_path)
            break
        except OSError:
            sock.close()
            sock = None
            time.sleep(0.05)
    if sock is None:
        server.terminate()
        server.wait()
        sys.exit(f"{path}: the server did not accept connections on {sock_path}")
    sock.settimeout(0.4)
    buf = b""
    out, inside = [], False
    for line in lines:
        if line.startswith("```"):
            inside = line == "```transcript"
            out.append(line)
            continue
        if inside and line.startswith("< "):
            continue
        out.append(line)
        if inside and line.startswith("> "):
            sock.sendall(line[2:].encode() + b"\n")
            deadline = time.time() + 0.4
            while time.time() < deadline:
                try:
                    chunk = sock.recv(1 << 20)
                except socket.timeout:
                    break
                if not chunk:
                    break
                buf += chunk
            while b"\n" in buf:
                reply, buf = buf.split(b"\n", 1)
                reply = reply.decode()
                replies_seen = sum(1 for o in out if o.startswith("< "))
                old_line = old_replies[replies_seen] if replies_seen < len(old_replies) else None
                out.append("< " + merged(reply, old_line))
    sock.close()
    server.terminate()
    server.wait(10)
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    for p in sys.argv[1:]:
        replay(p)
