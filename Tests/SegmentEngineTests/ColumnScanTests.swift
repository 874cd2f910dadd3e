import SegmentCore
import TestThreads
import Testing

/// The column scans behind number, date, engagement and text filters, against a plain
/// slot-by-slot evaluation: chunk boundaries (4,096 slots), a partial last chunk, slots past
/// the column's end (no value), NaN, and candidate sets of every density.
@Suite(.ownThreads) struct ColumnScanTests {
    static let capacity = 3 * 4_096 + 1_000

    static func column(count: Int, seed: UInt64) -> ChunkedArray<Double> {
        var rng = SplitMix64(seed: seed)
        var column = ChunkedArray<Double>()
        for _ in 0..<count { column.append(rng.next() % 5 == 0 ? .nan : Double(rng.next() % 40)) }
        return column
    }

    static func candidates(density: UInt64, seed: UInt64) -> ContactSet {
        var rng = SplitMix64(seed: seed)
        var set = ContactSet(capacity: capacity)
        for slot in 0..<capacity where rng.next() % 100 < density { set.insert(slot) }
        return set
    }

    @Test(arguments: [0, 1, 4_096, 8_191, 2 * 4_096 + 77])
    func numberScansMatchASlotBySlotTest(count: Int) {
        let column = Self.column(count: count, seed: UInt64(count))
        let ranges = [DoubleRange(lo: 3, hi: 10), DoubleRange(lo: 3, hi: 10, negated: true), DoubleRange(lo: 3, hi: 10, missing: true),
                      DoubleRange(lo: 39, hi: .infinity, negated: true, missing: true), .below(0)]
        for range in ranges {
            let expected = (0..<Self.capacity).filter { range.contains($0 < count ? column[$0] : .nan) }
            #expect(ContactSet.build(column: column, range: range, capacity: Self.capacity).slots == expected, "\(range)")
            for density: UInt64 in [1, 50, 100] {
                let candidates = Self.candidates(density: density, seed: density)
                let filtered = ContactSet.filter(candidates, column: column, range: range).slots
                #expect(filtered == candidates.slots.filter { range.contains($0 < count ? column[$0] : .nan) }, "\(range) density \(density)")
            }
        }
    }

    @Test(arguments: [0, 4_096, 2 * 4_096 + 77])
    func textIdScansMatchASlotBySlotTest(count: Int) {
        var rng = SplitMix64(seed: 9)
        var ids = ChunkedArray<Int32>()
        for _ in 0..<count { ids.append(Int32(rng.next() % 6) - 1) }  // -1 = no value
        let answers = [true, false, true, false, false]
        for missing in [false, true] {
            let answer = { (slot: Int) -> Bool in
                let id = slot < count ? ids[slot] : -1
                return id < 0 ? missing : answers[Int(id)]
            }
            let built = ContactSet.build(ids: ids, answers: answers, missing: missing, capacity: Self.capacity)
            #expect(built.slots == (0..<Self.capacity).filter(answer))
            let candidates = Self.candidates(density: 30, seed: 3)
            #expect(ContactSet.filter(candidates, ids: ids, answers: answers, missing: missing).slots == candidates.slots.filter(answer))
        }
    }
}
