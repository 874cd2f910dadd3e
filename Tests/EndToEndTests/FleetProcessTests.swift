import Foundation
import LineRPC
import PostgresStore
import Synchronization
import TestPostgres
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Three replicas of a service, each with a `segmentd serve --store postgres://…` sidecar,
/// on a throwaway PostgreSQL cluster these tests start (and restart) themselves: one Contact
/// Book, read-your-writes on every node, trigger events once, and the faults a fleet meets
/// (a node SIGKILLed mid-write, PostgreSQL restarted under load, a node paused).
@Suite(.serialized, .ownThreads) struct FleetProcessTests {
    /// One sidecar: `segmentd serve` on the shared store, its own socket and data directory.
    final class Node: @unchecked Sendable {
        let directory: String
        let store: String
        var process: ChildProcess?

        init(store: String) throws {
            self.store = store
            directory = NSTemporaryDirectory() + "segmentd-fleet-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }

        deinit {
            if let process, process.isRunning {
                process.send(SIGKILL)
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(atPath: directory)
        }

        var socket: String { directory + "/s.sock" }
        var log: String { directory + "/server.log" }

        func start() async throws -> RPCClient {
            let process = ChildProcess(
                productsDirectory().appendingPathComponent("segmentd").path,
                ["serve", "--data-dir", directory + "/data", "--socket", socket, "--log-level", "warning", "--catch-up-ms", "200",
                 "--reevaluate-every", "0.5"],
                directory: directory, environment: ProcessInfo.processInfo.environment.merging(["SEGMENTD_STORE": store]) { _, new in new },
                standardOutput: .file(log), standardError: .file(log))
            try process.start()
            self.process = process
            for _ in 0..<3_000 {
                if !process.isRunning { break }
                if let client = try? await RPCClient.connect(unixPath: socket) {
                    if (try? await client.call("rpc.ping")) != nil { return client }
                    try? await client.close()
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestPostgresError("segmentd --store did not come up (running: \(process.isRunning)); log:\n\(text.suffix(2_000))")
        }

        func kill9() {
            guard let process else { return }
            process.send(SIGKILL)
            process.waitUntilExit()
            self.process = nil
        }

        func signal(_ signal: Int32) { process?.send(signal) }
    }

    static func hot(_ emails: [String]) -> JSONValue {
        ["contacts": .array(emails.map { ["email": .string($0), "labels": ["hot"]] })]
    }

    static let hotFilter: JSONValue = [["dimension": "label", "op": "contains", "value": "hot"]]

    /// The count of hot contacts as `client`'s node answers once it has applied `version`.
    static func hotCount(_ client: RPCClient, atLeast version: Int64) async throws -> Int64 {
        let reply = try await client.call("segments.count", ["filters": hotFilter, "audience": "all", "min_version": .int(version)])
        #expect((reply["version"]?.intValue ?? -1) >= version)
        return reply["matched"]?.intValue ?? -1
    }

    /// Writes on all three nodes at once; every node then answers the same at the newest
    /// version any write returned, and a reader on the third sees every event of the first
    /// two, once each, in cursor order.
    @Test func threeSidecarsShareOneBookAndItsEvents() async throws {
        try await TestPostgres.with { postgres in
            let nodes = try (0..<3).map { _ in try Node(store: postgres.url.description) }
            var clients: [RPCClient] = []
            for node in nodes { clients.append(try await node.start()) }
            let segment = try await clients[0].call("segments.create", ["name": "hot", "filters": Self.hotFilter])
            let created = try await clients[1].call("triggers.create", ["segment": segment["id"]!, "on": ["enter"]])
            #expect(created["id"] != nil)
            let versions = Locked<[Int64]>([])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (n, client) in clients.enumerated() {
                    group.addTask {
                        for batch in 0..<20 {
                            let reply = try await client.call("contacts.upsert", Self.hot((0..<5).map { "n\(n)b\(batch)c\($0)@fleet.example" }))
                            #expect(reply["created"] == 5)
                            if let v = reply["version"]?.intValue { versions.withLock { $0.append(v) } }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let newest = try #require(versions.withLock { $0.max() })
            #expect(versions.withLock { Set($0).count } == 60, "every write has a version of its own")
            for client in clients { #expect(try await Self.hotCount(client, atLeast: newest) == 300) }
            let read = try await clients[2].call("events.read", ["after": 0, "limit": 1_000])
            let events = read["events"]?.arrayValue ?? []
            #expect(events.compactMap { $0["cursor"]?.intValue } == Array(1...300), "once each, in cursor order, no gap")
            #expect(Set(events.compactMap { $0["email"]?.stringValue }).count == 300)
            let hello = try await clients[2].call("rpc.hello", ["protocol": "1"])
            #expect(hello["fleet"]?["store"] == "postgres")
            #expect((hello["fleet"]?["books"]?["default"]?["applied_version"]?.intValue ?? 0) >= newest)
            for client in clients { try await client.close() }
        }
    }

    /// A node SIGKILLed in the middle of its writes: every write it acknowledged is on the
    /// other node, each hot contact has exactly one enter event, and the killed node comes
    /// back with the same answers.
    @Test func aNodeKilledMidWriteLosesNothingAcknowledged() async throws {
        try await TestPostgres.with { postgres in
            let a = try Node(store: postgres.url.description), b = try Node(store: postgres.url.description)
            let writer = try await a.start()
            let reader = try await b.start()
            let segment = try await writer.call("segments.create", ["name": "hot", "filters": Self.hotFilter])
            _ = try await writer.call("triggers.create", ["segment": segment["id"]!, "on": ["enter"]])
            let acknowledged = Locked<(emails: [String], version: Int64)>(([], 0))
            let load = Task {
                for n in 0..<2_000 {
                    let email = "k\(n)@fleet.example"
                    guard let reply = try? await writer.call("contacts.upsert", Self.hot([email])) else { return }
                    acknowledged.withLock { $0 = ($0.emails + [email], max($0.version, reply["version"]?.intValue ?? 0)) }
                }
            }
            // Killed mid-load: once some writes are acknowledged, at a random moment.
            for _ in 0..<3_000 where acknowledged.withLock({ $0.emails.count }) < 20 { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...200)))
            a.kill9()
            await load.value
            let (emails, acknowledgedVersion) = acknowledged.withLock { $0 }
            #expect(emails.count > 10, "the load ran before the kill")
            // A write on the other node catches up on everything committed, the write in
            // flight at the kill included if it committed: its version fences the reads.
            let fence = try await reader.call("contacts.upsert", ["contacts": [["email": "fence@fleet.example"]]])["version"]?.intValue ?? 0
            let version = max(acknowledgedVersion, fence)
            let count = try await Self.hotCount(reader, atLeast: version)
            // The write in flight at the kill either committed whole or not at all.
            #expect(count == Int64(emails.count) || count == Int64(emails.count) + 1)
            let events = try await reader.call("events.read", ["after": 0, "limit": 5_000])["events"]?.arrayValue ?? []
            #expect(events.count == Int(count), "one enter event per hot contact, none half written")
            for email in emails {
                #expect(try await reader.call("contacts.get", ["email": .string(email)])["labels"] == ["hot"], "\(email) acknowledged")
            }
            let back = try await a.start()
            #expect(try await Self.hotCount(back, atLeast: version) == count)
            try await back.close()
            try await reader.close()
        }
    }

    /// PostgreSQL restarted under load: writes fail fast with a clear error while it is
    /// down, reads keep answering from memory, and once it is back writes succeed and the
    /// other node catches up.
    @Test(.enabled(if: TestPostgres.ownsClusters, "restarts the PostgreSQL server: only one the tests started")) func postgresRestartUnderLoad() async throws {
        try await TestPostgres.with { postgres in
            let a = try Node(store: postgres.url.description), b = try Node(store: postgres.url.description)
            let writer = try await a.start()
            let reader = try await b.start()
            let first = try await writer.call("contacts.upsert", Self.hot(["first@fleet.example"]))["version"]?.intValue ?? 0
            #expect(try await Self.hotCount(reader, atLeast: first) == 1)
            try await postgres.stopServer()
            await #expect {
                _ = try await writer.call("contacts.upsert", Self.hot(["down@fleet.example"]))
            } throws: { error in
                "\(error)".contains("PostgreSQL store unreachable")
            }
            // Reads answer from memory; once the store has not answered for a while they say
            // the answer may be stale.
            var stale = false
            for _ in 0..<100 where !stale {
                let whileDown = try await reader.call("segments.count", ["filters": Self.hotFilter, "audience": "all"])
                #expect(whileDown["matched"] == 1)
                stale = whileDown["may_be_stale"] == true
                if !stale { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(stale, "a read while PostgreSQL is down says it may be stale")
            try await postgres.startServer()
            var version: Int64 = 0
            for attempt in 0..<100 {
                if let reply = try? await writer.call("contacts.upsert", Self.hot(["back\(attempt)@fleet.example"])), let v = reply["version"]?.intValue {
                    version = v
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(version > 0, "writes work again once PostgreSQL is back")
            #expect(try await Self.hotCount(reader, atLeast: version) == 2)
            try await writer.close()
            try await reader.close()
        }
    }

    /// A book created on one node is served by another on its first request, both list it,
    /// and a book dropped on one node can be created again.
    @Test func booksCreatedOnOneNodeAreServedByTheOthers() async throws {
        try await TestPostgres.with { postgres in
            let a = try Node(store: postgres.url.description), b = try Node(store: postgres.url.description)
            let first = try await a.start()
            let second = try await b.start()
            _ = try await first.call("books.create", ["name": "acme"])
            let written = try await first.call("contacts.upsert", ["book": "acme", "contacts": [["email": "ana@acme.example", "labels": ["hot"]]]])
            let version = try #require(written["version"]?.intValue)
            let count = try await second.call(
                "segments.count", ["book": "acme", "filters": Self.hotFilter, "audience": "all", "min_version": .int(version)])
            #expect(count["matched"] == 1)
            let listed = try await second.call("books.list")
            #expect((listed["books"]?.arrayValue ?? []).contains { $0["name"] == "acme" }, "\(listed.serialized())")
            await #expect(throws: (any Error).self) { _ = try await second.call("books.create", ["name": "acme"]) }
            _ = try await first.call("books.drop", ["name": "acme", "confirm": "acme"])
            _ = try await first.call("books.create", ["name": "acme"])
            let empty = try await first.call("segments.count", ["book": "acme", "filters": Self.hotFilter, "audience": "all"])
            #expect(empty["matched"] == 0)
            try await first.close()
            try await second.close()
        }
    }

    /// A node paused (SIGSTOP) while another writes catches up once resumed.
    @Test func aPausedNodeCatchesUp() async throws {
        try await TestPostgres.with { postgres in
            let a = try Node(store: postgres.url.description), b = try Node(store: postgres.url.description)
            let writer = try await a.start()
            let paused = try await b.start()
            b.signal(SIGSTOP)
            var version: Int64 = 0
            for n in 0..<50 {
                version = try await writer.call("contacts.upsert", Self.hot(["p\(n)@fleet.example"]))["version"]?.intValue ?? 0
            }
            b.signal(SIGCONT)
            #expect(try await Self.hotCount(paused, atLeast: version) == 50)
            try await writer.close()
            try await paused.close()
        }
    }
}

/// A value behind a lock that closures can share.
final class Locked<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
}
