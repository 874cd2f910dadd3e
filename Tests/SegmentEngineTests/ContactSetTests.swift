import SegmentCore
import TestThreads
import Testing

/// The bitmap every filter resolves to, against Swift's `Set<Int>`: operations across block
/// boundaries (65,536 slots), copies that must not see each other's writes (the published
/// book and the writer's copy share blocks), and the persisted 512-byte chunks.
@Suite(.ownThreads) struct ContactSetTests {
    static func random(_ rng: inout SplitMix64, upTo limit: Int, density: UInt64) -> (ContactSet, Set<Int>) {
        var set = ContactSet(capacity: Int(rng.next() % UInt64(limit)))
        var model: Set<Int> = []
        for slot in 0..<limit where rng.next() % 1_000 < density {
            set.insert(slot)
            model.insert(slot)
        }
        return (set, model)
    }

    @Test func operationsMatchASetModelAcrossBlocks() {
        var rng = SplitMix64(seed: 11)
        for round in 0..<12 {
            let (a, ma) = Self.random(&rng, upTo: [1_000, 70_000, 200_000][round % 3], density: [0, 1, 30, 900][round % 4])
            let (b, mb) = Self.random(&rng, upTo: [200_000, 1_000, 70_000][round % 3], density: [500, 5, 0, 50][round % 4])
            #expect(a.slots == ma.sorted())
            #expect(a.count == ma.count)
            #expect(a.isEmpty == ma.isEmpty)
            #expect(a.intersection(b).slots == ma.intersection(mb).sorted(), "round \(round)")
            #expect(a.union(b).slots == ma.union(mb).sorted(), "round \(round)")
            #expect(a.subtracting(b).slots == ma.subtracting(mb).sorted(), "round \(round)")
            #expect(a.intersectionCount(b) == ma.intersection(mb).count)
            #expect(a.nonZeroWordIndices == Set(ma.map { $0 >> 6 }).sorted())
            // Equal members, equal sets and hashes, whatever the capacities.
            var rebuilt = ContactSet(capacity: 300_000)
            for slot in ma { rebuilt.insert(slot) }
            #expect(rebuilt == a)
            #expect(rebuilt.hashValue == a.hashValue)
            // Persisted chunks round-trip.
            var restored = ContactSet()
            for chunk in a.nonEmptyChunks { restored.setChunk(chunk, bytes: a.chunkBytes(chunk)!) }
            #expect(restored == a)
        }
    }

    @Test func aCopyNeverSeesTheOthersWrites() {
        var original = ContactSet(capacity: 200_000)
        for slot in stride(from: 0, to: 200_000, by: 7) { original.insert(slot) }
        let snapshot = original
        var writer = original
        writer.insert(1)
        writer.remove(7)
        writer.insert(150_001)
        var fifty = ContactSet()
        fifty.insert(50)
        writer.formUnion(fifty)
        writer.subtract(ContactSet.full(capacity: 1))  // removes slot 0 only
        #expect(snapshot == original)
        #expect(snapshot.contains(7) && !snapshot.contains(1) && !snapshot.contains(150_001) && !snapshot.contains(50) && snapshot.contains(0))
        #expect(writer.contains(1) && !writer.contains(7) && writer.contains(150_001) && writer.contains(50) && !writer.contains(0))
        #expect(ContactSet.full(capacity: 70_001).count == 70_001)
        #expect(ContactSet.full(capacity: 70_001).slots.last == 70_000)
    }
}
