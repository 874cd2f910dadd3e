"""The synchronous segmentd client: :class:`Client`, :class:`Stream`, :class:`Subscription`.

One :class:`Client` holds one connection (opened on first use, and again after it broke)
and may be shared by threads: requests from several threads are in flight at once and
replies are matched by id. There is no background thread: whichever caller waits for a
message reads the socket and hands out what it reads to the others, so nothing is read
that nobody waits for, and the server's backpressure reaches a slow stream consumer.
"""
import collections
import errno
import itertools
import os
import select
import socket
import threading
import time
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

from . import _protocol as P
from .errors import ConnectionClosed, CursorRefused, Error, ProtocolError, SegmentdError, Timeout, TransportError

__all__ = ["Client", "Stream", "Subscription"]

_READ_SLICE = 1.0  # seconds a reader blocks in select() before it looks at its deadline again


class _Pending:
    """One request in flight: its messages, in order, until (and including) the final reply."""
    __slots__ = ("id", "method", "stream", "queue", "done", "discard", "slot")

    def __init__(self, rid: int, method: str, stream: bool):
        self.id = rid
        self.method = method
        self.stream = stream
        self.queue: Deque[Tuple[str, Any]] = collections.deque()
        self.done = False
        self.discard = False
        self.slot = False  # holds one of the server's max_in_flight slots


class _Connection:
    """One socket, its requests in flight and the cooperative reader (see module docs)."""

    def __init__(self, sock: socket.socket, address: P.Address, send_timeout: Optional[float]):
        self.address = address
        self.sock = sock
        sock.setblocking(False)
        self.send_timeout = send_timeout
        self.limits: Dict[str, Any] = dict(P.DEFAULT_LIMITS)
        self.hello: Optional[Dict[str, Any]] = None
        self._send_lock = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._reading = False
        self._buf = bytearray()
        self._pending: Dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._dead: Optional[BaseException] = None
        self._close_fd = False
        self._slots_used = 0
        self.last_activity = time.monotonic()

    def set_limits(self, limits: Dict[str, Any]) -> None:
        """The server's ``limits`` (``rpc.hello``); a larger ``max_in_flight`` wakes waiters."""
        with self._cv:
            self.limits.update(limits)
            self._cv.notify_all()

    # state --------------------------------------------------------------------------------
    @property
    def dead(self) -> bool:
        return self._dead is not None

    def idle_expired(self) -> bool:
        """True when this idle connection should not be used for a new request: the server
        may have closed it for idleness, or it did close it (restart, idle timeout), which
        nobody has read yet -- a peek shows the end of the stream."""
        if self._pending or self._reading:
            return False
        idle_ms = self.limits.get("idle_timeout_ms") or 0
        if idle_ms and time.monotonic() - self.last_activity > max(idle_ms / 1000.0 - 5.0, idle_ms / 2000.0):
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            return bool(readable) and self.sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True

    def _dead_error(self) -> BaseException:
        return P.copy_error(self._dead)

    def fail(self, error: BaseException) -> None:
        """Marks the connection dead: every waiter gets ``error`` once its queue is empty."""
        with self._cv:
            if self._dead is None:
                self._dead = error
            # Nothing more can come for the requests in flight: unregister them (their
            # waiters raise the connection's error once their queues are empty).
            for pending in self._pending.values():
                pending.slot = False
            self._pending.clear()
            self._slots_used = 0
            self._cv.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._cv:
            if self._reading:
                self._close_fd = True  # the reader closes it when it leaves select()
                return
        self.sock.close()

    def close(self) -> None:
        self.fail(ConnectionClosed("the client closed the connection"))

    # sending ------------------------------------------------------------------------------
    def _send(self, data: bytes, blocking: bool = True) -> None:
        deadline = P.deadline_in(self.send_timeout)
        if not self._send_lock.acquire(blocking):
            return  # from a finalizer while another send runs: skip rather than risk a deadlock
        try:
            if self._dead is not None:
                raise self._dead_error()
            view = memoryview(data)
            try:
                while view:
                    try:
                        n = self.sock.send(view)
                        view = view[n:]
                        continue
                    except (BlockingIOError, InterruptedError):
                        pass
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        # Part of a line may be out: the connection cannot be trusted any more.
                        error: TransportError = Timeout(f"could not send to {P.describe(self.address)} within "
                                        f"{self.send_timeout} s (the server is not reading)")
                        self.fail(error)
                        raise error
                    select.select([], [self.sock], [], min(_READ_SLICE, remaining) if remaining else _READ_SLICE)
            except OSError as e:
                if isinstance(e, Error):
                    raise
                error = ConnectionClosed(f"sending to {P.describe(self.address)} failed: {e}")
                self.fail(error)
                raise error from e
        finally:
            self._send_lock.release()
        self.last_activity = time.monotonic()

    def start(self, method: str, params: Optional[Dict[str, Any]], stream: bool = False,
              timeout: Optional[float] = None) -> _Pending:
        """Sends a request and returns its pending entry. At most the server's
        ``max_in_flight`` requests are in flight at once (``rpc.*`` methods do not count,
        as on the server): the others wait here up to ``timeout`` s for a slot."""
        rid = next(self._ids)
        data = P.encode(P.request(method, params, rid), self.limits.get("max_line_bytes"))
        pending = _Pending(rid, method, stream)
        counted = P.takes_slot(method)
        deadline = P.deadline_in(timeout)
        with self._cv:
            while True:
                if self._dead is not None:
                    raise self._dead_error()
                if not counted or self._slots_used < P.max_in_flight(self.limits):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Timeout(f"{method}: no free request slot within {timeout} s "
                                  f"({P.max_in_flight(self.limits)} requests in flight)")
                self._cv.wait(remaining)
            if counted:
                pending.slot = True
                self._slots_used += 1
            self._pending[rid] = pending
        try:
            self._send(data)
        except BaseException:
            with self._cv:
                if self._pending.pop(rid, None) is not None:
                    self._release(pending)
            raise
        return pending

    def _release(self, pending: _Pending) -> None:
        """Gives ``pending``'s in-flight slot back (lock held)."""
        if pending.slot:
            pending.slot = False
            self._slots_used -= 1
            self._cv.notify_all()

    def notify(self, method: str, params: Optional[Dict[str, Any]]) -> None:
        self._send(P.encode(P.request(method, params), self.limits.get("max_line_bytes")))

    def cancel_nowait(self, pending: _Pending, blocking: bool = True) -> None:
        """Sends ``rpc.cancel`` for ``pending`` and drops whatever else arrives for it.
        ``blocking=False`` (finalizers) never waits for a lock held elsewhere."""
        if not self._cv.acquire(blocking):
            pending.discard = True
            return
        try:
            pending.discard = True
            pending.queue.clear()
            if pending.done or self._dead is not None:
                return
        finally:
            self._cv.release()
        try:
            self._send(P.encode(P.request("rpc.cancel", {"id": pending.id}), None), blocking)
        except (Error, OSError):
            pass

    def call(self, method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]) -> Any:
        deadline = P.deadline_in(timeout)
        pending = self.start(method, params, timeout=timeout)
        while True:
            try:
                entry = self.wait(pending, P.time_left(deadline))
            except BaseException:
                self.cancel_nowait(pending)
                raise
            if entry is None:
                self.cancel_nowait(pending)
                raise Timeout(f"{method}: no reply within {timeout} s (rpc.cancel sent)")
            if entry[0] == "final":
                break  # notifications of a streaming method called with call() are dropped
        return P.result_of(entry[1], method)

    # receiving ----------------------------------------------------------------------------
    def wait(self, pending: _Pending, timeout: Optional[float]) -> Optional[Tuple[str, Any]]:
        """The next message for ``pending``: ``("note", (method, params))`` or
        ``("final", reply)``; ``None`` once ``timeout`` seconds passed without one.
        Raises the connection's error when it died and nothing is left for ``pending``."""
        deadline = P.deadline_in(timeout)
        while True:
            with self._cv:
                while True:
                    if pending.queue:
                        return pending.queue.popleft()
                    if self._dead is not None:
                        raise self._dead_error()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    if not self._reading:
                        self._reading = True
                        break
                    self._cv.wait(remaining)
            messages: List[Any] = []
            error: Optional[BaseException] = None
            try:
                messages = self._read(remaining)
            except Error as e:
                error = e
            except (OSError, ValueError) as e:
                error = ConnectionClosed(f"reading from {P.describe(self.address)} failed: {e}")
            finally:  # hand the reader role on whatever happened (even KeyboardInterrupt)
                with self._cv:
                    self._reading = False
                    for message in messages:
                        null_error = self._dispatch(message)
                        if null_error is not None and error is None:
                            # id null: the server could not tell which request it answers,
                            # so no call may wait for its reply: the connection fails.
                            error = null_error
                    close_fd = self._close_fd
                    self._cv.notify_all()
            if close_fd:
                self.sock.close()
            if error is not None:
                self.fail(error)

    def _read(self, timeout: Optional[float]) -> List[Any]:
        """Reads what is there (waiting at most one slice); returns the complete messages."""
        wait = _READ_SLICE if timeout is None else max(0.0, min(timeout, _READ_SLICE))
        if self._close_fd:
            raise ConnectionClosed("the client closed the connection")
        readable, _, _ = select.select([self.sock], [], [], wait)
        if not readable:
            return []
        try:
            chunk = self.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return []
        if not chunk:
            raise ConnectionClosed(f"the server closed the connection ({P.describe(self.address)})")
        self.last_activity = time.monotonic()
        self._buf += chunk
        if b"\n" not in chunk:
            return []
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest)
        return [P.parse_line(line) for line in lines if line.strip()]

    def _dispatch(self, message: Any) -> Optional[SegmentdError]:
        """Hands one message to its request (called with the lock held); returns the error
        of a reply with id null, which fails the connection."""
        null_error: Optional[SegmentdError] = None
        for kind, rid, payload in P.route(message):
            if kind == "note":
                pending = self._pending.get(rid)
                if pending is not None and not pending.discard:
                    pending.queue.append((kind, payload))
            elif kind == "final":
                pending = self._pending.pop(rid, None)
                if pending is not None:
                    pending.done = True
                    self._release(pending)
                    if not pending.discard:
                        pending.queue.append((kind, payload))
            elif null_error is None:
                null_error = payload
        return null_error


def _open_socket(address: P.Address, timeout: Optional[float]) -> socket.socket:
    kind, where = address
    try:
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(where)  # type: ignore[arg-type]
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(where, timeout=timeout)  # type: ignore[arg-type]
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except socket.timeout as e:
        raise Timeout(f"cannot connect to {P.describe(address)}: timed out") from e
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        if kind == "unix" and e.errno in (errno.ENOENT, errno.ECONNREFUSED):
            reason += " (is segmentd running with this --socket?)"
        raise TransportError(f"cannot connect to {P.describe(address)}: {reason}") from e
    return sock


class Client(P.ClientState):
    """A segmentd client over a Unix socket or TCP.

    ``Client("segmentd.sock")``, ``Client("/run/segmentd.sock")`` or
    ``Client("127.0.0.1:7070", token="...")`` (TCP needs a token: it is sent in ``rpc.hello``
    on every (re)connect; ``$SEGMENTD_TOKEN`` is used when none is given).

    Args:
        address: socket path or ``host:port`` (see :func:`segmentd._protocol.parse_address`);
            ``socket_path=`` or ``host=``/``port=`` are the explicit forms.
        token: TCP token for ``rpc.hello`` (ignored by the server on the Unix socket).
        book: default book for every book-scoped call (``None``: the server's ``default``);
            each call may override it with ``book=``.
        timeout: seconds to wait for a reply (and between two messages of a stream);
            ``None`` waits as long as the connection lives. Per call: ``timeout=``.
        connect_timeout: seconds to open the connection (and to get ``rpc.hello``'s answer).
        client_name: sent in ``rpc.hello`` as ``client`` (shows in server logs).

    The connection opens on first use. If it breaks, requests in flight raise
    :class:`~segmentd.TransportError` and the next call opens a new one; calls are never
    retried by themselves (only :meth:`subscribe` resumes, because cursors make that safe).
    The client is thread-safe; use it as a context manager or call :meth:`close`.
    """
    _conn: Optional[_Connection]

    def _init_locks(self) -> None:
        self._conn_lock = threading.Lock()

    # connection ---------------------------------------------------------------------------
    def connect(self) -> "Client":
        """Opens the connection now (otherwise the first call does). Returns the client."""
        self._connection()
        return self

    def _connection(self) -> _Connection:
        if self._closed:
            raise ConnectionClosed("the client is closed")
        with self._conn_lock:
            conn = self._conn
            if conn is not None and (conn.dead or conn.idle_expired()):
                conn.close()
                conn = self._conn = None
            if conn is None:
                conn = self._open()
                self._conn = conn
            return conn

    def _open(self) -> _Connection:
        sock = _open_socket(self.address, self.connect_timeout)
        conn = _Connection(sock, self.address, self.timeout if self.timeout is not None else 60.0)
        # Always rpc.hello (with the token on TCP): the server's limits (max_line_bytes,
        # max_in_flight, idle_timeout_ms) apply to this connection from its first request.
        try:
            hello = conn.call("rpc.hello", self._hello_params(), self.connect_timeout)
        except BaseException:
            conn.close()
            raise
        conn.hello = hello
        if isinstance(hello, dict) and isinstance(hello.get("limits"), dict):
            conn.set_limits(hello["limits"])
        return conn

    def close(self) -> None:
        """Closes the connection (the server cancels whatever is still in flight on it)."""
        self._closed = True
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # calls --------------------------------------------------------------------------------
    def call(self, method: str, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
             timeout: Any = P.DEFAULT) -> Any:
        """Calls ``method`` and returns its result.

        ``book`` (or the client's default book) is added to the params of book-scoped
        methods. An error reply raises the matching :class:`~segmentd.SegmentdError`
        subclass; no reply within ``timeout`` raises :class:`~segmentd.Timeout` (after
        sending ``rpc.cancel``); a broken connection raises
        :class:`~segmentd.TransportError`. For streaming methods use :meth:`stream`.
        """
        conn = self._connection()
        return conn.call(method, P.build_params(method, params, book, self.book), self._timeout(timeout))

    def notify(self, method: str, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None) -> None:
        """Sends a notification (no reply, not even an error)."""
        self._connection().notify(method, P.build_params(method, params, book, self.book))

    def hello(self) -> Dict[str, Any]:
        """``rpc.hello``: server name, version, limits, dimensions, books (and the token's grant)."""
        conn = self._connection()
        hello = conn.call("rpc.hello", self._hello_params(), self._timeout(P.DEFAULT))
        conn.hello = hello
        if isinstance(hello, dict) and isinstance(hello.get("limits"), dict):
            conn.set_limits(hello["limits"])
        return hello

    def ping(self, timeout: Any = P.DEFAULT) -> bool:
        """``rpc.ping``; True when the server answered."""
        return bool(self.call("rpc.ping", timeout=timeout).get("pong"))

    # streams ------------------------------------------------------------------------------
    def stream(self, method: str, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
               timeout: Any = P.DEFAULT) -> "Stream":
        """Any streaming method as a :class:`Stream` (sent when iteration starts)."""
        return Stream(self, method, P.build_params(method, params, book, self.book), self._timeout(timeout))

    def resolve(self, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
                timeout: Any = P.DEFAULT, **more: Any) -> "Stream":
        """``segments.resolve`` as a :class:`Stream` of rows.

        ``params`` (and keyword arguments, merged in): ``id`` or ``filters``, ``audience``,
        ``columns``, ``format`` (``ndjson``: dict rows; ``csv``: one string per record),
        ``compress`` (``"gzip"``: decoded inside, same rows), ``batch_size``.
        After iteration, ``stream.result`` holds the final reply.
        """
        return self.stream("segments.resolve", dict(params or {}, **more), book=book, timeout=timeout)

    def export(self, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
               timeout: Any = P.DEFAULT, **more: Any) -> "Stream":
        """``segments.export`` as a :class:`Stream` (like :meth:`resolve`). With ``path`` the
        server writes the file itself: the stream yields nothing and ``result`` has
        ``path``, ``rows``, ``bytes`` and ``sha256``."""
        return self.stream("segments.export", dict(params or {}, **more), book=book, timeout=timeout)

    def subscribe(self, after: Optional[int] = None, *, triggers: Optional[List[int]] = None,
                  book: Optional[str] = None, backoff: Optional[P.Backoff] = None, heartbeat: float = 15.0,
                  timeout: Any = P.DEFAULT) -> "Subscription":
        """``events.subscribe`` that survives reconnects: see :class:`Subscription`.

        ``after``: the last cursor already handled (``0``: the whole log; ``None``: only
        events from now on, i.e. after ``events.read``'s ``newest_cursor``, read when the
        subscription starts; ``last_cursor`` then says where it started, and it resumes
        exactly like any other). ``triggers``: only these trigger ids. ``backoff``: a
        :class:`~segmentd.Backoff` for reconnects. ``heartbeat``: seconds without any event
        after which the connection is checked with ``rpc.ping``.
        """
        return Subscription(self, after, triggers=triggers, book=book, backoff=backoff, heartbeat=heartbeat,
                            timeout=self._timeout(timeout))


class Stream(P.StreamState):
    """A streaming request (``segments.resolve``, streaming ``segments.export``, ...).

    Iterate it for the rows (see :meth:`Client.resolve`), or use :meth:`iter_bytes` /
    :meth:`write_to` for the file the stream carries. The request is sent on first use.
    ``result`` is the final reply once the stream ended. An error reply raises its
    :class:`~segmentd.SegmentdError` from the iteration, before or after rows.

    Leaving a ``with`` block, :meth:`close` or :meth:`cancel` sends ``rpc.cancel`` for an
    unfinished stream; :meth:`cancel` waits for the server's final reply and returns it
    (``complete: false`` and the rows sent). Dropping an unfinished stream sends
    ``rpc.cancel`` too. Only one thread should consume a stream.
    """
    client: Client
    _conn: Optional[_Connection]
    _pending: Optional[_Pending]

    def start(self) -> "Stream":
        """Sends the request now (iteration does it otherwise)."""
        if self._pending is None and not self._finished:
            conn = self.client._connection()
            self._pending = conn.start(self.method, self.params, stream=True, timeout=self.timeout)
            self._conn = conn
        return self

    def __enter__(self) -> "Stream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Any:
        self._use("rows")
        while not self._items:
            if self._finished:
                raise StopIteration
            entry = self._next_entry()
            try:
                self._take_rows(entry)
            except ProtocolError as e:
                self._bad_payload(e)
                raise
        return self._items.popleft()

    def iter_bytes(self, decompress: bool = True) -> Iterator[bytes]:
        """The bytes of the file the stream describes: CSV text or NDJSON lines (UTF-8).
        With gzip and ``decompress=False``: the gzip file itself, as sent (write it to
        ``audience.csv.gz``)."""
        self._use("bytes")
        while not self._finished:
            entry = self._next_entry()
            try:
                data = self._take_bytes(entry, decompress)
            except ProtocolError as e:
                self._bad_payload(e)
                raise
            if data:
                yield data

    def write_to(self, fileobj: Any, decompress: bool = True) -> Optional[Dict[str, Any]]:
        """Writes :meth:`iter_bytes` to a binary file object; returns the final result."""
        for data in self.iter_bytes(decompress):
            fileobj.write(data)
        return self.result

    def _use(self, mode: str) -> None:
        self._set_mode(mode)
        if self._pending is None and not self._finished:
            self.start()

    def _bad_payload(self, error: ProtocolError) -> None:
        """A message could not be decoded (corrupt gzip, not UTF-8...): the stream ends with
        ``error``, and an unfinished request is cancelled (what else comes for it is dropped)."""
        self._ended_with(error)
        if self._conn is not None and self._pending is not None:
            self._conn.cancel_nowait(self._pending)

    def _next_entry(self) -> Tuple[str, Any]:
        assert self._conn is not None and self._pending is not None
        try:
            entry = self._conn.wait(self._pending, self.timeout)
        except BaseException as e:
            self._ended_with(e)
            if not isinstance(e, Error):  # interrupted (KeyboardInterrupt...): cancel it
                self._conn.cancel_nowait(self._pending)
            raise
        if entry is None:
            error = self._no_message()
            self._conn.cancel_nowait(self._pending)
            raise error
        return self._received(entry)

    def cancel(self, timeout: Any = P.DEFAULT) -> Optional[Dict[str, Any]]:
        """Sends ``rpc.cancel`` and waits for the final reply; returns its result
        (``complete: false`` for a stream cut short; ``None`` if the server answered
        -32800 because the stream had not started). Rows still in transit are dropped."""
        if not self._running():
            return self.result
        assert self._conn is not None and self._pending is not None
        wait = self.timeout if timeout is P.DEFAULT else timeout
        conn, pending = self._conn, self._pending
        conn.notify("rpc.cancel", {"id": pending.id})
        deadline = P.deadline_in(wait)
        while True:
            entry = conn.wait(pending, P.time_left(deadline))
            if entry is None:
                self._finished = True
                conn.cancel_nowait(pending)
                raise Timeout(f"{self.method}: no final reply within {wait} s of rpc.cancel")
            if entry[0] == "final":
                return self._cancelled(entry[1])

    def close(self) -> None:
        """Ends the stream: ``rpc.cancel`` if it is unfinished (waiting briefly for the final
        reply so that the connection is clean). Never raises."""
        if not self._running():
            return
        try:
            self.cancel(timeout=min(self.timeout or 5.0, 5.0))
        except (Error, OSError):
            pass

    def __del__(self) -> None:
        try:
            if not self._finished and self._pending is not None and self._conn is not None:
                self._conn.cancel_nowait(self._pending, blocking=False)
        except Exception:
            pass


class Subscription(P.SubscriptionState):
    """An ``events.subscribe`` that resumes by itself: an iterator of events, each delivered
    exactly once, in cursor order, across reconnects and server restarts.

    It remembers the cursor of the last event it received and, when the connection breaks,
    the server restarts, the subscription ends with ``-32004`` (subscriber timeout),
    ``-32006`` (shutting down), ``-32007`` (book loading) or a cancel it did not ask for,
    subscribes again with ``after`` = that cursor, after an exponential backoff with jitter
    (:class:`~segmentd.Backoff`). Events at or before that cursor are never delivered twice.

    Errors that cannot be resumed without loss or at all raise from the iteration:
    :class:`~segmentd.EventsPruned` (retention removed unread events; its ``resume_after``
    says where one could go on, skipping them), :class:`~segmentd.CursorRefused` (an
    ``InvalidParams``: a cursor older than retention, with ``resume_after``, or from the
    future, with ``newest_cursor``), :class:`~segmentd.NotFound` (book),
    :class:`~segmentd.Unauthorized`.

    A graceful shutdown of the server (SIGTERM) ends the subscription at once with
    ``{"ended": "cancelled", "last_cursor": N}``: it resumes on the restarted server.

    ``last_cursor`` is the cursor of the last event delivered: store it after handling an
    event and pass it as ``after`` next time. ``reconnects`` counts resumptions.

    Leaving a ``with`` block, :meth:`close` or :meth:`cancel` (from any thread) sends
    ``rpc.cancel``; iteration then ends. :meth:`get` waits for one event with a timeout.
    """

    client: Client
    _conn: Optional[_Connection]
    _pending: Optional[_Pending]

    def _init_locks(self) -> None:
        self._lock = threading.RLock()    # held by the consumer; cancel() takes it too
        self._wake = threading.Event()    # cuts a backoff sleep short

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Dict[str, Any]:
        event = self._next(None)
        if event is None:
            raise StopIteration
        return event

    def get(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next event, or ``None`` if none arrived within ``timeout`` seconds (the
        subscription goes on). Raises ``StopIteration`` once the subscription was closed."""
        event = self._next(P.deadline_in(timeout))
        if event is None:
            if self._closed:
                raise StopIteration
            return None
        return event

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # the loop -----------------------------------------------------------------------------
    def _next(self, deadline: Optional[float]) -> Optional[Dict[str, Any]]:
        with self._lock:
            while True:
                if self._closed:
                    self._drop_running()
                    return None
                if self._cancelling:
                    self._finish_cancel(deadline)
                    return None
                if self._buffer:
                    return self._deliver(self._buffer.popleft())
                if self._pending is None:
                    if not self._establish(deadline):
                        return None  # deadline reached while waiting to retry
                    continue
                assert self._conn is not None
                wait = self._wait_time(deadline)
                if wait is None:
                    return None
                try:
                    entry = self._conn.wait(self._pending, wait)
                except Error as e:
                    # wait() raises only what the connection died of: a transport error,
                    # or an error reply with id null (which failed the connection)
                    self._lost(e)
                    continue
                if entry is None:
                    if self._heartbeat_due():
                        self._check_alive()
                    continue
                event = self._take(entry)
                if event is not None:
                    return event

    def _check_alive(self) -> None:
        """Nothing heard for ``heartbeat`` s: ping on the same connection; no pong -> resume."""
        conn = self._conn
        assert conn is not None
        try:
            conn.call("rpc.ping", None, self._call_timeout())
            self._heard()
            self._succeeded()
        except Error as e:
            if isinstance(e, SegmentdError) and not conn.dead:
                self._heard()  # the server answers: the connection is alive
                return
            conn.fail(e)  # the connection is gone for every user of it
            self._lost(e)

    def _drop_running(self) -> None:
        """Closed (e.g. by a close() that timed out while this consumer was subscribing):
        a request still running is cancelled, never left running on the server."""
        pending, conn = self._pending, self._conn
        self._pending = None
        if pending is not None and conn is not None:
            conn.cancel_nowait(pending)

    def _establish(self, deadline: Optional[float]) -> bool:
        """Sends ``events.subscribe`` (after the backoff); False if ``deadline`` came first."""
        while self._should_subscribe():
            now = time.monotonic()
            if now < self._retry_at:
                until = self._retry_at if deadline is None else min(self._retry_at, deadline)
                self._wake.wait(max(0.0, until - now))
                if self._wake.is_set():
                    self._wake.clear()
                    continue
                if deadline is not None and time.monotonic() >= deadline and time.monotonic() < self._retry_at:
                    return False
                continue
            conn: Optional[_Connection] = None
            try:
                conn = self.client._connection()
                if self._received is None:
                    self._learn_newest(conn)
                if not self._should_subscribe():
                    break  # closed or cancelled meanwhile: do not start a subscription
                pending = conn.start("events.subscribe", self._subscribe_params(), stream=True,
                                     timeout=self._call_timeout())
                self._started(conn, pending)
                return True
            except (TransportError, SegmentdError, ProtocolError) as e:
                self._start_failed(e, lost=conn is not None and conn.dead)
        return True

    def _learn_newest(self, conn: _Connection) -> None:
        """``after=None``: starts after the newest cursor, read with ``events.read``
        (``newest_cursor``), so that even this subscription resumes exactly. A log pruned
        past 0 refuses ``after: 0`` with ``data.resume_after``: read from there instead."""
        after = 0
        for _ in range(P.NEWEST_CURSOR_TRIES):
            try:
                page = conn.call("events.read", P.newest_cursor_read(self.book, after), self._call_timeout())
            except CursorRefused as e:
                after = P.read_again_after(e, after)
                continue
            self._start_after(P.newest_cursor_of(page))
            return
        raise P.newest_cursor_unknown()

    # ending -------------------------------------------------------------------------------
    def cancel(self, timeout: Any = P.DEFAULT) -> Optional[Dict[str, Any]]:
        """Sends ``rpc.cancel`` and waits (from any thread) for the final reply; returns it
        (``{"ended": "cancelled", "last_cursor": N}``), ``None`` if there was no running
        subscription. Events still in transit are not delivered: resume after
        ``last_cursor`` (the last delivered) to get them later."""
        if self._closed:
            return self.result
        self._cancelling = True
        self._wake.set()
        pending, conn = self._pending, self._conn
        if pending is not None and conn is not None:
            try:
                conn.notify("rpc.cancel", {"id": pending.id})
            except (Error, OSError):
                pass
        wait = self.timeout if timeout is P.DEFAULT else timeout
        deadline = P.deadline_in(wait)
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise Timeout("the subscription's consumer did not let go within the timeout")
        try:
            self._finish_cancel(deadline)
        finally:
            self._lock.release()
        return self.result

    def _finish_cancel(self, deadline: Optional[float]) -> None:
        running = self._close_running()
        if running is None:
            return
        pending, conn = running
        try:  # again: the subscription may have started after cancel() looked
            conn.notify("rpc.cancel", {"id": pending.id})
        except (Error, OSError):
            return
        while True:
            try:
                entry = conn.wait(pending, P.time_left(deadline))
            except Error:
                return  # the connection died (the server cancels what ran on it)
            if entry is None:
                conn.cancel_nowait(pending)
                raise Timeout("events.subscribe: no final reply after rpc.cancel")
            if entry[0] == "final":
                self._store_cancel_final(entry[1])
                return

    def close(self) -> None:
        """Ends the subscription (``rpc.cancel``). Never raises."""
        try:
            self.cancel(timeout=min(self.timeout or 5.0, 5.0))
        except (Error, OSError):
            self._closed = True

    def __del__(self) -> None:
        try:
            if not self._closed and self._pending is not None and self._conn is not None:
                self._conn.cancel_nowait(self._pending, blocking=False)
        except Exception:
            pass
