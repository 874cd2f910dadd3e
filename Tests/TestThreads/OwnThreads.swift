import LineRPC
import Testing

/// Runs a suite's tests on threads of their own instead of Swift's cooperative pool.
///
/// Swift Testing runs every test of the process in parallel as tasks on the cooperative pool,
/// which has one thread per core: two on CI's machine. A test that computes synchronously for
/// seconds (the oracle's brute force, a big book built in-process, the fuzzer's generator)
/// holds one of those two threads all that time, and every other test's awaits — a client
/// waiting for a reply, a server's connection loop — wait for it. That is how tests that pass
/// alone in a second timed out together. With this trait a test's body and its child tasks
/// run on ``TestThreads/shared``, where the kernel time-slices busy tests instead of queueing
/// everything behind them.
///
/// ```swift
/// @Suite(.ownThreads) struct OracleTests { … }
/// ```
public struct OwnThreadsTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await withTaskExecutorPreference(TestThreads.shared) { try await function() }
    }
}

extension Trait where Self == OwnThreadsTrait {
    /// Run on ``TestThreads/shared`` (see ``OwnThreadsTrait``).
    public static var ownThreads: Self { OwnThreadsTrait() }
}

public enum TestThreads {
    /// Far more threads than cores on purpose: a busy test (or one blocked in a read or a
    /// `waitpid`) should cost the others a share of the CPU, not a place in a queue.
    public static let shared = WorkerThreads(name: "tests", count: 64)
}
