import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

/// The RPC surface of segmentd: every method of the product, wired to one engine.
///
/// ```swift
/// let methods = SegmentMethods(engine: engine).all
/// let server = RPCServer(configuration: config, methods: methods, logger: logger)
/// ```
public struct SegmentMethods: Sendable {
    public let engine: Engine
    /// Where `segments.export {path}` writes; paths outside it are refused.
    public let exportDirectory: String

    public init(engine: Engine, exportDirectory: String) {
        self.engine = engine
        self.exportDirectory = exportDirectory
    }

    /// Every method: the engine's, then each provider's own.
    public var all: [RPCMethod] {
        contactMethods + segmentMethods + streamMethods + suppressionMethods + triggerMethods + engine.providerMethods.map(providerMethod)
    }

    /// What `rpc.hello` adds: the registered dimensions and their operators.
    public var helloExtras: [String: JSONValue] {
        ["dimensions": .array(engine.registry.providers.map { $0.descriptor.json })]
    }

    func providerMethod(_ m: DimensionMethod) -> RPCMethod {
        let engine = self.engine
        return RPCMethod(name: m.name, summary: m.summary, paramsSchema: m.paramsSchema, resultSchema: m.resultSchema) { request in
            do {
                return try await engine.run(m, params: request.params)
            } catch let error as SegmentError {
                throw error.rpcError
            }
        }
    }

    /// JSON Schema of one filter, generated from the registered dimensions' descriptors.
    var filterSchema: JSONValue {
        var variants: [JSONValue] = engine.registry.providers.map { p in
            let d = p.descriptor
            var props: [String: JSONValue] = [
                "dimension": ["const": .string(d.name)],
                "op": Schema.enumeration(d.operators.map(\.name)),
                "value": ["description": .string(d.operators.map { "\($0.name): \($0.value)" }.joined(separator: "; "))],
            ]
            for (key, doc) in d.keys { props[key] = ["description": .string(doc)] }
            return ["type": "object", "description": .string(d.summary), "properties": .object(props), "required": ["dimension"]]
        }
        variants.append(["type": "object", "description": "OR group", "properties": ["any": ["type": "array", "minItems": 1]], "required": ["any"]])
        return ["oneOf": .array(variants)]
    }

    var filtersSchema: JSONValue { Schema.array(filterSchema) }
}
