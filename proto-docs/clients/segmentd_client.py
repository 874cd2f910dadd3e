#!/usr/bin/env python3
"""A segmentd client using only the Python standard library.

    from segmentd_client import Client
    with Client(socket_path="segmentd.sock") as c:
        c.call("contacts.upsert", contacts=[{"email": "ana@example.com", "labels": ["vip"]}])
        print(c.call("segments.count", filters=[{"dimension": "label", "op": "contains", "value": "vip"}]))

Run `python3 segmentd_client.py --socket PATH selftest` to exercise a server end to end
(the test suite does exactly that against a fresh server).
"""
import argparse
import itertools
import json
import socket
import sys


class RPCError(Exception):
    """An error reply: `code`, `message` and `data` (with `data["type"]`, and `data["path"]` for bad params)."""

    def __init__(self, error):
        super().__init__(f'{error.get("code")}: {error.get("message")}')
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data") or {}


class Client:
    def __init__(self, socket_path=None, host=None, port=None, token=None, timeout=30.0):
        if socket_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        self.ids = itertools.count(1)
        if token is not None:
            self.call("rpc.hello", token=token)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.reader.close()
        self.sock.close()

    def _send(self, message):
        self.sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def _read(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        return json.loads(line)

    def call(self, method, on_notification=None, **params):
        """Sends one request and returns its result; stream notifications for it go to `on_notification`."""
        request_id = next(self.ids)
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            message = self._read()
            if "method" in message:  # a notification of a stream
                if on_notification and message.get("params", {}).get("id") == request_id:
                    on_notification(message["method"], message["params"])
                continue
            if message.get("id") != request_id:
                continue
            if "error" in message:
                raise RPCError(message["error"])
            return message["result"]

    def notify(self, method, **params):
        self._send({"jsonrpc": "2.0", "method": method, "params": params})


def selftest(client):
    """Builds a small book and checks real answers; prints a JSON summary."""
    check = {}
    client.call("fields.define", name="city", type="text")
    client.call("fields.define", name="lifetime_value", type="number")
    up = client.call("contacts.upsert", contacts=[
        {"email": "ana@example.com", "name": "Ana", "labels": ["newsletter", "vip"], "funnel": "customer",
         "fields": {"city": "Jakarta", "lifetime_value": 1500}},
        {"email": "budi@example.com", "labels": ["newsletter"], "fields": {"city": "jakarta"}},
        {"email": "citra@example.com", "status": "unsubscribed", "labels": ["newsletter"]},
        {"email": "not-an-email", "labels": ["x"]},
    ])
    assert up["created"] == 3 and up["updated"] == 0, up
    assert [f["index"] for f in up["failed"]] == [3], up
    check["created"] = up["created"]
    newsletter = [{"dimension": "label", "op": "contains", "value": "newsletter"}]
    count = client.call("segments.count", filters=newsletter)
    assert count["matched"] == 3 and count["sendable"] == 2, count
    assert count["excluded"]["unsubscribed"] == 1, count
    check["newsletter"] = {"matched": count["matched"], "sendable": count["sendable"]}
    seg = client.call("segments.create", name="Jakarta-based active contacts", filters=[
        {"dimension": "status", "op": "equals", "value": "active"},
        {"dimension": "field", "field": "city", "op": "equals", "value": "JAKARTA"}])
    jakarta = client.call("segments.count", id=seg["id"])
    assert jakarta["sendable"] == 2, jakarta
    check["jakarta"] = jakarta["sendable"]
    client.call("suppression.add", emails=["budi@example.com"], reason="complaint")
    assert client.call("segments.count", id=seg["id"])["sendable"] == 1
    try:
        client.call("segments.count", filters=[{"dimension": "field", "field": "city", "op": "greater_than", "value": 3}])
        raise AssertionError("a number operator on a text field must be refused")
    except RPCError as e:
        assert e.code == -32602 and e.data.get("path") == "filters[0].op", (e.code, e.data)
        check["bad_filter_path"] = e.data["path"]
    contact = client.call("contacts.get", email="ANA@example.com")
    assert contact["labels"] == ["newsletter", "vip"] and contact["fields"]["city"] == "Jakarta", contact
    check["ana_labels"] = contact["labels"]
    print(json.dumps(check, sort_keys=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="segmentd.sock")
    parser.add_argument("command", choices=["selftest", "ping"])
    args = parser.parse_args()
    with Client(socket_path=args.socket) as client:
        if args.command == "ping":
            print(json.dumps(client.call("rpc.ping")))
        else:
            selftest(client)


if __name__ == "__main__":
    sys.exit(main())
