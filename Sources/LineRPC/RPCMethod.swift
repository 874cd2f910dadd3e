import WireJSON

/// One registered JSON-RPC method: its name, its description for `rpc.discover`, and its handler.
///
/// Handlers run concurrently (one task per request). They return the `result` value, or throw
/// an ``RPCError``; `CancellationError` becomes `-32800 cancelled`, anything else `-32603`.
/// Streaming methods send notifications with ``RPCRequest/notify(_:_:)`` before returning
/// their final result, and are refused inside batches.
///
/// ```swift
/// let echo = RPCMethod(
///     name: "demo.echo", summary: "Returns its params.",
///     paramsSchema: ["type": "object"], resultSchema: ["type": "object"]
/// ) { request in request.params }
/// ```
public struct RPCMethod: Sendable {
    /// The method name, e.g. `segments.count`.
    public var name: String
    /// A one-line description used by `rpc.discover`.
    public var summary: String
    /// JSON Schema of the params object (`{"type":"object","properties":{…},"required":[…]}`).
    public var paramsSchema: JSONValue
    /// JSON Schema of the final result.
    public var resultSchema: JSONValue
    /// Whether the method streams notifications before its final reply (refused inside batches).
    public var streaming: Bool
    /// Whether the method takes long by design (a backup copies a whole database): like a
    /// stream, it is not logged as a slow request.
    public var slowByDesign = false
    /// Whether the method runs until its client stops it (a subscription): a graceful shutdown
    /// cancels it as soon as it starts, rather than when the drain timeout runs out, so that
    /// it replies with its final state at once.
    public var endsOnShutdown = false
    /// What `rpc.discover` adds to the method, each as an `x-` member (the app says what a
    /// method is about: `"book": "read"` becomes `"x-book": "read"`).
    public var annotations: [String: JSONValue] = [:]
    /// The handler: params in, result out.
    public var handler: @Sendable (RPCRequest) async throws -> JSONValue

    public init(
        name: String,
        summary: String,
        paramsSchema: JSONValue,
        resultSchema: JSONValue,
        streaming: Bool = false,
        handler: @escaping @Sendable (RPCRequest) async throws -> JSONValue
    ) {
        self.name = name
        self.summary = summary
        self.paramsSchema = paramsSchema
        self.resultSchema = resultSchema
        self.streaming = streaming
        self.handler = handler
    }
}
