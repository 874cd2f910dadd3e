"""The asyncio segmentd client: :class:`AsyncClient`, :class:`AsyncStream`,
:class:`AsyncSubscription` -- the surface of :mod:`segmentd.client` with ``await``.

One connection carries every request of the client at once (replies are matched by id);
its protocol hands each message to its request as it arrives. To keep the server's
backpressure, the client stops reading the socket while every request in flight is a stream whose consumer has more
than :data:`HIGH_WATER` bytes waiting, and goes on when one of them drains below
:data:`LOW_WATER` or another request is waiting; a stream you do not consume thus slows the
server down instead of filling memory, and never blocks other calls. While other requests
keep the connection reading, an unconsumed stream may buffer up to :data:`MAX_BUFFERED`
bytes; beyond that it fails with :class:`~segmentd.StreamOverflow` and is cancelled.

Cancelling a task that awaits :meth:`AsyncClient.call`, a stream or a subscription sends
``rpc.cancel`` for the request (without awaiting anything).
"""
import asyncio
import collections
import errno
import itertools
import os
import time
from typing import Any, AsyncIterator, Deque, Dict, List, Optional, Tuple

from . import _protocol as P
from .errors import (ConnectionClosed, CursorRefused, Error, ProtocolError, SegmentdError, StreamOverflow, Timeout,
                     TransportError)

__all__ = ["AsyncClient", "AsyncStream", "AsyncSubscription", "HIGH_WATER", "LOW_WATER", "MAX_BUFFERED"]

#: Bytes of unread stream messages above which the reader pauses (see module docs).
HIGH_WATER = 1 << 20
#: ... and below which it reads again.
LOW_WATER = 1 << 18
#: Longest line the client accepts from the server.
MAX_LINE = 1 << 28
#: Bytes of unread messages one stream may hold while reading cannot pause (another request
#: is waiting): beyond it the stream fails with :class:`~segmentd.errors.StreamOverflow`
#: (and ``rpc.cancel`` is sent) instead of buffering the whole result in memory.
MAX_BUFFERED = 16 << 20

# asyncio.wait_for is avoided on purpose: up to Python 3.11 it can swallow a cancellation
# that arrives as the awaited thing completes, and a task the user cancelled must stop (and
# send rpc.cancel). These helpers use plain futures, timers and asyncio.wait instead.


def _expire(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_result(None)


def _expire_slot(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_result(False)


async def _wait_event(event: asyncio.Event, timeout: Optional[float]) -> bool:
    """True once ``event`` is set, False after ``timeout``; cancellation propagates."""
    if event.is_set():
        return True
    task = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
    return bool(done)


async def _acquire(lock: asyncio.Lock, timeout: Optional[float]) -> bool:
    """Acquires ``lock``; False after ``timeout``; cancellation propagates."""
    if not lock.locked():
        await lock.acquire()  # does not suspend
        return True
    task = asyncio.ensure_future(lock.acquire())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        if task.done() and not task.cancelled() and task.exception() is None:
            lock.release()
        raise
    if not done:
        task.cancel()
        return False
    return True


class _Pending:
    __slots__ = ("id", "method", "stream", "queue", "waiter", "done", "discard", "nbytes", "slot", "error")

    def __init__(self, rid: int, method: str, stream: bool):
        self.id = rid
        self.method = method
        self.stream = stream
        self.queue: Deque[Tuple[str, Any, int]] = collections.deque()
        self.waiter: "Optional[asyncio.Future[None]]" = None
        self.done = False
        self.discard = False
        self.nbytes = 0
        self.slot = False
        self.error: Optional[BaseException] = None  # raised once the queue is empty (overflow)

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Protocol(asyncio.Protocol):
    """Splits the byte stream into lines for its connection; flow control both ways."""

    def __init__(self) -> None:
        self.conn: Optional["_Connection"] = None
        self.transport: Optional[asyncio.Transport] = None
        self._buf = bytearray()
        self._write_paused = False
        self._drain_waiters: "Deque[asyncio.Future[Optional[bool]]]" = collections.deque()
        self._early: Optional[BaseException] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.dead:
            return
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > MAX_LINE:
                conn.fail(ProtocolError(f"the server sent a line longer than {MAX_LINE} bytes"))
            return
        conn.last_activity = time.monotonic()
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        for line in lines:
            if conn.dead:
                return
            if not line.strip():
                continue
            try:
                message = P.parse_line(bytes(line))
            except ProtocolError as e:
                conn.fail(e)
                return
            conn._dispatch(message, len(line) + 1)

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.conn.fail(ConnectionClosed(f"the server closed the connection ({P.describe(self.conn.address)})"))
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        error = ConnectionClosed(f"the connection was lost: {exc}" if exc else "the connection was closed")
        if self.conn is not None:
            self.conn.fail(error)
        self._early = error
        self._wake_drain(error)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)

    def _wake_drain(self, error: Optional[BaseException]) -> None:
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(ConnectionClosed(str(error)))

    async def drain(self, timeout: Optional[float]) -> bool:
        """Waits while the transport's write buffer is full; False after ``timeout``."""
        if not self._write_paused:
            return True
        loop = asyncio.get_running_loop()
        waiter: "asyncio.Future[Optional[bool]]" = loop.create_future()
        self._drain_waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire_slot, waiter)
        try:
            return await waiter is not False
        finally:
            if timer is not None:
                timer.cancel()


class _Connection:
    def __init__(self, protocol: _Protocol, address: P.Address, send_timeout: Optional[float]):
        self.address = address
        self.protocol = protocol
        assert protocol.transport is not None
        self.transport = protocol.transport
        protocol.conn = self
        self.send_timeout = send_timeout
        self.limits: Dict[str, Any] = dict(P.DEFAULT_LIMITS)
        self.hello: Optional[Dict[str, Any]] = None
        self._pending: Dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._dead: Optional[BaseException] = protocol._early
        self._reading_paused = False
        self._slots_free = int(self.limits["max_in_flight"])
        self._slot_waiters: "Deque[asyncio.Future[bool]]" = collections.deque()
        self.last_activity = time.monotonic()

    def set_limits(self, limits: Dict[str, Any]) -> None:
        old = P.max_in_flight(self.limits)
        self.limits.update(limits)
        new = P.max_in_flight(self.limits)
        self._slots_free += new - old
        while self._slots_free > 0 and self._slot_waiters:
            self._slots_free -= 1
            self._give_slot()

    @property
    def dead(self) -> bool:
        return self._dead is not None

    def idle_expired(self) -> bool:
        idle_ms = self.limits.get("idle_timeout_ms") or 0
        if not idle_ms or self._pending:
            return False
        return time.monotonic() - self.last_activity > max(idle_ms / 1000.0 - 5.0, idle_ms / 2000.0)

    def _dead_error(self) -> BaseException:
        return P.copy_error(self._dead)

    def fail(self, error: BaseException) -> None:
        """Marks the connection dead; every waiter gets ``error`` once its queue is empty."""
        if self._dead is None:
            self._dead = error
        pendings = list(self._pending.values())
        self._pending.clear()  # nothing more can come for them: unregistered
        for pending in pendings:
            self._release(pending)
            pending.wake()
        try:
            self.transport.close()
        except Exception:
            pass

    async def close(self) -> None:
        self.fail(ConnectionClosed("the client closed the connection"))
        await asyncio.sleep(0)  # let the transport finish closing

    # sending ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._dead is not None:
            raise self._dead_error()
        if self.transport.is_closing():
            error = ConnectionClosed(f"the connection to {P.describe(self.address)} is closing")
            self.fail(error)
            raise error
        self.transport.write(data)
        self.last_activity = time.monotonic()

    async def _drain(self) -> None:
        if not self.protocol._write_paused:
            return
        if not await self.protocol.drain(self.send_timeout):
            error = Timeout(f"could not send to {P.describe(self.address)} within {self.send_timeout} s")
            self.fail(error)
            raise error

    async def start(self, method: str, params: Optional[Dict[str, Any]], stream: bool = False,
                    timeout: Optional[float] = None) -> _Pending:
        """Sends a request (once an in-flight slot is free) and returns its pending entry."""
        rid = next(self._ids)
        data = P.encode(P.request(method, params, rid), self.limits.get("max_line_bytes"))
        if self._dead is not None:
            raise self._dead_error()
        counted = P.takes_slot(method)  # rpc.* do not count on the server: no slot to wait for
        if counted and not await self._acquire_slot(timeout):
            raise Timeout(f"{method}: no free request slot within {timeout} s "
                          f"({self.limits.get('max_in_flight')} requests in flight)")
        if self._dead is not None:
            if counted:
                self._release_slot()
            raise self._dead_error()
        pending = _Pending(rid, method, stream)
        pending.slot = counted
        self._pending[rid] = pending
        self._resume_reading()
        try:
            self._write(data)
        except BaseException:
            self._pending.pop(rid, None)
            self._release(pending)
            raise
        try:
            await self._drain()
        except BaseException:
            self.cancel_nowait(pending)
            raise
        return pending

    def _release(self, pending: _Pending) -> None:
        if pending.slot:
            pending.slot = False
            self._release_slot()

    async def _acquire_slot(self, timeout: Optional[float]) -> bool:
        """Waits for one of the server's ``max_in_flight`` slots (False after ``timeout``)."""
        if self._slots_free > 0 and not self._slot_waiters:
            self._slots_free -= 1
            return True
        loop = asyncio.get_running_loop()
        waiter: "asyncio.Future[bool]" = loop.create_future()
        self._slot_waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire_slot, waiter)
        try:
            got = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release_slot()  # handed over just as we were cancelled: give it back
            elif waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not got:
            if waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)
            return False
        return True

    def _give_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._slots_free += 1

    def _release_slot(self) -> None:
        self._give_slot()

    def notify_nowait(self, method: str, params: Optional[Dict[str, Any]]) -> None:
        self._write(P.encode(P.request(method, params), self.limits.get("max_line_bytes")))

    async def notify(self, method: str, params: Optional[Dict[str, Any]]) -> None:
        self.notify_nowait(method, params)
        await self._drain()

    def cancel_nowait(self, pending: _Pending) -> None:
        """Sends ``rpc.cancel`` for ``pending`` (no await) and drops what else comes for it."""
        pending.discard = True
        pending.queue.clear()
        pending.nbytes = 0
        self._update_flow()
        if pending.done or self._dead is not None:
            return
        try:
            self.notify_nowait("rpc.cancel", {"id": pending.id})
        except (Error, OSError):
            pass

    async def call(self, method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pending = await self.start(method, params, timeout=timeout)
        while True:
            try:
                entry = await self.wait(pending, None if deadline is None else max(0.0, deadline - loop.time()))
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
    async def wait(self, pending: _Pending, timeout: Optional[float]) -> Optional[Tuple[str, Any]]:
        """The next message for ``pending`` (see the sync client), ``None`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if pending.queue:
                kind, payload, size = pending.queue.popleft()
                pending.nbytes -= size
                if self._reading_paused and pending.nbytes < LOW_WATER:
                    self._resume_reading()
                return kind, payload
            if pending.error is not None:
                raise pending.error
            if self._dead is not None:
                raise self._dead_error()
            self._resume_reading()  # someone waits with an empty queue: read
            timer = None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
            waiter = pending.waiter = loop.create_future()
            if deadline is not None:
                timer = loop.call_later(remaining, _expire, waiter)
            try:
                await waiter
            finally:
                pending.waiter = None
                if timer is not None:
                    timer.cancel()

    def _dispatch(self, message: Any, size: int) -> None:
        """Hands one message (``size`` bytes of the line) to its request."""
        if isinstance(message, list):
            size = 0  # a batch reply: its elements are ordinary replies, of no size of their own
        for kind, rid, payload in P.route(message):
            if kind == "note":
                pending = self._pending.get(rid)
                if pending is not None and not pending.discard:
                    pending.queue.append((kind, payload, size))
                    pending.nbytes += size
                    pending.wake()
                    if pending.nbytes > MAX_BUFFERED:
                        self._overflow(pending)
                    elif pending.nbytes >= HIGH_WATER:
                        self._update_flow()
            elif kind == "final":
                pending = self._pending.pop(rid, None)
                if pending is not None:
                    pending.done = True
                    self._release(pending)
                    if not pending.discard:
                        pending.queue.append((kind, payload, 0))
                        pending.wake()
                    self._update_flow()
            elif self._dead is None:
                # id null: the server could not tell which request this answers (a line
                # too large or not JSON): no call may wait for a reply that cannot come.
                self.fail(payload)

    def _overflow(self, pending: _Pending) -> None:
        """A stream nobody consumes while others keep the reader going: it fails (and is
        cancelled) instead of buffering its whole result."""
        pending.error = StreamOverflow(
            f"{pending.method}: more than {MAX_BUFFERED} bytes of unread messages while other requests kept the "
            f"connection reading; the stream was cancelled (consume streams as they run)")
        self.cancel_nowait(pending)
        pending.wake()

    def _update_flow(self) -> None:
        """Read unless every request in flight is a stream holding HIGH_WATER unread bytes."""
        if not self._pending:
            self._resume_reading()
            return
        for pending in self._pending.values():
            if not pending.stream or pending.discard or pending.nbytes < HIGH_WATER:
                self._resume_reading()
                return
        if not self._reading_paused and self._dead is None:
            self._reading_paused = True
            try:
                self.transport.pause_reading()
            except (RuntimeError, AttributeError):
                self._reading_paused = False

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            try:
                self.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass


async def _open_connection(address: P.Address, timeout: Optional[float], send_timeout: Optional[float]) -> _Connection:
    kind, where = address
    loop = asyncio.get_running_loop()
    protocol = _Protocol()
    try:
        if kind == "unix":
            opening = loop.create_unix_connection(lambda: protocol, where)  # type: ignore[arg-type]
        else:
            opening = loop.create_connection(lambda: protocol, where[0], where[1])  # type: ignore[index,arg-type]
        task = asyncio.ensure_future(opening)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except BaseException:
            task.cancel()
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result()[0].close()
            raise
        if not done:
            task.cancel()
            raise Timeout(f"cannot connect to {P.describe(address)}: timed out")
        task.result()
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        if kind == "unix" and e.errno in (errno.ENOENT, errno.ECONNREFUSED):
            reason += " (is segmentd running with this --socket?)"
        raise TransportError(f"cannot connect to {P.describe(address)}: {reason}") from e
    return _Connection(protocol, address, send_timeout)


class AsyncClient(P.ClientState):
    """The asyncio client; arguments and behaviour as :class:`segmentd.Client`.

    ::

        async with segmentd.AsyncClient("segmentd.sock", book="acme") as client:
            counts = await asyncio.gather(*(client.call("segments.count", {"id": i}) for i in ids))

    Any number of requests may be in flight on its one connection (at most the server's
    ``max_in_flight`` are sent at once; the others wait for a slot). Use it from one event
    loop.
    """
    _conn: Optional[_Connection]

    def _init_locks(self) -> None:
        self._conn_lock: Optional[asyncio.Lock] = None  # made on first use, in the event loop

    async def connect(self) -> "AsyncClient":
        """Opens the connection now (otherwise the first call does)."""
        await self._connection()
        return self

    async def _connection(self) -> _Connection:
        if self._closed:
            raise ConnectionClosed("the client is closed")
        conn = self._conn
        if conn is not None and not conn.dead and not conn.idle_expired():
            return conn
        if self._conn_lock is None:
            self._conn_lock = asyncio.Lock()
        async with self._conn_lock:
            conn = self._conn
            if conn is not None and (conn.dead or conn.idle_expired()):
                await conn.close()
                conn = self._conn = None
            if conn is None:
                conn = await self._open()
                self._conn = conn
            return conn

    async def _open(self) -> _Connection:
        conn = await _open_connection(self.address, self.connect_timeout,
                                      self.timeout if self.timeout is not None else 60.0)
        # Always rpc.hello (with the token on TCP): the server's limits apply from the start.
        try:
            hello = await conn.call("rpc.hello", self._hello_params(), self.connect_timeout)
        except BaseException:
            await conn.close()
            raise
        conn.hello = hello
        if isinstance(hello, dict) and isinstance(hello.get("limits"), dict):
            conn.set_limits(hello["limits"])
        return conn

    async def close(self) -> None:
        """Closes the connection (the server cancels whatever is still in flight on it)."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def call(self, method: str, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
                   timeout: Any = P.DEFAULT) -> Any:
        """As :meth:`segmentd.Client.call`. Cancelling the awaiting task sends ``rpc.cancel``."""
        conn = await self._connection()
        return await conn.call(method, P.build_params(method, params, book, self.book), self._timeout(timeout))

    async def notify(self, method: str, params: Optional[Dict[str, Any]] = None, *,
                     book: Optional[str] = None) -> None:
        """Sends a notification (no reply)."""
        conn = await self._connection()
        await conn.notify(method, P.build_params(method, params, book, self.book))

    async def hello(self) -> Dict[str, Any]:
        """``rpc.hello`` (see :meth:`segmentd.Client.hello`)."""
        conn = await self._connection()
        hello = await conn.call("rpc.hello", self._hello_params(), self._timeout(P.DEFAULT))
        conn.hello = hello
        if isinstance(hello, dict) and isinstance(hello.get("limits"), dict):
            conn.set_limits(hello["limits"])
        return hello

    async def ping(self, timeout: Any = P.DEFAULT) -> bool:
        return bool((await self.call("rpc.ping", timeout=timeout)).get("pong"))

    def stream(self, method: str, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
               timeout: Any = P.DEFAULT) -> "AsyncStream":
        """Any streaming method as an :class:`AsyncStream` (sent when iteration starts)."""
        return AsyncStream(self, method, P.build_params(method, params, book, self.book), self._timeout(timeout))

    def resolve(self, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
                timeout: Any = P.DEFAULT, **more: Any) -> "AsyncStream":
        """``segments.resolve`` as an async iterator of rows (see :meth:`segmentd.Client.resolve`)."""
        return self.stream("segments.resolve", dict(params or {}, **more), book=book, timeout=timeout)

    def export(self, params: Optional[Dict[str, Any]] = None, *, book: Optional[str] = None,
               timeout: Any = P.DEFAULT, **more: Any) -> "AsyncStream":
        """``segments.export`` (see :meth:`segmentd.Client.export`)."""
        return self.stream("segments.export", dict(params or {}, **more), book=book, timeout=timeout)

    def subscribe(self, after: Optional[int] = None, *, triggers: Optional[List[int]] = None,
                  book: Optional[str] = None, backoff: Optional[P.Backoff] = None, heartbeat: float = 15.0,
                  timeout: Any = P.DEFAULT) -> "AsyncSubscription":
        """A resuming ``events.subscribe``: see :class:`AsyncSubscription`."""
        return AsyncSubscription(self, after, triggers=triggers, book=book, backoff=backoff, heartbeat=heartbeat,
                                 timeout=self._timeout(timeout))


class AsyncStream(P.StreamState):
    """An async iterator over a streaming request; see :class:`segmentd.Stream`.

    ``async for row in client.resolve(...)``; ``stream.result`` afterwards. Breaking out of
    ``async with client.resolve(...) as rows:`` or cancelling the consuming task sends
    ``rpc.cancel`` (a stream dropped unfinished does too, when it is garbage-collected).
    ``await stream.cancel()`` waits for the final reply and returns it.
    """
    client: AsyncClient
    _conn: Optional[_Connection]
    _pending: Optional[_Pending]

    async def start(self) -> "AsyncStream":
        if self._pending is None and not self._finished:
            conn = await self.client._connection()
            self._pending = await conn.start(self.method, self.params, stream=True, timeout=self.timeout)
            self._conn = conn
        return self

    async def __aenter__(self) -> "AsyncStream":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Any:
        await self._use("rows")
        while not self._items:
            if self._finished:
                raise StopAsyncIteration
            entry = await self._next_entry()
            try:
                self._take_rows(entry)
            except ProtocolError as e:
                self._bad_payload(e)
                raise
        return self._items.popleft()

    async def iter_bytes(self, decompress: bool = True) -> AsyncIterator[bytes]:
        """The bytes of the file the stream carries (see :meth:`segmentd.Stream.iter_bytes`)."""
        await self._use("bytes")
        while not self._finished:
            entry = await self._next_entry()
            try:
                data = self._take_bytes(entry, decompress)
            except ProtocolError as e:
                self._bad_payload(e)
                raise
            if data:
                yield data

    async def write_to(self, fileobj: Any, decompress: bool = True) -> Optional[Dict[str, Any]]:
        """Writes :meth:`iter_bytes` to a binary file object; returns the final result."""
        async for data in self.iter_bytes(decompress):
            fileobj.write(data)
        return self.result

    async def _use(self, mode: str) -> None:
        self._set_mode(mode)
        if self._pending is None and not self._finished:
            await self.start()

    def _bad_payload(self, error: ProtocolError) -> None:
        """See :meth:`segmentd.Stream._bad_payload`."""
        self._ended_with(error)
        if self._conn is not None and self._pending is not None:
            self._conn.cancel_nowait(self._pending)

    async def _next_entry(self) -> Tuple[str, Any]:
        assert self._conn is not None and self._pending is not None
        try:
            entry = await self._conn.wait(self._pending, self.timeout)
        except BaseException as e:
            self._ended_with(e)
            if not isinstance(e, Error):  # the task was cancelled (or worse)
                self._conn.cancel_nowait(self._pending)
            raise
        if entry is None:
            error = self._no_message()
            self._conn.cancel_nowait(self._pending)
            raise error
        return self._received(entry)

    async def cancel(self, timeout: Any = P.DEFAULT) -> Optional[Dict[str, Any]]:
        """Sends ``rpc.cancel``, waits for the final reply and returns its result (see
        :meth:`segmentd.Stream.cancel`)."""
        if not self._running():
            return self.result
        assert self._conn is not None and self._pending is not None
        wait = self.timeout if timeout is P.DEFAULT else timeout
        conn, pending = self._conn, self._pending
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        conn.notify_nowait("rpc.cancel", {"id": pending.id})
        try:
            while True:
                entry = await conn.wait(pending, None if deadline is None else max(0.0, deadline - loop.time()))
                if entry is None:
                    self._finished = True
                    conn.cancel_nowait(pending)
                    raise Timeout(f"{self.method}: no final reply within {wait} s of rpc.cancel")
                if entry[0] == "final":
                    return self._cancelled(entry[1])
        except asyncio.CancelledError:
            self._finished = True
            conn.cancel_nowait(pending)
            raise

    async def aclose(self) -> None:
        """Ends the stream (``rpc.cancel`` if unfinished). Never raises a server error."""
        if not self._running():
            return
        try:
            await self.cancel(timeout=min(self.timeout or 5.0, 5.0))
        except (Error, OSError):
            pass

    def __del__(self) -> None:
        try:
            if not self._finished and self._pending is not None and self._conn is not None:
                self._conn.cancel_nowait(self._pending)
        except Exception:
            pass


class AsyncSubscription(P.SubscriptionState):
    """A resuming ``events.subscribe`` as an async iterator; see :class:`segmentd.Subscription`
    for the guarantees (every event once, in cursor order, across reconnects and restarts).

    ``async for event in client.subscribe(after=cursor): ...``. Cancelling the consuming
    task, leaving ``async with``, ``await sub.aclose()`` / ``await sub.cancel()`` send
    ``rpc.cancel``. ``await sub.get(timeout)`` waits for one event without ending the
    subscription on timeout (returns ``None``).
    """
    client: AsyncClient
    _conn: Optional[_Connection]
    _pending: Optional[_Pending]

    def _init_locks(self) -> None:
        # made on first use, in the event loop (_sync_primitives)
        self._lock: Optional[asyncio.Lock] = None
        self._wake: Optional[asyncio.Event] = None

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Dict[str, Any]:
        event = await self._next(None)
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next event, or ``None`` if none came within ``timeout`` s. Raises
        ``StopAsyncIteration`` once the subscription was closed."""
        event = await self._next(P.deadline_in(timeout))
        if event is None:
            if self._closed:
                raise StopAsyncIteration
            return None
        return event

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def _sync_primitives(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
            self._wake = asyncio.Event()

    async def _next(self, deadline: Optional[float]) -> Optional[Dict[str, Any]]:
        self._sync_primitives()
        assert self._lock is not None
        try:
            async with self._lock:
                return await self._loop(deadline)
        except asyncio.CancelledError:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """The consuming task was cancelled: ``rpc.cancel`` without awaiting anything."""
        self._closed = True
        pending, conn = self._pending, self._conn
        self._pending = None
        if pending is not None and conn is not None:
            conn.cancel_nowait(pending)

    async def _loop(self, deadline: Optional[float]) -> Optional[Dict[str, Any]]:
        while True:
            if self._closed:
                self._abandon()  # a request still running (close() timed out meanwhile): cancelled
                return None
            if self._cancelling:
                await self._finish_cancel(deadline)
                return None
            if self._buffer:
                return self._deliver(self._buffer.popleft())
            if self._pending is None:
                if not await self._establish(deadline):
                    return None
                continue
            assert self._conn is not None
            wait = self._wait_time(deadline)
            if wait is None:
                return None
            try:
                entry = await self._conn.wait(self._pending, wait)
            except Error as e:
                self._lost(e)  # what the connection died of (an id-null error reply included)
                continue
            if entry is None:
                if self._heartbeat_due():
                    await self._check_alive()
                continue
            event = self._take(entry)
            if event is not None:
                return event

    async def _check_alive(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            await conn.call("rpc.ping", None, self._call_timeout())  # rpc.*: takes no slot
            self._heard()
            self._succeeded()
        except Error as e:
            if isinstance(e, SegmentdError) and not conn.dead:
                self._heard()  # the server answers: alive
                return
            conn.fail(e)
            self._lost(e)

    async def _establish(self, deadline: Optional[float]) -> bool:
        assert self._wake is not None
        while self._should_subscribe():
            now = time.monotonic()
            if now < self._retry_at:
                pause = self._retry_at - now
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    pause = min(pause, left)
                if await _wait_event(self._wake, pause):
                    self._wake.clear()
                continue
            conn: Optional[_Connection] = None
            try:
                conn = await self.client._connection()
                if self._received is None:
                    await self._learn_newest(conn)
                if not self._should_subscribe():
                    break  # closed or cancelled meanwhile: do not start a subscription
                pending = await conn.start("events.subscribe", self._subscribe_params(), stream=True,
                                           timeout=self.timeout)
                self._started(conn, pending)
                return True
            except (TransportError, SegmentdError, ProtocolError) as e:
                self._start_failed(e, lost=conn is not None and conn.dead)
        return True

    async def _learn_newest(self, conn: _Connection) -> None:
        """``after=None``: starts after ``events.read``'s ``newest_cursor`` (see
        :meth:`segmentd.Subscription._learn_newest`)."""
        after = 0
        for _ in range(P.NEWEST_CURSOR_TRIES):
            try:
                page = await conn.call("events.read", P.newest_cursor_read(self.book, after), self._call_timeout())
            except CursorRefused as e:
                after = P.read_again_after(e, after)
                continue
            self._start_after(P.newest_cursor_of(page))
            return
        raise P.newest_cursor_unknown()

    async def cancel(self, timeout: Any = P.DEFAULT) -> Optional[Dict[str, Any]]:
        """Sends ``rpc.cancel`` and waits for the final reply (from any task); returns it."""
        if self._closed:
            return self.result
        self._sync_primitives()
        assert self._lock is not None and self._wake is not None
        self._cancelling = True
        self._wake.set()
        pending, conn = self._pending, self._conn
        if pending is not None and conn is not None:
            try:
                conn.notify_nowait("rpc.cancel", {"id": pending.id})
            except (Error, OSError):
                pass
        wait = self.timeout if timeout is P.DEFAULT else timeout
        deadline = P.deadline_in(wait)
        if not await _acquire(self._lock, wait):
            raise Timeout("the subscription's consumer did not let go within the timeout")
        try:
            await self._finish_cancel(deadline)
        except asyncio.CancelledError:
            self._abandon()
            raise
        finally:
            self._lock.release()
        return self.result

    async def _finish_cancel(self, deadline: Optional[float]) -> None:
        running = self._close_running()
        if running is None:
            return
        pending, conn = running
        try:
            conn.notify_nowait("rpc.cancel", {"id": pending.id})
        except (Error, OSError):
            return
        while True:
            try:
                entry = await conn.wait(pending, P.time_left(deadline))
            except Error:
                return
            if entry is None:
                conn.cancel_nowait(pending)
                raise Timeout("events.subscribe: no final reply after rpc.cancel")
            if entry[0] == "final":
                self._store_cancel_final(entry[1])
                return

    async def aclose(self) -> None:
        """Ends the subscription (``rpc.cancel``). Never raises a server error."""
        try:
            await self.cancel(timeout=min(self.timeout or 5.0, 5.0))
        except (Error, OSError):
            self._closed = True

    def __del__(self) -> None:
        try:
            if not self._closed and self._pending is not None and self._conn is not None:
                self._conn.cancel_nowait(self._pending)
        except Exception:
            pass
