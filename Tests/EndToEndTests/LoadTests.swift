import SegmentdApp
import SegmentEngine
import Foundation
import LineRPC
import NIOCore
import NIOPosix
import SegmentCore
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Many clients (issue 8, item 4): 1,000 connections held open at once, mixing counts,
/// upserts and a resolve stream, with no errors and bounded memory; and beyond
/// `max_connections`, a clear `-32004` line instead of a server falling over.
///
/// `SEGMENTD_LOAD_CONNECTIONS` sets the number of connections (default 1,000; the full run
/// uses 4,000, with `max_connections` raised to match). Each one makes
/// `SEGMENTD_LOAD_CALLS` calls (default 4).
@Suite(.serialized, .ownThreads) struct LoadTests {
    static var connections: Int { Int(ProcessInfo.processInfo.environment["SEGMENTD_LOAD_CONNECTIONS"] ?? "") ?? 1_000 }
    static var callsEach: Int { Int(ProcessInfo.processInfo.environment["SEGMENTD_LOAD_CALLS"] ?? "") ?? 4 }

    /// Raises the soft open-file limit to the hard limit (each in-process connection uses two
    /// descriptors: the client's and the server's). Returns the new soft limit.
    @discardableResult
    static func raiseFileLimit(to wanted: Int) -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < rlim_t(wanted) {
            limit.rlim_cur = min(limit.rlim_max, rlim_t(wanted))
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }

    /// Connects, retrying while the listen backlog is full: a Unix socket `connect` fails
    /// with EAGAIN (instead of waiting) when the server has not accepted the earlier ones yet.
    /// The retries are bounded by time (a hang guard, not a speed test): on a loaded two-core
    /// machine a thousand connects can outrun the accept loop for seconds.
    static func connect(_ server: ServeProcess, on group: any EventLoopGroup) async throws -> RPCClient {
        let deadline = ContinuousClock.now + .seconds(60)
        var pause = 5
        while true {
            do {
                return try await server.client(on: group)
            } catch {
                guard ContinuousClock.now < deadline, "\(error)".contains("Resource temporarily unavailable") else { throw error }
                try await Task.sleep(for: .milliseconds(pause))
                pause = min(pause * 2, 200)
            }
        }
    }

    /// The server is a `segmentd serve` process, so that its memory is measured alone (the
    /// test process also runs other suites), and the clients have event loops of their own,
    /// so that their thousand connections do not slow the other suites' servers.
    @Test func thousandConcurrentConnectionsMixingWork() async throws {
        let n = Self.connections
        let fdLimit = Self.raiseFileLimit(to: 2 * n + 512)
        try #require(fdLimit >= 2 * n + 256, "RLIMIT_NOFILE is \(fdLimit); \(n) connections need about \(2 * n + 256) descriptors")
        let server = try await ServeProcess.start(["--max-connections", String(max(1024, n + 16))])
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            try await Self.mixedWork(on: server, loops: loops, n: n, fdLimit: fdLimit)
        } catch {
            try? await loops.shutdownGracefully()
            throw error
        }
        try await loops.shutdownGracefully()
    }

    static func mixedWork(on server: ServeProcess, loops: any EventLoopGroup, n: Int, fdLimit: Int) async throws {
        let admin = try await server.client(on: loops)
        for first in stride(from: 0, to: 5_000, by: 1_000) {
            let seed: [JSONValue] = (first..<first + 1_000).map { i in
                ["email": .string("load\(i)@example.com"), "labels": i % 4 == 0 ? ["vip"] : ["newsletter"], "funnel": i % 2 == 0 ? "customer" : "engaged"]
            }
            _ = try await admin.call("contacts.upsert", ["contacts": .array(seed)])
        }
        // Warm up (the first count compiles and caches), then measure.
        _ = try await admin.call("segments.count", ["filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
        let before = server.memory
        let clock = ContinuousClock()
        let started = clock.now

        // Open every connection first and hold them all.
        let clients = try await withThrowingTaskGroup(of: RPCClient.self) { group in
            var opened: [RPCClient] = []
            for i in 0..<n {
                group.addTask { try await Self.connect(server, on: loops) }
                if i % 100 == 99 {  // a few at a time: the listen backlog is 256
                    for _ in 0..<100 { if let c = try await group.next() { opened.append(c) } }
                }
            }
            for try await c in group { opened.append(c) }
            return opened
        }
        let connectedIn = clock.now - started
        // Each connection proves it is live before the work starts.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in clients { group.addTask { _ = try await c.call("rpc.ping") } }
            try await group.waitForAll()
        }
        let held = try await admin.call("server.stats")["rpc"]?["connections_open"]?.intValue
        #expect(held == Int64(n + 1), "connections open: \(held ?? -1) (\(n) and the admin's)")

        // The mix: every 10th connection upserts, every 50th streams a resolve, the rest count.
        let workStarted = clock.now
        let failures = CollectedLines()
        let tally = Tally()
        await withTaskGroup(of: Void.self) { group in
            for (i, c) in clients.enumerated() {
                group.addTask {
                    for k in 0..<Self.callsEach {
                        do {
                            if i % 50 == 7, k == 0 {
                                let rows = Tally()
                                let done = try await c.call("segments.resolve", ["filters": [["dimension": "label", "op": "contains", "value": "vip"]], "batch_size": 250]) { _, params in
                                    rows.add(params["rows"]?.arrayValue?.count ?? 0)
                                }
                                guard done["complete"] == true, let total = done["rows"]?.intValue, total >= 1_250, Int(total) == rows.value else {
                                    throw RPCClientError("stream ended wrong: \(done.serialized()) after \(rows.value) rows")
                                }
                                tally.add(1, kind: "stream")
                            } else if i % 10 == 3 {
                                let contacts: JSONValue = .array((0..<5).map { j in
                                    ["email": .string("c\(i)-\(k)-\(j)@example.com"), "labels": ["vip"], "funnel": "customer"]
                                })
                                let r = try await c.call("contacts.upsert", ["contacts": contacts])
                                if let failed = r["failed"]?.arrayValue, !failed.isEmpty { throw RPCClientError("upsert failed: \(r.serialized())") }
                                tally.add(1, kind: "upsert")
                            } else {
                                let r = try await c.call("segments.count", ["filters": [["dimension": "label", "op": "contains", "value": "vip"], ["dimension": "funnel", "op": "in", "value": ["customer"]]]])
                                guard (r["matched"]?.intValue ?? 0) >= 1_250 else { throw RPCClientError("odd count: \(r.serialized())") }
                                tally.add(1, kind: "count")
                            }
                        } catch {
                            failures.append(.string("connection \(i) call \(k): \(error)"))
                        }
                    }
                }
            }
        }
        let workTook = clock.now - workStarted
        let memory = server.memory
        for c in clients { try? await c.close() }
        var stats: JSONValue = [:]
        for _ in 0..<100 {
            stats = try await admin.call("server.stats")
            if stats["rpc"]?["connections_open"] == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(failures.values.isEmpty, "\(failures.values.count) failed calls, e.g. \(failures.values.prefix(3))")
        #expect(stats["rpc"]?["errors_by_type"] == [:], "error replies: \(stats["rpc"]?["errors_by_type"]?.serialized() ?? "")")
        #expect(stats["rpc"]?["connections_open"] == 1, "connections still open after closing: \(stats["rpc"]?["connections_open"]?.serialized() ?? "")")
        let expectedContacts = 5_000 + (n / 10 + (n % 10 > 3 ? 1 : 0)) * Self.callsEach * 5
        #expect(stats["contacts"]?.intValue == Int64(expectedContacts))
        let growth = max(memory.rss - before.rss, memory.peak - before.peak)
        print("""
            load: \(n) connections held (opened in \(connectedIn)); \(tally.kinds) calls in \(workTook); \
            server RSS +\(growth / 1024) KiB at peak (\(growth / max(n, 1)) bytes per connection); fd limit \(fdLimit)
            """)
        // Bounded memory: a connection costs a few tens of KiB (a NIO channel, a task, buffers).
        #expect(growth < n * 128 * 1024 + 32 << 20, "server RSS grew by \(growth) bytes")
        #expect(try await admin.call("rpc.ping") == ["pong": true])
        try await admin.close()
        #expect(await server.stop() == 0, "segmentd serve did not shut down cleanly; log:\n\(server.log.suffix(2_000))")
    }

    @Test func connectionBeyondTheMaximumGetsAClearErrorLine() async throws {
        let limit = 50
        let server = try await TestServer.start { config in
            config.limits.maxConnections = limit
        }
        var clients: [RPCClient] = []
        for _ in 0..<limit { clients.append(try await server.client()) }
        for c in clients { #expect(try await c.call("rpc.ping") == ["pong": true]) }

        // The 51st: one line, then the server closes it.
        let extra = try RawSocket(path: server.socketPath)
        Wire.setReceiveTimeout(extra.fd, seconds: 5)
        let lines = await Wire.onThread { () -> [String] in
            var lines: [String] = []
            while let line = extra.readLine() { lines.append(line) }
            return lines
        }
        extra.close()
        #expect(lines.count == 1, "\(lines)")
        let refusal = try JSONParser.parse(try #require(lines.first))
        #expect(refusal["id"] == .null)
        #expect(refusal["error"]?["code"] == -32004)
        #expect(refusal["error"]?["data"]?["type"] == "overloaded")
        #expect(refusal["error"]?["message"]?.stringValue?.contains("too many connections") == true)

        // The RPCClient reports it as that error, not as a hang (once the refusal is read,
        // every call fails with it).
        // A call sent before the client has read the refusal can meet the close first
        // (a loaded machine): the client is given time to read it, longer on each attempt.
        var reported: RPCError?
        var attempts = 0
        for attempt in 1...10 where reported == nil {
            attempts = attempt
            let refused = try await server.client()
            try await Task.sleep(for: .milliseconds(300 * attempt))
            do {
                _ = try await refused.call("rpc.ping")
                Issue.record("a refused connection answered a call")
            } catch let error as RPCError {
                reported = error
            } catch {
                // Closed before the refusal was read: try again.
            }
            try? await refused.close()
        }
        #expect(reported?.code == -32004)

        // A burst of 200 more is refused the same way and the server stays up.
        var burstRefusals = 0
        for _ in 0..<200 {
            let s = try RawSocket(path: server.socketPath)
            Wire.setReceiveTimeout(s.fd, seconds: 5)
            let line = await Wire.onThread { s.readLine() }
            s.close()
            if line?.contains("-32004") == true { burstRefusals += 1 }
        }
        #expect(burstRefusals == 200)
        for c in clients { #expect(try await c.call("rpc.ping") == ["pong": true]) }
        let stats = server.app.metrics.rpc()
        // The raw extra connection, each client attempt (a loaded machine can need more
        // than one), and the burst: every one refused and counted.
        #expect(stats.connectionsRefused == 1 + attempts + 200)
        #expect(stats.connectionsOpen == limit)

        // A slot freed is a slot usable.
        try await clients.removeLast().close()
        var admitted = false
        for _ in 0..<50 {
            if server.app.metrics.rpc().connectionsOpen < limit { admitted = true; break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(admitted)
        let again = try await server.client()
        #expect(try await again.call("rpc.ping") == ["pong": true])
        print("max connections: \(limit) held, \(stats.connectionsRefused) refused with -32004, server kept serving")
        try await again.close()
        for c in clients { try await c.close() }
        try await server.stop()
    }
}

/// Counters shared by concurrent tasks.
final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    private var byKind: [String: Int] = [:]
    func add(_ n: Int, kind: String? = nil) {
        lock.withLock {
            total += n
            if let kind { byKind[kind, default: 0] += n }
        }
    }
    var value: Int { lock.withLock { total } }
    var kinds: [String: Int] { lock.withLock { byKind } }
}
