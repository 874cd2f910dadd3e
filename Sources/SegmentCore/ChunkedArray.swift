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
///
/// Everything is `@inlinable`: the columns live in the plugins' modules, and unspecialised
/// generic calls across the module boundary were a tenth of an ingest profile.
public struct ChunkedArray<Element>: RandomAccessCollection {
    @usableFromInline static var chunkShift: Int { 12 }
    @usableFromInline static var chunkSize: Int { 1 << chunkShift }

    @usableFromInline
    final class Chunk {
        @usableFromInline var items: [Element]
        @usableFromInline init(_ items: [Element]) { self.items = items }
    }

    @usableFromInline var chunks: [Chunk] = []
    @usableFromInline var storedCount = 0
    @inlinable public var count: Int { storedCount }

    @inlinable public init() {}

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { count }

    @inlinable
    public subscript(index: Int) -> Element {
        get { chunks[index >> Self.chunkShift].items[index & (Self.chunkSize - 1)] }
        set {
            let c = index >> Self.chunkShift
            if !isKnownUniquelyReferenced(&chunks[c]) { chunks[c] = Chunk(chunks[c].items) }
            chunks[c].items[index & (Self.chunkSize - 1)] = newValue
        }
    }

    /// Appends `fill` until the array holds `newCount` elements.
    @inlinable
    public mutating func grow(to newCount: Int, fill: Element) {
        while count < newCount {
            let c = count >> Self.chunkShift
            if c == chunks.count {
                // A later chunk fills up (the book already holds 4,096 slots per chunk before
                // it): reserve it whole. The first grows as it fills, so the many small books
                // of a server do not each hold 4,096 slots per column.
                var items: [Element] = []
                items.reserveCapacity(c == 0 ? Swift.min(Self.chunkSize, newCount) : Self.chunkSize)
                chunks.append(Chunk(items))
            }
            if !isKnownUniquelyReferenced(&chunks[c]) { chunks[c] = Chunk(chunks[c].items) }
            let room = Swift.min(Self.chunkSize - (count & (Self.chunkSize - 1)), newCount - count)
            if room == 1 {
                chunks[c].items.append(fill)
            } else {
                chunks[c].items.append(contentsOf: repeatElement(fill, count: room))
            }
            storedCount += room
        }
    }

    @inlinable
    public mutating func append(_ element: Element) {
        grow(to: count + 1, fill: element)
    }

    /// Calls `body` with chunk `c`'s elements (empty past the end).
    @inlinable
    public func withChunk<R>(_ c: Int, _ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        if c < chunks.count { return try chunks[c].items.withUnsafeBufferPointer(body) }
        return try body(UnsafeBufferPointer(start: nil, count: 0))
    }

    /// Calls `body` with each chunk's elements, in order, and the index of its first element
    /// (a multiple of 4,096, so a chunk covers exactly 64 words of a `ContactSet`).
    @inlinable
    public func withChunks(_ body: (_ start: Int, _ elements: UnsafeBufferPointer<Element>) throws -> Void) rethrows {
        for c in chunks.indices { try chunks[c].items.withUnsafeBufferPointer { try body(c << Self.chunkShift, $0) } }
    }
}

extension ChunkedArray {
    /// An array of `count` copies of `value`.
    @inlinable
    public init(repeating value: Element, count: Int) {
        self.init()
        grow(to: count, fill: value)
    }
}

extension ChunkedArray: Sendable where Element: Sendable {}
extension ChunkedArray.Chunk: @unchecked Sendable where Element: Sendable {}

extension ChunkedArray: ResidentSize {
    /// The chunk list, each chunk's object and buffer (reserved for 4,096 elements when the
    /// chunk was made), and the elements' heap (a string column's long strings).
    public var residentBytes: Int {
        chunks.reduce(ResidentBytes.array(chunks)) {
            $0 + ResidentBytes.object(properties: MemoryLayout<[Element]>.stride) + ResidentBytes.array($1.items)
        }
    }
}
