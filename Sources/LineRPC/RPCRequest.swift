import WireJSON

/// One request as a handler sees it: id, method, named params, connection, and a way to stream.
///
/// ```swift
/// let count = RPCMethod(name: "demo.count", summary: "Streams 0..<n.", paramsSchema: [:],
///                       resultSchema: [:], streaming: true) { request in
///     let n = request.params["n"]?.intValue ?? 0
///     for i in 0..<n { try await request.notify("demo.item", ["value": .int(i)]) }
///     return ["rows": .int(n)]
/// }
/// ```
public struct RPCRequest: Sendable {
    /// The request id; `nil` for a notification (no reply is sent).
    public let id: JSONValue?
    public let method: String
    /// Always an object: absent params are an empty object.
    public let params: JSONValue
    public let connection: RPCConnectionInfo
    /// Who a TCP connection authenticated as: what ``RPCServerConfiguration/authenticate``
    /// returned for its token; nil on a Unix socket (trusted) and with a plain token.
    public let credential: (any Sendable)?
    let notificationSink: (@Sendable (JSONValue) async throws -> Void)?

    /// Builds a request, e.g. to unit-test a handler without a server. `notificationSink`
    /// receives each complete stream notification message `notify` would write.
    public init(
        id: JSONValue?,
        method: String,
        params: JSONValue = .object([:]),
        connection: RPCConnectionInfo = .local,
        credential: (any Sendable)? = nil,
        notificationSink: (@Sendable (JSONValue) async throws -> Void)? = nil
    ) {
        self.id = id
        self.method = method
        self.params = params
        self.connection = connection
        self.credential = credential
        self.notificationSink = notificationSink
    }

    /// Sends one stream notification tied to this request:
    /// `{"jsonrpc":"2.0","method":method,"params":{…params…,"id":<request id>}}`.
    ///
    /// Suspends while the connection is not writable (backpressure); throws
    /// `CancellationError` once the request is cancelled, and an error when the connection is
    /// gone. For a notification request (no id) there is no one to stream to: nothing is sent.
    public func notify(_ method: String, _ params: [String: JSONValue]) async throws {
        try Task.checkCancellation()
        guard let id, let notificationSink else { return }
        var params = params
        params["id"] = id
        try await notificationSink(.object(["jsonrpc": "2.0", "method": .string(method), "params": .object(params)]))
    }
}
