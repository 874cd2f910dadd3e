import SegmentCore
import TestThreads
import Testing

/// The email and text-id index against a plain dictionary: random inserts and removals with
/// real hashes and with hashes forced to collide (long probe runs, runs that wrap past the end
/// of the table, removals from the middle of a run), growth, and copies that must not see
/// each other's changes.
@Suite(.ownThreads) struct HashIndexTests {
    /// Keys live outside the index, as emails live in the book: `keys[value]`.
    struct Model {
        var index = HashIndex()
        var keys: [String] = []
        var live: [String: Int] = [:]
        let hash: (String) -> Int

        func find(_ key: String) -> Int? { index.find(hash: hash(key)) { keys[$0] == key } }

        mutating func insert(_ key: String) {
            keys.append(key)
            index.insert(hash: hash(key), value: keys.count - 1)
            live[key] = keys.count - 1
        }

        mutating func remove(_ key: String) -> Bool {
            let removed = index.remove(hash: hash(key)) { keys[$0] == key }
            live[key] = nil
            return removed
        }

        func check() {
            #expect(index.count == live.count)
            for (key, value) in live { #expect(find(key) == value, "\(key)") }
        }
    }

    static let hashings: [(String, @Sendable (String) -> Int)] = [
        ("real hashes", { $0.hashValue }),
        // 16 distinct hashes for thousands of keys: every lookup walks a long run, and the
        // runs of the last places wrap around to the first.
        ("colliding hashes", { key in Int(key.utf8.reduce(0) { $0 &+ UInt32($1) } % 16) &* 0x1000_0FFF &+ 255 }),
    ]

    @Test(arguments: 0..<2) func agreesWithADictionaryUnderRandomChanges(_ which: Int) {
        let (name, hash) = Self.hashings[which]
        var model = Model(hash: hash)
        var rng = SplitMix64(seed: 7)
        var keys: [String] = []
        for step in 0..<6_000 {
            if !keys.isEmpty && rng.next() % 3 == 0 {
                let key = keys.remove(at: Int(rng.next() % UInt64(keys.count)))
                let removed = model.remove(key)
                #expect(removed, "\(name): \(key) was there")
                #expect(model.find(key) == nil, "\(name): \(key) was removed")
            } else {
                let key = "k\(step)@example.com"
                #expect(model.find(key) == nil)
                model.insert(key)
                keys.append(key)
            }
            if step % 1_000 == 999 { model.check() }
        }
        model.check()
        let removedUnknown = model.remove("never@example.com")
        #expect(!removedUnknown)
        #expect(model.index.count == keys.count)
    }

    @Test func aCopyKeepsItsStateWhileTheOriginalChanges() {
        var model = Model(hash: { $0.hashValue })
        for i in 0..<1_000 { model.insert("k\(i)") }
        let snapshot = model.index
        for i in 0..<500 { _ = model.remove("k\(i)") }
        for i in 1_000..<3_000 { model.insert("k\(i)") }  // grows past the snapshot's size
        let keys = model.keys
        for i in 0..<1_000 { #expect(snapshot.find(hash: "k\(i)".hashValue) { keys[$0] == "k\(i)" } == i) }
        #expect(snapshot.find(hash: "k2000".hashValue) { keys[$0] == "k2000" } == nil)
        #expect(snapshot.count == 1_000)
        model.check()
    }
}
