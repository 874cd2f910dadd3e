// segmentd client for Node.js (>= 18), standard library only.
//
// The protocol is documented in proto-docs/ (transport.md, streams.md, triggers.md, books.md):
// newline-delimited JSON-RPC 2.0 over a Unix socket, or over TCP after `rpc.hello` with a token.

import net from "node:net";
import zlib from "node:zlib";
import { StringDecoder } from "node:string_decoder";
import { EventEmitter } from "node:events";

/** Version of this client library (sent to the server in `rpc.hello` as `client`). */
export const VERSION = "0.1.0";

/**
 * Error codes of the protocol (transport.md, "Errors"). Codes and `data.type`s never change meaning.
 * @readonly
 */
export const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  NOT_FOUND: -32001,
  CONFLICT: -32002,
  TOO_LARGE: -32003,
  OVERLOADED: -32004,
  UNAUTHORIZED: -32005,
  SHUTTING_DOWN: -32006,
  UNAVAILABLE: -32007,
  CANCELLED: -32800,
});

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * An error reply from the server: the request reached segmentd and it answered with an error.
 *
 * - `code`: the JSON-RPC error code (see {@link ErrorCode}),
 * - `type`: `data.type` (`"invalid_params"`, `"not_found"`, …), the member programs should test,
 * - `path`: `data.path` for invalid params (`"filters[0].op"`, `""` for the params as a whole), else `null`,
 * - `data`: the whole `data` object (e.g. `last_cursor`, `resume_after`, `method`),
 * - `method`: the method that was called.
 */
export class SegmentdError extends Error {
  /**
   * @param {{code: number, message?: string, data?: object}} error the `error` member of the reply
   * @param {string} [method] the method called
   */
  constructor(error, method) {
    super(typeof error?.message === "string" ? error.message : `error ${error?.code}`);
    this.name = "SegmentdError";
    /** @type {number} */
    this.code = error?.code;
    /** @type {Record<string, any>} */
    this.data = error?.data && typeof error.data === "object" ? error.data : {};
    /** @type {string|null} */
    this.type = typeof this.data.type === "string" ? this.data.type : null;
    /** @type {string|null} */
    this.path = typeof this.data.path === "string" ? this.data.path : null;
    /** @type {string|undefined} */
    this.method = method;
  }
}

/**
 * The connection failed or closed before the reply arrived (server killed or restarted, socket
 * missing, connection refused, client closed). The request may or may not have run.
 * `code` is the system error code when there is one (`ECONNREFUSED`, `ENOENT`, `ECONNRESET`, …),
 * else `"CLOSED"`, `"CLIENT_CLOSED"`, `"CONNECT_TIMEOUT"` (connect or rpc.hello), `"PROTOCOL"` (a line
 * that is not JSON), `"UNATTRIBUTED"` (a reply with `"id": null`; `cause` is its {@link SegmentdError})
 * or `"NO_RECONNECT"` (the connection closed and `reconnect: false`).
 */
export class SegmentdConnectionError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, cause?: unknown}} [options]
   */
  constructor(message, options = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "SegmentdConnectionError";
    /** @type {string} */
    this.code = options.code ?? "CLOSED";
  }
}

/**
 * A stream's payload cannot be decoded (a truncated or corrupt gzip stream, an NDJSON row that
 * is not JSON). A line of the connection that is not JSON is a {@link SegmentdConnectionError}
 * with code `"PROTOCOL"` instead: it closes the connection, and subscriptions resume after it.
 */
export class SegmentdProtocolError extends Error {
  /**
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "SegmentdProtocolError";
  }
}

function abortError(signal) {
  if (signal && signal.reason !== undefined) return signal.reason;
  return new DOMException("This operation was aborted", "AbortError");
}

/** Methods that take no `book` (books.md, "The book param"). */
function isBookScoped(method) {
  return !(method.startsWith("rpc.") || method.startsWith("books.") || method === "server.stats");
}

/** Built-in methods take no in-flight slot on the server (they are answered at once). */
function isBuiltin(method) {
  return method.startsWith("rpc.");
}

/** -32004 because the connection had too many requests in flight: nothing ran, safe to resend. */
function isAdmissionRefusal(error) {
  return error instanceof SegmentdError && error.code === ErrorCode.OVERLOADED && !("last_cursor" in error.data);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `promise`, or a rejection with the signal's reason as soon as `signal` aborts. */
function raceAbort(promise, signal) {
  if (signal.aborted) return Promise.reject(abortError(signal));
  let onAbort;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      onAbort = () => reject(abortError(signal));
      signal.addEventListener("abort", onAbort, { once: true });
    }),
  ]).finally(() => signal.removeEventListener("abort", onAbort));
}

/** A promise that settles when `promise` does, or resolves after `ms` (never rejects). */
function settledWithin(promise, ms) {
  let timer;
  return Promise.race([
    promise.then(() => true, () => true),
    new Promise((resolve) => { timer = setTimeout(() => resolve(false), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// One connection: framing, ids, in-flight slots, flow control

const DEFAULT_HIGH_WATER_MARK = 8192; // a stream buffering more items than this lets the socket pause

class Connection extends EventEmitter {
  constructor(endpoint, connectTimeoutMs, highWaterMark) {
    super();
    this.endpoint = endpoint;
    this.connectTimeoutMs = connectTimeoutMs;
    this.highWaterMark = highWaterMark; // pause above this many buffered items…
    this.lowWaterMark = Math.max(1, Math.floor(highWaterMark / 8)); // …until back under this
    this.socket = null;
    this.pending = new Map(); // id -> {method, resolve, reject, onNotification, stream, builtin}
    this.nextId = 1;
    this.closed = false;
    this.closeError = null;
    this.maxInFlight = 32;
    this.maxLineBytes = 1 << 20;
    this.active = 0; // non-builtin requests sent and not yet answered
    this.slotWaiters = [];
    this.streams = new Set(); // SegmentdStream objects using this connection
    this.plainPending = 0; // calls (not streams) waiting for a reply
    this.paused = false;
    this.buffer = "";
  }

  open() {
    return new Promise((resolve, reject) => {
      const ep = this.endpoint;
      const socket = ep.socket ? net.connect({ path: ep.socket }) : net.connect({ host: ep.host ?? "127.0.0.1", port: ep.port });
      this.socket = socket;
      socket.setEncoding("utf8");
      let connected = false;
      const timer = setTimeout(() => {
        if (!connected) socket.destroy(new SegmentdConnectionError(`connect timed out after ${this.connectTimeoutMs} ms`, { code: "CONNECT_TIMEOUT" }));
      }, this.connectTimeoutMs);
      socket.once("connect", () => {
        connected = true;
        clearTimeout(timer);
        if (!ep.socket) {
          socket.setNoDelay(true);
          socket.setKeepAlive(true, 15000); // a long quiet subscription notices a dead peer
        }
        resolve();
      });
      socket.on("data", (chunk) => this._onData(chunk));
      socket.on("error", (err) => {
        if (!this.closeError) this.closeError = err;
      });
      socket.on("close", () => {
        clearTimeout(timer);
        const cause = this.closeError;
        const where = ep.socket ? ep.socket : `${ep.host ?? "127.0.0.1"}:${ep.port}`;
        const error = cause instanceof SegmentdConnectionError ? cause
          : new SegmentdConnectionError(
            connected ? `connection to segmentd at ${where} closed${cause ? ": " + cause.message : ""}`
              : `cannot connect to segmentd at ${where}${cause ? ": " + cause.message : ""}`,
            { code: cause?.code ?? "CLOSED", cause });
        this._shutdown(error);
        if (!connected) reject(error);
      });
    });
  }

  /** Applies the limits `rpc.hello` advertised. */
  configure(limits) {
    if (limits && Number.isInteger(limits.max_in_flight) && limits.max_in_flight > 0) this.maxInFlight = limits.max_in_flight;
    if (limits && Number.isInteger(limits.max_line_bytes) && limits.max_line_bytes > 0) this.maxLineBytes = limits.max_line_bytes;
  }

  close(error) {
    if (this.closed) return;
    this.closeError = error;
    this._shutdown(error);
    // Closing our side cancels everything in flight on the server.
    this.socket?.destroy();
  }

  _shutdown(error) {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.active = 0;
    this.plainPending = 0;
    const waiters = this.slotWaiters.splice(0);
    for (const w of waiters) w.reject(error);
    for (const req of pending) req.reject(error);
    this.emit("close", error);
  }

  _onData(chunk) {
    this.buffer += chunk;
    let start = 0;
    for (;;) {
      const nl = this.buffer.indexOf("\n", start);
      if (nl < 0) break;
      let line = this.buffer.slice(start, nl);
      start = nl + 1;
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line.trim() === "") continue;
      this._onLine(line);
      if (this.closed) return;
    }
    this.buffer = start === 0 ? this.buffer : this.buffer.slice(start);
  }

  _onLine(line) {
    let message;
    try {
      message = JSON.parse(line);
    } catch (cause) {
      // The byte stream can no longer be trusted: fail everything on this connection.
      this.close(new SegmentdConnectionError("the server sent a line that is not JSON", { code: "PROTOCOL", cause }));
      return;
    }
    if (Array.isArray(message)) {
      for (const m of message) this._onMessage(m);
    } else {
      this._onMessage(message);
    }
  }

  _onMessage(message) {
    if (!message || typeof message !== "object") return;
    if (typeof message.method === "string") {
      // A stream notification: its params carry the request id.
      const id = message.params?.id;
      const req = id === undefined ? undefined : this.pending.get(id);
      if (req?.onNotification) req.onNotification(message.method, message.params);
      return;
    }
    if (!("id" in message)) return;
    if (message.id === null) {
      // An error the server could not tie to a request (-32700 parse error, -32003 too large,
      // -32004 too many connections). Some request on this connection will never be answered and
      // we cannot tell which: fail every call on it and close it (clients.md), so none hangs.
      this.emit("unattributed", message.error);
      const cause = new SegmentdError(message.error ?? { code: ErrorCode.INTERNAL });
      this.close(new SegmentdConnectionError(
        `the server answered with "id": null (${cause.code}${cause.type ? " " + cause.type : ""}: ${cause.message}); the connection is closed`,
        { code: "UNATTRIBUTED", cause }));
      return;
    }
    const req = this.pending.get(message.id);
    if (!req) return; // a late reply to something we stopped waiting for
    this.pending.delete(message.id);
    if (!req.builtin) this._releaseSlot();
    if (!req.stream) {
      this.plainPending--;
      this.updateFlow();
    }
    if (message.error) req.reject(new SegmentdError(message.error, req.method));
    else req.resolve(message.result);
  }

  _acquireSlot(control) {
    if (this.closed) return Promise.reject(this.closeError);
    if (this.active < this.maxInFlight) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, control };
      this.slotWaiters.push(waiter);
      if (control) {
        control.onCancel = () => {
          const i = this.slotWaiters.indexOf(waiter);
          if (i >= 0) {
            this.slotWaiters.splice(i, 1);
            reject(control.cancelError());
          }
        };
      }
    });
  }

  _releaseSlot() {
    this.active = Math.max(0, this.active - 1);
    while (this.active < this.maxInFlight && this.slotWaiters.length > 0) {
      const w = this.slotWaiters.shift();
      this.active++;
      w.resolve();
    }
  }

  /**
   * Sends a request and returns a promise of its final reply.
   * @param {string} method
   * @param {object} params
   * @param {{onNotification?: Function, stream?: boolean, control?: object}} [opts]
   *   `control.cancelled` stops a request still waiting for a slot; `control.onSent(id)` learns the id.
   */
  async request(method, params, opts = {}) {
    if (this.closed) throw this.closeError;
    const builtin = isBuiltin(method);
    // Serialise before taking an in-flight slot: params that cannot be serialised (a BigInt, a
    // circular object) throw here, with no slot to leak.
    const head = `{"jsonrpc":"2.0","method":${JSON.stringify(method)}`;
    const body = params === undefined ? undefined : JSON.stringify(params);
    const tail = body === undefined ? "}\n" : `,"params":${body}}\n`;
    if (!builtin) await this._acquireSlot(opts.control);
    if (this.closed) throw this.closeError;
    if (opts.control?.cancelled) {
      if (!builtin) this._releaseSlot();
      throw opts.control.cancelError();
    }
    const id = this.nextId++;
    const line = `${head},"id":${id}${tail}`;
    if (Buffer.byteLength(line) - 1 > this.maxLineBytes) {
      if (!builtin) this._releaseSlot();
      throw new SegmentdError({
        code: ErrorCode.TOO_LARGE,
        message: `request of ${Buffer.byteLength(line) - 1} bytes exceeds the server's max_line_bytes (${this.maxLineBytes}); not sent`,
        data: { type: "too_large", max_line_bytes: this.maxLineBytes, client_side: true },
      }, method);
    }
    const promise = new Promise((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject, onNotification: opts.onNotification, stream: !!opts.stream, builtin });
    });
    if (!opts.stream) {
      this.plainPending++;
      this.updateFlow();
    }
    opts.control?.onSent?.(id);
    this.socket.write(line);
    return promise;
  }

  /** Sends a notification (no reply). */
  notify(method, params) {
    if (this.closed || !this.socket) return;
    this.socket.write(JSON.stringify({ jsonrpc: "2.0", method, params }) + "\n");
  }

  /**
   * Pauses reading while some stream has more buffered than its consumer takes, unless someone
   * waits for data from this connection (a call's reply, a stream's consumer with nothing
   * buffered): pausing then could deadlock. The server slows a paused stream down (transport.md,
   * backpressure), and ends a subscription paused for `--subscriber-timeout` with -32004, which
   * `subscribe()` resumes.
   */
  updateFlow() {
    if (this.closed || !this.socket) return;
    let full = false;
    let hungry = this.plainPending > 0;
    for (const s of this.streams) {
      const n = s._buffered();
      if (n > (this.paused ? this.lowWaterMark : this.highWaterMark)) full = true;
      if (s._hungry()) hungry = true;
    }
    const pause = full && !hungry;
    if (pause && !this.paused) {
      this.paused = true;
      this.pauses = (this.pauses ?? 0) + 1;
      this.socket.pause();
    } else if (!pause && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Stream payload decoding

/** Splits RFC 4180 text into records (quote-aware: a quoted field may hold CR/LF). */
class CsvRecordSplitter {
  constructor() {
    this.rest = "";
    this.inQuotes = false;
    this.scanned = 0; // how much of `rest` has been scanned (quote state is as of there)
  }

  /** @returns {string[]} complete records, without their line end */
  push(text) {
    const out = [];
    this.rest += text;
    let start = 0;
    let i = this.scanned;
    const s = this.rest;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 34 /* " */) this.inQuotes = !this.inQuotes;
      else if (c === 10 /* \n */ && !this.inQuotes) {
        const end = i > start && s.charCodeAt(i - 1) === 13 ? i - 1 : i;
        out.push(s.slice(start, end));
        start = i + 1;
      }
    }
    this.rest = s.slice(start);
    this.scanned = this.rest.length;
    return out;
  }

  /** @returns {string[]} the last record if the text did not end with a line end */
  end() {
    const r = this.rest;
    this.rest = "";
    this.scanned = 0;
    return r === "" ? [] : [r.endsWith("\r") ? r.slice(0, -1) : r];
  }
}

/** Decodes one gzip stream fed in base64 chunks, calling `onText` with decoded UTF-8 text. */
class GzipText {
  constructor(onText, onDrain, onError) {
    this.onText = onText;
    this.ending = false;
    this.decoder = new StringDecoder("utf8");
    this.gunzip = zlib.createGunzip();
    this.error = null;
    this.ended = new Promise((resolve, reject) => {
      this.gunzip.on("data", (chunk) => {
        try {
          this.onText(this.decoder.write(chunk));
        } catch (err) {
          this.error = err;
          this.gunzip.destroy(err);
        }
      });
      this.gunzip.on("end", () => {
        try {
          const tail = this.decoder.end();
          if (tail) this.onText(tail);
          resolve();
        } catch (err) {
          reject(err);
        }
      });
      this.gunzip.on("error", (err) => {
        const error = this.error ?? err;
        reject(error);
        // Corrupt data mid-stream: fail now, not when the final reply arrives (end() reports
        // a truncated stream itself).
        if (!this.ending) onError?.(error);
      });
    });
    this.ended.catch(() => {});
    this.gunzip.on("drain", () => onDrain());
  }

  write(base64) {
    if (!this.gunzip.destroyed) this.gunzip.write(Buffer.from(base64, "base64"));
  }

  /** Whether compressed bytes wait for zlib (it decodes on the thread pool, at its own pace). */
  backlogged() {
    return !this.gunzip.destroyed && this.gunzip.writableNeedDrain;
  }

  /** Resolves once everything is decoded; rejects if the stream was truncated or corrupt. */
  end() {
    this.ending = true;
    if (!this.gunzip.destroyed && !this.gunzip.writableEnded) this.gunzip.end();
    return this.ended;
  }

  destroy() {
    this.ending = true;
    this.gunzip.destroy();
  }
}

/**
 * Turns `segments.rows` / `events.event` notifications into items:
 * NDJSON → row objects; CSV → one string per record; gzip → the same after decoding;
 * raw → each notification's payload as sent (Buffer of gzip bytes, CSV text, or an array of rows).
 */
class PayloadDecoder {
  constructor(format, raw, push, onFlow, onError) {
    this.onError = onError; // a decoding failure outside notification() (zlib reports asynchronously)
    this.format = format === "csv" ? "csv" : "ndjson";
    this.raw = raw;
    this.push = push;
    this.onFlow = onFlow; // called when backlogged() may have changed
    this.csv = new CsvRecordSplitter();
    this.gzip = null;
    this.lines = "";
  }

  notification(method, params) {
    if (method === "events.event") {
      const { id, ...event } = params; // `id` is the request's, not the event's
      this.push(event);
    } else if (typeof params.gzip === "string") {
      if (this.raw) return this.push(Buffer.from(params.gzip, "base64"));
      if (!this.gzip) {
        this.gzip = new GzipText((text) => this._text(text), this.onFlow, (cause) => this.onError?.(
          cause instanceof SegmentdProtocolError ? cause
            : new SegmentdProtocolError(`the gzip stream is truncated or corrupt: ${cause.message}`, { cause })));
      }
      this.gzip.write(params.gzip);
      if (this.gzip.backlogged()) this.onFlow();
    } else if (typeof params.csv === "string") {
      if (this.raw) return this.push(params.csv);
      for (const r of this.csv.push(params.csv)) this.push(r);
    } else if (Array.isArray(params.rows)) {
      if (this.raw) return this.push(params.rows);
      for (const row of params.rows) this.push(row);
    } else {
      const { id, ...rest } = params;
      this.push(rest);
    }
  }

  _text(text) {
    if (this.format === "csv") {
      for (const r of this.csv.push(text)) this.push(r);
      return;
    }
    this.lines += text;
    let start = 0;
    for (;;) {
      const nl = this.lines.indexOf("\n", start);
      if (nl < 0) break;
      const line = this.lines.slice(start, nl);
      start = nl + 1;
      if (line.trim() !== "") this._row(line);
    }
    this.lines = this.lines.slice(start);
  }

  _row(line) {
    try {
      this.push(JSON.parse(line));
    } catch (cause) {
      throw new SegmentdProtocolError("an NDJSON row in the gzip stream is not JSON", { cause });
    }
  }

  /** Flushes what is left once the final reply arrived. `truncatedOk`: the stream was cancelled. */
  async end(truncatedOk) {
    if (this.gzip) {
      try {
        await this.gzip.end();
      } catch (cause) {
        if (!truncatedOk) {
          throw cause instanceof SegmentdProtocolError ? cause
            : new SegmentdProtocolError(`the gzip stream is truncated or corrupt: ${cause.message}`, { cause });
        }
      }
      if (this.format === "ndjson" && this.lines.trim() !== "") {
        const line = this.lines;
        this.lines = "";
        if (!truncatedOk) this._row(line);
      }
    }
    if (!this.raw && this.format === "csv") for (const r of this.csv.end()) this.push(r);
  }

  /** Whether undecoded data waits inside the decoder. */
  backlogged() {
    return this.gzip ? this.gzip.backlogged() : false;
  }

  destroy() {
    this.gzip?.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Streams

/**
 * A streaming call (`segments.resolve`, `segments.export`, `events.subscribe`): an async iterable
 * of its items, with the final reply in {@link SegmentdStream#summary} once the iteration ended.
 * The request is sent when the iteration starts (or on {@link SegmentdStream#result}).
 * Leaving a `for await` early (`break`, `return`, an exception) or aborting the `signal` sends
 * `rpc.cancel`; an error reply is thrown from the loop after the items that came before it.
 * One consumer per stream.
 * @template T
 */
export class SegmentdStream {
  /** @internal */
  constructor(client, method, params, options = {}) {
    this._client = client;
    this._method = method;
    this._params = params;
    this._signal = options.signal;
    this._cancelTimeoutMs = options.cancelTimeoutMs ?? client._cancelTimeoutMs;
    this._decoder = new PayloadDecoder(params.format, !!options.raw, (item) => this._push(item), () => this._conn?.updateFlow(),
      (error) => { if (!this._cancelled) this._fail(error); });
    /** The final reply (`{rows, complete, …}` for resolve/export, `{ended, last_cursor}` for subscribe), once it arrived. */
    this.summary = null;
    /** The JSON-RPC id of the request once sent. */
    this.requestId = null;
    this._queue = [];
    this._head = 0;
    this._state = "idle"; // idle | running | done | failed | finished
    this._error = null;
    this._waiting = false;
    this._wake = null;
    this._conn = null;
    this._cancelled = false;
    this._abortReason = undefined;
    this._final = null; // promise settled once the final reply was handled
    this._control = {
      cancelled: false,
      onSent: (id) => { this.requestId = id; },
      cancelError: () => this._abortReason ?? this._notSent,
      onCancel: null,
    };
    this._notSent = new SegmentdError({ code: ErrorCode.CANCELLED, message: "request cancelled before it was sent", data: { type: "cancelled", client_side: true } }, method);
    this._onCancelled = null; // wakes _run while it waits for a connection
  }

  /** @returns {AsyncIterator<T>} */
  [Symbol.asyncIterator]() {
    return this;
  }

  /**
   * Items waiting for the consumer, counting a gzip decoder with input waiting as full; a
   * cancelled stream never holds the connection's reading.
   */
  _buffered() {
    if (this._cancelled) return 0;
    const n = this._queue.length - this._head;
    return this._decoder.backlogged() && this._conn ? n + this._conn.highWaterMark + 1 : n;
  }

  /** The consumer waits, and nothing it could get is inside the decoder already. */
  _hungry() {
    return this._waiting && !this._decoder.backlogged();
  }

  _push(item) {
    if (this._cancelled || this._state === "finished") return;
    this._queue.push(item);
    if (this._wake) this._wakeUp();
    else if (this._conn && this._buffered() > this._conn.highWaterMark) this._conn.updateFlow();
  }

  _wakeUp() {
    const w = this._wake;
    this._wake = null;
    w?.();
  }

  _start() {
    this._state = "running";
    if (this._signal?.aborted) {
      this._abortReason = abortError(this._signal);
      this._state = "failed";
      this._error = this._abortReason;
      this._final = Promise.resolve();
      return;
    }
    if (this._signal) {
      this._onAbort = () => this._abort(abortError(this._signal));
      this._signal.addEventListener("abort", this._onAbort, { once: true });
    }
    this._final = this._run().then(
      (summary) => {
        this.summary = summary;
        if (this._state === "running") this._state = "done";
      },
      (error) => {
        if (this._state === "running" && error === this._notSent) {
          // cancel() before the request was sent: nothing ran; the iteration ends quietly.
          this._state = "done";
        } else if (this._state === "running") {
          this._state = "failed";
          this._error = error;
        }
      },
    ).finally(() => {
      this._cleanupListeners();
      this._wakeUp();
    });
  }

  async _run() {
    // Waiting for a connection (connect, rpc.hello, a backoff) ends at once on cancel or abort.
    const cancelled = new Promise((_, reject) => {
      this._onCancelled = () => reject(this._control.cancelError());
    });
    cancelled.catch(() => {});
    let conn;
    try {
      conn = await Promise.race([this._client._connection(), cancelled]);
    } finally {
      this._onCancelled = null;
    }
    this._conn = conn;
    conn.streams.add(this);
    try {
      const result = await this._client._send(conn, this._method, this._params, {
        stream: true,
        control: this._control,
        onNotification: (method, params) => {
          if (this._cancelled) return;
          try {
            this._decoder.notification(method, params);
          } catch (err) {
            this._fail(err);
          }
        },
      });
      try {
        await this._decoder.end(this._cancelled);
      } catch (err) {
        if (!this._cancelled) throw err;
      }
      return result;
    } catch (err) {
      this._decoder.destroy();
      throw err;
    } finally {
      conn.streams.delete(this);
      conn.updateFlow();
    }
  }

  /** A local failure (decoding): cancel on the server, fail the stream. */
  _fail(error) {
    if (this._state !== "running") return;
    this._state = "failed";
    this._error = error;
    this._cancel();
    this._wakeUp();
  }

  _cancel() {
    if (this._cancelled) return;
    this._cancelled = true;
    this._control.cancelled = true;
    this._control.onCancel?.();
    this._onCancelled?.();
    if (this.requestId !== null && this._conn && !this._conn.closed) {
      this._conn.notify("rpc.cancel", { id: this.requestId });
    }
    this._conn?.updateFlow(); // read on: the final reply is behind what is buffered
  }

  _abort(reason) {
    if (this._state !== "running" || this._abortReason !== undefined) return;
    this._abortReason = reason;
    this._cancel();
    this._wakeUp();
  }

  _cleanupListeners() {
    if (this._onAbort) this._signal.removeEventListener("abort", this._onAbort);
    this._onAbort = null;
  }

  _finish() {
    this._state = "finished";
    this._queue = [];
    this._head = 0;
    this._cleanupListeners();
    this._conn?.streams.delete(this);
    this._conn?.updateFlow();
  }

  /** @returns {Promise<IteratorResult<T, undefined>>} */
  async next() {
    if (this._state === "idle") this._start();
    for (;;) {
      if (this._state === "finished") return { value: undefined, done: true };
      if (this._abortReason !== undefined) {
        // Wait (bounded) for the final reply so `summary` says where the stream stopped.
        await settledWithin(this._final, this._cancelTimeoutMs);
        const reason = this._abortReason;
        this._finish();
        throw reason;
      }
      if (this._head < this._queue.length) {
        const item = this._queue[this._head];
        this._queue[this._head++] = undefined;
        if (this._head > 1024 && this._head * 2 > this._queue.length) {
          this._queue = this._queue.slice(this._head);
          this._head = 0;
        }
        if (this._conn?.paused) this._conn.updateFlow();
        return { value: item, done: false };
      }
      if (this._state === "failed") {
        const error = this._error;
        this._finish();
        throw error;
      }
      if (this._state === "done") {
        this._finish();
        return { value: undefined, done: true };
      }
      await new Promise((resolve) => {
        this._wake = resolve;
        this._waiting = true;
        this._conn?.updateFlow();
      });
      this._waiting = false;
    }
  }

  /**
   * Stops the stream (sends `rpc.cancel` if it is still running) and waits, at most the client's
   * `cancelTimeoutMs`, for its final reply. Called by `for await` on `break`.
   * @returns {Promise<IteratorResult<T, undefined>>}
   */
  async return() {
    if (this._state === "running") {
      this._cancel();
      await settledWithin(this._final, this._cancelTimeoutMs);
    }
    this._finish();
    return { value: undefined, done: true };
  }

  /** Cancels the stream (sends `rpc.cancel`); the iteration then ends after what already arrived. */
  cancel() {
    if (this._state === "idle") {
      this._finish();
      return;
    }
    if (this._state === "running") this._cancel();
  }

  /**
   * Runs the stream to its end, discarding the items, and returns the final reply (for
   * `segments.export` with `path`, the file's `{path, rows, bytes, sha256, …}`).
   * @returns {Promise<any>}
   */
  async result() {
    for await (const _ of this) { /* discard */ }
    return this.summary;
  }

  /**
   * Runs the stream to its end and returns every item (mind the memory for big audiences).
   * @returns {Promise<T[]>}
   */
  async collect() {
    const items = [];
    for await (const item of this) items.push(item);
    return items;
  }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 100, maxMs: 10000, factor: 2, jitter: 0.5, maxRetries: Infinity, resetAfterMs: 10000 });

/** Errors after which a subscription resumes from its cursor without losing anything. */
function isResumable(error) {
  // CLIENT_CLOSED: close() was called; NO_RECONNECT: the connection closed and `reconnect: false`
  // forbids another, so retrying could only fail again, forever.
  if (error instanceof SegmentdConnectionError) return error.code !== "CLIENT_CLOSED" && error.code !== "NO_RECONNECT";
  if (error instanceof SegmentdError) {
    return [ErrorCode.OVERLOADED, ErrorCode.SHUTTING_DOWN, ErrorCode.UNAVAILABLE, ErrorCode.CANCELLED].includes(error.code);
  }
  return false;
}

/**
 * A resumable `events.subscribe`: an async iterable of trigger events, in cursor order, each once.
 *
 * When the stream ends in a way it can resume from without loss (connection closed or refused,
 * server killed, restarted or shutting down, `-32004` subscriber timeout, `{ended: "cancelled"}`
 * from the server, `-32007` book still loading), it subscribes again with `after` = the cursor of
 * the last event it delivered, after an exponential backoff with jitter.
 *
 * It throws when resuming would lose events or needs someone to act: events pruned by retention
 * (`-32001`, `data.resume_after` says where the log continues), a cursor that is too old
 * (`-32602` with `data.resume_after`) or from the future (`-32602` with `data.newest_cursor`), an
 * unknown book, a refused token; after `backoff.maxRetries` failed
 * resumes in a row; and with the `signal`'s reason when it is aborted.
 * `break` (or {@link Subscription#close}) ends it quietly and cancels it on the server.
 */
export class Subscription {
  /** @internal */
  constructor(client, options = {}) {
    this._client = client;
    this._options = options;
    this._backoff = { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) };
    /** Cursor of the last event delivered (before the first event: where it started); null until known. */
    this.cursor = options.after ?? null;
    /** How many times the subscription was opened again after it ended or failed. */
    this.resumes = 0;
    /** The error that caused the last resume, if any. */
    this.lastError = null;
    this._iterator = null;
    this._closing = false;
    this._inNext = false;
    this._current = null; // the SegmentdStream of the current attempt
    this._wakeSleep = null; // ends a backoff sleep early on close()
    this._abortStart = null; // ends _startCursor early on close()
  }

  /** @returns {AsyncIterator<object>} */
  [Symbol.asyncIterator]() {
    if (this._iterator) throw new TypeError("a Subscription can be iterated once");
    const generator = this._run();
    const self = this;
    this._iterator = {
      async next() {
        self._inNext = true;
        try {
          return await generator.next();
        } finally {
          self._inNext = false;
        }
      },
      async return(value) {
        // A generator busy in next() (waiting for an event) would queue return() until the next
        // event: stop the current attempt first, so it ends now.
        if (self._inNext) self._stopCurrent();
        return generator.return(value);
      },
      async throw(error) {
        if (self._inNext) self._stopCurrent();
        return generator.throw(error);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return this._iterator;
  }

  _stopCurrent() {
    this._closing = true;
    this._current?.cancel();
    this._wakeSleep?.();
    this._abortStart?.();
  }

  async *_run() {
    const opts = this._options;
    const client = this._client;
    const signal = opts.signal;
    const backoff = this._backoff;
    let after = this.cursor;
    let attempt = 0;
    if (after === null || after === undefined) {
      after = await this._startCursor(signal);
      if (after === null) return; // closed while finding where to start
      this.cursor = after;
    }
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      if (this._closing) return;
      const params = { after };
      if (opts.triggers !== undefined) params.triggers = opts.triggers;
      const stream = new SegmentdStream(client, "events.subscribe", client._withBook("events.subscribe", params, opts.book), { signal });
      this._current = stream;
      const opened = Date.now();
      let failure = null;
      try {
        for await (const event of stream) {
          if (typeof event.cursor === "number" && event.cursor <= after) continue; // never twice
          after = event.cursor;
          this.cursor = after;
          attempt = 0;
          yield event;
        }
        if (this._closing) return;
        // It ended with a result, but not because of us: the server ended it ({ended: "cancelled",
        // last_cursor}: a graceful shutdown, books.drop). Resume after what it delivered; an error
        // tells if the book is gone.
        failure = new SegmentdError({
          code: ErrorCode.CANCELLED,
          message: `subscription ended by the server: ${JSON.stringify(stream.summary)}`,
          data: { type: "cancelled", ...(stream.summary ?? {}) },
        }, "events.subscribe");
      } catch (error) {
        if (signal?.aborted) throw abortError(signal);
        if (this._closing) return;
        if (!isResumable(error)) throw error;
        failure = error;
      } finally {
        this._current = null;
      }
      if (Date.now() - opened >= backoff.resetAfterMs) attempt = 0;
      if (attempt >= backoff.maxRetries) throw failure;
      this.lastError = failure;
      const delayMs = this._delay(attempt++);
      opts.onRetry?.({ error: failure, attempt, delayMs, after });
      await this._sleep(delayMs, signal);
      if (this._closing) return;
      this.resumes++;
      opts.onResume?.({ after, resumes: this.resumes, error: failure });
    }
  }

  /** Sleeps, ending early on close() and rejecting on abort. */
  _sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      const done = (error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this._wakeSleep = null;
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => done(abortError(signal));
      const timer = setTimeout(() => done(), ms);
      signal?.addEventListener("abort", onAbort, { once: true });
      this._wakeSleep = () => done();
    });
  }

  _delay(attempt) {
    const b = this._backoff;
    const base = Math.min(b.maxMs, b.initialMs * Math.pow(b.factor, attempt));
    const jitter = Math.min(1, Math.max(0, b.jitter));
    return Math.max(0, Math.round(base * (1 - jitter * Math.random())));
  }

  /**
   * The newest cursor (`events.read`'s `newest_cursor`) when no `after` was given: live only,
   * and exact on resume, since every later attempt subscribes after a known cursor. Retried like a
   * resume while the server is away.
   */
  async _startCursor(signal) {
    // close() ends this at once: it aborts `closing`, which also stops a call waiting to connect.
    const closing = new AbortController();
    this._abortStart = () => closing.abort();
    const onAbort = () => closing.abort(abortError(signal));
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
    if (this._closing) closing.abort();
    let attempt = 0;
    try {
      for (;;) {
        try {
          return await this._client.newestCursor({ book: this._options.book, signal: closing.signal });
        } catch (error) {
          if (signal?.aborted) throw abortError(signal);
          if (this._closing) return null;
          if (!isResumable(error) || attempt >= this._backoff.maxRetries) throw error;
          await this._sleep(this._delay(attempt++), signal);
          if (this._closing) return null;
        }
      }
    } finally {
      this._abortStart = null;
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Ends the subscription like `break`: cancels it on the server; a `for await` waiting for the
   * next event ends without an error.
   * @returns {Promise<void>}
   */
  async close() {
    if (this._iterator) await this._iterator.return(undefined);
    else this._closing = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Client

/**
 * @typedef {object} ConnectOptions
 * @property {string} [socket] Unix socket path (e.g. `"./segmentd.sock"`); or give `host`/`port`.
 * @property {string} [host] TCP host (default `127.0.0.1` when `port` is given).
 * @property {number} [port] TCP port.
 * @property {string} [token] token for `rpc.hello` (required on TCP; ignored by the server on the Unix socket).
 * @property {string} [book] default book for every book-scoped call (absent: the server's `default`).
 * @property {string} [clientName] sent in `rpc.hello` as `client` (for the server's logs).
 * @property {number} [connectTimeoutMs=10000]
 * @property {number} [cancelTimeoutMs=5000] how long `break`/abort wait for a stream's final reply.
 * @property {boolean} [reconnect=true] open a new connection on the next call after the connection closed.
 * @property {number} [highWaterMark=8192] items a stream may buffer before the client stops reading the
 *   socket (only while nobody waits for other data from it), so the server slows that stream down.
 */

/**
 * Connects to segmentd and says `rpc.hello` (with the token, if any). Resolves to a {@link Client}
 * once the server answered; rejects with {@link SegmentdConnectionError} if it cannot connect and
 * {@link SegmentdError} (`-32005 unauthorized`) for a wrong token.
 * @param {ConnectOptions} options
 * @returns {Promise<Client>}
 */
export async function connect(options) {
  const client = new Client(options);
  await client.connect();
  return client;
}

/**
 * A segmentd client over one connection at a time. Requests run concurrently and are matched by
 * id; at most the server's `max_in_flight` are sent at once, the rest wait their turn here.
 * When the connection closes, every pending call rejects with {@link SegmentdConnectionError};
 * the next call opens a new connection (unless `reconnect: false` or {@link Client#close} was called).
 *
 * Events: `"connect"` (the hello result, on every new connection), `"disconnect"` (the
 * {@link SegmentdConnectionError}), `"unattributed"` (the `error` of a reply with `"id": null`,
 * which no request can be matched to; the connection is then closed and its calls reject with
 * {@link SegmentdConnectionError} `UNATTRIBUTED`).
 */
export class Client extends EventEmitter {
  /** The token: a private field, so util.inspect / console.log of the client never show it. */
  #token;

  /** @param {ConnectOptions} options */
  constructor(options = {}) {
    super();
    if (!options.socket && options.port === undefined) throw new TypeError("connect: give `socket` (Unix socket path) or `host`/`port`");
    this._endpoint = options.socket ? { socket: options.socket } : { host: options.host ?? "127.0.0.1", port: options.port };
    this.#token = options.token;
    /** Default book of book-scoped calls (`undefined`: the server's `default`). */
    this.book = options.book;
    this._clientName = options.clientName ?? `segmentd-node/${VERSION}`;
    this._connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this._cancelTimeoutMs = options.cancelTimeoutMs ?? 5000;
    this._reconnect = options.reconnect ?? true;
    this._highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    this._conn = null;
    this._connecting = null;
    this._closed = false;
    this._everConnected = false;
    /** The last `rpc.hello` result (server, version, limits, books, …). */
    this.hello = null;
  }

  /** Opens the connection now (otherwise the first call does). @returns {Promise<object>} the hello result */
  async connect() {
    await this._connection();
    return this.hello;
  }

  /** @internal */
  _connection() {
    if (this._closed) return Promise.reject(new SegmentdConnectionError("the client is closed", { code: "CLIENT_CLOSED" }));
    if (this._conn && !this._conn.closed) return this._connecting;
    if (this._everConnected && !this._reconnect) {
      return Promise.reject(new SegmentdConnectionError("the connection is closed (reconnect: false)", { code: "NO_RECONNECT" }));
    }
    const conn = new Connection(this._endpoint, this._connectTimeoutMs, this._highWaterMark);
    this._conn = conn;
    conn.on("close", (error) => {
      if (this._conn === conn && this._everConnected) this.emit("disconnect", error);
    });
    conn.on("unattributed", (error) => this.emit("unattributed", error));
    this._connecting = (async () => {
      try {
        await conn.open();
        const hello = { client: this._clientName };
        if (this.#token !== undefined) hello.token = this.#token;
        // connectTimeoutMs bounds the hello too: a server that accepts but never answers (stopped,
        // overloaded, not segmentd) must not leave connect() and every call waiting forever.
        const timer = setTimeout(() => conn.close(new SegmentdConnectionError(
          `no reply to rpc.hello within ${this._connectTimeoutMs} ms`, { code: "CONNECT_TIMEOUT" })), this._connectTimeoutMs);
        let result;
        try {
          result = await conn.request("rpc.hello", hello);
        } finally {
          clearTimeout(timer);
        }
        conn.configure(result?.limits);
        conn.ready = true;
        this.hello = result;
        this._everConnected = true;
        this.emit("connect", result);
        return conn;
      } catch (error) {
        conn.close(error instanceof SegmentdConnectionError ? error : new SegmentdConnectionError(`rpc.hello failed: ${error.message}`, { code: "HELLO_FAILED", cause: error }));
        if (this._conn === conn) this._conn = null;
        throw error;
      }
    })();
    this._connecting.catch(() => {});
    return this._connecting;
  }

  /** @internal adds the book to the params of a book-scoped method */
  _withBook(method, params, book) {
    if (Array.isArray(params)) return params; // positional: the server refuses them (-32602, path "")
    const p = params && typeof params === "object" ? { ...params } : {};
    if (p.book === undefined) {
      const b = book !== undefined ? book : (isBookScoped(method) ? this.book : undefined);
      if (b !== undefined && b !== null) p.book = b;
    }
    return p;
  }

  /** @internal sends, resending (with a short backoff) when the server refused it for too many in flight */
  async _send(conn, method, params, opts) {
    for (let attempt = 0; ; attempt++) {
      let notified = false;
      const onNotification = opts.onNotification && ((m, p) => { notified = true; opts.onNotification(m, p); });
      try {
        return await conn.request(method, params, { ...opts, onNotification });
      } catch (error) {
        if (!isAdmissionRefusal(error) || notified || attempt >= 6 || opts.control?.cancelled) throw error;
        await sleep(5 * 2 ** attempt);
      }
    }
  }

  /**
   * Calls a method and resolves to its result; rejects with {@link SegmentdError} for an error
   * reply and {@link SegmentdConnectionError} if the connection fails first.
   * Notifications of a streaming method called this way are discarded (use {@link Client#stream}).
   * @param {string} method e.g. `"segments.count"`
   * @param {object} [params] named params
   * @param {{book?: string, signal?: AbortSignal}} [options] `book` overrides the client's default
   *   (an explicit `params.book` wins over both); aborting `signal` sends `rpc.cancel` and rejects
   *   with the signal's reason.
   * @returns {Promise<any>}
   */
  async call(method, params = {}, options = {}) {
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal);
    const conn = await (signal ? raceAbort(this._connection(), signal) : this._connection());
    if (signal?.aborted) throw abortError(signal);
    const control = {
      cancelled: false,
      id: null,
      onSent: (id) => { control.id = id; },
      cancelError: () => abortError(signal),
      onCancel: null,
    };
    const promise = this._send(conn, method, this._withBook(method, params, options.book), { control });
    if (!signal) return promise;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        control.cancelled = true;
        control.onCancel?.();
        if (control.id !== null) conn.notify("rpc.cancel", { id: control.id });
        reject(abortError(signal));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /**
   * Starts any streaming method. See {@link SegmentdStream}.
   * @param {string} method
   * @param {object} [params]
   * @param {{book?: string, signal?: AbortSignal, raw?: boolean}} [options]
   * @returns {SegmentdStream<any>}
   */
  stream(method, params = {}, options = {}) {
    return new SegmentdStream(this, method, this._withBook(method, params, options.book), options);
  }

  /**
   * `segments.resolve` as an async iterable. Params as in streams.md: `id` or `filters`,
   * `audience`, `columns`, `format` (`"ndjson"` → row objects, `"csv"` → one string per CSV
   * record, header first, without the line end), `compress: "gzip"` (decoded here: the items are
   * the same as without it), `batch_size`. With `options.raw`, the items are the payloads as
   * sent: Buffers of the gzip stream (write them to a `.gz` file as they come), CSV text chunks or
   * arrays of rows. The final reply is in `stream.summary` once the iteration ended.
   * @param {object} params
   * @param {{book?: string, signal?: AbortSignal, raw?: boolean}} [options]
   * @returns {SegmentdStream<any>}
   */
  resolve(params, options = {}) {
    return this.stream("segments.resolve", params, options);
  }

  /**
   * `segments.export`: without `path` it streams exactly like {@link Client#resolve}; with `path`
   * the server writes the file and `await client.export({...}).result()` gives `{path, rows, bytes, sha256}`.
   * @param {object} params
   * @param {{book?: string, signal?: AbortSignal, raw?: boolean}} [options]
   * @returns {SegmentdStream<any>}
   */
  export(params, options = {}) {
    return this.stream("segments.export", params, options);
  }

  /**
   * A resumable subscription to the trigger event log: see {@link Subscription}.
   * @param {object} [options]
   * @param {number} [options.after] deliver events after this cursor (default: the newest now, i.e. live only)
   * @param {number[]} [options.triggers] only these triggers' events
   * @param {string} [options.book]
   * @param {AbortSignal} [options.signal] ends the iteration with the signal's reason
   * @param {{initialMs?: number, maxMs?: number, factor?: number, jitter?: number, maxRetries?: number, resetAfterMs?: number}} [options.backoff]
   *   delay before resume n (from 0) is `min(maxMs, initialMs·factorⁿ)` minus up to `jitter` of it at random;
   *   defaults 100 ms, 10 s, 2, 0.5, Infinity; the count restarts after an event or `resetAfterMs` of a healthy stream
   * @param {(info: {after: number, resumes: number, error: Error}) => void} [options.onResume] called before each resume
   * @param {(info: {error: Error, attempt: number, delayMs: number, after: number}) => void} [options.onRetry] called before each backoff sleep
   * @returns {Subscription}
   */
  subscribe(options = {}) {
    return new Subscription(this, options);
  }

  /**
   * The newest event cursor of a book (0 for an empty log): `newest_cursor` of `events.read`.
   * Subscribing after it delivers only the events that commit from now on, and resumes exactly.
   *
   * It reads from cursor 0; a log whose beginning retention pruned refuses that (`-32602` with
   * `data.resume_after`), so it reads again from there (at most 3 times: pruning runs on the
   * server's clock tick). A server whose `events.read` has no `newest_cursor` (older than this
   * client) is a {@link SegmentdProtocolError}.
   * @param {{book?: string, signal?: AbortSignal}} [options]
   * @returns {Promise<number>}
   */
  async newestCursor(options = {}) {
    const opts = { book: options.book, signal: options.signal };
    let after = 0;
    for (let attempt = 0; ; attempt++) {
      let result;
      try {
        result = await this.call("events.read", { after, limit: 1 }, opts);
      } catch (error) {
        const resumeAfter = error instanceof SegmentdError && error.code === ErrorCode.INVALID_PARAMS && error.path === "after"
          ? error.data.resume_after : undefined;
        if (attempt < 3 && Number.isInteger(resumeAfter) && resumeAfter > after) {
          after = resumeAfter;
          continue;
        }
        throw error;
      }
      if (!Number.isInteger(result?.newest_cursor)) {
        throw new SegmentdProtocolError("events.read returned no newest_cursor: this segmentd is older than the client");
      }
      return result.newest_cursor;
    }
  }

  /** `rpc.ping`. @returns {Promise<{pong: true}>} */
  ping(options) {
    return this.call("rpc.ping", {}, options);
  }

  /** Whether a connection is open now. */
  get connected() {
    return !!this._conn && !this._conn.closed && !!this._conn.ready;
  }

  /**
   * Closes the connection (the server cancels what is in flight; pending calls reject with
   * {@link SegmentdConnectionError} `CLIENT_CLOSED`). The client cannot be used afterwards.
   * @returns {Promise<void>}
   */
  async close() {
    this._closed = true;
    const conn = this._conn;
    this._conn = null;
    if (conn && !conn.closed) {
      const closed = new Promise((resolve) => conn.once("close", resolve));
      conn.close(new SegmentdConnectionError("the client was closed", { code: "CLIENT_CLOSED" }));
      await closed;
    }
  }
}
