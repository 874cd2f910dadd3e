import Foundation
import SegmentCore
import SegmentdApp
import Testing
import TestThreads
import WireJSON

/// The README's walkthrough, run line by line with the real `segmentd` binary against a
/// fresh server whose socket is in the working directory (the embedded default).
@Suite(.ownThreads) struct WalkthroughTests {
    @Test func readmeWalkthroughRunsAndCountsTheExampleSegments() async throws {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let block = try #require(readme.components(separatedBy: "<!-- walkthrough -->").dropFirst().first)
        let script = try #require(block.components(separatedBy: "```sh\n").dropFirst().first?.components(separatedBy: "```").first)
        let commands = Self.commands(in: script).filter { $0.hasPrefix("segmentd call") }
        #expect(commands.count >= 12)

        let server = try await TestServer.start { config in config.clock = SystemTime() }
        let bin = productsDirectory().path
        var outputs: [String] = []
        for command in commands {
            let run = try await runProcess(
                "/bin/sh", ["-c", command], cwd: server.directory,
                environment: ["PATH": bin + ":/usr/bin:/bin"], timeout: 60)
            #expect(run.status == 0, "\(command.prefix(60))…: \(run.err)")
            outputs.append(run.out)
        }
        let counts = outputs.enumerated().filter { commands[$0.offset].hasPrefix("segmentd call segments.count") }
            .map { try? JSONParser.parse($0.element.trimmingCharacters(in: .whitespacesAndNewlines)) }
        // VIP customers: Ana, Citra (unsubscribed), Dewi.
        #expect(counts[0]?["matched"] == 3 && counts[0]?["sendable"] == 2 && counts[0]?["excluded"]?["unsubscribed"] == 1)
        // Jakarta-based active contacts: Ana and Dewi; then Dewi is suppressed.
        #expect(counts[1]?["sendable"] == 2)
        #expect(counts[2]?["sendable"] == 1)
        let list = try JSONParser.parse(outputs[commands.firstIndex(of: "segmentd call segments.list")!])
        #expect(list["segments"]?.arrayValue?.count == 5)
        // The Python lines after it print what their comment says.
        let python = try #require(block.components(separatedBy: "```python\n").dropFirst().first?.components(separatedBy: "```").first)
        try python.write(toFile: server.directory + "/count.py", atomically: true, encoding: .utf8)
        let run = try await runProcess(
            "/usr/bin/env", ["python3", "count.py"], cwd: server.directory,
            environment: ["PATH": "/usr/bin:/bin", "PYTHONPATH": packageRoot.appendingPathComponent("clients/python").path], timeout: 60)
        let promised = try #require(python.components(separatedBy: "# ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(run.status == 0 && run.out == promised + "\n", "\(run.out)\(run.err)")
        try await server.stop()
    }

    /// Joins continuation lines: a command runs until its quotes balance.
    static func commands(in script: String) -> [String] {
        var out: [String] = []
        var current = ""
        for line in script.split(separator: "\n", omittingEmptySubsequences: false) {
            current += current.isEmpty ? String(line) : "\n" + line
            if current.filter({ $0 == "'" }).count % 2 == 0 {
                if !current.trimmingCharacters(in: .whitespaces).isEmpty { out.append(current) }
                current = ""
            }
        }
        return out
    }
}

