import CoreMetrics
import Logging
import NIOCore
import WireJSON

/// Where and how an ``RPCServer`` listens, its limits, and what it says about itself.
///
/// ```swift
/// var configuration = RPCServerConfiguration(unixSocketPath: "/run/segmentd/segmentd.sock")
/// configuration.tcp = .init(host: "127.0.0.1", port: 7411)
/// configuration.token = secret   // required whenever tcp is set
/// ```
public struct RPCServerConfiguration: Sendable {
    /// A TCP listener address. Port 0 picks a free port (read it from ``RPCServer/tcpPort``).
    public struct TCPListener: Sendable, Equatable {
        public var host: String
        public var port: Int

        public init(host: String = "127.0.0.1", port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// The Unix socket path (at most 107 bytes), or `nil` for none. A stale socket file
    /// there is replaced; a live one (a server answers) or a non-socket file is an error.
    public var unixSocketPath: String?
    /// Permissions of the socket file (default `0o600`: the owner only).
    public var socketMode: UInt16
    /// Group of the socket file (a name or numeric id); `nil` keeps the process's group.
    /// With a mode such as 0o660, members of that group may connect.
    public var socketGroup: String? = nil
    /// An optional TCP listener (off by default); requires ``token``.
    public var tcp: TCPListener?
    /// The shared secret a TCP client must present in `rpc.hello` before anything else.
    public var token: String?
    /// Checks the token a TCP client presents in `rpc.hello`, instead of comparing it with
    /// ``token``: returns who it belongs to (handlers read it as ``RPCRequest/credential``),
    /// or `nil` to refuse it. Called for every `rpc.hello` on TCP, so a server that re-reads
    /// its tokens (on SIGHUP) checks new connections against the new set. It should compare in
    /// constant time (``RPCServerConfiguration/constantTimeEquals(_:_:)``).
    public var authenticate: (@Sendable (_ token: String) -> (any Sendable)?)?
    public var limits: RPCLimits
    /// On graceful shutdown, how long in-flight requests may run before they are cancelled.
    public var drainTimeout: Duration
    public var serverName: String
    public var serverVersion: String
    public var protocolVersion: String
    /// Called once every listener accepts connections (a service manager is told "ready").
    public var onListening: (@Sendable () -> Void)?
    /// Where the server records its traffic (see `RPCMetrics` for the metrics): the
    /// application's backend, or swift-metrics' global factory by default.
    public var metricsFactory: any MetricsFactory = MetricsSystem.factory
    /// Requests that take longer than this are logged at warning (every request is logged at
    /// debug); streaming methods, which last as long as their stream, are not. nil: none.
    public var slowRequestThreshold: Duration? = .milliseconds(100)
    /// Extra metadata for a request's log lines, from its method and params (the app adds
    /// `book`).
    public var requestMetadata: @Sendable (_ method: String, _ params: JSONValue) -> Logger.Metadata = { _, _ in [:] }
    /// Extra members merged into `rpc.hello`'s result (the app adds `dimensions`), given the
    /// connection and its credential (see ``authenticate``).
    public var helloExtras: @Sendable (_ connection: RPCConnectionInfo, _ credential: (any Sendable)?) -> [String: JSONValue]
    /// Threads that run method handlers (``WorkerThreads``), apart from Swift's cooperative
    /// pool: a handler that computes or blocks for seconds (an export, a backup) then slows
    /// other clients by a share of the CPU, not by its whole run. Handlers beyond this many
    /// wait for a thread. Default: twice the number of cores, at least 4.
    public var handlerThreads: Int = max(4, 2 * System.coreCount)
    /// Threads that run the connections (framing, parsing, built-in methods such as
    /// `rpc.ping`, writing replies), apart from the handlers' threads and from the
    /// cooperative pool. Default: 2.
    public var connectionThreads: Int = 2

    public init(
        unixSocketPath: String? = "./segmentd.sock",
        socketMode: UInt16 = 0o600,
        tcp: TCPListener? = nil,
        token: String? = nil,
        limits: RPCLimits = RPCLimits(),
        drainTimeout: Duration = .seconds(10),
        serverName: String = "segmentd",
        serverVersion: String = "0.1.0",
        protocolVersion: String = "1",
        helloExtras: @escaping @Sendable (RPCConnectionInfo, (any Sendable)?) -> [String: JSONValue] = { _, _ in [:] }
    ) {
        self.unixSocketPath = unixSocketPath
        self.socketMode = socketMode
        self.tcp = tcp
        self.token = token
        self.limits = limits
        self.drainTimeout = drainTimeout
        self.serverName = serverName
        self.serverVersion = serverVersion
        self.protocolVersion = protocolVersion
        self.helloExtras = helloExtras
    }

    /// Checks what can be checked before binding; throws ``RPCServerError``.
    func validate() throws(RPCServerError) {
        if unixSocketPath == nil, tcp == nil {
            throw RPCServerError("no listener configured: set unixSocketPath and/or tcp")
        }
        if let path = unixSocketPath {
            if path.isEmpty { throw RPCServerError("the Unix socket path is empty") }
            if path.utf8.count > UnixSocketFile.maxPathBytes {
                throw RPCServerError(
                    "Unix socket path is \(path.utf8.count) bytes, longer than the \(UnixSocketFile.maxPathBytes)-byte limit of sockaddr_un: \(path)"
                )
            }
        }
        if let tcp {
            guard authenticate != nil || !(token ?? "").isEmpty else {
                throw RPCServerError("a TCP listener (\(tcp.host):\(tcp.port)) requires a token; set the token or disable TCP")
            }
            guard (0...65535).contains(tcp.port) else { throw RPCServerError("invalid TCP port \(tcp.port)") }
        }
        let limits = self.limits
        if limits.maxLineBytes < 64 || limits.maxBatch < 1 || limits.maxInFlightPerConnection < 1 || limits.maxConnections < 1
            || limits.maxFailedHellos < 1
        {
            throw RPCServerError("invalid limits: \(limits)")
        }
        if handlerThreads < 1 || connectionThreads < 1 {
            throw RPCServerError("handlerThreads and connectionThreads must be at least 1 (got \(handlerThreads), \(connectionThreads))")
        }
    }
}

extension RPCServerConfiguration {
    /// What `rpc.hello`'s token check found: `value` is the credential (nil for ``token``).
    struct Credential { let value: (any Sendable)? }

    /// Checks a presented token with ``authenticate``, else against ``token``.
    func check(token presented: String) -> Credential? {
        if let authenticate { return authenticate(presented).map { Credential(value: $0) } }
        guard let token, Self.constantTimeEquals(presented, token) else { return nil }
        return Credential(value: nil)
    }

    /// Compares secrets in time independent of where they differ.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let left = Array(a.utf8)
        let right = Array(b.utf8)
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count) | (left.count == right.count ? 0 : 1)
        for index in 0..<max(left.count, right.count) {
            let x = index < left.count ? left[index] : 0
            let y = index < right.count ? right[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}

/// A server that cannot start: bad configuration or a socket path that is in use.
public struct RPCServerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
