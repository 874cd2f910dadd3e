import WireJSON

/// A JSON-RPC error object: what a failed request gets back.
///
/// `data` is always an object carrying a machine-readable `type` (`"not_found"`, …) plus any
/// extra members (for invalid params, the JSON `path` of the offending part). Handlers throw
/// these; any other error thrown by a handler becomes a generic `internal` error on the wire
/// with its details only in the server log.
///
/// ```swift
/// throw RPCError.invalidParams(path: "filters[1].value", "expected a string, got number")
/// throw RPCError.notFound("no segment with id 42", extra: ["id": 42])
/// ```
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The numeric JSON-RPC code (standard `-32700…-32600`, server range `-32001…`, `-32800`).
    public var code: Int
    /// A short human-readable message.
    public var message: String
    /// Structured details; an object with at least `type` for errors built by this library.
    public var data: JSONValue?

    /// An error with a machine-readable `type` and optional extra `data` members.
    public init(code: Int, type: String, message: String, extra: [String: JSONValue] = [:]) {
        var data = extra
        data["type"] = .string(type)
        self.code = code
        self.message = message
        self.data = .object(data)
    }

    /// An error exactly as received (used by the client to decode replies).
    public init(code: Int, message: String, data: JSONValue?) {
        self.code = code
        self.message = message
        self.data = data
    }

    /// Decodes a JSON-RPC error object (`{"code":…,"message":…,"data":…}`); `nil` if malformed.
    public init?(json: JSONValue) {
        guard let code = json["code"]?.intValue, let message = json["message"]?.stringValue else { return nil }
        self.init(code: Int(code), message: message, data: json["data"])
    }

    /// The machine-readable type from `data.type` (`"unknown"` if absent).
    public var type: String { data?["type"]?.stringValue ?? "unknown" }

    /// The wire form: `{"code":…,"message":…,"data":…}`.
    public var json: JSONValue {
        var object: [String: JSONValue] = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { object["data"] = data }
        return .object(object)
    }

    public var description: String { "RPCError(\(code) \(type): \(message))" }
}

extension RPCError {
    // MARK: Standard JSON-RPC 2.0 codes

    /// `-32700 parse_error`: the line is not valid JSON.
    public static func parseError(_ message: String) -> RPCError {
        RPCError(code: -32700, type: "parse_error", message: message)
    }

    /// `-32600 invalid_request`: valid JSON but not a valid request envelope.
    public static func invalidRequest(_ message: String) -> RPCError {
        RPCError(code: -32600, type: "invalid_request", message: message)
    }

    /// `-32601 method_not_found`.
    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(code: -32601, type: "method_not_found", message: "method not found: \(method)", extra: ["method": .string(method)])
    }

    /// `-32602 invalid_params`, with the JSON `path` of the offending part (`""` for the whole params).
    public static func invalidParams(path: String, _ message: String) -> RPCError {
        RPCError(code: -32602, type: "invalid_params", message: message, extra: ["path": .string(path)])
    }

    /// `-32603 internal`: something failed on the server; details are only in its log.
    public static func internalError(_ message: String = "internal error") -> RPCError {
        RPCError(code: -32603, type: "internal", message: message)
    }

    // MARK: Server range

    /// `-32001 not_found`.
    public static func notFound(_ message: String, extra: [String: JSONValue] = [:]) -> RPCError {
        RPCError(code: -32001, type: "not_found", message: message, extra: extra)
    }

    /// `-32002 conflict`.
    public static func conflict(_ message: String, extra: [String: JSONValue] = [:]) -> RPCError {
        RPCError(code: -32002, type: "conflict", message: message, extra: extra)
    }

    /// `-32003 too_large`: a line, batch or requested amount exceeds a limit.
    public static func tooLarge(_ message: String, extra: [String: JSONValue] = [:]) -> RPCError {
        RPCError(code: -32003, type: "too_large", message: message, extra: extra)
    }

    /// `-32004 overloaded`: too many requests in flight or too many connections; retry later.
    public static func overloaded(_ message: String) -> RPCError {
        RPCError(code: -32004, type: "overloaded", message: message)
    }

    /// `-32007 unavailable`: what the request needs is not ready yet (a book still loading);
    /// retry shortly.
    public static func unavailable(_ message: String) -> RPCError {
        RPCError(code: -32007, type: "unavailable", message: message)
    }

    /// `-32005 unauthorized`: TCP connection without a successful `rpc.hello` token, or a
    /// token that does not grant what the request needs (a book, writing).
    public static func unauthorized(_ message: String) -> RPCError {
        RPCError(code: -32005, type: "unauthorized", message: message)
    }

    /// `-32006 shutting_down`: the server is draining and accepts no new requests.
    public static func shuttingDown() -> RPCError {
        RPCError(code: -32006, type: "shutting_down", message: "server is shutting down")
    }

    /// `-32800 cancelled`: the request was cancelled (`rpc.cancel`, disconnect or shutdown).
    public static func cancelled() -> RPCError {
        RPCError(code: -32800, type: "cancelled", message: "request cancelled")
    }

    /// Every error this library produces, for documentation (`rpc.discover`'s components).
    static let catalog: [RPCError] = [
        .parseError("Parse error"), .invalidRequest("Invalid request"), .methodNotFound("…"),
        .invalidParams(path: "", "Invalid params"), .internalError(),
        .notFound("Not found"), .conflict("Conflict"), .tooLarge("Too large"), .overloaded("Overloaded"),
        .unauthorized("Unauthorized"), .shuttingDown(), .unavailable("Unavailable"), .cancelled(),
    ]
}
