/// The transport a connection arrived on.
public enum RPCTransport: String, Sendable, Hashable, CustomStringConvertible {
    /// A Unix domain socket (trusted by file permissions; no token needed).
    case unix
    /// A TCP socket (requires a successful `rpc.hello` with the token).
    case tcp

    public var description: String { rawValue }
}

/// Who sent a request: the connection's server-unique id, transport and peer address.
public struct RPCConnectionInfo: Sendable, Hashable, CustomStringConvertible {
    /// Unique per server process, increasing from 1.
    public var id: UInt64
    public var transport: RPCTransport
    /// The peer address as text (`"127.0.0.1:53412"`, or `"unix"` for Unix sockets).
    public var peer: String

    public init(id: UInt64, transport: RPCTransport, peer: String) {
        self.id = id
        self.transport = transport
        self.peer = peer
    }

    /// A placeholder for requests built outside a server (unit tests of handlers).
    public static let local = RPCConnectionInfo(id: 0, transport: .unix, peer: "local")

    public var description: String { "#\(id) \(transport) \(peer)" }
}
