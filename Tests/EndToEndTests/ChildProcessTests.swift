import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TestThreads
import Testing

/// The launcher every end-to-end test uses for real binaries (see ChildProcess.swift for why it
/// is not Foundation's `Process`).
@Suite(.ownThreads) struct ChildProcessTests {
    /// With 1,500 extra descriptors open in the test process — what the load suites hold when
    /// CI crashed inside `Process.run()` — a child still starts, inherits none of them, and
    /// reports its exit code.
    @Test func startsWithManyDescriptorsOpenAndInheritsNone() async throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let extra = min(1_500, Int(limit.rlim_cur) - 200)
        try #require(extra > 100, "descriptor limit too low to test: \(limit.rlim_cur)")
        let opened = (0..<extra).map { _ in open("/dev/null", O_RDONLY) }
        defer { for fd in opened where fd >= 0 { close(fd) } }
        #expect(opened.allSatisfy { $0 >= 0 })

        let run = try await runProcess("/bin/sh", ["-c", "ls /proc/self/fd; exit 7"])
        #expect(run.status == 7)
        // ls itself holds one descriptor for the directory it lists.
        let inherited = run.out.split(separator: "\n").compactMap { Int($0) }.filter { $0 > 3 }
        #expect(inherited.isEmpty, "child inherited descriptors \(inherited.prefix(10))")
    }

    /// Directory, environment and a signal exit are what the callers rely on.
    @Test func honoursDirectoryEnvironmentAndReportsSignals() async throws {
        let run = try await runProcess("/bin/sh", ["-c", "pwd; echo $SEGD_PROBE"], cwd: "/tmp", environment: ["SEGD_PROBE": "x1"])
        #expect(run.out == "/tmp\nx1\n")
        let child = ChildProcess("/bin/sleep", ["30"])
        try child.start()
        #expect(child.isRunning)
        child.terminate()
        child.waitUntilExit()
        #expect(child.terminationStatus == 128 + SIGTERM)
    }
}
