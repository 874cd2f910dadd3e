"""Transport-independent pieces shared by the sync and asyncio clients: addresses, request
encoding, the ``book`` param, reply routing, stream payload decoding (rows, CSV, gzip),
backoff, and the state and decisions of clients, streams and subscriptions (the classes
at the end: :mod:`segmentd.client` and :mod:`segmentd.aio` derive from them and add only
the I/O, blocking in one and awaited in the other)."""
import base64
import codecs
import collections
import json
import os
import random
import re
import time
import zlib
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple, Union

from .errors import (Cancelled, ConnectionClosed, CursorRefused, Error, Overloaded, ProtocolError, SegmentdError,
                     ShuttingDown, Timeout, TooLarge, TransportError, error_from_reply)

#: The JSON-RPC version string.
JSONRPC = "2.0"
#: Used when neither the constructor nor ``rpc.hello`` says otherwise (transport.md, Limits).
DEFAULT_LIMITS = {"max_line_bytes": 1048576, "max_in_flight": 32, "idle_timeout_ms": 300000}
#: Methods that are not book-scoped (books.md, The book param): the client never adds ``book``.
NOT_BOOK_SCOPED = frozenset({"server.stats"})
NOT_BOOK_SCOPED_PREFIXES = ("rpc.", "books.")
#: A sentinel for "use the client's default" in keyword arguments.
DEFAULT = object()

Address = Tuple[str, Union[str, Tuple[str, int]]]

_TCP_RE = re.compile(r"^(?:tcp://)?(\[[^\]]+\]|[^:/\s]+):(\d{1,5})$")


def parse_address(address: Any = None, socket_path: Any = None, host: Optional[str] = None,
                  port: Optional[int] = None) -> Address:
    """Returns ``("unix", path)`` or ``("tcp", (host, port))``.

    ``address`` may be a socket path (``"segmentd.sock"``, ``"/run/segmentd.sock"``, a
    ``pathlib.Path``, ``"unix:PATH"``) or ``"host:port"`` / ``"tcp://host:port"``. Without any
    argument: ``$SEGMENTD_SOCKET`` or ``./segmentd.sock`` (the server's default).
    """
    given = [a is not None for a in (address, socket_path, host)]
    if sum(given) > 1:
        raise ValueError("pass one of address, socket_path or host/port")
    if host is not None:
        if port is None:
            raise ValueError("host needs a port")
        return ("tcp", (host, int(port)))
    if socket_path is not None:
        return ("unix", os.fspath(socket_path))
    if address is None:
        return ("unix", os.environ.get("SEGMENTD_SOCKET", "segmentd.sock"))
    if isinstance(address, tuple) and len(address) == 2:
        return ("tcp", (str(address[0]), int(address[1])))
    text = os.fspath(address)
    if text.startswith("unix://"):
        return ("unix", text[len("unix://"):])
    if text.startswith("unix:"):
        return ("unix", text[len("unix:"):])
    match = _TCP_RE.match(text)
    if match:
        h = match.group(1)
        if h.startswith("[") and h.endswith("]"):
            h = h[1:-1]
        return ("tcp", (h, int(match.group(2))))
    if text.startswith("tcp://"):
        raise ValueError(f"not a TCP address (tcp://HOST:PORT): {text!r}")
    return ("unix", text)


def describe(address: Address) -> str:
    kind, where = address
    return f"unix:{where}" if kind == "unix" else f"tcp://{where[0]}:{where[1]}"


def is_book_scoped(method: str) -> bool:
    """Whether segmentd's ``method`` takes the ``book`` param (books.md)."""
    return method not in NOT_BOOK_SCOPED and not method.startswith(NOT_BOOK_SCOPED_PREFIXES)


def takes_slot(method: str) -> bool:
    """Whether a request for ``method`` counts against the server's ``max_in_flight``: the
    server answers the built-in ``rpc.*`` methods without counting them (transport.md)."""
    return not method.startswith("rpc.")


def max_in_flight(limits: Dict[str, Any]) -> int:
    value = limits.get("max_in_flight")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 32


def build_params(method: str, params: Optional[Dict[str, Any]], book: Optional[str],
                 default_book: Optional[str]) -> Dict[str, Any]:
    """The params object to send: a copy of ``params`` with ``book`` set.

    Precedence: the ``book`` argument, then ``params["book"]``, then the client's default
    book (only for book-scoped methods). ``None`` everywhere leaves ``book`` out, which the
    server reads as ``"default"``.
    """
    if params is None:
        out: Dict[str, Any] = {}
    elif isinstance(params, dict):
        out = dict(params)
    else:
        raise TypeError(f"params must be a dict (segmentd takes named params), not {type(params).__name__}")
    if book is not None:
        out["book"] = book
    elif "book" not in out and default_book is not None and is_book_scoped(method):
        out["book"] = default_book
    return out


def encode(message: Dict[str, Any], max_line_bytes: Optional[int]) -> bytes:
    """One message as a line (compact UTF-8 JSON and ``\\n``). Refuses NaN/Infinity (not
    JSON) and lines the server would discard as too large, before anything is sent."""
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"params are not valid JSON: {e}") from None
    data = text.encode("utf-8") + b"\n"
    if max_line_bytes and len(data) - 1 > max_line_bytes:
        raise TooLarge(-32003, f"the request is {len(data) - 1} bytes; the server's max_line_bytes is "
                       f"{max_line_bytes} (refused by the client, nothing was sent)",
                       {"type": "too_large", "max_line_bytes": max_line_bytes}, message.get("method"))
    return data


def request(method: str, params: Optional[Dict[str, Any]], rid: Any = None) -> Dict[str, Any]:
    message: Dict[str, Any] = {"jsonrpc": JSONRPC, "method": method}
    if params:
        message["params"] = params
    if rid is not None:
        message["id"] = rid
    return message


def parse_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"the server sent a line that is not JSON ({e}): {line[:200]!r}") from None


def route(message: Any) -> Iterator[Tuple[str, Any, Any]]:
    """Where a message from the server goes, as ``(kind, id, payload)``:
    ``("note", id, (method, params))`` for a notification of request ``id`` (a stream's),
    ``("final", id, message)`` for the final reply to request ``id``, and
    ``("null", None, error)`` for an error reply with id null (the :class:`SegmentdError`).
    A batch reply gives its elements; anything else gives nothing."""
    if isinstance(message, list):  # a batch reply: its elements are ordinary replies
        for element in message:
            yield from route(element)
        return
    if not isinstance(message, dict):
        return
    if "method" in message and "id" not in message:
        params = message.get("params")
        rid = params.get("id") if isinstance(params, dict) else None
        if isinstance(rid, int):
            yield "note", rid, (message["method"], params)
        return
    rid = message.get("id")
    if isinstance(rid, int):
        yield "final", rid, message
    elif rid is None and isinstance(message.get("error"), dict):
        yield "null", None, error_from_reply(message["error"])


def copy_error(cause: Optional[BaseException]) -> BaseException:
    """A new exception like ``cause`` (what a connection died of), chained to it, for one
    more waiter to raise."""
    if isinstance(cause, SegmentdError):
        err: BaseException = type(cause)(cause.code, cause.message, cause.data, cause.method)
    elif isinstance(cause, Error):
        err = type(cause)(*cause.args)
    else:
        err = ConnectionClosed(str(cause))
    err.__cause__ = cause
    return err


def deadline_in(timeout: Optional[float]) -> Optional[float]:
    """The ``time.monotonic()`` value ``timeout`` seconds from now (``None``: no limit)."""
    return None if timeout is None else time.monotonic() + timeout


def time_left(deadline: Optional[float]) -> Optional[float]:
    """Seconds until ``deadline`` (a ``time.monotonic()`` value; ``None``: no limit), never below 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# --- stream payloads ---------------------------------------------------------------------

class _CsvSplitter:
    """Splits RFC 4180 text into records (CRLF or LF ends a record outside quotes).

    segmentd quotes every field that holds a quote, so quotes come in pairs within a field:
    a line end is inside a field exactly when an odd number of quotes precede it.
    """

    def __init__(self) -> None:
        self.buf = ""
        self.pos = 0          # next index of buf not yet scanned
        self.quotes = 0       # quotes in buf[:pos]

    def feed(self, text: str) -> List[str]:
        buf = self.buf + text if self.buf else text
        records: List[str] = []
        start, pos, quotes = 0, self.pos, self.quotes
        while True:
            nl = buf.find("\n", pos)
            if nl < 0:
                break
            quotes += buf.count('"', pos, nl)
            pos = nl + 1
            if quotes % 2 == 0:
                end = nl - 1 if nl > start and buf[nl - 1] == "\r" else nl
                records.append(buf[start:end])
                start, quotes = pos, 0
        quotes += buf.count('"', pos)
        self.buf = buf[start:]
        self.pos = len(self.buf)
        self.quotes = quotes
        return records

    def finish(self) -> List[str]:
        rest, self.buf, self.pos, self.quotes = self.buf, "", 0, 0
        return [rest[:-1] if rest.endswith("\r") else rest] if rest else []


class PayloadDecoder:
    """Turns a stream's notifications into items.

    * ``segments.rows``: rows. NDJSON -> one ``dict`` per row; CSV -> one ``str`` per record
      (header first, no line terminator; a record with a quoted line break stays whole, so
      ``csv.reader(stream)`` parses it). With ``compress: "gzip"`` the base64 chunks are
      decoded into one gunzip and split the same way, so the items are identical.
    * any other notification (``events.event``, ...): its params without the request ``id``.
    """

    def __init__(self, params: Dict[str, Any]):
        self.format = params.get("format") or "ndjson"
        self.gzip = params.get("compress") == "gzip"
        self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None
        self._gzip_seen = False
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._csv = _CsvSplitter()
        self._lines = b""

    # rows ------------------------------------------------------------------------------
    def feed(self, method: str, params: Dict[str, Any]) -> List[Any]:
        if method != "segments.rows":
            return [{k: v for k, v in params.items() if k != "id"}]
        if "rows" in params:
            return list(params["rows"])
        if "csv" in params:
            return self._csv.feed(params["csv"])
        if "gzip" in params:
            return self._decode_text(self._gunzip_chunk(params["gzip"]))
        return []

    def finish(self, complete: bool) -> List[Any]:
        """Called with the final result; checks the gzip trailer of a complete stream."""
        tail = b""
        if self._gunzip is not None and self._gzip_seen:
            try:
                tail = self._gunzip.flush()
            except zlib.error as e:
                if complete:
                    raise ProtocolError(f"corrupt gzip stream: {e}") from None
            if complete and not self._gunzip.eof:
                raise ProtocolError("incomplete gzip stream: the final reply came before the gzip trailer "
                                    "(CRC-32 and length)")
        items = self._decode_text(tail, final=True) if (tail or self._gzip_seen) else []
        if self.format == "csv":
            items.extend(self._csv.finish())
        return items

    # bytes -----------------------------------------------------------------------------
    def feed_bytes(self, method: str, params: Dict[str, Any], decompress: bool) -> bytes:
        """The next bytes of the file the stream describes (CSV text or NDJSON lines);
        with ``decompress=False`` and gzip, the gzip bytes as sent."""
        if method != "segments.rows":
            return b""
        if "rows" in params:
            return b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                            for r in params["rows"])
        if "csv" in params:
            return params["csv"].encode("utf-8")
        if "gzip" in params:
            raw = _b64(params["gzip"])
            if not decompress:
                self._gzip_seen = True
                return raw
            return self._gunzip_bytes(raw)
        return b""

    def finish_bytes(self, complete: bool, decompress: bool) -> bytes:
        if self._gunzip is None or not self._gzip_seen or not decompress:
            return b""
        try:
            tail = self._gunzip.flush()
        except zlib.error as e:
            if complete:
                raise ProtocolError(f"corrupt gzip stream: {e}") from None
            tail = b""
        if complete and not self._gunzip.eof:
            raise ProtocolError("incomplete gzip stream: the final reply came before the gzip trailer")
        return tail

    # helpers ---------------------------------------------------------------------------
    def _gunzip_chunk(self, text: str) -> bytes:
        return self._gunzip_bytes(_b64(text))

    def _gunzip_bytes(self, raw: bytes) -> bytes:
        self._gzip_seen = True
        if self._gunzip is None:  # gzip payload although the request did not ask: decode anyway
            self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            return self._gunzip.decompress(raw)
        except zlib.error as e:
            raise ProtocolError(f"corrupt gzip stream: {e}") from None

    def _decode_text(self, data: bytes, final: bool = False) -> List[Any]:
        if self.format == "csv":
            try:
                text = self._text.decode(data, final)
            except UnicodeDecodeError as e:
                raise ProtocolError(f"the decoded CSV is not UTF-8: {e}") from None
            return self._csv.feed(text)
        lines = (self._lines + data).split(b"\n")
        self._lines = lines.pop()
        if final and self._lines.strip():
            lines.append(self._lines)
            self._lines = b""
        try:
            return [json.loads(line) for line in lines if line.strip()]
        except ValueError as e:
            raise ProtocolError(f"a decoded NDJSON line is not JSON: {e}") from None


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"gzip chunk is not base64: {e}") from None


# --- backoff -----------------------------------------------------------------------------

class Backoff:
    """Exponential backoff with jitter for resuming subscriptions.

    The n-th consecutive retry (n = 0, 1, ...) waits
    ``min(maximum, initial * multiplier**n)`` scaled by a random factor in
    ``[1 - jitter, 1]``. ``maximum`` bounds every wait. ``give_up_after`` (seconds of
    consecutive failures, ``None`` = never) makes the subscription raise the last error
    instead of retrying forever.
    """

    def __init__(self, initial: float = 0.1, maximum: float = 10.0, multiplier: float = 2.0,
                 jitter: float = 0.5, give_up_after: Optional[float] = None):
        if initial < 0 or maximum < initial or multiplier < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 <= initial <= maximum, multiplier >= 1 and 0 <= jitter <= 1")
        self.initial, self.maximum, self.multiplier = float(initial), float(maximum), float(multiplier)
        self.jitter = float(jitter)
        self.give_up_after = give_up_after

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = self.maximum if attempt >= 64 else min(self.maximum, self.initial * self.multiplier ** attempt)
        return base * (1.0 - self.jitter * random.random())

    def __repr__(self) -> str:
        return (f"Backoff(initial={self.initial}, maximum={self.maximum}, multiplier={self.multiplier}, "
                f"jitter={self.jitter}, give_up_after={self.give_up_after})")


# --- subscription outcomes ---------------------------------------------------------------

#: ``data.type`` of subscription endings that lose nothing when resumed after the last cursor:
#: the -32004 subscriber timeout, a draining server, a book still loading, and a cancel the
#: client did not ask for (drain timeout).
RESUMABLE_TYPES = frozenset({"overloaded", "shutting_down", "unavailable", "cancelled"})


#: Tries of :func:`newest_cursor_read`: a prune between two reads moves the oldest cursor.
NEWEST_CURSOR_TRIES = 5


def newest_cursor_read(book: Optional[str], after: int = 0) -> Dict[str, Any]:
    """Params of the cheapest ``events.read`` whose result names ``newest_cursor``."""
    params: Dict[str, Any] = {"after": after, "limit": 1}
    if book is not None:
        params["book"] = book
    return params


def newest_cursor_of(page: Any) -> int:
    """``newest_cursor`` of an ``events.read`` result."""
    newest = page.get("newest_cursor") if isinstance(page, dict) else None
    if not isinstance(newest, int) or isinstance(newest, bool):
        raise ProtocolError("events.read: the result has no newest_cursor (a segmentd too old for "
                            "live-only subscriptions: pass after= explicitly)")
    return newest


def final_parts(message: Dict[str, Any]) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """(result, error) of a final reply."""
    if "error" in message:
        error = message["error"]
        return None, error if isinstance(error, dict) else {"code": -32603, "message": repr(error)}
    return message.get("result"), None


def result_of(reply: Dict[str, Any], method: str) -> Any:
    """The result of a final reply; an error reply raises its :class:`SegmentdError`."""
    result, error = final_parts(reply)
    if error is not None:
        raise error_from_reply(error, method)
    return result


def read_again_after(error: CursorRefused, after: int) -> int:
    """``events.read`` refused ``after`` (a prune passed it): the cursor to read after
    instead. Raises ``error`` when it names none further on."""
    if isinstance(error.resume_after, int) and error.resume_after > after:
        return error.resume_after
    raise error


def newest_cursor_unknown() -> ProtocolError:
    return ProtocolError("events.read: could not learn the newest cursor (the log was pruned on every try)")


# --- state shared by the sync and asyncio classes ----------------------------------------
# Each class holds the state of a client, a stream or a subscription and makes the
# decisions that need no I/O. segmentd.client and segmentd.aio derive from them and add
# the I/O: connecting, sending, waiting (blocking there, awaited here). Their __init__
# ends with _init_locks(), where a subclass makes its own synchronization primitives.

#: Endings of a subscription being cancelled that are not worth raising: it ended anyway.
ENDED_ANYWAY = (Cancelled, Overloaded, ShuttingDown)


class ClientState:
    """The settings of :class:`segmentd.Client` and :class:`segmentd.AsyncClient` (their
    arguments are documented there)."""

    def __init__(self, address: Any = None, *, token: Optional[str] = None, book: Optional[str] = None,
                 timeout: Optional[float] = 60.0, connect_timeout: Optional[float] = 10.0,
                 client_name: Optional[str] = "segmentd-python", socket_path: Any = None,
                 host: Optional[str] = None, port: Optional[int] = None):
        self.address = parse_address(address, socket_path, host, port)
        if token is None and self.address[0] == "tcp":
            token = os.environ.get("SEGMENTD_TOKEN")
        self.token = token
        self.book = book
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self._conn: Any = None
        self._closed = False
        self._init_locks()

    def _init_locks(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe(self.address)!r}, book={self.book!r})"

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.dead

    def _timeout(self, timeout: Any) -> Optional[float]:
        return self.timeout if timeout is DEFAULT else timeout

    def _hello_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        if self.token is not None:
            params["token"] = self.token
        if self.client_name:
            params["client"] = self.client_name
        return params


class StreamState:
    """The state of :class:`segmentd.Stream` and :class:`segmentd.AsyncStream`: the final
    reply, the error, the decoded items, and how each message changes them."""

    def __init__(self, client: Any, method: str, params: Dict[str, Any], timeout: Optional[float]):
        self.client = client
        self.method = method
        self.params = params
        self.timeout = timeout
        #: The final reply's result, once the stream ended (``None`` before, or after an error).
        self.result: Optional[Dict[str, Any]] = None
        #: The error the stream ended with, if any.
        self.error: Optional[BaseException] = None
        #: Notifications received so far.
        self.messages = 0
        self._conn: Any = None
        self._pending: Any = None
        self._decoder = PayloadDecoder(params)
        self._items: Deque[Any] = collections.deque()
        self._finished = False
        self._mode: Optional[str] = None
        self._init_locks()

    def _init_locks(self) -> None:
        pass

    def __repr__(self) -> str:
        state = "finished" if self._finished else ("running" if self._pending else "not started")
        return f"<{type(self).__name__} {self.method} {state}>"

    @property
    def finished(self) -> bool:
        return self._finished

    def _set_mode(self, mode: str) -> None:
        if self._mode is None:
            self._mode = mode
        elif self._mode != mode:
            raise RuntimeError("a stream is consumed either as rows or as bytes, not both")

    def _running(self) -> bool:
        """Whether the request was sent and has not ended; if not, the stream is finished."""
        if self._finished or self._pending is None or self._conn is None:
            self._finished = True
            return False
        return True

    def _ended_with(self, error: BaseException) -> BaseException:
        """The stream ends with ``error`` (returned, to be raised)."""
        self._finished = True
        self.error = error
        return error

    def _no_message(self) -> BaseException:
        return self._ended_with(Timeout(f"{self.method}: no message within {self.timeout} s (rpc.cancel sent)"))

    def _received(self, entry: Tuple[str, Any]) -> Tuple[str, Any]:
        if entry[0] == "note":
            self.messages += 1
        return entry

    def _take_rows(self, entry: Tuple[str, Any]) -> None:
        """Decodes one message into items (rows, or what else the stream yields)."""
        kind, payload = entry
        if kind == "note":
            self._items.extend(self._decoder.feed(*payload))
        else:
            self._items.extend(self._end(payload, lambda complete: self._decoder.finish(complete)))

    def _take_bytes(self, entry: Tuple[str, Any], decompress: bool) -> bytes:
        """The bytes one message adds to the file the stream carries."""
        kind, payload = entry
        if kind == "note":
            return self._decoder.feed_bytes(payload[0], payload[1], decompress)
        tail = self._end(payload, lambda complete: [self._decoder.finish_bytes(complete, decompress)])
        return tail[0] if tail else b""

    def _end(self, reply: Dict[str, Any], finish: Callable[[bool], List[Any]]) -> List[Any]:
        self._finished = True
        result, error = final_parts(reply)
        if error is not None:
            self.error = error_from_reply(error, self.method)
            raise self.error
        self.result = result
        complete = not (isinstance(result, dict) and result.get("complete") is False)
        try:
            return finish(complete)
        except ProtocolError as e:
            self.error = e
            raise

    def _cancelled(self, reply: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The final reply after ``rpc.cancel``: its result (``None`` for -32800, a stream
        that had not started); another error reply raises."""
        self._finished = True
        self._items.clear()
        result, error = final_parts(reply)
        if error is not None:
            err = error_from_reply(error, self.method)
            if isinstance(err, Cancelled):
                return None
            self.error = err
            raise err
        self.result = result
        return result


class SubscriptionState:
    """The state of :class:`segmentd.Subscription` and :class:`segmentd.AsyncSubscription`
    and its resume policy: which events are delivered (never one at or before the newest
    cursor received), which endings are resumed and which raise, the backoff and give-up
    bookkeeping, what each ``events.subscribe`` asks for."""

    def __init__(self, client: Any, after: Optional[int], *, triggers: Optional[List[int]] = None,
                 book: Optional[str] = None, backoff: Optional[Backoff] = None, heartbeat: float = 15.0,
                 timeout: Optional[float] = 60.0):
        if after is not None and (not isinstance(after, int) or after < 0):
            raise ValueError("after must be a cursor (an int >= 0) or None")
        self.client = client
        self.triggers = list(triggers) if triggers is not None else None
        self.book = book if book is not None else client.book
        self.backoff = backoff or Backoff()
        self.heartbeat = heartbeat
        self.timeout = timeout
        #: Cursor of the last event delivered (``None`` until known).
        self.last_cursor: Optional[int] = after
        #: How many times the subscription was resumed after it ended or broke.
        self.reconnects = 0
        #: Events delivered.
        self.delivered = 0
        #: The last reason the subscription had to resume (an exception), if any.
        self.last_error: Optional[BaseException] = None
        #: The final result once cancelled (``{"ended": "cancelled", "last_cursor": N}``).
        self.result: Optional[Dict[str, Any]] = None
        self._received = after            # newest cursor received: resume after it
        self._buffer: Deque[Dict[str, Any]] = collections.deque()
        self._conn: Any = None
        self._pending: Any = None
        self._failures = 0
        self._failing_since: Optional[float] = None
        self._retry_at = 0.0
        self._last_heard = time.monotonic()
        self._ever_started = False
        self._closed = False
        self._cancelling = False
        self._init_locks()

    def _init_locks(self) -> None:
        pass

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} after={self.last_cursor} delivered={self.delivered} "
                f"reconnects={self.reconnects}>")

    @property
    def closed(self) -> bool:
        return self._closed

    def _call_timeout(self) -> float:
        """The timeout of the calls a subscription makes (``rpc.ping``, ``events.read``)."""
        return self.timeout if self.timeout is not None else 30.0

    # the running subscription ---------------------------------------------------------
    def _wait_time(self, deadline: Optional[float]) -> Optional[float]:
        """How long to wait for the next message: until the heartbeat is due, or until
        ``deadline``; ``None`` once ``deadline`` has passed."""
        now = time.monotonic()
        wait = max(0.0, self._last_heard + self.heartbeat - now)
        if deadline is not None:
            if deadline <= now:
                return None
            wait = min(wait, deadline - now)
        return wait

    def _heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_heard >= self.heartbeat

    def _heard(self) -> None:
        self._last_heard = time.monotonic()

    def _succeeded(self) -> None:
        self._failures, self._failing_since = 0, None

    def _take(self, entry: Tuple[str, Any]) -> Optional[Dict[str, Any]]:
        """One message of the running subscription: the event to deliver, or ``None``
        (nothing to deliver; the subscription may have ended, closed or to be resumed)."""
        self._heard()
        kind, payload = entry
        if self._cancelling:
            if kind == "final":
                self._pending = None
                self._closed = True
                self._store_cancel_final(payload)
            return None  # else the consumer's loop drains to the final reply
        if kind == "note":
            method, params = payload
            if method != "events.event":
                return None
            event = {k: v for k, v in params.items() if k != "id"}
            cursor = event.get("cursor")
            if not isinstance(cursor, int) or (self._received is not None and cursor <= self._received):
                return None  # already delivered before a reconnect
            self._received = cursor
            self._succeeded()
            return self._deliver(event)
        self._pending = None
        self._ended(payload)
        return None

    def _deliver(self, event: Dict[str, Any]) -> Dict[str, Any]:
        self.last_cursor = event.get("cursor", self.last_cursor)
        self.delivered += 1
        return event

    def _ended(self, reply: Dict[str, Any]) -> None:
        """The subscription's final reply arrived without our cancel: resume or raise."""
        result, error = final_parts(reply)
        if error is None:
            # Ended by the server (shutdown, books.drop): resume; a dropped book then fails.
            self._failed(ConnectionClosed(f"the server ended the subscription: {result}"))
            return
        err = error_from_reply(error, "events.subscribe")
        if err.type in RESUMABLE_TYPES or err.code in (-32004, -32006, -32007, -32800):
            self._failed(err)
            return
        self._closed = True
        raise err

    def _lost(self, error: BaseException) -> None:
        """The connection failed under the running subscription: resume elsewhere."""
        self._pending = None
        self._conn = None
        self._failed(error)

    def _failed(self, error: BaseException) -> None:
        """An attempt failed: schedule the next one after the backoff, or raise ``error``
        once failures have lasted ``give_up_after``."""
        self.last_error = error
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        give_up = self.backoff.give_up_after
        if give_up is not None and now - self._failing_since > give_up:
            self._closed = True
            raise error
        self._retry_at = now + self.backoff.delay(self._failures)
        self._failures += 1

    # (re)subscribing ------------------------------------------------------------------
    def _should_subscribe(self) -> bool:
        """Whether to subscribe (again): not once closed or cancelling. Closing the client
        ends its subscriptions."""
        if self._closed or self._cancelling:
            return False
        if self.client._closed:
            self._closed = True
            return False
        return True

    def _start_after(self, newest: int) -> None:
        """A live-only subscription starts after ``newest`` (``events.read``'s ``newest_cursor``)."""
        self._received = newest
        if self.last_cursor is None:
            self.last_cursor = newest

    def _subscribe_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {"after": self._received}
        if self.triggers is not None:
            params["triggers"] = self.triggers
        if self.book is not None:
            params["book"] = self.book
        return params

    def _started(self, conn: Any, pending: Any) -> None:
        self._pending = pending
        self._conn = conn
        self._heard()
        if self._ever_started:
            self.reconnects += 1
        self._ever_started = True

    def _start_failed(self, error: Error, lost: bool = False) -> None:
        """Subscribing failed: a lost connection (``lost``: any error from a connection that
        died, an error reply with id null included) or a "retry later" answer is retried
        after the backoff; anything else closes the subscription and raises."""
        if lost or isinstance(error, TransportError):
            self._conn = None
            self._failed(error)
        elif isinstance(error, SegmentdError) and error.type in RESUMABLE_TYPES:
            self._failed(error)
        else:
            self._closed = True
            raise error

    # ending ---------------------------------------------------------------------------
    def _close_running(self) -> Optional[Tuple[Any, Any]]:
        """Closes the subscription: ``(pending, conn)`` of the request that was running, to
        cancel, or ``None``."""
        pending, conn = self._pending, self._conn
        self._pending = None
        self._closed = True
        self._buffer.clear()
        return None if pending is None or conn is None else (pending, conn)

    def _store_cancel_final(self, reply: Dict[str, Any]) -> None:
        result, error = final_parts(reply)
        self.result = result
        if error is not None:
            err = error_from_reply(error, "events.subscribe")
            if not isinstance(err, ENDED_ANYWAY):
                raise err
