// Type declarations for the segmentd Node.js client (index.js).

import { EventEmitter } from "node:events";

export declare const VERSION: string;

export declare const ErrorCode: Readonly<{
  PARSE_ERROR: -32700;
  INVALID_REQUEST: -32600;
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL: -32603;
  NOT_FOUND: -32001;
  CONFLICT: -32002;
  TOO_LARGE: -32003;
  OVERLOADED: -32004;
  UNAUTHORIZED: -32005;
  SHUTTING_DOWN: -32006;
  UNAVAILABLE: -32007;
  CANCELLED: -32800;
}>;

/** An error reply from the server. */
export declare class SegmentdError extends Error {
  constructor(error: { code: number; message?: string; data?: Record<string, any> }, method?: string);
  readonly name: "SegmentdError";
  /** JSON-RPC error code, e.g. -32602. */
  code: number;
  /** `data.type`, e.g. "invalid_params", "not_found"; null if absent. */
  type: string | null;
  /** `data.path` for invalid params ("filters[0].op", "" for the params as a whole); null otherwise. */
  path: string | null;
  /** The whole `data` object (`last_cursor`, `resume_after`, `method`, …). */
  data: Record<string, any>;
  /** The method called. */
  method?: string;
}

/** The connection failed or closed before the reply arrived. */
export declare class SegmentdConnectionError extends Error {
  constructor(message: string, options?: { code?: string; cause?: unknown });
  readonly name: "SegmentdConnectionError";
  /**
   * `ECONNREFUSED`, `ENOENT`, `ECONNRESET`, …, or `CLOSED`, `CLIENT_CLOSED`, `CONNECT_TIMEOUT` (connect or
   * rpc.hello), `PROTOCOL` (a line that is not JSON), `UNATTRIBUTED` (a reply with `"id": null`; `cause` is
   * its SegmentdError), `NO_RECONNECT` (closed, and `reconnect: false`), `HELLO_FAILED`.
   */
  code: string;
}

/** A stream's payload cannot be decoded (corrupt or truncated gzip, bad NDJSON row). */
export declare class SegmentdProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown });
  readonly name: "SegmentdProtocolError";
}

export interface ConnectOptions {
  /** Unix socket path. Give this or `port`. */
  socket?: string;
  /** TCP host (default 127.0.0.1). */
  host?: string;
  /** TCP port. */
  port?: number;
  /** Token for rpc.hello (required on TCP). */
  token?: string;
  /** Default book of book-scoped calls. */
  book?: string;
  /** Sent in rpc.hello as `client`. */
  clientName?: string;
  /** Bounds the socket connect, and then the rpc.hello reply. Default 10000. */
  connectTimeoutMs?: number;
  /** How long break/abort wait for a stream's final reply. Default 5000. */
  cancelTimeoutMs?: number;
  /** Open a new connection on the next call after the connection closed. Default true. */
  reconnect?: boolean;
  /** Items a stream may buffer before the client stops reading the socket. Default 8192. */
  highWaterMark?: number;
}

export interface CallOptions {
  /** Book for this call (overrides the client's default; an explicit `params.book` wins). */
  book?: string;
  /** Aborting sends rpc.cancel and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface StreamOptions extends CallOptions {
  /** Yield each notification's payload undecoded: Buffer (gzip), string (CSV text) or row arrays. */
  raw?: boolean;
}

export interface StreamSummary {
  rows: number;
  complete: boolean;
  as_of: string;
  version: number;
  format: "ndjson" | "csv";
  columns: string[];
  compress: "gzip" | null;
  [key: string]: any;
}

export interface ResolveParams {
  id?: number;
  filters?: object[];
  audience?: "send" | "all";
  columns?: string[];
  format?: "ndjson" | "csv";
  compress?: "gzip";
  batch_size?: number;
  book?: string;
  [key: string]: any;
}

export interface ExportParams extends ResolveParams {
  /** Write the file in the book's export folder instead of streaming. */
  path?: string;
}

/** A streaming call: an async iterable of items; `summary` holds the final reply once it ended. */
export declare class SegmentdStream<T = any> implements AsyncIterableIterator<T> {
  /** The final reply, once the iteration ended (null before, or if it failed). */
  summary: any;
  /** The JSON-RPC id of the request once sent. */
  requestId: number | null;
  [Symbol.asyncIterator](): this;
  next(): Promise<IteratorResult<T, undefined>>;
  /** Cancels (rpc.cancel) if still running and waits, bounded, for the final reply. */
  return(): Promise<IteratorResult<T, undefined>>;
  /** Sends rpc.cancel; the iteration ends after what already arrived. */
  cancel(): void;
  /** Runs to the end, discarding items; resolves to the final reply. */
  result(): Promise<any>;
  /** Runs to the end and returns every item. */
  collect(): Promise<T[]>;
}

export interface TriggerEvent {
  cursor: number;
  trigger: number;
  segment: number;
  email: string;
  type: "enter" | "exit";
  at: string;
  cause: string;
}

export interface BackoffOptions {
  /** First delay, ms. Default 100. */
  initialMs?: number;
  /** Largest delay, ms. Default 10000. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /** Up to this fraction of each delay is taken off at random (0..1). Default 0.5. */
  jitter?: number;
  /** Failed resumes in a row before giving up (throwing the last error). Default Infinity. */
  maxRetries?: number;
  /** A stream that lived this long resets the attempt count. Default 10000. */
  resetAfterMs?: number;
}

export interface SubscribeOptions {
  /**
   * Deliver events after this cursor. Default: live only, after the newest cursor when the
   * iteration starts (read with `events.read`'s `newest_cursor`, so resumes are exact).
   */
  after?: number;
  /** Only these triggers' events. */
  triggers?: number[];
  book?: string;
  /** Aborting ends the iteration with the signal's reason. */
  signal?: AbortSignal;
  backoff?: BackoffOptions;
  /** Called before each resume. */
  onResume?: (info: { after: number; resumes: number; error: Error }) => void;
  /** Called before each backoff sleep. */
  onRetry?: (info: { error: Error; attempt: number; delayMs: number; after: number }) => void;
}

/** A resumable events.subscribe: every event once, in cursor order, across reconnects. */
export declare class Subscription implements AsyncIterable<TriggerEvent> {
  /** Cursor of the last event delivered (before the first: where it started); null until known. */
  cursor: number | null;
  /** Times the subscription was opened again. */
  resumes: number;
  /** The error that caused the last resume. */
  lastError: Error | null;
  [Symbol.asyncIterator](): AsyncIterator<TriggerEvent>;
  /** Ends it like `break` (a waiting for-await ends without error). */
  close(): Promise<void>;
}

export declare class Client extends EventEmitter {
  constructor(options: ConnectOptions);
  /** Default book of book-scoped calls. */
  book: string | undefined;
  /** The last rpc.hello result. */
  hello: Record<string, any> | null;
  readonly connected: boolean;
  connect(): Promise<Record<string, any>>;
  call<R = any>(method: string, params?: Record<string, any>, options?: CallOptions): Promise<R>;
  stream<T = any>(method: string, params?: Record<string, any>, options?: StreamOptions): SegmentdStream<T>;
  resolve<T = any>(params: ResolveParams, options?: StreamOptions): SegmentdStream<T>;
  export<T = any>(params: ExportParams, options?: StreamOptions): SegmentdStream<T>;
  subscribe(options?: SubscribeOptions): Subscription;
  /** The newest event cursor of a book (`events.read`'s `newest_cursor`; 0 for an empty log). */
  newestCursor(options?: CallOptions): Promise<number>;
  ping(options?: CallOptions): Promise<{ pong: true }>;
  close(): Promise<void>;
}

export declare function connect(options: ConnectOptions): Promise<Client>;
