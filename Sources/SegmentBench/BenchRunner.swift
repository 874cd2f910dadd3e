import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import SegmentdApp
import WireJSON

/// `segmentd bench`: builds a synthetic book through the public RPC, the same book as plain
/// SQLite, and measures segmentd against the hand-written SQL baseline in the same run.
public struct BenchRunner {
    public var contacts: Int
    public var seed: UInt64
    public var binary: String
    public var runs = 15
    /// Small books to add for the many-books measurement (0: the bench as before).
    public var books = 0
    public var log: (String) -> Void

    public init(contacts: Int, seed: UInt64, binary: String, log: @escaping (String) -> Void) {
        self.contacts = contacts
        self.seed = seed
        self.binary = binary
        self.log = log
    }

    public func run() async throws -> BenchReport {
        let directory = NSTemporaryDirectory() + "segmentd-bench-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let now = (Date().timeIntervalSince1970).rounded(.down)
        let book = SyntheticBook(count: contacts, seed: seed, now: now)
        var report = BenchReport(contacts: contacts, seed: seed, machine: Self.machine())
        let scale = Double(contacts) / 1_000_000

        // 1. Ingest over the socket, and the same rows into the baseline.
        var server = try BenchServer(binary: binary, directory: directory, frozenClock: ISOTime.format(now))
        _ = try await server.waitUntilReady(since: .now)
        let emptyRSS = server.residentBytes
        let client = try await RPCClient.connect(unixPath: server.socket)
        for (name, type) in SyntheticBook.fields {
            _ = try await client.call("fields.define", ["name": .string(name), "type": .string(type)])
        }
        let baseline = try BaselineDatabase(path: directory + "/baseline.sqlite")
        log("loading \(contacts) contacts over the socket…")
        var baselineSeconds = 0.0
        let ingest = try await seconds {
            try await Self.pipelined(client, "contacts.upsert", batches: (contacts + 999) / 1000, depth: 4) { b in
                let range = b * 1000..<min(contacts, (b + 1) * 1000)
                return ["contacts": .array(range.map { book.contact($0).document })]
            }
        }
        // The baseline gets the same rows, generated the same way, in batches of 1,000.
        baselineSeconds += try seconds {
            for b in 0..<(contacts + 999) / 1000 {
                let range = b * 1000..<min(contacts, (b + 1) * 1000)
                try baseline.insert(range.map(book.contact), firstID: range.lowerBound + 1)
            }
        }
        let events = try await seconds {
            try await Self.pipelined(client, "engagement.record", batches: (contacts + 3332) / 3333, depth: 4) { b in
                let range = b * 3333..<min(contacts, (b + 1) * 3333)
                var items: [JSONValue] = []
                for i in range { items += book.contact(i).events }
                return ["events": .array(items)]
            }
        }
        baselineSeconds += try seconds { try baseline.index() }
        report.figures.append(BenchFigure(
            name: "ingest contacts.upsert (batches of 1,000, 4 in flight)", value: Double(contacts) / ingest, unit: "contacts/s",
            baseline: Double(contacts) / baselineSeconds, better: "higher", target: "≥ 100,000/s", met: Double(contacts) / ingest >= 100_000))
        report.figures.append(BenchFigure(
            name: "engagement.record", value: Double(contacts) / events, unit: "contacts/s", baseline: nil, better: "higher", target: "", met: nil))
        log("ingest: \(Int(Double(contacts) / ingest)) contacts/s")

        // 2. Start-up and memory: restart the server on the loaded file.
        try await client.close()
        server.stop()
        let restart = ContinuousClock.now
        server = try BenchServer(binary: binary, directory: directory, frozenClock: ISOTime.format(now))
        let startup = try await server.waitUntilReady(since: restart)
        // The issue sets a start-up target at 1M only; larger books report the figure alone.
        report.figures.append(BenchFigure(
            name: "start-up on the loaded book", value: startup, unit: "s", baseline: nil, better: "lower",
            target: scale > 1 ? "(≤ 5 s at 1M)" : "≤ 5 s", met: scale > 1 ? nil : startup <= 5))
        let rss = Double(server.residentBytes) / 1_048_576
        report.figures.append(BenchFigure(name: "resident memory after loading", value: rss, unit: "MB", baseline: nil, better: "lower", target: scale > 1 ? "≤ \(Int(500 * scale)) MB" : "≤ 500 MB", met: rss <= 500 * max(1, scale)))
        let rpc = try await RPCClient.connect(unixPath: server.socket)
        // The segment the segment-reference count names.
        _ = try await rpc.call("segments.create", [
            "name": .string(BenchSegment.storedVIPCustomers.name), "filters": BenchSegment.storedVIPCustomers.filters,
        ])

        // 3. Counts: server side (the engine in process on the same file, read-only and so
        // without the lock the server holds), round trip, baseline SQL.
        var readerConfiguration = Engine.Configuration(databasePath: directory + "/segmentd.sqlite", clock: ManualTime(now))
        readerConfiguration.readOnly = true
        let engine = try Engine(configuration: readerConfiguration, registry: SegmentdApplication.builtInRegistry())
        // The book's own estimate next to what the server grew by from empty to loaded (which
        // also holds SQLite's cache and whatever the allocator kept from loading).
        report.figures.append(BenchFigure(
            name: "resident memory growth over the empty server", value: rss - Double(emptyRSS) / 1_048_576, unit: "MB", baseline: nil,
            better: "lower", target: "", met: nil))
        report.figures.append(BenchFigure(
            name: "estimated book size (Book.residentBytes)", value: Double(engine.snapshot.residentBytes) / 1_048_576, unit: "MB",
            baseline: nil, better: "lower", target: "", met: nil))
        for segment in BenchSegment.all(now: now) {
            var expected = 0
            let base = try median((0..<runs).map { _ in try seconds { expected = try baseline.count(segment) } })
            var ours = 0
            let server = try median((0..<runs).map { _ in try seconds { ours = try engine.count(filters: segment.filters).matched } })
            var trips: [Double] = []
            for _ in 0..<runs {
                trips.append(try await seconds { _ = try await rpc.call("segments.count", ["filters": segment.filters]) })
            }
            guard ours == expected else { throw BenchError("\(segment.name): segmentd counted \(ours), the SQL baseline \(expected)") }
            let limit = scale > 1 ? 50.0 : 5.0
            report.figures.append(BenchFigure(
                name: "count \(segment.name) (\(ours)), server side", value: server * 1000, unit: "ms", baseline: base * 1000,
                better: "lower", target: "≤ \(Int(limit)) ms, ≥ 20×", met: server * 1000 <= limit && base / server >= 20))
            report.figures.append(BenchFigure(
                name: "count \(segment.name), round trip", value: median(trips) * 1000, unit: "ms", baseline: base * 1000,
                better: "lower", target: "≤ \(Int(limit * 2)) ms", met: median(trips) * 1000 <= limit * 2))
        }
        log("counts done")

        // 4. Resolve as CSV+gzip over the socket vs SQLite → CSV → gzip level 1.
        let resolveSegment = BenchSegment.resolveSegment(now: now)
        var baseRows = 0
        let baseResolve = try seconds { baseRows = try baseline.csvGzip(resolveSegment).rows }
        var streamed = 0
        let resolve = try await seconds {
            let final = try await rpc.call(
                "segments.resolve", ["filters": resolveSegment.filters, "format": "csv", "compress": "gzip", "audience": "all", "batch_size": 5000]
            ) { _, _ in }
            streamed = Int(final["rows"]?.intValue ?? 0)
        }
        guard streamed == baseRows else { throw BenchError("resolve streamed \(streamed) rows, the baseline \(baseRows)") }
        report.figures.append(BenchFigure(
            name: "resolve CSV+gzip over the socket (\(streamed) rows)", value: Double(streamed) / resolve, unit: "rows/s",
            baseline: Double(baseRows) / baseResolve, better: "higher", target: "≥ 500,000/s and ≥ baseline",
            met: Double(streamed) / resolve >= 500_000 && resolve <= baseResolve))

        // 5. Upserts that change labels, without and with 100 active triggers.
        let plain = try await updateRate(rpc, book: book, round: 0)
        for t in 0..<100 {
            let seg = try await rpc.call("segments.create", [
                "name": .string("bench trigger \(t)"),
                "filters": [["dimension": "label", "op": "contains", "value": .string(SyntheticBook.labels[t % SyntheticBook.labels.count])],
                            ["dimension": "label", "op": "contains", "value": "bench-flag"]],
            ])
            _ = try await rpc.call("triggers.create", ["segment": seg["id"] ?? .int(0), "on": ["enter", "exit"]])
        }
        let triggered = try await updateRate(rpc, book: book, round: 1)
        report.figures.append(BenchFigure(name: "upsert updates (batches of 1,000)", value: plain, unit: "contacts/s", baseline: nil, better: "higher", target: "≥ 100,000/s", met: plain >= 100_000))
        report.figures.append(BenchFigure(
            name: "upsert updates with 100 triggers", value: triggered, unit: "contacts/s", baseline: plain, better: "higher",
            target: "≥ 50% of without", met: triggered >= plain / 2))

        // 6. rpc.ping over 50 connections.
        let pings = try await pingRate(socket: server.socket, connections: 50, duration: .seconds(3))
        report.figures.append(BenchFigure(name: "rpc.ping over 50 connections", value: pings, unit: "req/s", baseline: nil, better: "higher", target: "≥ 50,000/s", met: pings >= 50_000))

        try await rpc.close()
        try engine.close()
        server.stop()

        // 7. The same book among many small ones (BenchRunner+Books.swift).
        if books > 0 { try await measureManyBooks(directory: directory, now: now, report: &report) }
        return report
    }

    /// 100 batches of 1,000 label changes, one call at a time; contacts per second. (Twenty
    /// batches were over in ~0.15 s, so one stall in either round moved the triggered ratio
    /// by a tenth between runs.)
    func updateRate(_ rpc: RPCClient, book: SyntheticBook, round: Int) async throws -> Double {
        let batches = min(100, max(1, contacts / 1000))
        let time = try await seconds {
            for b in 0..<batches {
                let docs: [JSONValue] = (0..<1000).map { i in
                    let n = (b * 1000 + i) % contacts
                    return ["email": .string("contact\(n)@example.com"), (round == 0) == (i % 2 == 0) ? "add_labels" : "remove_labels": ["bench-flag"]]
                }
                _ = try await rpc.call("contacts.upsert", ["contacts": .array(docs)])
            }
        }
        return Double(batches * 1000) / time
    }

    func pingRate(socket: String, connections: Int, duration: Duration) async throws -> Double {
        let deadline = ContinuousClock.now + duration
        let start = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    let c = try await RPCClient.connect(unixPath: socket)
                    var n = 0
                    while ContinuousClock.now < deadline {
                        _ = try await c.call("rpc.ping")
                        n += 1
                    }
                    try await c.close()
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / ((ContinuousClock.now - start) / .seconds(1))
    }

    /// Sends `batches` calls with at most `depth` in flight; `params` builds each one in
    /// this task (it may do other timed work, such as the baseline's insert).
    static func pipelined(
        _ client: RPCClient, _ method: String, batches: Int, depth: Int, params: (Int) throws -> JSONValue
    ) async throws {
        try await withThrowingTaskGroup(of: JSONValue.self) { group in
            var inFlight = 0
            for b in 0..<batches {
                let p = try params(b)
                group.addTask { try await client.call(method, p) }
                inFlight += 1
                if inFlight == depth {
                    try check(try await group.next())
                    inFlight -= 1
                }
            }
            while let result = try await group.next() { try check(result) }
        }
    }

    static func check(_ result: JSONValue?) throws {
        if let failed = result?["failed"]?.arrayValue, !failed.isEmpty { throw BenchError("a batch had failures: \(failed[0])") }
    }

    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory / 1_073_741_824) GiB, \(cpu)"
    }
}
