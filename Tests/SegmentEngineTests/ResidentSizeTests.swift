import Foundation
@testable import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// `Book.residentBytes`, the per-book size a server reports: on books built through the
/// engine, it is small when empty, grows in proportion to the contacts, and lands in the band
/// the columns' layout predicts for a typical contact. (Process RSS is compared with it in the
/// bench, where the book is a child process's own; tests share one process.)
@Suite(.ownThreads) struct ResidentSizeTests {
    /// A typical contact: a 24-byte address, a name, status, funnel stage, a few labels out of
    /// ten, five custom fields, and engagement times.
    static func book(contacts: Int) async throws -> TestBook {
        let book = try TestBook()
        for (name, type) in [("city", "text"), ("plan", "text"), ("orders", "number"), ("signup", "date"), ("vip", "boolean")] {
            try await book.define(name, type)
        }
        let statuses = ["active", "active", "active", "pending", "unsubscribed"]
        let stages = ["aware", "engaged", "customer", "loyal_customer", "promoter"]
        let cities = ["Jakarta", "Bandung", "Surabaya", "Medan", "Singapore", "Kuala Lumpur", "Manila", "Bangkok"]
        let labels = ["newsletter", "vip", "promo", "blog", "webinar", "beta", "events", "partners", "press", "alumni"]
        for start in stride(from: 0, to: contacts, by: 1_000) {
            try await book.seed((start..<min(contacts, start + 1_000)).map { i in
                [
                    "email": .string(email(i)), "name": .string("Contact \(i)"), "status": .string(statuses[i % statuses.count]),
                    "funnel": .string(stages[i % stages.count]), "lost": .bool(i % 20 == 0),
                    "labels": .array((0..<i % 4).map { .string(labels[(i + $0 * 3) % labels.count]) }),
                    "fields": [
                        "city": .string(cities[i % cities.count]), "plan": i % 3 == 0 ? "pro" : "free", "orders": .int(Int64(i % 20)),
                        "signup": .string(ISOTime.format(TestBook.start - Double(i % 1_000) * TestBook.day)), "vip": .bool(i % 10 == 0),
                    ],
                ]
            })
        }
        for start in stride(from: 0, to: contacts, by: 3_000) {
            var events: [(String, String, String)] = []
            for i in start..<min(contacts, start + 3_000) {
                let at = ISOTime.format(TestBook.start - Double(i % 300) * TestBook.day)
                events.append((email(i), "send", at))
                if i % 2 == 0 { events.append((email(i), "open", at)) }
                if i % 4 == 0 { events.append((email(i), "click", at)) }
            }
            try await book.record(events)
        }
        #expect(book.engine.snapshot.contactCount == contacts)
        return book
    }

    /// `contact00012345@example.com`: 27 bytes, so every address is stored out of line.
    static func email(_ i: Int) -> String {
        "contact" + String(repeating: "0", count: max(0, 8 - String(i).count)) + "\(i)@example.com"
    }

    /// The building blocks, against Swift's 64-bit layouts: long strings out of line, arrays
    /// by capacity, a chunk or a bitmap block reserved whole.
    @Test func buildingBlocksFollowTheLayout() {
        #expect(ResidentBytes.string("fifteen bytes!!") == 0)
        #expect(ResidentBytes.string("sixteen bytes!!!") == 32 + 16 + 1)
        var numbers: [Int] = []
        numbers.reserveCapacity(100)
        numbers.append(1)
        #expect(ResidentBytes.array(numbers) == 32 + numbers.capacity * 8)
        #expect(ResidentBytes.array(["sixteen bytes!!!", "short"]) >= 32 + 2 * 16 + 49)
        #expect(ResidentBytes.array([Int]()) == 0)
        // The first chunk grows as it fills (a small book's columns stay small); later
        // chunks are reserved whole.
        let small = ChunkedArray(repeating: 0.0, count: 1)
        #expect(small.residentBytes >= 8 && small.residentBytes < 200)
        let large = ChunkedArray(repeating: 0.0, count: 4_097)
        #expect(large.residentBytes >= 2 * 4_096 * 8 && large.residentBytes < 2 * 4_096 * 8 + 400)
        var set = ContactSet()
        #expect(set.residentBytes == 0)
        set.insert(70_000)  // the second block; the first stays the shared zero block
        #expect(set.residentBytes >= 8_192 && set.residentBytes < 8_192 + 200)
        let dictionary = Dictionary(uniqueKeysWithValues: (0..<100).map { ($0, $0) })
        #expect(ResidentBytes.dictionary(dictionary) >= dictionary.capacity * 16)
    }

    @Test func anEmptyBookIsSmall() async throws {
        let bytes = try TestBook().engine.snapshot.residentBytes
        #expect(bytes > 0 && bytes < 1_000_000, "an empty book: \(bytes) bytes")
    }

    /// Growth: 4,000 and 40,000 contacts, sizes that fill whole 4,096-slot chunks. A column
    /// reserves a chunk's 4,096 slots at once and a bitmap 65,536 slots (8 KiB), ~0.9 MB over
    /// this book's ~20 chunked columns and ~40 bitmaps (ten labels, twenty order counts,
    /// status, stage): at 2,000 contacts that fixed part is most of the book (1.25 MB against
    /// 5.2 MB at 20,000, only ×4.1), while past the first chunk each contact adds its own.
    ///
    /// Per contact (at 40,000, the parts' fixed costs spread over them), from the layout:
    /// - the floor, what each contact's slot costs whatever it holds: its address (16-byte
    ///   `String`, 32-byte header, 27 bytes of UTF-8 and a NUL: 76), creation time (8), email
    ///   index (at least two 8-byte places: 16), name (id 4, text and lower-cased text 16
    ///   each, text index ≥ 16: 52), two field ids (8), two numbers (16), status, stage and
    ///   boolean bytes (3), three engagement times (24): about 200; 150 leaves room for the
    ///   columns to be laid out tighter, not for one to go missing.
    /// - the ceiling: hash tables as little as a quarter full after they double (32 bytes per
    ///   entry, not 16), chunks reserved 4,096 slots ahead, and the ~40 bitmaps of 8 KiB
    ///   spread over the contacts (~8 each): under 300; 600 is twice that, and a column
    ///   counted twice would exceed it.
    @Test func growsWithTheContactsAndFitsTheLayout() async throws {
        let small = try await Self.book(contacts: 4_000).engine.snapshot.residentBytes
        let large = try await Self.book(contacts: 40_000).engine.snapshot.residentBytes
        let ratio = Double(large) / Double(small)
        #expect(ratio >= 5 && ratio <= 20, "4,000 contacts: \(small) bytes, 40,000: \(large) bytes (×\(ratio))")
        let perContact = Double(large) / 40_000
        #expect(perContact >= 150 && perContact <= 600, "\(perContact) bytes per contact")
    }

    /// A part that does not conform counts 0: each built-in provider's part must conform, or
    /// the book would look smaller than it is.
    @Test func everyBuiltInPartIsCounted() async throws {
        let book = try await Self.book(contacts: 100).engine.snapshot
        #expect(book.parts.count == 5, "one part per built-in dimension: \(book.parts.values.map { type(of: $0) })")
        for part in book.parts.values {
            let name = String(reflecting: type(of: part))
            let sized = part as? any ResidentSize
            #expect(sized != nil, "the \(name) part, \(type(of: part)), does not conform to ResidentSize")
            #expect((sized?.residentBytes ?? 0) > 0, "the \(name) part counts nothing")
        }
    }
}
