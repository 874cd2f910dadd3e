import Foundation
import SegmentCore
import SegmentEngine
import SegmentdApp
import TestThreads
import Testing
import WireJSON

/// What a dimension from outside this package can get wrong at start-up, refused with an
/// error naming it (README: Adding a dimension).
@Suite(.ownThreads) struct OutsideDimensionTests {
    /// A dimension whose one method is named like one of the server's.
    struct Shadowing: DimensionProvider {
        let name = "shadow"
        var contactKeys: [String] { [] }
        var descriptor: DimensionDescriptor { DimensionDescriptor(name: name, summary: "", operators: []) }
        var methods: [DimensionMethod] {
            [DimensionMethod(name: "segments.count", summary: "", paramsSchema: ["type": "object"], resultSchema: ["type": "object"], body: .read { _, _ in .null })]
        }
        func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? { nil }
        func apply(batch: [ContactWrite], context: inout WriteContext) throws {}
        func remove(slot: Int, context: inout WriteContext) throws {}
        func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {}
        func load(_ stored: StoredParts, into book: inout Book) throws {}
        func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
            throw .invalidParams(path: filter.path, "no filters")
        }
        func render(slot: Int, book: Book) -> [String: JSONValue] { [:] }
    }

    @Test func aMethodNamedLikeOneOfTheServersIsRefusedNamingIt() throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = AppConfiguration()
        config.dataDirectory = directory + "/data"
        config.socketPath = directory + "/s.sock"
        config.exportDirectory = directory + "/exports"
        var registry = SegmentdApplication.builtInRegistry()
        registry.register(Shadowing())
        let refused = #expect(throws: SegmentError.self) { try SegmentdApplication.build(config, registry: registry) }
        #expect(refused?.message == "method segments.count of dimension shadow is in the server's own namespace (books, contacts, events, rpc, segments, server, suppression, triggers): name it under the dimension's, e.g. shadow.count")
        // Refused before any book was opened: nothing holds or changed the data directory,
        // which serves at once without the dimension.
        let app = try SegmentdApplication.build(config)
        try app.engine.close()
    }
}
