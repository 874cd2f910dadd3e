import WireJSON

/// Per-server limits; each one is enforced, advertised by `rpc.hello`, and documented in
/// proto-docs/transport.md.
///
/// ```swift
/// var limits = RPCLimits()
/// limits.maxInFlightPerConnection = 8
/// ```
public struct RPCLimits: Sendable, Equatable {
    /// Longest accepted line in bytes, excluding the `\n` / `\r\n` terminator (default 1 MiB).
    /// A longer line is discarded unread and answered with `-32003 too_large` (id null).
    public var maxLineBytes: Int
    /// Most requests in one batch array (default 100); more is `-32003 too_large`.
    public var maxBatch: Int
    /// Most requests running at once on one connection (default 32); more is `-32004 overloaded`.
    public var maxInFlightPerConnection: Int
    /// Most open connections (default 1024); beyond, one `-32004` line is written and the
    /// connection closed.
    public var maxConnections: Int
    /// A connection with nothing in flight that sends nothing for this long is closed (300 s).
    public var idleTimeout: Duration
    /// A connection whose partial (unterminated) line is pending this long is closed (30 s).
    public var lineTimeout: Duration
    /// Failed `rpc.hello` attempts on a TCP connection before it is closed (default 5).
    public var maxFailedHellos: Int

    public init(
        maxLineBytes: Int = 1 << 20,
        maxBatch: Int = 100,
        maxInFlightPerConnection: Int = 32,
        maxConnections: Int = 1024,
        idleTimeout: Duration = .seconds(300),
        lineTimeout: Duration = .seconds(30),
        maxFailedHellos: Int = 5
    ) {
        self.maxLineBytes = maxLineBytes
        self.maxBatch = maxBatch
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.lineTimeout = lineTimeout
        self.maxFailedHellos = maxFailedHellos
    }

    /// The advertised form, as in `rpc.hello`'s `limits`.
    public var json: JSONValue {
        [
            "max_line_bytes": .int(Int64(maxLineBytes)),
            "max_batch": .int(Int64(maxBatch)),
            "max_in_flight": .int(Int64(maxInFlightPerConnection)),
            "max_connections": .int(Int64(maxConnections)),
            "idle_timeout_ms": .int(idleTimeout.milliseconds),
            "line_timeout_ms": .int(lineTimeout.milliseconds),
            "max_failed_hellos": .int(Int64(maxFailedHellos)),
        ]
    }
}

extension Duration {
    /// Whole milliseconds (truncated).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
