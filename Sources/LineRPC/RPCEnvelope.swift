import WireJSON

/// A validated JSON-RPC 2.0 request envelope, and the messages that answer one.
struct RPCEnvelope: Sendable {
    /// A rejected envelope: the error, the id to answer with, and whether to answer at all
    /// (notifications never get replies; malformed envelopes always do, with id null if need be).
    struct Rejection: Error {
        var error: RPCError
        var id: JSONValue?
        var reply: Bool
    }

    /// `nil` for a notification.
    var id: JSONValue?
    var method: String
    /// Always an object.
    var params: JSONValue

    var isNotification: Bool { id == nil }

    /// Validates one request object.
    static func parse(_ message: JSONValue) -> Result<RPCEnvelope, Rejection> {
        guard case .object(let object) = message else {
            return .failure(Rejection(error: .invalidRequest("a request must be a JSON object"), id: nil, reply: true))
        }
        let id = object["id"]
        switch id {
        case nil, .string?, .int?, .null?: break
        default:
            return .failure(Rejection(error: .invalidRequest("\"id\" must be a string, an integer or null"), id: nil, reply: true))
        }
        guard object["jsonrpc"] == "2.0" else {
            return .failure(Rejection(error: .invalidRequest("\"jsonrpc\" must be \"2.0\""), id: id, reply: true))
        }
        guard case .string(let method)? = object["method"] else {
            return .failure(Rejection(error: .invalidRequest("\"method\" must be a string"), id: id, reply: true))
        }
        let params: JSONValue
        switch object["params"] {
        case nil: params = .object([:])
        case .object?: params = object["params"]!
        case .array?:
            let error = RPCError.invalidParams(path: "", "positional params are not supported: pass a params object")
            return .failure(Rejection(error: error, id: id, reply: id != nil))
        default:
            return .failure(Rejection(error: .invalidRequest("\"params\" must be an object"), id: id, reply: true))
        }
        return .success(RPCEnvelope(id: id, method: method, params: params))
    }

    /// `{"jsonrpc":"2.0","id":…,"result":…}`
    static func success(id: JSONValue, result: JSONValue) -> JSONValue {
        .object(["jsonrpc": "2.0", "id": id, "result": result])
    }

    /// `{"jsonrpc":"2.0","id":…,"error":{…}}`, with id null when unknown.
    static func failure(id: JSONValue?, error: RPCError) -> JSONValue {
        .object(["jsonrpc": "2.0", "id": id ?? .null, "error": error.json])
    }
}
