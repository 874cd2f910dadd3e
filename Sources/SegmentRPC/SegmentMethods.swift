import CoreMetrics
import LineRPC
import Logging
import SegmentCore
import SegmentEngine
import WireJSON

/// The RPC surface of segmentd: every method of the product, wired to the server's books.
///
/// Book-scoped methods take an optional `book` (default `"default"`) and run on that book's
/// engine; over TCP they first check the connection's token grant (``BookGrant``).
///
/// ```swift
/// let methods = SegmentMethods(catalog: catalog, exportDirectory: "exports").all
/// let server = RPCServer(configuration: config, methods: methods, logger: logger)
/// ```
public struct SegmentMethods: Sendable {
    public let catalog: BookCatalog
    /// Where `segments.export {path}` and `server.backup` write: a folder per book
    /// (`exports/<book>/`); paths outside it are refused.
    public let exportDirectory: String

    /// Where methods log what is not a reply (a subscriber dropped, with its cursor).
    public let logger: Logger

    /// Rows and events the streams sent.
    let streamed: StreamMetrics

    public init(
        catalog: BookCatalog, exportDirectory: String, logger: Logger = Logger(label: "segmentd.rpc"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.catalog = catalog
        self.exportDirectory = exportDirectory
        self.logger = logger
        streamed = StreamMetrics(factory: metricsFactory)
    }

    var registry: DimensionRegistry { catalog.registry }

    /// Every method: the engine's, then each provider's own, then the book methods.
    public var all: [RPCMethod] {
        contactMethods + segmentMethods + streamMethods + suppressionMethods + triggerMethods
            + registry.providers.flatMap(\.methods).map(providerMethod) + [backupMethod] + bookMethods
    }

    /// What `rpc.hello` adds: the registered dimensions and their operators, and books.
    public func helloExtras(credential: (any Sendable)?, transport: RPCTransport) -> [String: JSONValue] {
        var books: [String: JSONValue] = [
            "param": "book", "default": .string(BookCatalog.defaultBook),
            "methods": ["books.create", "books.list", "books.drop"],
        ]
        if transport == .tcp, let grant = (credential as? TokenCredential)?.grant {
            books["granted"] = grant.books.map { .array($0.sorted().map { .string($0) }) } ?? "*"
            books["access"] = .string(grant.access.rawValue)
        }
        return ["dimensions": .array(registry.providers.map { $0.descriptor.json }), "books": .object(books)]
    }

    /// The folder of `book`'s exports and backups (created when first needed).
    public func exportDirectory(for book: String) -> String { exportDirectory + "/" + book }

    func providerMethod(_ m: DimensionMethod) -> RPCMethod {
        let catalog = self.catalog
        var schema = m.paramsSchema
        if case .object(var object) = schema {
            var properties = object["properties"]?.objectValue ?? [:]
            properties["book"] = Self.bookParam.schema
            properties["min_version"] = Self.minVersionParam.schema
            object["properties"] = .object(properties)
            schema = .object(object)
        }
        let writing: Bool
        switch m.body {
        case .read: writing = false
        case .write: writing = true
        }
        var built = RPCMethod(name: m.name, summary: m.summary, paramsSchema: schema, resultSchema: m.resultSchema) { request in
            do {
                guard case .object(var params) = request.params else { throw SegmentError.invalidParams(path: "", "expected an object") }
                let bookValue = params.removeValue(forKey: "book")
                let book = try Self.bookName(bookValue)
                try Self.authorize(request, book: book, writing: writing)
                let minVersion = try Self.minVersion(params.removeValue(forKey: "min_version"))
                let stripped = JSONValue.object(params)
                return try await catalog.withBook(book) { engine in
                    if let minVersion { try await engine.waitFor(version: minVersion) }
                    return Self.stamped(try await engine.run(m, params: stripped), engine: engine, writing: writing)
                }
            } catch let error as SegmentError {
                throw error.rpcError
            }
        }
        built.annotations["book"] = .string(writing ? "write" : "read")
        return built
    }

    /// JSON Schema of one filter, generated from the registered dimensions' descriptors.
    var filterSchema: JSONValue {
        var variants: [JSONValue] = registry.providers.map { p in
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

// MARK: Books and access

/// Whether a method changes its book: a `read` token may call only `read` methods.
enum Access: String {
    case read, write
}

extension SegmentMethods {
    /// The `book` parameter every book-scoped method takes.
    static let bookParam = Param.optional("book", [
        "type": "string", "pattern": "^[a-z0-9_-]{1,64}$", "default": .string(BookCatalog.defaultBook),
        "description": "the Contact Book this call is about (books.list shows them)",
    ])

    /// Builds a book-scoped method: `book` is read and checked (name, token grant, existence)
    /// before `body` runs with that book's engine; a drop of the book waits for it (or, for a
    /// stream, cancels it).
    func bookMethod(
        _ name: String, access: Access = .read, _ summary: String, params: [Param] = [], result: JSONValue, streaming: Bool = false,
        _ body: @escaping @Sendable (Engine, ParamReader, RPCRequest) async throws -> JSONValue
    ) -> RPCMethod {
        let catalog = self.catalog
        var built = method(name, summary, params: params + [Self.bookParam, Self.minVersionParam], result: result, streaming: streaming) { p, request in
            let book = try Self.bookName(p)
            try Self.authorize(request, book: book, writing: access == .write)
            let minVersion = try Self.minVersion(p.object["min_version"])
            return try await catalog.withBook(book, cancelOnDrop: streaming) { engine in
                if let minVersion { try await engine.waitFor(version: minVersion) }
                return Self.stamped(try await body(engine, p, request), engine: engine, writing: access == .write)
            }
        }
        built.annotations["book"] = .string(access.rawValue)
        return built
    }

    /// `min_version`, which every book-scoped method takes: read your writes on any node.
    static let minVersionParam = Param.optional("min_version", [
        "type": "integer", "minimum": 0,
        "description": "wait (at most read_wait_ms) until this node has applied this version of the book, as a write's reply gave it",
    ])

    static func minVersion(_ value: JSONValue?) throws(SegmentError) -> Int64? {
        guard let value, value != .null else { return nil }
        guard let version = value.intValue, version >= 0 else {
            throw SegmentError.invalidParams(path: "min_version", "expected a version (an integer 0 or more), got \(value.serialized())")
        }
        return version
    }

    /// A reply as sent: a write's carries the book's `version` once it is applied (this
    /// write's, or a later one's); a read on a fleet node that has not reached PostgreSQL for
    /// a while says its answer `may_be_stale`.
    static func stamped(_ result: JSONValue, engine: Engine, writing: Bool) -> JSONValue {
        guard case .object(var object) = result else { return result }
        if writing, object["version"] == nil { object["version"] = .int(engine.snapshot.version) }
        if !writing, engine.fleetStatus?.mayBeStale == true { object["may_be_stale"] = .bool(true) }
        return .object(object)
    }

    /// The book a call's params name (`default` when they name none).
    static func bookName(_ p: ParamReader) throws(SegmentError) -> String {
        try bookName(p.has("book") ? try p.value("book") : nil)
    }

    /// The book a call names (`default` when it names none).
    static func bookName(_ value: JSONValue?) throws(SegmentError) -> String {
        guard let value, value != .null else { return BookCatalog.defaultBook }
        guard let name = value.stringValue else { throw SegmentError.invalidParams(path: "book", "expected a book name (a string)") }
        try BookCatalog.validate(name: name, path: "book")
        return name
    }

    /// The connection's grant: nil on the Unix socket (trusted: whoever may open it may do
    /// anything). On TCP a connection needs a ``TokenCredential`` (the server authenticates
    /// with a ``TokenTable``, `--token` included); anything else is refused.
    public static func grant(of request: RPCRequest) throws(RPCError) -> BookGrant? {
        guard request.connection.transport == .tcp else { return nil }
        guard let credential = request.credential as? TokenCredential else {
            throw RPCError.unauthorized("this connection's token grants no book (the server authenticates TCP tokens with a token table)")
        }
        guard let grant = credential.grant else {
            throw RPCError.unauthorized("this token is no longer accepted (the token file was reloaded without it)")
        }
        return grant
    }

    static func authorize(_ request: RPCRequest, book: String, writing: Bool) throws(RPCError) {
        try grant(of: request)?.check(book: book, writing: writing)
    }

    static func requireAdmin(_ request: RPCRequest, _ what: String) throws(RPCError) {
        guard let grant = try grant(of: request) else { return }
        guard grant.access == .admin else { throw RPCError.unauthorized("\(what) needs an admin token") }
    }
}
