"""Transport-independent pieces shared by the sync and asyncio clients: addresses, request
encoding, the ``book`` param, stream payload decoding (rows, CSV, gzip) and backoff."""
import base64
import codecs
import json
import os
import random
import re
import zlib
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import ProtocolError, TooLarge

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
        tail = self._gunzip.flush()
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
            return self._csv.feed(self._text.decode(data, final))
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
