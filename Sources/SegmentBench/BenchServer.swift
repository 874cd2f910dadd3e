import Foundation
import LineRPC

/// segmentd as a child process, so start-up time and resident memory are its own.
final class BenchServer {
    let process = Process()
    let socket: String

    init(binary: String, directory: String, frozenClock: String) throws {
        socket = directory + "/segmentd.sock"
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "serve", "--data-dir", directory + "/data", "--db", directory + "/segmentd.sqlite", "--socket", socket, "--export-dir", directory + "/exports",
            "--frozen-clock", frozenClock, "--log-level", "error",
        ]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        try process.run()
    }

    /// Waits until the server answers `probe` (rpc.ping, or a call of the default book such
    /// as contacts.count); returns the seconds it took since `since`.
    func waitUntilReady(since start: ContinuousClock.Instant, probe: String = "rpc.ping", timeout: Double = 600) async throws -> Double {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            // A server that could not start (a socket path too long, a port in use) has said
            // why on stderr; waiting out the timeout would only hide it.
            guard process.isRunning else {
                throw BenchError("the server exited with status \(process.terminationStatus) before it answered \(probe)")
            }
            if let client = try? await RPCClient.connect(unixPath: socket) {
                if (try? await client.call(probe)) != nil {
                    try? await client.close()
                    return (ContinuousClock.now - start) / .seconds(1)
                }
                try? await client.close()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError("the server did not start within \(Int(timeout)) s")
    }

    /// VmRSS of the child, in bytes.
    var residentBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// A bench that fails midway must not leave its server running (holding the database).
    deinit { stop() }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
