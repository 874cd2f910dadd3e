import Foundation
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
}
