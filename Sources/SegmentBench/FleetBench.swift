import Foundation
import PostgresStore
import SegmentCore
import SegmentEngine
import SegmentdApp
import Synchronization
import WireJSON

/// `segmentd bench --store postgres://…`: the same synthetic book written through the SQLite
/// mode and through PostgreSQL in one run (ingest and update rates, count latency), then a
/// follower's lag under a sustained update load, and the time a new node takes to join.
///
/// Engines run in this process (no socket): what is measured is the store, not the protocol.
public struct FleetBench: Sendable {
    public let url: PostgresURL
    public let contacts: Int
    public let seed: UInt64
    /// Contact updates per second the lag phase aims at, and for how long.
    public var updateRate = 10_000
    public var lagSeconds = 10.0
    let log: @Sendable (String) -> Void

    public init(url: PostgresURL, contacts: Int, seed: UInt64, log: @escaping @Sendable (String) -> Void) {
        self.url = url
        self.contacts = contacts
        self.seed = seed
        self.log = log
    }

    /// What one backend did with the same writes.
    public struct Rates: Sendable {
        public var ingest: Double
        public var updates: Double
        public var countMs: Double
    }

    public struct Report: Sendable {
        public var sqlite: Rates
        public var postgres: Rates
        public var lagP50Ms: Double
        public var lagP99Ms: Double
        public var lagMaxMs: Double
        public var achievedUpdateRate: Double
        public var joinSeconds: Double
        public var contacts: Int
        /// PostgreSQL ÷ SQLite update rate of each round (the rounds alternate the stores).
        public var updateRatios: [Double] = []

        public var table: String {
            func rate(_ x: Double) -> String { String(format: "%.0f/s", x) }
            return """
                | figure | SQLite | PostgreSQL | PostgreSQL ÷ SQLite |
                |---|---|---|---|
                | ingest (contacts.upsert, 1,000 per call) | \(rate(sqlite.ingest)) | \(rate(postgres.ingest)) | \(String(format: "%.2f", postgres.ingest / sqlite.ingest)) |
                | updates (100 per call) | \(rate(sqlite.updates)) | \(rate(postgres.updates)) | \(String(format: "%.2f", postgres.updates / sqlite.updates)) |
                | count (label vip, median of 11) | \(String(format: "%.2f ms", sqlite.countMs)) | \(String(format: "%.2f ms", postgres.countMs)) | \(String(format: "%.2f", postgres.countMs / max(sqlite.countMs, 0.001))) |

                updates: \(updateRatios.count) rounds alternating the stores, PostgreSQL ÷ SQLite per round \(String(format: "%.2f", updateRatios.min() ?? 0))–\(String(format: "%.2f", updateRatios.max() ?? 0))
                follower lag at \(String(format: "%.0f", achievedUpdateRate)) contact updates/s: p50 \(String(format: "%.1f", lagP50Ms)) ms, p99 \(String(format: "%.1f", lagP99Ms)) ms, max \(String(format: "%.1f", lagMaxMs)) ms
                a new node joins the \(contacts)-contact book in \(String(format: "%.2f", joinSeconds)) s
                """
        }

        public var json: JSONValue {
            func rates(_ r: Rates) -> JSONValue { ["ingest_per_s": .double(r.ingest), "updates_per_s": .double(r.updates), "count_ms": .double(r.countMs)] }
            return [
                "contacts": .int(Int64(contacts)), "sqlite": rates(sqlite), "postgres": rates(postgres),
                "follower_lag_ms": ["p50": .double(lagP50Ms), "p99": .double(lagP99Ms), "max": .double(lagMaxMs)],
                "lag_update_rate_per_s": .double(achievedUpdateRate), "join_seconds": .double(joinSeconds),
                "update_ratio_rounds": .array(updateRatios.map(JSONValue.double)),
            ]
        }
    }

    public func run() async throws -> Report {
        let directory = NSTemporaryDirectory() + "segmentd-fleet-bench-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = SegmentdApplication.builtInRegistry()
        let book = "bench_" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let url = self.url

        let sqliteEngine = try Engine(configuration: .init(databasePath: directory + "/bench.sqlite"), registry: registry)
        log("SQLite: writing \(contacts) contacts")
        var sqlite = Rates(ingest: try await ingest(sqliteEngine), updates: 0, countMs: 0)

        var fleet = FleetSettings()
        fleet.catchUpInterval = .seconds(1)
        let configuration = { () -> Engine.Configuration in
            var c = Engine.Configuration(databasePath: directory + "/unused.sqlite")
            c.name = book
            c.fleet = fleet
            c.openStore = { name, providers in try PostgresBookStore(url: url, book: name, providers: providers) }
            return c
        }
        let writer = try Engine(configuration: configuration(), registry: registry)
        log("PostgreSQL: writing \(contacts) contacts (book \(book))")
        var postgres = Rates(ingest: try await ingest(writer), updates: 0, countMs: 0)

        // Updates alternate between the stores, round by round, so both see the same machine
        // (a shared host's speed swings within a minute).
        let rounds = 5, perRound = min(contacts, 20_000)
        log("updates: \(rounds) rounds of \(perRound) per store, alternating")
        var seconds = (sqlite: 0.0, postgres: 0.0)
        var ratios: [Double] = []
        for round in 0..<rounds {
            let first = (round * perRound) % contacts
            let a = try await updateRound(sqliteEngine, from: first, count: perRound, label: "round-\(round)")
            let b = try await updateRound(writer, from: first, count: perRound, label: "round-\(round)")
            seconds.sqlite += a
            seconds.postgres += b
            ratios.append(a / b)
        }
        sqlite.updates = Double(rounds * perRound) / seconds.sqlite
        postgres.updates = Double(rounds * perRound) / seconds.postgres
        sqlite.countMs = try countMedian(sqliteEngine)
        postgres.countMs = try countMedian(writer)
        try sqliteEngine.close()

        // Joining: a new node loads the whole book from PostgreSQL.
        let joinStart = ContinuousClock.now
        let follower = try Engine(configuration: configuration(), registry: registry)
        let join = (ContinuousClock.now - joinStart).seconds
        log("joined in \(String(format: "%.2f", join)) s; follower lag at \(updateRate) updates/s for \(lagSeconds) s")
        let (lags, achieved) = try await followerLag(writer: writer, follower: follower)
        try follower.close()
        try writer.close()
        try? PostgresBookSpace(url: url).drop(book)
        let sorted = lags.sorted()
        func percentile(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        return Report(
            sqlite: sqlite, postgres: postgres, lagP50Ms: percentile(0.5), lagP99Ms: percentile(0.99), lagMaxMs: sorted.last ?? 0,
            achievedUpdateRate: achieved, joinSeconds: join, contacts: contacts, updateRatios: ratios)
    }

    /// Defines the synthetic book's fields and writes its contacts, 1,000 per call; returns
    /// contacts per second.
    func ingest(_ engine: Engine) async throws -> Double {
        let synthetic = SyntheticBook(count: contacts, seed: seed, now: engine.now)
        let define = try require(engine.providerMethods.first { $0.name == "fields.define" })
        for (name, type) in SyntheticBook.fields {
            _ = try await engine.run(define, params: ["name": .string(name), "type": .string(type)])
        }
        let start = ContinuousClock.now
        var i = 0
        while i < contacts {
            let end = min(contacts, i + 1_000)
            _ = try await engine.upsert(contacts: (i..<end).map { synthetic.contact($0).document })
            i = end
        }
        return Double(contacts) / (ContinuousClock.now - start).seconds
    }

    /// Adds `label` to `count` existing contacts from `first` on, 100 per call; returns the
    /// seconds it took.
    func updateRound(_ engine: Engine, from first: Int, count: Int, label: String) async throws -> Double {
        let synthetic = SyntheticBook(count: contacts, seed: seed, now: engine.now)
        let start = ContinuousClock.now
        var i = 0
        while i < count {
            let end = min(count, i + 100)
            _ = try await engine.upsert(contacts: (i..<end).map { ["email": .string(synthetic.contact((first + $0) % contacts).email), "add_labels": .array([.string(label)])] })
            i = end
        }
        return (ContinuousClock.now - start).seconds
    }

    /// The median of 11 timed counts (label vip, send audience), in milliseconds.
    func countMedian(_ engine: Engine) throws -> Double {
        var times: [Double] = []
        for _ in 0..<11 {
            let start = ContinuousClock.now
            _ = try engine.count(filters: [["dimension": "label", "op": "contains", "value": "vip"]], audience: .send)
            times.append((ContinuousClock.now - start).seconds * 1_000)
        }
        return times.sorted()[5]
    }

    /// Writes `updateRate` contact updates a second (calls of 100, paced) on `writer` for
    /// `lagSeconds`, and measures, for every version written, the time from the write's reply
    /// until `follower` has applied it.
    func followerLag(writer: Engine, follower: Engine) async throws -> (lags: [Double], rate: Double) {
        let synthetic = SyntheticBook(count: contacts, seed: seed, now: writer.now)
        let acknowledged = Mutex<[(version: Int64, at: ContinuousClock.Instant)]>([])
        let seen = Mutex<[(version: Int64, at: ContinuousClock.Instant)]>([])
        let done = Atomic<Bool>(false)
        let watcher = Thread {
            var last: Int64 = -1
            while !done.load(ordering: .relaxed) {
                let version = follower.snapshot.version
                if version != last {
                    last = version
                    seen.withLock { $0.append((version, .now)) }
                }
                usleep(200)
            }
        }
        watcher.start()
        let perCall = 100
        let interval = Duration.seconds(Double(perCall) / Double(updateRate))
        let start = ContinuousClock.now
        var next = start
        var written = 0
        var n = 0
        while (ContinuousClock.now - start).seconds < lagSeconds {
            let docs: [JSONValue] = (0..<perCall).map { k in
                ["email": .string(synthetic.contact((n * perCall + k) % contacts).email), "fields": ["orders": .int(Int64(n))]]
            }
            _ = try await writer.upsert(contacts: docs)
            let version = writer.snapshot.version
            acknowledged.withLock { $0.append((version, .now)) }
            written += perCall
            n += 1
            next = next + interval
            let wait = next - ContinuousClock.now
            if wait > .zero { try await Task.sleep(for: wait) }
        }
        let elapsed = (ContinuousClock.now - start).seconds
        // Let the follower apply the last writes (bounded), then stop watching.
        let target = writer.snapshot.version
        for _ in 0..<1_000 where follower.snapshot.version < target { try await Task.sleep(for: .milliseconds(10)) }
        done.store(true, ordering: .relaxed)
        let observed = seen.withLock { $0 }
        var lags: [Double] = []
        for (version, at) in acknowledged.withLock({ $0 }) {
            guard let visible = observed.first(where: { $0.version >= version }) else { continue }
            lags.append(max(0, (visible.at - at).seconds * 1_000))
        }
        return (lags, Double(written) / elapsed)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

private func require<T>(_ value: T?) throws -> T {
    guard let value else { throw SegmentError(.internal, "fields.define is not registered") }
    return value
}
