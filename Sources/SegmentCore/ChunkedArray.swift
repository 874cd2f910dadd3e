/// An array stored in fixed-size chunks, each copied on write on its own.
///
/// The book is a value shared between the published snapshot and the writer's copy. With a
/// plain `[String]`, the first write of every batch copies the whole column and retains
/// every string in it: O(book) per write, quadratic over a bulk load. Here a write copies
/// the chunk list (one reference per 4,096 slots) and only the chunks it touches.
///
/// ```swift
/// var emails = ChunkedArray<String>(repeating: "")
/// emails.grow(to: 10, fill: "")
/// emails[3] = "ana@example.com"
/// ```
public struct ChunkedArray<Element>: RandomAccessCollection {
    static var chunkShift: Int { 12 }
    static var chunkSize: Int { 1 << chunkShift }

    final class Chunk {
        var items: [Element]
        init(_ items: [Element]) { self.items = items }
    }

    private var chunks: [Chunk] = []
    public private(set) var count = 0

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(index: Int) -> Element {
        get { chunks[index >> Self.chunkShift].items[index & (Self.chunkSize - 1)] }
        set {
            let c = index >> Self.chunkShift
            if !isKnownUniquelyReferenced(&chunks[c]) { chunks[c] = Chunk(chunks[c].items) }
            chunks[c].items[index & (Self.chunkSize - 1)] = newValue
        }
    }

    /// Appends `fill` until the array holds `newCount` elements.
    public mutating func grow(to newCount: Int, fill: Element) {
        while count < newCount {
            let c = count >> Self.chunkShift
            if c == chunks.count { chunks.append(Chunk([])) }
            if !isKnownUniquelyReferenced(&chunks[c]) { chunks[c] = Chunk(chunks[c].items) }
            let room = Swift.min(Self.chunkSize - (count & (Self.chunkSize - 1)), newCount - count)
            chunks[c].items.append(contentsOf: repeatElement(fill, count: room))
            count += room
        }
    }

    public mutating func append(_ element: Element) {
        grow(to: count + 1, fill: element)
    }
}

extension ChunkedArray: Sendable where Element: Sendable {}
extension ChunkedArray.Chunk: @unchecked Sendable where Element: Sendable {}

import HashTreeCollections

/// A hash map with structural sharing (swift-collections' `TreeDictionary`): copying is O(1)
/// and a change copies only the path it touches, so book columns keyed by text stay cheap to
/// write while old snapshots keep their state. Re-exported so plugins depend on the core only.
public typealias PersistentDictionary<Key: Hashable, Value> = TreeDictionary<Key, Value>
