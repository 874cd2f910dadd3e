import Foundation
import LineRPC
import Synchronization
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Crash safety of triggers (issue 5): the real `segmentd serve` binary as a child process,
/// a concurrent write load over its socket in which every write is a trigger transition,
/// SIGKILL at a random moment, restart on the same database, and then:
/// - every acknowledged write is there and has its event;
/// - no write is half there: for every contact ever written, its enter events minus its exit
///   events equal whether it carries the label now (a write and its events are one transaction);
/// - the log's cursors are 1, 2, 3, … with no duplicate and no gap;
/// - every event a subscriber received before the kill is still in the log, identical, and the
///   subscriber, resuming after the last cursor it saw, gets every later event exactly once;
/// - `PRAGMA integrity_check` says ok.
///
/// The default run kills the server 5 times. For a longer soak set `SEGMENTD_CRASH_KILLS`,
/// e.g. `SEGMENTD_CRASH_KILLS=200 swift test --filter CrashSafetyTests`.
@Suite(.serialized, .ownThreads) struct CrashSafetyTests {
    static var kills: Int { ProcessInfo.processInfo.environment["SEGMENTD_CRASH_KILLS"].flatMap(Int.init).map { max(1, $0) } ?? 5 }
    static let writers = 4
    /// A bound on one writer's writes in one round (the kill normally comes much earlier).
    static let maxWritesPerRound = 1_500

    /// One `segmentd serve` child process.
    final class Child: @unchecked Sendable {
        let directory: String
        let socketName: String
        var process: ChildProcess?

        init(directory: String, socketName: String = "s.sock") {
            self.directory = directory
            self.socketName = socketName
        }

        var database: String { directory + "/crash.sqlite" }
        var socket: String { directory + "/" + socketName }

        func start() async throws -> RPCClient {
            let log = directory + "/server.log"
            let process = ChildProcess(productsDirectory().appendingPathComponent("segmentd").path,
                                       ["serve", "--data-dir", directory + "/data", "--db", database, "--socket", socket, "--log-level", "warning"],
                                       directory: directory, standardOutput: .file(log), standardError: .file(log))
            try process.start()
            self.process = process
            // Ready when it accepts a connection (a killed predecessor's socket file refuses).
            for _ in 0..<1_500 {
                if !process.isRunning { break }
                if let client = try? await RPCClient.connect(unixPath: socket) {
                    if (try? await client.call("rpc.ping")) != nil { return client }
                    try? await client.close()
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw CrashTestError("segmentd did not come up (running: \(process.isRunning)); log:\n\(text.suffix(2_000))")
        }

        /// Sends `signal` and waits (bounded) for the process to end.
        func stop(signal: Int32) async throws {
            guard let process else { return }
            kill(process.processIdentifier, signal)
            for _ in 0..<1_500 where process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
            #expect(!process.isRunning, "segmentd did not exit after signal \(signal)")
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            self.process = nil
        }
    }

    struct CrashTestError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// One write the load attempted: it either made `email` hot (created it with the label) or
    /// cooled it (removed the label); `acknowledged` once its reply came back.
    struct Attempt: Sendable {
        let email: String
        let makesHot: Bool
        var acknowledged: Bool
    }

    final class Ledger: Sendable {
        private let attempts = Mutex<[Attempt]>([])
        func begin(_ email: String, makesHot: Bool) -> Int {
            attempts.withLock { $0.append(Attempt(email: email, makesHot: makesHot, acknowledged: false)); return $0.count - 1 }
        }
        func acknowledge(_ index: Int) { attempts.withLock { $0[index].acknowledged = true } }
        var all: [Attempt] { attempts.withLock { $0 } }
    }

    /// One writer's load for a round: until its connection dies (the kill) or the bound.
    static func load(_ client: RPCClient, writer: Int, round: Int, ledger: Ledger) async {
        var hot: [String] = []  // this writer's acknowledged hot contacts, in order
        for n in 0..<maxWritesPerRound {
            let params: JSONValue
            let index: Int
            if n % 3 == 2, let email = hot.first {
                hot.removeFirst()
                index = ledger.begin(email, makesHot: false)
                params = ["contacts": [["email": .string(email), "remove_labels": ["hot"]]]]
            } else {
                let email = "r\(round)w\(writer)n\(n)@example.com"
                index = ledger.begin(email, makesHot: true)
                params = ["contacts": [["email": .string(email), "labels": ["hot", "load"]]]]
                hot.append(email)
            }
            do {
                let reply = try await client.call("contacts.upsert", params)
                guard reply["failed"] == [] else {
                    Issue.record("write refused: \(reply.serialized())")
                    return
                }
                ledger.acknowledge(index)
            } catch {
                if case let last? = hot.last, params["contacts"]?[0]?["email"]?.stringValue == last { hot.removeLast() }
                return  // the server is gone
            }
        }
    }

    /// Events a subscriber received, across rounds.
    final class Received: Sendable {
        private let events = Mutex<[JSONValue]>([])
        func add(_ e: JSONValue) { events.withLock { $0.append(e) } }
        var all: [JSONValue] { events.withLock { $0 } }
        var lastCursor: Int64 { events.withLock { $0.last?["cursor"]?.intValue ?? 0 } }
    }

    static func withoutID(_ e: JSONValue) -> JSONValue {
        guard case .object(var o) = e else { return e }
        o.removeValue(forKey: "id")
        return .object(o)
    }

    static func readLog(_ client: RPCClient) async throws -> [JSONValue] {
        var events: [JSONValue] = []
        var cursor: Int64 = 0
        for _ in 0..<100_000 {
            let page = try await client.call("events.read", ["after": .int(cursor), "limit": 10_000])
            let items = page["events"]?.arrayValue ?? []
            if items.isEmpty { break }
            events += items
            cursor = page["next"]?.intValue ?? cursor
        }
        return events
    }

    static func integrityCheck(_ database: String) async throws -> String {
        let script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('PRAGMA integrity_check').fetchone()[0]); c.close()"
        let result = try await runProcess("/usr/bin/env", ["python3", "-c", script, database], timeout: 30)
        #expect(result.status == 0, "python3: \(result.err)")
        return result.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Everything that must hold after a restart.
    static func verify(_ client: RPCClient, ledger: Ledger, received: Received, label: String) async throws {
        let log = try await readLog(client)
        let cursors = log.compactMap { $0["cursor"]?.intValue }
        #expect(cursors == Array(stride(from: Int64(1), through: Int64(log.count), by: 1)), "\(label): cursors must be 1...\(log.count) without gap or duplicate")
        var byEmail: [String: (enters: Int, exits: Int)] = [:]
        for e in log {
            let email = e["email"]?.stringValue ?? ""
            if e["type"] == "enter" { byEmail[email, default: (0, 0)].enters += 1 } else { byEmail[email, default: (0, 0)].exits += 1 }
        }

        // Everything the subscriber saw before a kill survived it, identically.
        let seen = received.all.map(withoutID)
        #expect(seen.count <= log.count)
        for (i, event) in seen.enumerated() where i >= log.count || log[i] != event {
            Issue.record("\(label): subscriber saw \(event.serialized()) but the log has \(i < log.count ? log[i].serialized() : "nothing") at \(i + 1)")
            break
        }

        let attempts = ledger.all
        let emails = Set(attempts.map(\.email))
        var missing: [String] = []
        for email in emails.sorted() {
            let contact: JSONValue?
            do {
                contact = try await client.call("contacts.get", ["email": .string(email)])
            } catch let error as RPCError where error.code == -32001 {
                contact = nil
            }
            let isHot = contact?["labels"]?.arrayValue?.contains("hot") ?? false
            let counts = byEmail[email] ?? (0, 0)
            // Atomicity: a write is there with its event, or neither is.
            if counts.enters - counts.exits != (isHot ? 1 : 0) || counts.exits > counts.enters || counts.enters > 1 {
                Issue.record("\(label): \(email) is \(contact == nil ? "absent" : isHot ? "hot" : "cooled") with \(counts.enters) enter(s) and \(counts.exits) exit(s)")
            }
            for attempt in attempts where attempt.email == email && attempt.acknowledged {
                if contact == nil { missing.append(email) }
                if attempt.makesHot && counts.enters != 1 { Issue.record("\(label): acknowledged \(email) has no enter event") }
                if !attempt.makesHot && (counts.exits != 1 || isHot) { Issue.record("\(label): acknowledged cooling of \(email) is lost") }
            }
        }
        #expect(missing.isEmpty, "\(label): acknowledged writes lost: \(missing.prefix(5))")
    }

    @Test func sigkillDuringAWriteLoadLosesNoAcknowledgedWriteOrEvent() async throws {
        let started = Date()
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let child = Child(directory: directory)
        let ledger = Ledger()
        let received = Received()

        var setup = try await child.start()
        let segment = try await setup.call("segments.create", ["name": "Hot leads", "filters": [["dimension": "label", "op": "contains", "value": "hot"]]])
        _ = try await setup.call("triggers.create", ["segment": segment["id"]!, "on": ["enter", "exit"]])

        var delays: [Int] = []
        for round in 0..<Self.kills {
            // A subscriber resumes after the last cursor it saw, and listens through the kill.
            let subscriber = try await RPCClient.connect(unixPath: child.socket)
            let resumeAfter = received.lastCursor
            let subscription = Task {
                try await subscriber.call("events.subscribe", ["after": .int(resumeAfter)]) { _, params in received.add(params) }
            }
            var clients: [RPCClient] = []
            for _ in 0..<Self.writers { clients.append(try await RPCClient.connect(unixPath: child.socket)) }
            let writing = clients
            let load = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (w, client) in writing.enumerated() {
                        group.addTask { await Self.load(client, writer: w, round: round, ledger: ledger) }
                    }
                }
            }
            let delay = Int.random(in: 50...400)
            delays.append(delay)
            try await Task.sleep(for: .milliseconds(delay))
            try await child.stop(signal: SIGKILL)
            _ = try await Self.within(seconds: 30) { await load.value }
            _ = await subscription.result
            for client in clients + [subscriber, setup] { try? await client.close() }

            let integrity = try await Self.integrityCheck(child.database)
            #expect(integrity == "ok", "round \(round): integrity_check says \(integrity)")

            setup = try await child.start()
            #expect(try await setup.call("triggers.list")["triggers"]?.arrayValue?.count == 1)
            try await Self.verify(setup, ledger: ledger, received: received, label: "after kill \(round + 1)")
        }

        // Finally the subscriber resumes once more and gets the rest, exactly once each.
        let log = try await Self.readLog(setup)
        let resumeAfter = received.lastCursor
        let subscriber = try await RPCClient.connect(unixPath: child.socket)
        let subscription = Task {
            try await subscriber.call("events.subscribe", ["after": .int(resumeAfter)]) { _, params in received.add(params) }
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while received.all.count < log.count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        subscription.cancel()
        _ = await subscription.result
        let cursors = received.all.compactMap { $0["cursor"]?.intValue }
        #expect(cursors == Array(stride(from: Int64(1), through: Int64(log.count), by: 1)),
                "across \(Self.kills) kills the resuming subscriber must see every event exactly once (\(cursors.count) seen, \(log.count) logged)")
        #expect(received.all.map(Self.withoutID) == log)
        try? await subscriber.close()
        try? await setup.close()

        try await child.stop(signal: SIGTERM)
        #expect(try await Self.integrityCheck(child.database) == "ok")
        let attempts = ledger.all
        let acknowledged = attempts.filter(\.acknowledged).count
        #expect(acknowledged > 0, "the load never got a write acknowledged")
        print("crash safety: \(Self.kills) kills after \(delays) ms; \(attempts.count) writes attempted, \(acknowledged) acknowledged, \(log.count) events; \(Int(Date().timeIntervalSince(started))) s")
    }

    /// Runs `body`, failing with a timeout error if it takes longer than `seconds`.
    static func within<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .seconds(seconds))
                throw CrashTestError("timed out after \(seconds) s")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}
