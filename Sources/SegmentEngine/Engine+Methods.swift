import SegmentCore
import WireJSON

extension Engine {
    /// The RPC methods the registered providers add (`labels.list`, `fields.define`, …).
    public var providerMethods: [DimensionMethod] { registry.providers.flatMap(\.methods) }

    /// Runs a provider's method: a read on the current snapshot, a write on the writer.
    public func run(_ method: DimensionMethod, params: JSONValue) async throws -> JSONValue {
        let reader = try ParamReader(params, path: "")
        switch method.body {
        case .read(let body):
            return try body(reader, snapshot)
        case .write(let body):
            return try await write(cause: method.name) { context in try body(reader, &context) }
        }
    }
}
