import SegmentdApp
import SegmentEngine
import Foundation
import LineRPC
import SegmentCore
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Slow and stuck clients (issue 8, item 3): a reader that stops mid-stream, a client that
/// sends half a line and waits, and connections that never speak. Each is bounded by a
/// documented limit and closed, while a well-behaved client keeps its speed — measured.
///
/// The limits are shortened for the test (the defaults are 30 s line timeout, 300 s idle):
/// `line_timeout_ms` closes the half line; `idle_timeout_ms` closes the silent connections,
/// and also the stalled reader (a write that waits that long for the peer to read closes the
/// connection; see LineRPC's ReplyWriter).
///
/// `SEGMENTD_SLOW_BAD_CLIENTS` scales the number of bad clients of each kind (default 1×:
/// 3 stalled readers, 20 half lines, 50 silent; the full run uses 10×; the test's timeouts
/// scale with it).
@Suite(.serialized, .ownThreads) struct SlowClientTests {
    static var scale: Int { Int(ProcessInfo.processInfo.environment["SEGMENTD_SLOW_BAD_CLIENTS"] ?? "") ?? 1 }
    /// Scaled with the number of bad clients, so the measurement always ends before they time out.
    /// Long enough that the measurement with the bad clients present ends before they time out
    /// even when the whole suite runs in parallel on two cores.
    static var lineTimeout: Duration { .milliseconds(4000 * scale) }
    static var idleTimeout: Duration { .milliseconds(6000 * scale) }

    /// Times `rounds` round trips (alternating rpc.ping and segments.count) on one client.
    static func timeRoundTrips(_ client: RPCClient, rounds: Int) async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        for i in 0..<rounds {
            if i % 2 == 0 {
                _ = try await client.call("rpc.ping")
            } else {
                let counted = try await client.call("segments.count", ["filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
                #expect(counted["matched"]?.intValue ?? -1 > 0)
            }
        }
        return clock.now - start
    }

    @Test func badClientsAreClosedWhileAGoodClientKeepsItsSpeed() async throws {
        let server = try await TestServer.start { config in
            config.limits.lineTimeout = Self.lineTimeout
            config.limits.idleTimeout = Self.idleTimeout
        }
        // Enough rows that a stream is far larger than the socket buffers (about 3 MB).
        var batch: [JSONValue] = []
        for i in 0..<30_000 {
            batch.append(["email": .string("slow\(i)@example.com"), "name": .string("A contact with a longish name \(i)"), "labels": i % 3 == 0 ? ["vip", "all"] : ["all"]])
            if batch.count == 10_000 {
                _ = try await server.app.engine.upsert(contacts: batch)
                batch = []
            }
        }
        let good = try await server.client()
        // Timings are the best of three samples, so that other suites running in parallel in
        // the same process disturb the comparison as little as possible.
        let rounds = 100
        // With a deadline, a further sample starts only if it will end well before it (on a
        // loaded host three samples could outlast the bad clients' timeouts).
        func sample(before deadline: ContinuousClock.Instant? = nil) async throws -> Duration {
            var best = Duration.seconds(3600)
            for _ in 0..<3 {
                let took = try await Self.timeRoundTrips(good, rounds: rounds)
                best = min(best, took)
                if let deadline, ContinuousClock.now + took * 2 > deadline { break }
            }
            return best
        }
        _ = try await Self.timeRoundTrips(good, rounds: 40)  // warm-up
        let baseline = try await sample()
        let rssBefore = residentBytes()

        // The bad clients.
        let stalledCount = 3 * Self.scale, halfCount = 20 * Self.scale, silentCount = 50 * Self.scale
        let resolve = #"{"jsonrpc":"2.0","id":1,"method":"segments.resolve","params":{"filters":[{"dimension":"label","op":"contains","value":"all"}],"columns":["email","name"],"batch_size":100}}"#
        var stalled: [RawSocket] = []
        for _ in 0..<stalledCount {
            let socket = try RawSocket(path: server.socketPath)
            socket.send(resolve)
            stalled.append(socket)
        }
        // They read a little of the stream, then stop reading for good.
        for socket in stalled { _ = await Wire.onThread { socket.read(max: 4096) } }
        var half: [RawSocket] = []
        for _ in 0..<halfCount {
            let socket = try RawSocket(path: server.socketPath)
            _ = Wire.sendAll(socket.fd, Array(#"{"jsonrpc":"2.0","id":1,"method":"rpc.pi"#.utf8))
            half.append(socket)
        }
        var silent: [RawSocket] = []
        for _ in 0..<silentCount { silent.append(try RawSocket(path: server.socketPath)) }
        let badOpenedAt = ContinuousClock.now
        // The server registers each connection when its task starts: wait for that (bounded)
        // rather than a fixed pause a loaded machine can outlast.
        let expectedOpen = 1 + stalledCount + halfCount + silentCount
        _ = await waitUntil { server.app.metrics.rpc().connectionsOpen >= expectedOpen }
        let openWithBad = server.app.metrics.rpc().connectionsOpen
        #expect(openWithBad == expectedOpen, "open: \(openWithBad)")

        // Served at normal speed meanwhile.
        let withBad = try await sample(before: badOpenedAt + Self.lineTimeout - .milliseconds(1000))
        // The measurement ran while the bad clients were connected. On a loaded host one sample
        // can outlast the line timeout: then only the half-line clients may have gone.
        let openAfterMeasuring = server.app.metrics.rpc().connectionsOpen
        let measuredFor = ContinuousClock.now - badOpenedAt
        if measuredFor < Self.lineTimeout - .milliseconds(300) {
            #expect(openAfterMeasuring == openWithBad, "bad clients went away during the measurement: \(openAfterMeasuring)")
        } else if measuredFor < Self.idleTimeout - .milliseconds(300) {
            #expect(openAfterMeasuring >= openWithBad - halfCount, "more than the half-line clients went away: \(openAfterMeasuring)")
        }
        let rssWithBad = residentBytes()

        // Every bad connection is closed by the server within its limit (plus slack).
        var closedAt: Duration?
        for _ in 0..<(200 * Self.scale) {
            if server.app.metrics.rpc().connectionsOpen == 1 {
                closedAt = ContinuousClock.now - badOpenedAt
                break
            }
            _ = try await good.call("rpc.ping")  // keeps the good connection busy, never idle
            try await Task.sleep(for: .milliseconds(50))
        }
        let stats = server.app.metrics.rpc()
        #expect(closedAt != nil, "still open after \(10 * Self.scale) s: \(stats.connectionsOpen) connections, \(stats.requestsInFlight) in flight")
        #expect(stats.requestsInFlight == 0, "the stalled streams are still running")
        if let closedAt { #expect(closedAt >= Self.idleTimeout - .milliseconds(300), "closed too early: \(closedAt)") }

        // The bad sockets see the end of the stream (the half-line ones get nothing at all).
        let halfSockets = half, stalledSockets = stalled
        let halfSeesEOF = await Wire.onThread { () -> Bool in
            halfSockets.allSatisfy { socket in
                Wire.setReceiveTimeout(socket.fd, seconds: 2)
                return socket.read(max: 1024).isEmpty
            }
        }
        #expect(halfSeesEOF)
        let stalledSeesEOF = await Wire.onThread { () -> Bool in
            stalledSockets.allSatisfy { socket in
                Wire.setReceiveTimeout(socket.fd, seconds: 2)
                var total = 0
                while true {
                    let chunk = socket.read(max: 65_536)
                    if chunk.isEmpty { return total < 3_000_000 }  // ended early: never the whole stream
                    total += chunk.count
                }
            }
        }
        #expect(stalledSeesEOF)
        for socket in stalled + half + silent { socket.close() }

        // And the good client still answers as fast as before.
        let after = try await sample()
        // Compared with the mean of the runs without bad clients before and after, which
        // bracket it in time: other suites share the two cores and come and go meanwhile.
        let ratio = withBad / ((baseline + after) / 2)
        print("""
            slow clients: \(stalledCount) stalled readers, \(halfCount) half lines, \(silentCount) silent; \
            \(rounds) round trips: \(baseline) alone, \(withBad) with them (×\(String(format: "%.2f", ratio))), \(after) after; \
            all closed \(closedAt.map { "\($0)" } ?? "never") after opening (line timeout \(Self.lineTimeout), idle \(Self.idleTimeout)); \
            RSS with them +\((rssWithBad - rssBefore) / 1024) KiB
            """)
        // A starved server would be seconds late (×30 and more); ×10 leaves room for the
        // noise of other suites sharing two cores while still catching real starvation.
        #expect(ratio < 10, "round trips took \(ratio)× longer with the bad clients present")
        try await good.close()
        try await server.stop()
    }

    /// The half line is closed after `line_timeout` even though bytes keep trickling in
    /// (slow loris), and a client that sends a line slowly but completes it is fine.
    @Test func trickledLineIsClosedAfterTheLineTimeout() async throws {
        let server = try await TestServer.start { config in
            config.limits.lineTimeout = .milliseconds(800)
            config.limits.idleTimeout = .seconds(30)
        }
        let socket = try RawSocket(path: server.socketPath)
        Wire.setReceiveTimeout(socket.fd, seconds: 5)
        let started = ContinuousClock.now
        // One byte every 100 ms, never a newline: bounded by the line timeout, not by activity.
        let trickle = Array(#"{"jsonrpc":"2.0","id":1,"method":"rpc.ping","params":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"#.utf8)
        let outcome = await Wire.onThread { () -> (sent: Int, eof: Bool) in
            var sent = 0
            for byte in trickle {
                if !Wire.sendAll(socket.fd, [byte]) { break }
                sent += 1
                usleep(100_000)
                var probe = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
                if poll(&probe, 1, 0) > 0 { break }
            }
            return (sent, socket.read(max: 1024).isEmpty)
        }
        let elapsed = ContinuousClock.now - started
        socket.close()
        #expect(outcome.eof)
        #expect(outcome.sent < trickle.count, "the server let a line trickle for \(elapsed)")
        #expect(elapsed >= .milliseconds(700) && elapsed < .seconds(8), "closed after \(elapsed)")  // generous: loaded CI hosts

        // A line completed within the timeout, even sent in pieces, is answered.
        let fine = try RawSocket(path: server.socketPath)
        Wire.setReceiveTimeout(fine.fd, seconds: 5)
        let reply = await Wire.onThread { () -> String? in
            _ = Wire.sendAll(fine.fd, Array(#"{"jsonrpc":"2.0","id":1,"#.utf8))
            usleep(300_000)
            _ = Wire.sendAll(fine.fd, Array(#""method":"rpc.ping"}"#.utf8) + [10])
            return fine.readLine()
        }
        fine.close()
        #expect(reply == #"{"id":1,"jsonrpc":"2.0","result":{"pong":true}}"#)
        try await server.stop()
    }
}
