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
    public static func build(column: [Double], range: DoubleRange, capacity: Int) -> ContactSet {
        var set = ContactSet(capacity: capacity)
        let lo = range.lo, hi = range.hi, negated = range.negated, missing = range.missing
        set.words.withUnsafeMutableBufferPointer { words in
            column.withUnsafeBufferPointer { values in
                let known = min(values.count, capacity)
                var wi = 0
                var slot = 0
                while slot < capacity {
                    var word: UInt64 = 0
                    let end = min(64, capacity - slot)
                    for bit in 0..<end {
                        let s = slot + bit
                        let hit: Bool
                        if s < known {
                            let x = values[s]
                            hit = x.isNaN ? missing : ((x >= lo && x <= hi) != negated)
                        } else {
                            hit = missing
                        }
                        if hit { word |= 1 << UInt64(bit) }
                    }
                    words[wi] = word
                    wi += 1
                    slot += 64
                }
            }
        }
        return set
    }
}
