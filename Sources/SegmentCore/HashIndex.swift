/// A hash table from keys to small integers (contact slots, text ids) that stores only the
/// integers and 32 bits of each key's hash, in copy-on-write chunks.
///
/// The keys themselves already live in a book column (emails by slot, distinct texts by id),
/// so the table does not hold them again: a lookup finds the entries whose hash bits match
/// and asks the caller whether the key at that integer is the one wanted. Entries are plain
/// 64-bit words, so copying a chunk is a memcpy with no reference counting, and a write to a
/// shared table copies only the 2 KiB chunks it touches. (A persistent hash tree of `String`
/// keys did the same job with a path copy per insert and a retain per key copied: a fifth of
/// the writer's time on ingest, and tens of bytes per contact.)
///
/// Open addressing with linear probing, at most half full; removal shifts the following
/// entries back, so there are no tombstones. Hashes come from `Hasher` (seeded per process),
/// so crafted keys cannot be chosen to collide; the table is never persisted.
///
/// ```swift
/// var index = HashIndex()
/// index.insert(hash: "ana@example.com".hashValue, value: 7)
/// index.find(hash: "ana@example.com".hashValue) { emails[$0] == "ana@example.com" }  // 7
/// ```
public struct HashIndex: Sendable {
    static let chunkShift = 8
    static let chunkSize = 1 << chunkShift

    final class Chunk: @unchecked Sendable {
        var entries: [UInt64]
        init(_ entries: [UInt64]) { self.entries = entries }
    }

    /// Entry: the key's 32 hash bits above, `value + 1` below; 0 is an empty place.
    private var chunks: [Chunk]
    private var mask: Int
    public private(set) var count = 0

    /// An empty table with room for `capacity` entries before it grows.
    public init(capacity: Int = 0) {
        var places = Self.chunkSize
        while places < capacity * 2 { places <<= 1 }
        mask = places - 1
        chunks = (0..<places >> Self.chunkShift).map { _ in Chunk([UInt64](repeating: 0, count: Self.chunkSize)) }
    }

    @inline(__always)
    private func entry(_ place: Int) -> UInt64 {
        chunks[place >> Self.chunkShift].entries[place & (Self.chunkSize - 1)]
    }

    @inline(__always)
    private mutating func setEntry(_ place: Int, _ entry: UInt64) {
        let c = place >> Self.chunkShift
        if !isKnownUniquelyReferenced(&chunks[c]) { chunks[c] = Chunk(chunks[c].entries) }
        chunks[c].entries[place & (Self.chunkSize - 1)] = entry
    }

    @inline(__always)
    private static func bits(_ hash: Int) -> UInt64 { UInt64(UInt32(truncatingIfNeeded: hash)) }

    /// The place holding the value for which `matches` is true among those stored under
    /// `hash`, or `nil`.
    private func place(hash: Int, where matches: (Int) -> Bool) -> Int? {
        let h = Self.bits(hash)
        var place = Int(h) & mask
        while true {
            let e = entry(place)
            if e == 0 { return nil }
            if e >> 32 == h && matches(Int(e & 0xFFFF_FFFF) - 1) { return place }
            place = (place + 1) & mask
        }
    }

    /// The value stored under `hash` for which `matches` (given a value) is true.
    public func find(hash: Int, where matches: (Int) -> Bool) -> Int? {
        place(hash: hash, where: matches).map { Int(entry($0) & 0xFFFF_FFFF) - 1 }
    }

    /// Adds `value` under `hash`. The key must not be present already (look it up first).
    public mutating func insert(hash: Int, value: Int) {
        precondition(value >= 0 && value < Int(UInt32.max), "HashIndex holds values below 2^32 - 1, got \(value)")
        if (count + 1) * 2 > mask + 1 { grow() }
        let h = Self.bits(hash)
        var place = Int(h) & mask
        while entry(place) != 0 { place = (place + 1) & mask }
        setEntry(place, h << 32 | UInt64(value + 1))
        count += 1
    }

    /// Removes the value stored under `hash` for which `matches` is true; whether there was one.
    @discardableResult
    public mutating func remove(hash: Int, where matches: (Int) -> Bool) -> Bool {
        guard var hole = place(hash: hash, where: matches) else { return false }
        // Backward shift: an entry after the hole moves into it unless its home place lies
        // cyclically in (hole, place], where it is still reachable.
        var place = hole
        while true {
            place = (place + 1) & mask
            let e = entry(place)
            if e == 0 { break }
            let home = Int(e >> 32) & mask
            let reachable = hole <= place ? (hole < home && home <= place) : (hole < home || home <= place)
            if !reachable {
                setEntry(hole, e)
                hole = place
            }
        }
        setEntry(hole, 0)
        count -= 1
        return true
    }

    /// Twice the places; entries move by their stored hash bits, so no key is hashed again.
    private mutating func grow() {
        var bigger = HashIndex(capacity: mask + 1)
        for chunk in chunks {
            for e in chunk.entries where e != 0 {
                var place = Int(e >> 32) & bigger.mask
                while bigger.entry(place) != 0 { place = (place + 1) & bigger.mask }
                bigger.chunks[place >> Self.chunkShift].entries[place & (Self.chunkSize - 1)] = e
            }
        }
        bigger.count = count
        self = bigger
    }
}

extension HashIndex: ResidentSize {
    /// The chunk list and every chunk (8 bytes a place, at least twice `count` places).
    public var residentBytes: Int {
        chunks.reduce(ResidentBytes.array(chunks)) {
            $0 + ResidentBytes.object(properties: MemoryLayout<[UInt64]>.stride) + ResidentBytes.array($1.entries)
        }
    }
}
