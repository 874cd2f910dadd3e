import WireJSON

/// Builds the OpenRPC 1.2.6 document `rpc.discover` returns, from registered methods only.
///
/// Each method's object-schema `properties` become by-name `params` content descriptors
/// (`required` from the schema's `required` list); the complete params schema is kept as
/// `x-params-schema` so that nothing (`additionalProperties`, `oneOf`, …) is lost. Streaming
/// methods carry `"x-streaming": true`; each of a method's ``RPCMethod/annotations`` becomes
/// an `x-` member. The error codes live in `components.errors`.
enum OpenRPCDocument {
    static let version = "1.2.6"

    static func make(methods: [RPCMethod], configuration: RPCServerConfiguration) -> JSONValue {
        let described = methods.sorted { $0.name < $1.name }.map(describe)
        var errors: [String: JSONValue] = [:]
        for error in RPCError.catalog {
            errors[error.type] = ["code": .int(Int64(error.code)), "message": .string(error.message), "data": ["type": .string(error.type)]]
        }
        return [
            "openrpc": .string(version),
            "info": [
                "title": .string(configuration.serverName),
                "version": .string(configuration.serverVersion),
                "description": .string(
                    "JSON-RPC 2.0, one message per line (protocol \(configuration.protocolVersion)). See proto-docs/transport.md."
                ),
            ],
            "methods": .array(described),
            "components": ["errors": .object(errors)],
        ]
    }

    private static func describe(_ method: RPCMethod) -> JSONValue {
        let required = Set(method.paramsSchema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        let properties = method.paramsSchema["properties"]?.objectValue ?? [:]
        let params: [JSONValue] = properties.keys.sorted().map { name in
            ["name": .string(name), "required": .bool(required.contains(name)), "schema": properties[name]!]
        }
        var object: [String: JSONValue] = [
            "name": .string(method.name),
            "summary": .string(method.summary),
            "paramStructure": "by-name",
            "params": .array(params),
            "result": ["name": .string("\(method.name).result"), "schema": method.resultSchema],
            "x-params-schema": method.paramsSchema,
        ]
        if method.streaming { object["x-streaming"] = true }
        for (key, value) in method.annotations { object["x-" + key] = value }
        return .object(object)
    }
}
