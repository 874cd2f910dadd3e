import FieldDimension
import Foundation
import LabelDimension
import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The example in `DimensionProvider`'s doc comment is a working dimension: the copy in
/// Support/VIPDimension.swift is the same text, and it writes, stores, loads and filters.
@Suite(.ownThreads) struct DimensionProviderDocTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theDocCommentExampleIsTheCompiledOne() throws {
        let doc = try String(contentsOf: Self.root.appendingPathComponent("Sources/SegmentCore/DimensionProvider.swift"), encoding: .utf8)
        let start = try #require(doc.range(of: "/// ```swift\n/// struct VIPDimension"))
        let end = try #require(doc.range(of: "/// registry.register(VIPDimension())"))
        // The first line is the rest of `/// struct VIPDimension`; the others lose their `/// `.
        let lines = doc[start.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
        let example = ([String(lines[0])] + lines.dropFirst().map { $0.hasPrefix("/// ") ? String($0.dropFirst(4)) : String($0.dropFirst(3)) })
            .joined(separator: "\n")
        let copy = try String(contentsOf: Self.root.appendingPathComponent("Tests/SegmentEngineTests/Support/VIPDimension.swift"), encoding: .utf8)
        let compiled = try #require(copy.range(of: "struct VIPDimension")).lowerBound
        #expect(
            copy[compiled...].trimmingCharacters(in: .whitespacesAndNewlines) == ("struct VIPDimension" + example).trimmingCharacters(in: .whitespacesAndNewlines),
            "Support/VIPDimension.swift differs from the doc comment")
    }

    @Test func theExampleDimensionWritesStoresLoadsAndFilters() async throws {
        let book = try TestBook(extra: [VIPDimension()])
        try await book.seed([
            ["email": "a@example.com", "vip": true], ["email": "b@example.com", "vip": false], ["email": "c@example.com"],
        ])
        let vip: JSONValue = [["dimension": "vip", "op": "is", "value": true]]
        #expect(try book.emails(vip) == ["a@example.com"])
        #expect(try book.emails([["dimension": "vip", "op": "is", "value": false]]) == ["b@example.com", "c@example.com"])
        #expect(book.engine.contact(email: "a@example.com")?["vip"] == true)
        await #expect(throws: SegmentError.self) { _ = try await book.engine.upsert(contacts: [["email": "d@example.com", "vip": "yes"]], atomic: true) }
        _ = try await book.engine.upsert(contacts: [["email": "b@example.com", "vip": true]])
        _ = try book.restart()
        #expect(try book.emails(vip) == ["a@example.com", "b@example.com"], "stored as documents and loaded back")
    }

    /// The send audience is a capability (`AudienceProvider`, which status declares): a
    /// dimension without it cannot change who is sendable, and with no audience provider at
    /// all every contact is sendable unless suppressed.
    @Test func onlyTheAudienceProviderDecidesWhoIsSendable() async throws {
        let book = try TestBook(extra: [VIPDimension()])
        try await book.seed([
            ["email": "a@example.com", "vip": true, "status": "unsubscribed"], ["email": "b@example.com", "vip": true],
            ["email": "c@example.com", "vip": true, "status": "pending"],
        ])
        let count = try book.count([["dimension": "vip", "op": "is", "value": true]])
        #expect(count.matched == 3 && count.sendable == 1)
        #expect(count.excluded == ["unsubscribed": 1, "pending": 1, "hard_bounce": 0, "suppressed": 0])

        var registry = DimensionRegistry()
        registry.register(LabelDimension())
        registry.register(FieldDimension())
        registry.register(VIPDimension())
        #expect(registry.audience == nil)
        let engine = try Engine(configuration: .init(databasePath: book.directory + "/no-audience.sqlite", clock: book.clock), registry: registry, logger: TestBook.quietLogger)
        defer { try? engine.close() }
        _ = try await engine.upsert(contacts: [["email": "x@example.com", "vip": true], ["email": "y@example.com", "vip": true], ["email": "z@example.com"]])
        _ = try await engine.suppress(emails: ["y@example.com"], reason: nil)
        let plain = try engine.count(filters: [["dimension": "vip", "op": "is", "value": true]], audience: .send)
        #expect(plain.matched == 2 && plain.sendable == 1 && plain.excluded == ["suppressed": 1])
        #expect(engine.countContacts().byStatus.isEmpty)
        let explained = try engine.explain(rule: try engine.compile(filters: [["dimension": "vip", "op": "is", "value": true]]), email: "x@example.com")
        #expect(explained["sendable"] == true && explained["not_sendable_because"] == [])
    }
}
