import Foundation
import LineRPC
import Logging
import SegmentCore
import SegmentdApp
import SegmentEngine
import Synchronization
import WireJSON

/// A real segmentd on a Unix socket in a fresh temporary directory, with a hand-moved clock.
final class TestServer: Sendable {
    static let epoch = ISOTime().parseInstant("2026-01-15T12:00:00Z")!

    let directory: String
    let app: SegmentdApplication
    let clock: ManualTime
    let running: Task<Void, any Error>

    var socketPath: String { directory + "/segmentd.sock" }
    /// The default book's export folder (`exports/default/`).
    var exportDirectory: String { app.exportDirectory + "/default" }
    /// The default book's database.
    var databasePath: String { app.catalog.layout.databasePath(of: "default") }

    static func start(logger: Logger? = nil, configure: (inout AppConfiguration) -> Void = { _ in }) async throws -> TestServer {
        let directory = try makeTemporaryDirectory()
        let clock = ManualTime(epoch)
        var config = AppConfiguration()
        config.dataDirectory = directory + "/data"
        config.socketPath = directory + "/segmentd.sock"
        config.exportDirectory = directory + "/exports"
        config.clock = clock
        configure(&config)
        let app: SegmentdApplication
        do {
            app = try logger.map { try SegmentdApplication.build(config, logger: $0) } ?? SegmentdApplication.build(config)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        do {
            try await app.server.start()
        } catch {
            try? app.engine.close()
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        let running = Task { try await app.run() }
        return TestServer(directory: directory, app: app, clock: clock, running: running)
    }

    private init(directory: String, app: SegmentdApplication, clock: ManualTime, running: Task<Void, any Error>) {
        self.directory = directory
        self.app = app
        self.clock = clock
        self.running = running
    }

    func client() async throws -> RPCClient { try await RPCClient.connect(unixPath: socketPath) }

    /// Graceful stop: drains, removes the socket, closes the store.
    func stop() async throws {
        app.server.shutdown()
        try await running.value
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func makeTemporaryDirectory() throws -> String {
        // Short paths: a Unix socket path is limited to 107 bytes.
        let path = "/tmp/segd-" + String(UInt64.random(in: 0..<UInt64.max), radix: 36)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// Where the package lives, for tests that read README.md and proto-docs/.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The directory of the built products (the `segmentd` executable sits beside the test bundle).
func productsDirectory() -> URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("segmentd").path) {
        url.deleteLastPathComponent()
    }
    return url
}

/// Runs a process to completion with a deadline; returns exit status, stdout and stderr.
func runProcess(_ executable: String, _ arguments: [String], cwd: String? = nil, environment: [String: String]? = nil,
                timeout: TimeInterval = 60) async throws -> (status: Int32, out: String, err: String) {
    // Files, not pipes: a chatty child can never block on a full pipe.
    let base = NSTemporaryDirectory() + "segd-proc-" + UUID().uuidString
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    let process = ChildProcess(executable, arguments, directory: cwd, environment: environment,
                               standardOutput: .file(base + ".out"), standardError: .file(base + ".err"))
    try process.start()
    let deadline = Date().addingTimeInterval(timeout)
    // Polls with Task.sleep: blocking a thread of the small cooperative pool could starve the
    // in-process server the child is talking to.
    while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    // A child that hangs: where each of its threads waits, for the test's message.
    let hung = process.isRunning ? threadStacks(of: process.processIdentifier) : ""
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    let status = process.terminationStatus ?? -1
    let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return (status, out, hung.isEmpty ? err : err + "\n(timed out after \(Int(timeout)) s; its threads:)\n" + hung)
}

/// Where each thread of process `pid` waits, by the kernel's wait channel (gdb could say
/// more, but attaching it to a debug build can take minutes: a diagnostic must not hang).
func threadStacks(of pid: pid_t) -> String {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.map { tid in "\(tid): " + ((try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/wchan", encoding: .utf8)) ?? "?") }.joined(separator: "\n")
}
