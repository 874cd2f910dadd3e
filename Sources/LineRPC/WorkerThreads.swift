import Foundation
import Synchronization

/// A task executor with threads of its own, so work that prefers it never waits for Swift's
/// shared cooperative pool, and never holds that pool's threads either.
///
/// The cooperative pool has one thread per core (two on a small machine). A handler that
/// computes for a second there — a big resolve, a gzip export — leaves every other task in the
/// process waiting that long, including the loops that answer `rpc.ping` on other
/// connections. ``RPCServer`` runs its connections on one `WorkerThreads` and method handlers
/// on another, so a busy handler costs other clients a share of the CPU (the kernel
/// time-slices threads) instead of a place in a queue.
///
/// ```swift
/// let executor = WorkerThreads(name: "engine", count: 4)
/// let rows = await withTaskExecutorPreference(executor) { await heavyWork() }
/// executor.shutdown()
/// ```
///
/// Jobs run in the order they arrive, on whichever thread is free. After ``shutdown()`` the
/// threads finish what was queued and exit; a job that still arrives (a task resuming late)
/// runs on Swift's global executor, so no task is ever stranded.
public final class WorkerThreads: TaskExecutor, Sendable {
    /// The jobs and the wake-up the threads sleep on.
    private final class Queue: Sendable {
        struct Jobs {
            var items: [UnownedJob] = []
            var head = 0
            var stopping = false
        }

        let jobs = Mutex(Jobs())
        let wake = DispatchSemaphore(value: 0)

        /// Appends `job` unless stopping; returns whether it was taken.
        func push(_ job: UnownedJob) -> Bool {
            let taken = jobs.withLock { jobs -> Bool in
                guard !jobs.stopping else { return false }
                jobs.items.append(job)
                return true
            }
            if taken { wake.signal() }
            return taken
        }

        /// The next job, or `nil` once stopping with nothing left.
        func pop() -> UnownedJob? {
            while true {
                wake.wait()
                let next = jobs.withLock { jobs -> (UnownedJob?, Bool) in
                    guard jobs.head < jobs.items.count else { return (nil, jobs.stopping) }
                    let job = jobs.items[jobs.head]
                    jobs.head += 1
                    if jobs.head == jobs.items.count {
                        jobs.items.removeAll(keepingCapacity: jobs.items.count <= 4_096)
                        jobs.head = 0
                    } else if jobs.head >= 4_096, jobs.head * 2 >= jobs.items.count {
                        jobs.items.removeFirst(jobs.head)
                        jobs.head = 0
                    }
                    return (job, false)
                }
                if let job = next.0 { return job }
                if next.1 { return nil }
            }
        }

        /// Stops taking jobs and wakes every thread so each can see it once the queue is empty.
        func stop(threads: Int) {
            let first = jobs.withLock { jobs -> Bool in
                defer { jobs.stopping = true }
                return !jobs.stopping
            }
            guard first else { return }
            for _ in 0..<threads { wake.signal() }
        }
    }

    public let name: String
    /// How many threads run jobs.
    public let count: Int
    private let queue = Queue()

    /// Starts `count` threads (at least one), named `name-0`, `name-1`, …. They run until
    /// ``shutdown()``, and keep the executor alive until then. `niceness` (Linux: 1 to 19)
    /// sets their nice value, a lower scheduling priority: background work (loading books) then takes the
    /// CPU that requests leave.
    public init(name: String, count: Int, niceness: Int32 = 0) {
        self.name = name
        self.count = max(1, count)
        for index in 0..<self.count {
            let threadName = "\(name)-\(index)"
            let thread = Thread { [self] in
                // Named from inside: on Linux a name set before start() does not reach the
                // thread (it showed as libdispatch's "root.default-qos" in debuggers).
                Thread.current.name = threadName
                #if os(Linux)
                // On Linux a nice value belongs to the thread: "who" 0 is the calling thread.
                if niceness > 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness) }
                #endif
                let executor = self.asUnownedTaskExecutor()
                while let job = self.queue.pop() { job.runSynchronously(on: executor) }
            }
            thread.start()
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        guard queue.push(job) else {
            // Shut down: run it where the runtime would have without a preference.
            DispatchQueue.global().async { job.runSynchronously(on: globalConcurrentExecutor.asUnownedTaskExecutor()) }
            return
        }
    }

    /// Stops the threads once the jobs already queued have run; later jobs run on the global
    /// executor. Idempotent.
    public func shutdown() { queue.stop(threads: count) }
}

extension WorkerThreads {
    /// Threads for blocking work that may take seconds (file exports, backups). Such work on a
    /// handler thread would hold it, and a few at once would hold them all: every other method
    /// would wait for them. Here they wait only for each other.
    public static let blocking = WorkerThreads(name: "blocking", count: 4)

    /// Runs `body` on one of these threads and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withTaskExecutorPreference(self) { try body() }
    }
}
