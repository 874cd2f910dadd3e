"""Exceptions raised by the segmentd client.

Everything the library raises on purpose derives from :class:`Error`:

* :class:`SegmentdError` -- the server answered with a JSON-RPC error reply. It carries
  ``code``, ``type`` (``data.type``), ``path`` (``data.path`` or ``None``), ``message`` and
  ``data``. One subclass per well-known ``data.type`` (:class:`InvalidParams`,
  :class:`NotFound`, ...), so ``except segmentd.NotFound`` reads naturally.
* :class:`TransportError` -- the connection could not be opened, broke, or a reply did not
  come in time (:class:`ConnectionClosed`, :class:`Timeout`). Nothing is known about
  whether the request ran.
* :class:`ProtocolError` -- the server sent something the protocol does not allow (a line
  that is not JSON, a truncated gzip stream).

Plain ``ValueError``/``TypeError`` are raised for mistakes in the caller's arguments that
are detected before anything is sent.
"""
from typing import Any, Dict, Optional, Type

__all__ = [
    "Error", "SegmentdError", "TransportError", "ConnectionClosed", "Timeout", "ProtocolError",
    "ParseError", "InvalidRequest", "MethodNotFound", "InvalidParams", "CursorRefused", "InternalError",
    "NotFound", "EventsPruned", "Conflict", "TooLarge", "Overloaded", "Unauthorized",
    "ShuttingDown", "Unavailable", "Cancelled", "StreamOverflow", "error_from_reply",
]


class Error(Exception):
    """Base class of every exception this library raises on purpose."""


class SegmentdError(Error):
    """An error reply from the server.

    Attributes:
        code: the JSON-RPC error code (``-32602``, ``-32001``, ...).
        type: ``data.type``, the stable machine-readable kind (``"invalid_params"``, ...).
        path: ``data.path`` (JSON path of the offending param, ``""`` for the params as a
            whole) or ``None`` when the error has none.
        message: the server's message, for people.
        data: the whole ``data`` object (extra members such as ``last_cursor``).
        method: the method of the request that failed, when known.
    """

    #: The code this class stands for (``None`` on the base class).
    CODE: Optional[int] = None
    #: The ``data.type`` this class stands for.
    TYPE: Optional[str] = None

    def __init__(self, code: int, message: str, data: Optional[Dict[str, Any]] = None,
                 method: Optional[str] = None):
        self.code = code
        self.message = message
        self.data: Dict[str, Any] = data if isinstance(data, dict) else {}
        self.type: Optional[str] = self.data.get("type")
        path = self.data.get("path")
        self.path: Optional[str] = path if isinstance(path, str) else None
        self.method = method
        super().__init__(code, message)

    def __str__(self) -> str:
        where = f" at {self.path!r}" if self.path else ""
        what = f"{self.method}: " if self.method else ""
        return f"{what}{self.code} {self.type or 'error'}{where}: {self.message}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code!r}, type={self.type!r}, path={self.path!r}, "
                f"message={self.message!r})")

    def __reduce__(self):
        return (_rebuild, (type(self), self.code, self.message, self.data, self.method))


def _rebuild(cls, code, message, data, method):
    return cls(code, message, data, method)


class ParseError(SegmentdError):
    """-32700 ``parse_error``: the server could not parse a line the client sent."""
    CODE, TYPE = -32700, "parse_error"


class InvalidRequest(SegmentdError):
    """-32600 ``invalid_request``: not a valid request envelope (or a streaming method in a batch)."""
    CODE, TYPE = -32600, "invalid_request"


class MethodNotFound(SegmentdError):
    """-32601 ``method_not_found``: no such method (``data["method"]`` names it)."""
    CODE, TYPE = -32601, "method_not_found"


class InvalidParams(SegmentdError):
    """-32602 ``invalid_params``: the params do not fit; ``path`` names the offending part."""
    CODE, TYPE = -32602, "invalid_params"


class _ResumeAfter(SegmentdError):
    """An error that may say where a subscriber could go on: ``resume_after``, the newest
    cursor retention pruned (``None`` when the reply names none). Resuming there skips
    the pruned events, which is the caller's decision."""

    @property
    def resume_after(self) -> Optional[int]:
        return self.data.get("resume_after")


class CursorRefused(InvalidParams, _ResumeAfter):
    """-32602 from ``events.read`` / ``events.subscribe``: the ``after`` cursor is refused.

    From the future: ``newest_cursor`` is the newest event's cursor. Older than the oldest
    kept event: ``resume_after`` is the newest pruned cursor; resuming there skips the
    pruned events, which is the caller's decision (as with :class:`EventsPruned`).
    The other one is ``None``.
    """

    @property
    def newest_cursor(self) -> Optional[int]:
        return self.data.get("newest_cursor")


class InternalError(SegmentdError):
    """-32603 ``internal``: a failure inside the server (details in the server log)."""
    CODE, TYPE = -32603, "internal"


class NotFound(SegmentdError):
    """-32001 ``not_found``: the named thing (segment, contact, book, ...) does not exist."""
    CODE, TYPE = -32001, "not_found"


class EventsPruned(NotFound, _ResumeAfter):
    """-32001 from ``events.subscribe``: retention removed events the subscriber had not read.

    ``data`` has ``last_cursor`` (last event delivered), ``oldest_cursor`` (oldest kept, or
    ``None``) and ``resume_after``. Resuming there skips the pruned events, which is the
    caller's decision: :class:`segmentd.Subscription` never does it by itself.
    """

    @property
    def oldest_cursor(self) -> Optional[int]:
        return self.data.get("oldest_cursor")


class Conflict(SegmentdError):
    """-32002 ``conflict``: the change conflicts with existing state."""
    CODE, TYPE = -32002, "conflict"


class TooLarge(SegmentdError):
    """-32003 ``too_large``: a line, batch or amount exceeds a limit."""
    CODE, TYPE = -32003, "too_large"


class Overloaded(SegmentdError):
    """-32004 ``overloaded``: too many requests in flight / connections, or a subscriber
    that read nothing for ``--subscriber-timeout`` (then ``data["last_cursor"]``)."""
    CODE, TYPE = -32004, "overloaded"


class Unauthorized(SegmentdError):
    """-32005 ``unauthorized``: no or wrong token, or the token does not grant the request."""
    CODE, TYPE = -32005, "unauthorized"


class ShuttingDown(SegmentdError):
    """-32006 ``shutting_down``: the server is draining and takes no new requests."""
    CODE, TYPE = -32006, "shutting_down"


class Unavailable(SegmentdError):
    """-32007 ``unavailable``: the book is still loading; nothing was done, retry shortly."""
    CODE, TYPE = -32007, "unavailable"


class Cancelled(SegmentdError):
    """-32800 ``cancelled``: the request was cancelled (``rpc.cancel``, disconnect, drain)."""
    CODE, TYPE = -32800, "cancelled"


class TransportError(Error, ConnectionError):
    """The connection failed: it could not be opened, it broke, or it was closed.

    Whether a request that was in flight ran on the server is unknown.
    """


class ConnectionClosed(TransportError):
    """The connection ended (or was closed by the client) before the reply arrived."""


class Timeout(TransportError, TimeoutError):
    """No reply (or no next stream message) arrived within the timeout.

    The connection itself may be fine; the client sent ``rpc.cancel`` for the request.
    """


class ProtocolError(Error):
    """The server sent something the protocol does not allow (e.g. a truncated gzip stream)."""


class StreamOverflow(Error):
    """asyncio: a stream held more than :data:`segmentd.aio.MAX_BUFFERED` bytes of unread
    messages while other requests kept the connection reading; it was cancelled."""


_BY_TYPE: Dict[Any, Type[SegmentdError]] = {cls.TYPE: cls for cls in (
    ParseError, InvalidRequest, MethodNotFound, InvalidParams, InternalError, NotFound, Conflict,
    TooLarge, Overloaded, Unauthorized, ShuttingDown, Unavailable, Cancelled)}
_BY_CODE: Dict[Any, Type[SegmentdError]] = {cls.CODE: cls for cls in _BY_TYPE.values()}


def error_from_reply(error: Any, method: Optional[str] = None) -> SegmentdError:
    """Builds the most specific :class:`SegmentdError` for a reply's ``error`` member."""
    if not isinstance(error, dict):
        return SegmentdError(-32603, f"malformed error reply: {error!r}", {}, method)
    code = error.get("code")
    message = error.get("message")
    raw = error.get("data")
    data: Dict[str, Any] = raw if isinstance(raw, dict) else {}
    cls = _BY_TYPE.get(data.get("type")) or _BY_CODE.get(code) or SegmentdError
    if cls is NotFound and "resume_after" in data:
        cls = EventsPruned
    elif cls is InvalidParams and ("resume_after" in data or "newest_cursor" in data):
        cls = CursorRefused
    return cls(code if isinstance(code, int) else -32603, message if isinstance(message, str) else "", data, method)
