import Foundation
import LineRPC
import SegmentdApp
import SegmentEngine
import Testing
import TestThreads
import WireJSON

/// One server per database: a second `segmentd serve` on a file another one serves would keep
/// a book the first never sees, and their subscribers and triggers would disagree.
@Suite(.serialized, .ownThreads) struct DatabaseLockTests {
    @Test func aSecondServerOnTheSameDatabaseIsRefusedNamingTheFirstAndAKilledOneLeavesNoStaleLock() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = CrashSafetyTests.Child(directory: directory)
        let client = try await first.start()
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "ana@example.com"]]])
        let pid = try #require(first.process?.processIdentifier)

        // Same database, another socket: refused at start, naming the holder, touching nothing.
        let second = try await runProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["serve", "--data-dir", directory + "/data2", "--db", first.database, "--socket", directory + "/b.sock"], cwd: directory, timeout: 120)
        #expect(second.status != 0)
        #expect(second.err.contains("is in use by another process (pid \(pid))"), "stderr: \(second.err)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/b.sock"))
        // The first server is unaffected.
        #expect(try await client.call("contacts.count")["total"] == 1)
        try? await client.close()

        // SIGKILL leaves the lock file behind, but not the lock: a restart takes it at once.
        try await first.stop(signal: SIGKILL)
        #expect(FileManager.default.fileExists(atPath: first.database + ".lock"))
        let restarted = CrashSafetyTests.Child(directory: directory, socketName: "b.sock")
        let again = try await restarted.start()
        #expect(try await again.call("contacts.count")["total"] == 1)
        try? await again.close()
        try await restarted.stop(signal: SIGTERM)
    }

    /// The lock is per open, not per process: a second engine in the same process is refused
    /// too, and a closed one releases it.
    @Test func twoEnginesInOneProcessCannotShareAFile() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = AppConfiguration()
        config.dataDirectory = directory + "/data"
        config.socketPath = directory + "/one.sock"
        let app = try SegmentdApplication.build(config)
        config.socketPath = directory + "/two.sock"
        let refused = #expect(throws: (any Error).self) { _ = try SegmentdApplication.build(config) }
        #expect("\(refused.map { "\($0)" } ?? "")".contains("(pid \(getpid()))"))
        try await app.catalog.close()
        let reopened = try SegmentdApplication.build(config)
        try await reopened.catalog.close()
    }
}
