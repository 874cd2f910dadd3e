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
        var flat = [UInt64](repeating: 0, count: (capacity + 63) >> 6)
        let lo = range.lo, hi = range.hi, negated = range.negated
        flat.withUnsafeMutableBufferPointer { words in
            column.withChunks { start, values in
                // Chunks start on a word boundary (4,096 slots = 64 words).
                let known = Swift.min(values.count, capacity - start)
                guard known > 0 else { return }
                let fullWords = known >> 6
                let firstWord = start >> 6
                // Eight lanes at a time: compare, turn the lane mask into eight bits.
                let lo8 = SIMD8<Double>(repeating: lo), hi8 = SIMD8<Double>(repeating: hi)
                let laneBits = SIMD8<Int64>(1, 2, 4, 8, 16, 32, 64, 128)
                let raw = UnsafeRawPointer(values.baseAddress!)
                for wi in 0..<fullWords {
                    var word: UInt64 = 0
                    let base = wi << 6
                    for group in 0..<8 {
                        let x = raw.loadUnaligned(fromByteOffset: (base + group * 8) * 8, as: SIMD8<Double>.self)
                        var hit = (x .>= lo8) .& (x .<= hi8)
                        let nan = x .!= x
                        if negated { hit = .!hit .& .!nan }
                        if range.missing { hit = hit .| nan }
                        let byte = SIMD8<Int64>(repeating: 0).replacing(with: laneBits, where: hit).wrappedSum()
                        word |= UInt64(byte) << UInt64(group * 8)
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
        return ContactSet(words: flat)
    }

    /// The members of `candidates` whose value in `column` `range` accepts: only candidates
    /// are tested.
    public static func filter(_ candidates: ContactSet, column: ChunkedArray<Double>, range: DoubleRange) -> ContactSet {
        candidates.retaining(column, missing: range.missing) { range.contains($0) }
    }

    /// The members of `self` whose value in `column` `keep` accepts (`missing` for members
    /// past its end), walking the column chunk by chunk so each test is one unchecked load.
    @inlinable
    public func retaining<T>(_ column: ChunkedArray<T>, missing: Bool, _ keep: (T) -> Bool) -> ContactSet {
        var set = self
        set.rewriteNonZeroBlocks { firstWord, words in
            var i = 0
            while i < words.count {
                // The words of one column chunk (64 words = 4,096 slots) at a time.
                let wi = firstWord + i
                let end = Swift.min(words.count, i + (64 - (wi & 63)))
                column.withChunk(wi >> 6) { values in
                    for j in i..<end where words[j] != 0 {
                        var w = words[j]
                        var kept = w
                        let base = ((firstWord + j) & 63) << 6
                        while w != 0 {
                            let bit = w.trailingZeroBitCount
                            let k = base | bit
                            if !(k < values.count ? keep(values[k]) : missing) { kept &= ~(1 << UInt64(bit)) }
                            w &= w &- 1
                        }
                        words[j] = kept
                    }
                }
                i = end
            }
        }
        return set
    }

    /// The members for which `keep` is true, testing members only (one call per member).
    @inlinable
    public func retaining(_ keep: (Int) -> Bool) -> ContactSet {
        var set = self
        set.rewriteNonZeroBlocks { firstWord, words in
            for i in 0..<words.count where words[i] != 0 {
                var w = words[i]
                var kept = w
                while w != 0 {
                    let bit = w.trailingZeroBitCount
                    if !keep((firstWord + i) << 6 | bit) { kept &= ~(1 << UInt64(bit)) }
                    w &= w &- 1
                }
                words[i] = kept
            }
        }
        return set
    }
}

extension ContactSet {
    /// The slots whose dictionary id (`-1` = no value) has a true `answers[id]`: a text
    /// filter tests each distinct value once, then this pass only looks answers up.
    public static func build(ids: ChunkedArray<Int32>, answers: [Bool], missing: Bool, capacity: Int) -> ContactSet {
        var flat = [UInt64](repeating: 0, count: (capacity + 63) >> 6)
        // Answers as bytes indexed by id + 1, so "no value" (-1) is just another entry and the
        // inner loop has no branch.
        let table = [missing ? 1 : 0] + answers.map { UInt64($0 ? 1 : 0) }
        flat.withUnsafeMutableBufferPointer { words in
            table.withUnsafeBufferPointer { table in
                ids.withChunks { start, ids in
                    let known = Swift.min(ids.count, capacity - start)
                    guard known > 0 else { return }
                    let firstWord = start >> 6
                    for wi in 0..<(known >> 6) {
                        var word: UInt64 = 0
                        let base = wi << 6
                        for bit in 0..<64 { word |= table[Int(ids[base + bit]) + 1] << UInt64(bit) }
                        words[firstWord + wi] = word
                    }
                    for i in ((known >> 6) << 6)..<known where table[Int(ids[i]) + 1] != 0 {
                        let slot = start + i
                        words[slot >> 6] |= 1 << UInt64(slot & 63)
                    }
                }
            }
            if missing {
                for slot in Swift.min(ids.count, capacity)..<capacity { words[slot >> 6] |= 1 << UInt64(slot & 63) }
            }
        }
        return ContactSet(words: flat)
    }

    /// The members of `candidates` whose id has a true answer.
    public static func filter(_ candidates: ContactSet, ids: ChunkedArray<Int32>, answers: [Bool], missing: Bool) -> ContactSet {
        answers.withUnsafeBufferPointer { answers in
            candidates.retaining(ids, missing: missing) { id in id < 0 ? missing : answers[Int(id)] }
        }
    }
}
