import Foundation
import LineRPC
import Synchronization
import TestThreads
import Testing

/// The executor the server runs connections and handlers on (and the tests run on).
@Suite(.ownThreads) struct WorkerThreadsTests {
    /// Work that prefers it runs on its named threads, child tasks included, and thousands of
    /// short tasks that suspend and resume all finish (no wake-up is lost).
    @Test func runsEveryJobOnItsOwnThreads() async throws {
        let executor = WorkerThreads(name: "wt-test", count: 3)
        defer { executor.shutdown() }
        let names = ThreadNames()
        let total = try await withTaskExecutorPreference(executor) {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<2_000 {
                    group.addTask {
                        names.add()
                        try await Task.sleep(for: .microseconds(50))  // suspends and resumes here
                        names.add()
                        return i
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(total == (0..<2_000).reduce(0, +))
        #expect(names.all.allSatisfy { $0.hasPrefix("wt-test-") }, "\(names.all)")
    }

    /// A task still preferring the executor after shutdown is not stranded: its jobs run on
    /// the global executor instead.
    @Test func tasksOutlivingShutdownStillFinish() async throws {
        let executor = WorkerThreads(name: "wt-late", count: 1)
        let started = AsyncStream<Void>.makeStream()
        let proceed = AsyncStream<Void>.makeStream()
        let task = Task(executorPreference: executor) {
            started.continuation.yield()
            for await _ in proceed.stream { break }  // resumes only after the shutdown below
            return threadName()
        }
        for await _ in started.stream { break }
        executor.shutdown()
        proceed.continuation.yield()
        let name = try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { await task.value }
            group.addTask {
                try await Task.sleep(for: .seconds(60))  // a hang guard only
                throw CancellationError()
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
        #expect(!name.hasPrefix("wt-late-"), "ran on \(name) after shutdown")
    }
}

/// The current thread's name (a synchronous call, so async code may make it).
private func threadName() -> String { Thread.current.name ?? "?" }

/// The names of the threads some tasks ran on.
private final class ThreadNames: Sendable {
    private let names = Mutex(Set<String>())
    func add() { _ = names.withLock { $0.insert(threadName()) } }
    var all: Set<String> { names.withLock { $0 } }
}
