import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import Testing
import TestThreads
import WireJSON

/// A large stream to slow, stalled, cancelling and vanishing readers.
@Suite(.serialized, .ownThreads) struct BackpressureTests {
    static let rows = 200_000

    /// 200,000 contacts, inserted through the engine in big batches.
    static func bigServer() async throws -> TestServer {
        let server = try await TestServer.start()
        var batch: [JSONValue] = []
        for i in 0..<rows {
            batch.append(["email": .string("contact\(i)@example.com"), "name": .string("Contact number \(i) with a longer name"), "labels": ["all"]])
            if batch.count == 10_000 {
                _ = try await server.app.engine.upsert(contacts: batch)
                batch = []
            }
        }
        return server
    }

    static func rpcStats(_ server: TestServer) async throws -> JSONValue {
        let c = try await server.client()
        defer { Task { try? await c.close() } }
        return try await c.call("server.stats")["rpc"] ?? .null
    }

    /// Runs blocking socket work on its own thread, never on the cooperative pool that the
    /// in-process server needs.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    @Test func slowReaderHoldsServerBufferingFlatAndSeesOneSnapshot() async throws {
        let server = try await Self.bigServer()
        let before = try await Self.rpcStats(server)["bytes_out"]?.intValue ?? 0
        let path = server.socketPath
        let socket = try RawSocket(path: path)
        socket.send(#"{"jsonrpc":"2.0","id":1,"method":"segments.resolve","params":{"filters":[{"dimension":"label","op":"contains","value":"all"}],"columns":["email","name"],"format":"ndjson","batch_size":500}}"#)

        // Read slowly for a while, sampling how far the server is ahead of what was read.
        let firstRead = await Self.onThread { () -> Int in
            var read = 0
            // About one second at 100 KB/s: a server that ignored writability would have
            // pushed many megabytes by then.
            for _ in 0..<100 {
                read += socket.read(max: 1024).count
                usleep(10_000)
            }
            return read
        }
        let aheadWhileSlow = (try await Self.rpcStats(server)["bytes_out"]?.intValue ?? 0) - before - Int64(firstRead)
        // Writes land while the stream is in progress: the stream must not include them.
        _ = try await server.app.engine.upsert(contacts: (0..<50).map { i -> JSONValue in ["email": .string("late\(i)@example.com"), "labels": ["all"]] })

        let rest = await Self.onThread { () -> (lines: Int, late: Int, final: String?) in
            var lines = 0, late = 0
            var final: String?
            // The first line may be the tail of one the slow phase read in part.
            while let line = socket.readLine() {
                late += line.components(separatedBy: "late").count - 1
                if line.hasPrefix("{"), line.contains("\"result\":") {
                    final = line
                    break
                }
                lines += 1
            }
            return (lines, late, final)
        }
        socket.close()
        // The server never ran more than a few socket buffers ahead of the reader: it writes
        // only while the connection is writable (the whole stream is about 16 MB; socket
        // buffers and one batch are a few hundred KB).
        #expect(aheadWhileSlow < 2 * 1024 * 1024, "server was \(aheadWhileSlow) bytes ahead of a slow reader")
        let final = try JSONParser.parse(try #require(rest.final))
        #expect(final["result"]?["rows"]?.intValue == Int64(Self.rows))
        #expect(rest.late == 0, "contacts written during the stream must not appear in it")
        #expect(final["result"]?["complete"] == true)
        try await server.stop()
    }

    @Test func disconnectAndCancelStopTheWork() async throws {
        let server = try await Self.bigServer()
        let request = #"{"jsonrpc":"2.0","id":7,"method":"segments.resolve","params":{"filters":[],"audience":"all","batch_size":200}}"#

        // A reader that vanishes mid-stream: the handler stops at once.
        let gone = try RawSocket(path: server.socketPath)
        gone.send(request)
        _ = await Self.onThread { gone.read(max: 4096) }
        gone.close()
        var inFlight: Int64 = -1
        for _ in 0..<100 {
            inFlight = try await Self.rpcStats(server)["requests_in_flight"]?.intValue ?? -1
            if inFlight <= 1 { break }  // 1: the stats request itself
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(inFlight == 1, "the abandoned stream is still running")

        // rpc.cancel stops a stream, and the request still gets exactly one final reply.
        let cancelling = try RawSocket(path: server.socketPath)
        cancelling.send(request)
        let outcome = await Self.onThread { () -> (notifications: Int, final: String?) in
            var notifications = 0
            while let line = cancelling.readLine() {
                if line.contains("\"segments.rows\"") {
                    notifications += 1
                    if notifications == 3 {
                        cancelling.send(#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":7}}"#)
                        // Stop reading for a moment: backpressure then holds the stream while the
                        // cancel is handled (a fast drain let a loaded server finish first once).
                        usleep(300_000)
                    }
                } else {
                    return (notifications, line)
                }
            }
            return (notifications, nil)
        }
        cancelling.close()
        let final = try JSONParser.parse(try #require(outcome.final))
        #expect(final["id"] == 7)
        #expect(final["result"]?["complete"] == false)
        let sent = final["result"]?["rows"]?.intValue ?? 0
        #expect(sent > 0 && sent < Int64(Self.rows), "cancelled after \(sent) rows")
        try await server.stop()
    }
}
