/// A closed interval test over a column of doubles, the shape of every number, date and
/// engagement filter: `lo ≤ x ≤ hi`, optionally negated, with a fixed answer for missing
/// values (NaN). Open bounds are closed with `nextUp`/`nextDown`.
public struct DoubleRange: Sendable, Equatable {
    public var lo: Double
    public var hi: Double
    public var negated: Bool
    /// The answer for a contact without a value.
    public var missing: Bool

    public init(lo: Double = -.infinity, hi: Double = .infinity, negated: Bool = false, missing: Bool = false) {
        self.lo = lo
        self.hi = hi
        self.negated = negated
        self.missing = missing
    }

    /// `x > bound`
    public static func above(_ bound: Double) -> DoubleRange { DoubleRange(lo: bound.nextUp) }
    /// `x < bound`
    public static func below(_ bound: Double) -> DoubleRange { DoubleRange(hi: bound.nextDown) }

    @inlinable
    public func contains(_ x: Double) -> Bool {
        x.isNaN ? missing : ((x >= lo && x <= hi) != negated)
    }
}

extension ContactSet {
    /// The slots of `column` (NaN = no value) that `range` accepts, in one tight pass.
    public static func build(column: ChunkedArray<Double>, range: DoubleRange, capacity: Int) -> ContactSet {
        var set = ContactSet(capacity: capacity)
        let lo = range.lo, hi = range.hi, negated = range.negated
        // A NaN fails both comparisons, so the loop gives it `negated`; flip it when the
        // answer for a missing value differs.
        let flipNaN = range.missing != negated
        set.words.withUnsafeMutableBufferPointer { words in
            column.withChunks { start, values in
                // Chunks start on a word boundary (4,096 slots = 64 words).
                let known = Swift.min(values.count, capacity - start)
                guard known > 0 else { return }
                let fullWords = known >> 6
                let firstWord = start >> 6
                for wi in 0..<fullWords {
                    var word: UInt64 = 0
                    let base = wi << 6
                    for bit in 0..<64 {
                        let x = values[base + bit]
                        let hit = ((x >= lo) && (x <= hi)) != negated
                        let nan = flipNaN && x != x
                        word |= UInt64((hit != nan) ? 1 : 0) << UInt64(bit)
                    }
                    words[firstWord + wi] = word
                }
                for i in (fullWords << 6)..<known where range.contains(values[i]) {
                    let slot = start + i
                    words[slot >> 6] |= 1 << UInt64(slot & 63)
                }
            }
            if range.missing {
                for slot in Swift.min(column.count, capacity)..<capacity { words[slot >> 6] |= 1 << UInt64(slot & 63) }
            }
        }
        return set
    }

    /// The members of `candidates` whose value in `column` `range` accepts: only candidates
    /// are tested.
    public static func filter(_ candidates: ContactSet, column: ChunkedArray<Double>, range: DoubleRange) -> ContactSet {
        candidates.retaining { slot in slot < column.count ? range.contains(column[slot]) : range.missing }
    }

    /// The members for which `keep` is true, testing members only (one call per member).
    @inlinable
    public func retaining(_ keep: (Int) -> Bool) -> ContactSet {
        var set = self
        set.words.withUnsafeMutableBufferPointer { words in
            for wi in 0..<words.count where words[wi] != 0 {
                var w = words[wi]
                var kept = w
                while w != 0 {
                    let bit = w.trailingZeroBitCount
                    if !keep(wi << 6 | bit) { kept &= ~(1 << UInt64(bit)) }
                    w &= w &- 1
                }
                words[wi] = kept
            }
        }
        return set
    }
}

extension ContactSet {
    /// The slots whose dictionary id (`-1` = no value) has a true `answers[id]`: a text
    /// filter tests each distinct value once, then this pass only looks answers up.
    public static func build(ids: ChunkedArray<Int32>, answers: [Bool], missing: Bool, capacity: Int) -> ContactSet {
        var set = ContactSet(capacity: capacity)
        set.words.withUnsafeMutableBufferPointer { words in
            answers.withUnsafeBufferPointer { answers in
                ids.withChunks { start, ids in
                    for i in 0..<Swift.min(ids.count, capacity - start) {
                        let id = ids[i]
                        if id < 0 ? missing : answers[Int(id)] {
                            let slot = start + i
                            words[slot >> 6] |= 1 << UInt64(slot & 63)
                        }
                    }
                }
            }
            if missing {
                for slot in Swift.min(ids.count, capacity)..<capacity { words[slot >> 6] |= 1 << UInt64(slot & 63) }
            }
        }
        return set
    }

    /// The members of `candidates` whose id has a true answer.
    public static func filter(_ candidates: ContactSet, ids: ChunkedArray<Int32>, answers: [Bool], missing: Bool) -> ContactSet {
        answers.withUnsafeBufferPointer { answers in
            candidates.retaining { slot in
                let id = slot < ids.count ? ids[slot] : -1
                return id < 0 ? missing : answers[Int(id)]
            }
        }
    }
}
