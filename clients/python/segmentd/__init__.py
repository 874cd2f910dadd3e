"""Python client for segmentd (newline-delimited JSON-RPC 2.0 over a Unix socket or TCP).

Synchronous::

    import segmentd
    with segmentd.Client("segmentd.sock") as client:
        print(client.call("contacts.count"))
        for row in client.resolve({"id": 1, "format": "csv", "compress": "gzip"}):
            print(row)
        for event in client.subscribe(after=0):
            ...

asyncio: :class:`segmentd.AsyncClient` has the same surface with ``await`` /
``async for``. Errors: :mod:`segmentd.errors`.
"""
from ._protocol import Backoff
from .aio import AsyncClient, AsyncStream, AsyncSubscription
from .client import Client, Stream, Subscription
from .errors import (Cancelled, Conflict, ConnectionClosed, CursorRefused, Error, EventsPruned, InternalError,
                     InvalidParams, InvalidRequest, MethodNotFound, NotFound, Overloaded, ParseError, ProtocolError,
                     SegmentdError, ShuttingDown, StreamOverflow, Timeout, TooLarge, TransportError, Unauthorized, Unavailable)

__version__ = "0.1.0"

__all__ = [
    "Client", "Stream", "Subscription", "AsyncClient", "AsyncStream", "AsyncSubscription", "Backoff",
    "Error", "SegmentdError", "TransportError", "ConnectionClosed", "Timeout", "ProtocolError",
    "ParseError", "InvalidRequest", "MethodNotFound", "InvalidParams", "CursorRefused", "InternalError", "NotFound",
    "EventsPruned", "Conflict", "TooLarge", "Overloaded", "Unauthorized", "ShuttingDown", "Unavailable",
    "Cancelled", "StreamOverflow", "__version__",
]
