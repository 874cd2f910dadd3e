/// A set of contact slots as a dense bitmap: what every filter resolves to.
///
/// Slots are small dense integers (the contact's SQLite rowid), so a bitmap of one bit per
/// slot is both the smallest and the fastest representation for the set algebra a segment
/// needs: AND for filters, OR for `any` groups, AND-NOT for exclusions, popcount for counts.
///
/// The bits live in blocks of 65,536 slots (1,024 words, 8 KiB), each copied on write on its
/// own: a set is shared between the published book and the writer's copy, and a write that
/// changes a few members (a label added, a trigger's membership moving) copies the blocks it
/// touches rather than the whole bitmap (1.25 MB at 10M contacts). Bulk operations run
/// block by block over contiguous words.
///
/// ```swift
/// var vip = ContactSet(capacity: 8)
/// vip.insert(3)
/// let sendable = vip.intersection(activeMask)
/// sendable.count
/// ```
public struct ContactSet: Sendable, Hashable {
    @usableFromInline static var blockShift: Int { 10 }
    @usableFromInline static var blockWords: Int { 1 << blockShift }

    @usableFromInline
    final class Block: @unchecked Sendable {
        @usableFromInline var words: [UInt64]
        @usableFromInline init(_ words: [UInt64]) { self.words = words }
        @usableFromInline static let zero = Block([UInt64](repeating: 0, count: ContactSet.blockWords))
    }

    @usableFromInline var blocks: [Block]

    /// An empty set able to hold slots `0..<capacity` without growing.
    /// A set of the given slots.
    public init(_ slots: some Sequence<Int>) {
        self.init()
        for slot in slots { insert(slot) }
    }

    public init(capacity: Int = 0) {
        let words = (capacity + 63) >> 6
        blocks = Array(repeating: Block.zero, count: (words + Self.blockWords - 1) >> Self.blockShift)
    }

    /// A set from its words (word `i` holds slots `64 i ..< 64 i + 64`).
    @usableFromInline
    init(words: [UInt64]) {
        blocks = stride(from: 0, to: words.count, by: Self.blockWords).map { start in
            var block = Array(words[start..<Swift.min(start + Self.blockWords, words.count)])
            if block.count < Self.blockWords { block.append(contentsOf: repeatElement(0, count: Self.blockWords - block.count)) }
            return Block(block)
        }
    }

    /// The set of every slot in `0..<capacity`.
    public static func full(capacity: Int) -> ContactSet {
        var words = [UInt64](repeating: ~0, count: (capacity + 63) >> 6)
        let tail = capacity & 63
        if tail != 0, !words.isEmpty { words[words.count - 1] = (1 << UInt64(tail)) - 1 }
        return ContactSet(words: words)
    }

    /// Builds a set from a per-slot predicate, testing each slot in `0..<capacity` once.
    @inlinable
    public static func build(capacity: Int, _ isMember: (Int) -> Bool) -> ContactSet {
        var words = [UInt64](repeating: 0, count: (capacity + 63) >> 6)
        words.withUnsafeMutableBufferPointer { w in
            var slot = 0
            for wi in 0..<w.count {
                var word: UInt64 = 0
                let end = min(64, capacity - slot)
                for bit in 0..<end where isMember(slot + bit) { word |= 1 << UInt64(bit) }
                w[wi] = word
                slot += 64
            }
        }
        return ContactSet(words: words)
    }

    /// Words held (a multiple of 1,024).
    @usableFromInline var wordCount: Int { blocks.count << Self.blockShift }

    public var capacity: Int { wordCount << 6 }

    public var count: Int {
        var total = 0
        for block in blocks where block !== Block.zero {
            block.words.withUnsafeBufferPointer { for w in $0 { total &+= w.nonzeroBitCount } }
        }
        return total
    }

    public var isEmpty: Bool { blocks.allSatisfy { $0 === Block.zero || !$0.words.contains { $0 != 0 } } }

    @inlinable
    public func contains(_ slot: Int) -> Bool {
        guard slot >= 0 else { return false }
        let wi = slot >> 6, b = wi >> Self.blockShift
        guard b < blocks.count else { return false }
        return blocks[b].words[wi & (Self.blockWords - 1)] & (1 << UInt64(slot & 63)) != 0
    }

    /// Makes block `b` this set's own (copying it if shared), growing the set to hold it.
    @usableFromInline
    mutating func ownBlock(_ b: Int) {
        if b >= blocks.count {
            // Doubling, so inserting slots in order stays linear.
            blocks.append(contentsOf: repeatElement(Block.zero, count: Swift.max(b + 1 - blocks.count, blocks.count)))
        }
        if !isKnownUniquelyReferenced(&blocks[b]) || blocks[b] === Block.zero { blocks[b] = Block(blocks[b].words) }
    }

    public mutating func insert(_ slot: Int) {
        precondition(slot >= 0, "contact slots are never negative")
        let wi = slot >> 6, b = wi >> Self.blockShift
        ownBlock(b)
        blocks[b].words[wi & (Self.blockWords - 1)] |= 1 << UInt64(slot & 63)
    }

    public mutating func remove(_ slot: Int) {
        guard contains(slot) else { return }
        let wi = slot >> 6, b = wi >> Self.blockShift
        ownBlock(b)
        blocks[b].words[wi & (Self.blockWords - 1)] &= ~(1 << UInt64(slot & 63))
    }

    public mutating func update(_ slot: Int, member: Bool) {
        if member { insert(slot) } else { remove(slot) }
    }

    /// A new block `op(mine, theirs)` word by word, in one pass.
    @usableFromInline
    static func combined(_ mine: Block, _ theirs: Block, _ op: (UInt64, UInt64) -> UInt64) -> Block {
        Block([UInt64](unsafeUninitializedCapacity: blockWords) { out, count in
            mine.words.withUnsafeBufferPointer { m in
                theirs.words.withUnsafeBufferPointer { t in for i in 0..<blockWords { out[i] = op(m[i], t[i]) } }
            }
            count = blockWords
        })
    }

    public func intersection(_ other: ContactSet) -> ContactSet {
        var result = self
        for b in blocks.indices {
            let mine = blocks[b], theirs = b < other.blocks.count ? other.blocks[b] : Block.zero
            if mine === Block.zero || mine === theirs { continue }
            result.blocks[b] = theirs === Block.zero ? Block.zero : Self.combined(mine, theirs, &)
        }
        return result
    }

    /// `self ∩ (sets[0] ∪ sets[1] ∪ …)`. When `self` is a few touched contacts, each set is
    /// intersected first, which combines only the blocks where `self` has members; when
    /// `self` covers most blocks (a whole-book count), the union is built first, one pass per
    /// set and one intersection, instead of two passes per set.
    public func intersection(anyOf sets: [ContactSet]) -> ContactSet {
        guard sets.count > 1, blocks.count(where: { $0 !== Block.zero }) * 2 <= blocks.count else {
            var union = ContactSet()
            for set in sets { union.formUnion(set) }
            return intersection(union)
        }
        var result = ContactSet()
        for set in sets { result.formUnion(intersection(set)) }
        return result
    }

    public mutating func formIntersection(_ other: ContactSet) {
        for b in blocks.indices {
            let theirs = b < other.blocks.count ? other.blocks[b] : Block.zero
            if blocks[b] === Block.zero { continue }
            if theirs === Block.zero {
                blocks[b] = Block.zero
                continue
            }
            if blocks[b] === theirs { continue }  // x ∧ x = x
            guard isKnownUniquelyReferenced(&blocks[b]) else {
                blocks[b] = Self.combined(blocks[b], theirs, &)
                continue
            }
            blocks[b].words.withUnsafeMutableBufferPointer { w in
                theirs.words.withUnsafeBufferPointer { o in for i in 0..<w.count { w[i] &= o[i] } }
            }
        }
    }

    public func union(_ other: ContactSet) -> ContactSet {
        var result = self
        if other.blocks.count > blocks.count {
            result.blocks.append(contentsOf: other.blocks[blocks.count...])
        }
        for b in 0..<Swift.min(blocks.count, other.blocks.count) {
            let mine = blocks[b], theirs = other.blocks[b]
            if theirs === Block.zero || mine === theirs { continue }
            result.blocks[b] = mine === Block.zero ? theirs : Self.combined(mine, theirs, |)
        }
        return result
    }

    public mutating func formUnion(_ other: ContactSet) {
        if other.blocks.count > blocks.count {
            blocks.append(contentsOf: repeatElement(Block.zero, count: other.blocks.count - blocks.count))
        }
        for b in other.blocks.indices {
            let theirs = other.blocks[b]
            if theirs === Block.zero || blocks[b] === theirs { continue }
            if blocks[b] === Block.zero {
                blocks[b] = theirs  // shared until either side writes
                continue
            }
            guard isKnownUniquelyReferenced(&blocks[b]) else {
                blocks[b] = Self.combined(blocks[b], theirs, |)
                continue
            }
            blocks[b].words.withUnsafeMutableBufferPointer { w in
                theirs.words.withUnsafeBufferPointer { o in for i in 0..<w.count { w[i] |= o[i] } }
            }
        }
    }

    public func subtracting(_ other: ContactSet) -> ContactSet {
        var result = self
        for b in 0..<Swift.min(blocks.count, other.blocks.count) {
            let mine = blocks[b], theirs = other.blocks[b]
            if mine === Block.zero || theirs === Block.zero { continue }
            result.blocks[b] = mine === theirs ? Block.zero : Self.combined(mine, theirs) { $0 & ~$1 }
        }
        return result
    }

    public mutating func subtract(_ other: ContactSet) {
        for b in blocks.indices where b < other.blocks.count {
            let theirs = other.blocks[b]
            if theirs === Block.zero || blocks[b] === Block.zero { continue }
            if blocks[b] === theirs {
                blocks[b] = Block.zero
                continue
            }
            guard isKnownUniquelyReferenced(&blocks[b]) else {
                blocks[b] = Self.combined(blocks[b], theirs) { $0 & ~$1 }
                continue
            }
            blocks[b].words.withUnsafeMutableBufferPointer { w in
                theirs.words.withUnsafeBufferPointer { o in for i in 0..<w.count { w[i] &= ~o[i] } }
            }
        }
    }

    /// The size of `self ∩ other` without building it.
    public func intersectionCount(_ other: ContactSet) -> Int {
        var total = 0
        for b in 0..<Swift.min(blocks.count, other.blocks.count) {
            let mine = blocks[b], theirs = other.blocks[b]
            if mine === Block.zero || theirs === Block.zero { continue }
            mine.words.withUnsafeBufferPointer { w in
                theirs.words.withUnsafeBufferPointer { o in for i in 0..<w.count { total &+= (w[i] & o[i]).nonzeroBitCount } }
            }
        }
        return total
    }

    /// Calls `body` with every member in ascending slot order.
    @inlinable
    public func forEach(_ body: (Int) throws -> Void) rethrows {
        for (b, block) in blocks.enumerated() where block !== Block.zero {
            let base = b << Self.blockShift
            for (i, word) in block.words.enumerated() where word != 0 {
                var w = word
                while w != 0 {
                    let bit = w.trailingZeroBitCount
                    try body((base + i) << 6 | bit)
                    w &= w &- 1
                }
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
        for b in 0..<Swift.max(lhs.blocks.count, rhs.blocks.count) {
            let l = b < lhs.blocks.count ? lhs.blocks[b] : Block.zero
            let r = b < rhs.blocks.count ? rhs.blocks[b] : Block.zero
            if l !== r && l.words != r.words { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        var last = blocks.count
        while last > 0, blocks[last - 1] === Block.zero || !blocks[last - 1].words.contains(where: { $0 != 0 }) { last -= 1 }
        for b in 0..<last { hasher.combine(blocks[b].words) }
    }

    /// Calls `body` with each block's words (made this set's own) and the index of its first
    /// word, for bulk rewrites such as `retaining`. Zero blocks are skipped: they stay zero.
    @inlinable
    mutating func rewriteNonZeroBlocks(_ body: (_ firstWord: Int, _ words: UnsafeMutableBufferPointer<UInt64>) -> Void) {
        for b in blocks.indices where blocks[b] !== Block.zero {
            ownBlock(b)
            blocks[b].words.withUnsafeMutableBufferPointer { body(b << Self.blockShift, $0) }
        }
    }
}

extension ContactSet {
    /// Slots per persisted chunk: 4,096 (64 words, 512 bytes).
    public static let chunkSlots = 4_096

    /// Chunks that hold at least one member.
    public var nonEmptyChunks: [Int] {
        stride(from: 0, to: wordCount, by: 64).compactMap { start in
            (start..<start + 64).contains { word(at: $0) != 0 } ? start >> 6 : nil
        }
    }

    /// Chunk `chunk` (slots `chunk * 4096 ..< (chunk + 1) * 4096`) as 512 little-endian
    /// bytes, or `nil` when it has no member: how trigger baselines are persisted.
    public func chunkBytes(_ chunk: Int) -> [UInt8]? {
        let start = chunk * 64
        guard (start..<start + 64).contains(where: { word(at: $0) != 0 }) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 512)
        for i in 0..<64 {
            let word = self.word(at: start + i)
            for b in 0..<8 { bytes[i * 8 + b] = UInt8(truncatingIfNeeded: word >> UInt64(b * 8)) }
        }
        return bytes
    }

    /// Replaces chunk `chunk` with `bytes` as written by `chunkBytes` (growing the set).
    public mutating func setChunk(_ chunk: Int, bytes: [UInt8]) {
        let start = chunk * 64
        for i in 0..<Swift.min(64, bytes.count / 8) {
            var word: UInt64 = 0
            for b in 0..<8 { word |= UInt64(bytes[i * 8 + b]) << UInt64(b * 8) }
            let wi = start + i
            if word == 0 && self.word(at: wi) == 0 { continue }
            ownBlock(wi >> Self.blockShift)
            blocks[wi >> Self.blockShift].words[wi & (Self.blockWords - 1)] = word
        }
    }
}

extension ContactSet {
    /// The 64 slots `64 * index ..< 64 * index + 64` as bits (0 past the end).
    @inlinable
    public func word(at index: Int) -> UInt64 {
        let b = index >> Self.blockShift
        return b < blocks.count ? blocks[b].words[index & (Self.blockWords - 1)] : 0
    }

    /// Indexes of the words holding at least one member.
    public var nonZeroWordIndices: [Int] {
        var out: [Int] = []
        for (b, block) in blocks.enumerated() where block !== Block.zero {
            for (i, word) in block.words.enumerated() where word != 0 { out.append(b << Self.blockShift + i) }
        }
        return out
    }
}

extension ContactSet: ResidentSize {
    /// The block list and each block this set holds (8 KiB for 65,536 slots). The shared zero
    /// block is not counted; a block shared with another set (`formUnion` shares rather than
    /// copies) is counted by both.
    public var residentBytes: Int {
        blocks.reduce(ResidentBytes.array(blocks)) { total, block in
            guard block !== Block.zero else { return total }
            return total + ResidentBytes.object(properties: MemoryLayout<[UInt64]>.stride) + ResidentBytes.array(block.words)
        }
    }
}
