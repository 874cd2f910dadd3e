import LineRPC
import SegmentCore
import WireJSON

/// One named parameter of a method: its JSON Schema, for `rpc.discover`, and whether it is required.
struct Param: Sendable {
    let name: String
    let schema: JSONValue
    let required: Bool

    static func required(_ name: String, _ schema: JSONValue) -> Param { Param(name: name, schema: schema, required: true) }
    static func optional(_ name: String, _ schema: JSONValue) -> Param { Param(name: name, schema: schema, required: false) }
}

/// Builds an `RPCMethod` from a typed body: the params schema comes from `params`, unknown
/// keys are refused, and engine errors become wire errors in one place.
func method(
    _ name: String, _ summary: String, params: [Param] = [], result: JSONValue, streaming: Bool = false,
    _ body: @escaping @Sendable (ParamReader, RPCRequest) async throws -> JSONValue
) -> RPCMethod {
    let allowed = Set(params.map(\.name))
    let schema: JSONValue = [
        "type": "object",
        "properties": .object(Dictionary(uniqueKeysWithValues: params.map { ($0.name, $0.schema) })),
        "required": .array(params.filter(\.required).map { .string($0.name) }),
        "additionalProperties": false,
    ]
    return RPCMethod(name: name, summary: summary, paramsSchema: schema, resultSchema: result, streaming: streaming) { request in
        do {
            let reader = try ParamReader(request.params, path: "")
            try reader.rejectUnknownKeys(allowed: allowed)
            return try await body(reader, request)
        } catch let error as SegmentError {
            throw error.rpcError
        }
    }
}

extension SegmentError {
    /// The wire form: kinds map to JSON-RPC codes, `data.path` names the offending input.
    var rpcError: RPCError {
        var error: RPCError
        switch kind {
        case .invalidParams: error = .invalidParams(path: path ?? "", message)
        case .notFound: error = .notFound(description)
        case .conflict: error = .conflict(description)
        case .tooLarge: error = .tooLarge(description, extra: path.map { ["path": .string($0)] } ?? [:])
        case .unavailable: error = .unavailable(description)
        default: error = .internalError(description)
        }
        if case .object(var data) = error.data, !details.isEmpty {
            data.merge(details) { own, _ in own }
            error.data = .object(data)
        }
        return error
    }
}

/// Small JSON Schema builders.
enum Schema {
    static let string: JSONValue = ["type": "string"]
    static let integer: JSONValue = ["type": "integer"]
    static let boolean: JSONValue = ["type": "boolean"]
    static let timestamp: JSONValue = ["type": "string", "format": "date-time"]
    static func array(_ items: JSONValue) -> JSONValue { ["type": "array", "items": items] }
    static func object(_ properties: [String: JSONValue]) -> JSONValue { ["type": "object", "properties": .object(properties)] }
    static func enumeration(_ values: [String]) -> JSONValue { ["enum": .array(values.map { .string($0) })] }
}
