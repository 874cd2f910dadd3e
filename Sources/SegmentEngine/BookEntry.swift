import SegmentCore
import Synchronization

/// One book's place in the catalog: its load state, and the requests holding it.
final class BookEntry: Sendable {
    enum Phase {
        case pending
        case loading
        case ready(Engine)
        case failed(SegmentError)
    }

    private struct State {
        var phase = Phase.pending
        var dropping = false
        var leases = 0
        /// Moves with every change, so a waiter that read the state before a change sees it.
        var generation = 0
        /// Woken on any change of phase, dropping or leases.
        var waiters = ParkedWaiters()
    }

    let name: String
    let path: String
    private let state = Mutex(State())

    init(name: String, path: String) {
        self.name = name
        self.path = path
    }

    var readyEngine: Engine? {
        state.withLock { state in
            guard !state.dropping, case .ready(let engine) = state.phase else { return nil }
            return engine
        }
    }

    var isSettled: Bool {
        state.withLock { state in
            switch state.phase {
            case .ready, .failed: return true
            case .pending, .loading: return false
            }
        }
    }

    var isLoading: Bool { state.withLock { if case .loading = $0.phase { true } else { false } } }
    var isDropping: Bool { state.withLock { $0.dropping } }

    var status: BookCatalog.Status {
        state.withLock { state in
            switch state.phase {
            case .pending, .loading: return .init(name: name, state: "loading", engine: nil, error: nil, path: path)
            case .ready(let engine): return .init(name: name, state: "ready", engine: engine, error: nil, path: path)
            case .failed(let error): return .init(name: name, state: "failed", engine: nil, error: error.message, path: path)
            }
        }
    }

    /// Moves pending to loading; false if a load already started or ended.
    func claimLoad() -> Bool {
        state.withLock { state in
            guard case .pending = state.phase else { return false }
            state.phase = .loading
            return true
        }
    }

    func finishLoading(_ outcome: Result<Engine, any Error>) {
        change { state in
            switch outcome {
            case .success(let engine): state.phase = .ready(engine)
            case .failure(let error as SegmentError): state.phase = .failed(error)
            case .failure(let error): state.phase = .failed(SegmentError(.internal, "\(error)"))
            }
        }
    }

    /// The engine once loaded; throws if the load failed or is still going after `limit`.
    func waitReady(for limit: Duration) async throws(SegmentError) -> Engine {
        let deadline = ContinuousClock.now + limit
        while true {
            let (phase, dropping, seen) = state.withLock { ($0.phase, $0.dropping, $0.generation) }
            if dropping { throw BookCatalog.noSuchBook(name) }
            switch phase {
            case .ready(let engine): return engine
            case .failed(let error):
                // Another process holding the database stays a conflict (a drop must not
                // delete its files); anything else is the server's trouble.
                throw SegmentError(error.kind == .conflict ? .conflict : .internal, "book \"\(name)\" failed to load: \(error.message)")
            case .pending, .loading:
                guard ContinuousClock.now < deadline, !Task.isCancelled else {
                    throw SegmentError(.unavailable, "book \"\(name)\" is still loading; try again shortly")
                }
                await waitForChange(after: seen, until: deadline)
            }
        }
    }

    /// Takes a lease on the loaded book and returns its engine; nil once a drop has begun.
    func acquire() -> Engine? {
        state.withLock { state in
            guard !state.dropping, case .ready(let engine) = state.phase else { return nil }
            state.leases += 1
            return engine
        }
    }

    func release() { change { $0.leases -= 1 } }

    /// Marks the book as being dropped (new requests no longer reach it); false if it already was.
    func beginDrop() -> Bool {
        var began = false
        change { state in
            began = !state.dropping
            state.dropping = true
        }
        return began
    }

    func cancelDrop() { change { $0.dropping = false } }

    func waitDropping() async {
        while !Task.isCancelled {
            let (dropping, seen) = state.withLock { ($0.dropping, $0.generation) }
            if dropping { return }
            await waitForChange(after: seen, until: nil)
        }
    }

    enum Release {
        case released
        case timedOut(holders: Int)
        case cancelled
    }

    func waitForNoLeases(within limit: Duration) async -> Release {
        let deadline = ContinuousClock.now + limit
        while true {
            let (leases, seen) = state.withLock { ($0.leases, $0.generation) }
            if leases == 0 { return .released }
            if Task.isCancelled { return .cancelled }
            guard ContinuousClock.now < deadline else { return .timedOut(holders: leases) }
            await waitForChange(after: seen, until: deadline)
        }
    }

    private func change(_ body: (inout State) -> Void) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            body(&state)
            state.generation += 1
            return state.waiters.takeAll()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the state moved past generation `seen`, at `deadline`, or when the task
    /// is cancelled.
    private func waitForChange(after seen: Int, until deadline: ContinuousClock.Instant?) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.parkedWait(for: seen) }
            if let deadline {
                group.addTask { try? await Task.sleep(until: deadline) }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

extension BookEntry: ParkingLot {
    func waiterID() -> Int { state.withLock { $0.waiters.newID() } }

    /// Waits for the state to move past generation `condition`.
    func park(_ id: Int, _ continuation: CheckedContinuation<Void, Never>, unlessMet seen: Int) -> Bool {
        state.withLock { state in
            guard !Task.isCancelled, state.generation == seen else { return false }
            state.waiters.park(id, continuation)
            return true
        }
    }

    func unpark(_ id: Int) -> CheckedContinuation<Void, Never>? { state.withLock { $0.waiters.unpark(id) } }
}
