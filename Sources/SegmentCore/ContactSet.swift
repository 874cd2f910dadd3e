/// A set of contact slots as a dense bitmap: what every filter resolves to.
///
/// Slots are small dense integers (the contact's SQLite rowid), so a bitmap of one bit per
/// slot is both the smallest and the fastest representation for the set algebra a segment
/// needs: AND for filters, OR for `any` groups, AND-NOT for exclusions, popcount for counts.
///
/// ```swift
/// var vip = ContactSet(capacity: 8)
/// vip.insert(3)
/// let sendable = vip.intersection(activeMask)
/// sendable.count
/// ```
public struct ContactSet: Sendable, Hashable {
    @usableFromInline var words: [UInt64]

    /// An empty set able to hold slots `0..<capacity` without growing.
    public init(capacity: Int = 0) {
        words = [UInt64](repeating: 0, count: (capacity + 63) >> 6)
    }

    /// The set of every slot in `0..<capacity`.
    public static func full(capacity: Int) -> ContactSet {
        var set = ContactSet(capacity: capacity)
        for i in set.words.indices { set.words[i] = ~0 }
        let tail = capacity & 63
        if tail != 0, !set.words.isEmpty { set.words[set.words.count - 1] = (1 << UInt64(tail)) - 1 }
        return set
    }

    /// Builds a set from a per-slot predicate, testing each slot in `0..<capacity` once.
    @inlinable
    public static func build(capacity: Int, _ isMember: (Int) -> Bool) -> ContactSet {
        var set = ContactSet(capacity: capacity)
        set.words.withUnsafeMutableBufferPointer { w in
            var slot = 0
            for wi in 0..<w.count {
                var word: UInt64 = 0
                let end = min(64, capacity - slot)
                for bit in 0..<end where isMember(slot + bit) { word |= 1 << UInt64(bit) }
                w[wi] = word
                slot += 64
            }
        }
        return set
    }

    public var capacity: Int { words.count << 6 }

    public var count: Int {
        var total = 0
        for w in words { total &+= w.nonzeroBitCount }
        return total
    }

    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    @inlinable
    public func contains(_ slot: Int) -> Bool {
        let wi = slot >> 6
        guard slot >= 0, wi < words.count else { return false }
        return words[wi] & (1 << UInt64(slot & 63)) != 0
    }

    public mutating func insert(_ slot: Int) {
        precondition(slot >= 0, "contact slots are never negative")
        let wi = slot >> 6
        if wi >= words.count { words.append(contentsOf: repeatElement(0, count: max(wi + 1 - words.count, words.count))) }
        words[wi] |= 1 << UInt64(slot & 63)
    }

    public mutating func remove(_ slot: Int) {
        let wi = slot >> 6
        guard slot >= 0, wi < words.count else { return }
        words[wi] &= ~(1 << UInt64(slot & 63))
    }

    public mutating func update(_ slot: Int, member: Bool) {
        if member { insert(slot) } else { remove(slot) }
    }

    public func intersection(_ other: ContactSet) -> ContactSet {
        var result = self
        result.formIntersection(other)
        return result
    }

    public mutating func formIntersection(_ other: ContactSet) {
        let n = min(words.count, other.words.count)
        words.withUnsafeMutableBufferPointer { w in
            other.words.withUnsafeBufferPointer { o in
                for i in 0..<n { w[i] &= o[i] }
                for i in n..<w.count { w[i] = 0 }
            }
        }
    }

    public func union(_ other: ContactSet) -> ContactSet {
        var result = self
        result.formUnion(other)
        return result
    }

    public mutating func formUnion(_ other: ContactSet) {
        if other.words.count > words.count {
            words.append(contentsOf: repeatElement(0, count: other.words.count - words.count))
        }
        words.withUnsafeMutableBufferPointer { w in
            other.words.withUnsafeBufferPointer { o in
                for i in 0..<o.count { w[i] |= o[i] }
            }
        }
    }

    public func subtracting(_ other: ContactSet) -> ContactSet {
        var result = self
        result.subtract(other)
        return result
    }

    public mutating func subtract(_ other: ContactSet) {
        let n = min(words.count, other.words.count)
        words.withUnsafeMutableBufferPointer { w in
            other.words.withUnsafeBufferPointer { o in
                for i in 0..<n { w[i] &= ~o[i] }
            }
        }
    }

    /// The size of `self ∩ other` without building it.
    public func intersectionCount(_ other: ContactSet) -> Int {
        let n = min(words.count, other.words.count)
        var total = 0
        for i in 0..<n { total &+= (words[i] & other.words[i]).nonzeroBitCount }
        return total
    }

    /// Calls `body` with every member in ascending slot order.
    @inlinable
    public func forEach(_ body: (Int) throws -> Void) rethrows {
        for (wi, word) in words.enumerated() where word != 0 {
            var w = word
            while w != 0 {
                let bit = w.trailingZeroBitCount
                try body(wi << 6 | bit)
                w &= w &- 1
            }
        }
    }

    /// The members in ascending order.
    public var slots: [Int] {
        var out: [Int] = []
        out.reserveCapacity(count)
        forEach { out.append($0) }
        return out
    }

    public static func == (lhs: ContactSet, rhs: ContactSet) -> Bool {
        let n = max(lhs.words.count, rhs.words.count)
        for i in 0..<n {
            let a = i < lhs.words.count ? lhs.words[i] : 0
            let b = i < rhs.words.count ? rhs.words[i] : 0
            if a != b { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        var last = words.count
        while last > 0, words[last - 1] == 0 { last -= 1 }
        for i in 0..<last { hasher.combine(words[i]) }
    }
}

extension ContactSet {
    /// Slots per persisted chunk: 4,096 (64 words, 512 bytes).
    public static let chunkSlots = 4_096

    /// Chunks that hold at least one member.
    public var nonEmptyChunks: [Int] {
        stride(from: 0, to: words.count, by: 64).compactMap { start in
            words[start..<Swift.min(start + 64, words.count)].contains { $0 != 0 } ? start >> 6 : nil
        }
    }

    /// Chunk `chunk` (slots `chunk * 4096 ..< (chunk + 1) * 4096`) as 512 little-endian
    /// bytes, or `nil` when it has no member: how trigger baselines are persisted.
    public func chunkBytes(_ chunk: Int) -> [UInt8]? {
        let start = chunk * 64
        guard start < words.count else { return nil }
        let slice = words[start..<Swift.min(start + 64, words.count)]
        guard slice.contains(where: { $0 != 0 }) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 512)
        for (i, word) in slice.enumerated() {
            for b in 0..<8 { bytes[i * 8 + b] = UInt8(truncatingIfNeeded: word >> UInt64(b * 8)) }
        }
        return bytes
    }

    /// Replaces chunk `chunk` with `bytes` as written by `chunkBytes` (growing the set).
    public mutating func setChunk(_ chunk: Int, bytes: [UInt8]) {
        let start = chunk * 64
        let wordCount = Swift.min(64, bytes.count / 8)
        if words.count < start + wordCount { words.append(contentsOf: repeatElement(0, count: start + wordCount - words.count)) }
        for i in 0..<wordCount {
            var word: UInt64 = 0
            for b in 0..<8 { word |= UInt64(bytes[i * 8 + b]) << UInt64(b * 8) }
            words[start + i] = word
        }
    }
}

extension ContactSet {
    /// The 64 slots `64 * index ..< 64 * index + 64` as bits (0 past the end).
    @inlinable
    public func word(at index: Int) -> UInt64 { index < words.count ? words[index] : 0 }

    /// Indexes of the words holding at least one member.
    public var nonZeroWordIndices: [Int] { words.indices.filter { words[$0] != 0 } }
}
