import Foundation
import TestThreads
import Testing

/// The client libraries in clients/: each runs its own test suite against the segmentd just
/// built (SEGMENTD_BIN). Each suite starts and kills servers itself: a subscription that
/// resumes across SIGKILL and restart with every event once, in order; error replies that
/// surface as errors, never hangs; gzip streams; TCP with a token; books; cancellation.
@Suite(.ownThreads, .serialized) struct ClientLibraryTests {
    static let clients = packageRoot.appendingPathComponent("clients")

    static func environment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["SEGMENTD_BIN"] = productsDirectory().appendingPathComponent("segmentd").path
        return environment
    }

    /// Go offline, with a build cache that outlives the run (the first build is the slow part).
    static func goEnvironment() -> [String: String] {
        var environment = environment()
        environment["GOPROXY"] = "off"
        environment["GOFLAGS"] = "-mod=mod"
        environment["GOCACHE"] = environment["GOCACHE"] ?? NSTemporaryDirectory() + "segmentd-go-cache"
        environment["GOPATH"] = environment["GOPATH"] ?? NSTemporaryDirectory() + "segmentd-go-path"
        return environment
    }

    static func check(_ run: (status: Int32, out: String, err: String), _ language: String) {
        // The lines that say what failed first: the output's tail alone can be all server log
        // (a Go failure in CI was lost that way).
        let markers = ["_test.go:", "--- FAIL", "FAIL:", "ERROR:", "Error:", "not ok", "Traceback", "AssertionError"]
        let failing = (run.out + "\n" + run.err).split(separator: "\n").filter { line in markers.contains { line.contains($0) } }
        #expect(run.status == 0, """
            \(language) client tests failed:
            \(failing.prefix(40).joined(separator: "\n"))
            … the output's end:
            \(run.out.suffix(6_000))
            \(run.err.suffix(6_000))
            """)
        // The reliability figures the README reports, as each suite printed them.
        for line in (run.out + run.err).split(separator: "\n") where line.contains("RELIABILITY") {
            print("\(language): \(line)")
        }
    }

    @Test func python() async throws {
        let directory = Self.clients.appendingPathComponent("python").path
        let run = try await runProcess("/usr/bin/env", ["python3", "-m", "unittest", "discover", "-s", "tests", "-v"],
                                       cwd: directory, environment: Self.environment(), timeout: 300)
        Self.check(run, "Python")
    }

    @Test func node() async throws {
        let directory = Self.clients.appendingPathComponent("node").path
        let run = try await runProcess("/usr/bin/env", ["node", "--test", "test/"], cwd: directory, environment: Self.environment(), timeout: 300)
        Self.check(run, "Node")
    }

    @Test func go() async throws {
        let directory = Self.clients.appendingPathComponent("go").path
        let run = try await runProcess("/usr/bin/env", ["go", "test", "-count=1", "-v", "./..."], cwd: directory, environment: Self.goEnvironment(), timeout: 600)
        Self.check(run, "Go")
    }
}
