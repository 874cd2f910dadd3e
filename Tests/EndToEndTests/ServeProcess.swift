import Foundation
import LineRPC
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A real `segmentd serve` on its embedded default (SQLite), in a temporary directory of its
/// own. For tests that measure the server's memory: in-process, the test process's resident
/// memory also holds whatever the suites running beside it allocate at the time.
final class ServeProcess: @unchecked Sendable {
    let directory: String
    let process: ChildProcess
    var socketPath: String { directory + "/s.sock" }
    var logPath: String { directory + "/server.log" }

    private init(directory: String, process: ChildProcess) {
        self.directory = directory
        self.process = process
    }

    deinit {
        if process.isRunning {
            process.send(SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts `segmentd serve` with `arguments` added to its data, socket and log settings,
    /// and waits (at most a minute: a hang guard) until it answers `rpc.ping`.
    static func start(_ arguments: [String] = []) async throws -> ServeProcess {
        let directory = try TestServer.makeTemporaryDirectory()
        let log = directory + "/server.log"
        let process = ChildProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["serve", "--data-dir", directory + "/data", "--socket", directory + "/s.sock", "--export-dir", directory + "/exports",
             "--log-level", "warning"] + arguments,
            directory: directory, standardOutput: .file(log), standardError: .file(log))
        let server = ServeProcess(directory: directory, process: process)
        try process.start()
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning, ContinuousClock.now < deadline {
            if let client = try? await RPCClient.connect(unixPath: server.socketPath) {
                defer { Task { try? await client.close() } }
                if (try? await client.call("rpc.ping")) != nil { return server }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ChildProcessError("segmentd serve did not come up (running: \(process.isRunning)); log:\n\(server.log.suffix(2_000))")
    }

    /// A client on `group` (the shared event loops when not given).
    func client(on group: (any EventLoopGroup)? = nil) async throws -> RPCClient {
        if let group { return try await RPCClient.connect(unixPath: socketPath, eventLoopGroup: group) }
        return try await RPCClient.connect(unixPath: socketPath)
    }

    /// The server's `VmRSS` and `VmHWM` (peak), in bytes.
    var memory: (rss: Int, peak: Int) { HostileInputTests.memory(of: process.processIdentifier) }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then waits for the exit (a minute at most: a hang guard, then SIGKILL);
    /// returns the exit status (0: a clean shutdown; 137: it had to be killed).
    @discardableResult
    func stop() async -> Int32? {
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.send(SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
