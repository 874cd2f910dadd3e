import WireJSON

/// The methods LineRPC answers itself, inline in the connection's reader (so that
/// authentication and cancellation take effect before the next line is read).
enum BuiltinMethod: String, CaseIterable, Sendable {
    case hello = "rpc.hello"
    case ping = "rpc.ping"
    case cancel = "rpc.cancel"
    case discover = "rpc.discover"

    /// Their descriptions for `rpc.discover` (handlers are never called: dispatch is inline).
    static let descriptors: [RPCMethod] = allCases.map { builtin in
        RPCMethod(
            name: builtin.rawValue, summary: builtin.summary,
            paramsSchema: builtin.paramsSchema, resultSchema: builtin.resultSchema
        ) { _ in throw RPCError.internalError() }
    }

    var summary: String {
        switch self {
        case .hello:
            return "Describes the server and its limits; on TCP, authenticates the connection with the token."
        case .ping: return "Answers {\"pong\": true}: a liveness check."
        case .cancel:
            return "Cancels the in-flight request with the given id on this connection; it still gets exactly one reply."
        case .discover: return "Returns this OpenRPC document, generated from the registered methods."
        }
    }

    var paramsSchema: JSONValue {
        switch self {
        case .hello:
            return [
                "type": "object",
                "properties": [
                    "token": ["type": "string", "description": "The shared secret (required on TCP)."],
                    "client": ["type": "string", "description": "Optional client name, for logs."],
                ],
            ]
        case .cancel:
            return [
                "type": "object",
                "properties": ["id": ["type": ["string", "integer", "null"], "description": "The id of the request to cancel."]],
                "required": ["id"],
            ]
        case .ping, .discover:
            return ["type": "object", "properties": [:]]
        }
    }

    var resultSchema: JSONValue {
        switch self {
        case .hello:
            return [
                "type": "object",
                "properties": [
                    "server": ["type": "string"], "version": ["type": "string"], "protocol": ["type": "string"],
                    "transport": ["type": "string", "enum": ["unix", "tcp"]],
                    "connection": ["type": "integer"],
                    "limits": [
                        "type": "object",
                        "properties": [
                            "max_line_bytes": ["type": "integer"], "max_batch": ["type": "integer"],
                            "max_in_flight": ["type": "integer"], "max_connections": ["type": "integer"],
                            "idle_timeout_ms": ["type": "integer"], "line_timeout_ms": ["type": "integer"],
                            "max_failed_hellos": ["type": "integer"],
                        ],
                    ],
                ],
                "required": ["server", "version", "protocol", "limits"],
            ]
        case .ping:
            return ["type": "object", "properties": ["pong": ["type": "boolean", "const": true]], "required": ["pong"]]
        case .cancel:
            return [
                "type": "object",
                "properties": ["cancelled": ["type": "boolean", "description": "Whether such a request was in flight."]],
                "required": ["cancelled"],
            ]
        case .discover:
            return ["$ref": "https://raw.githubusercontent.com/open-rpc/meta-schema/1.14.2/schema.json"]
        }
    }
}
