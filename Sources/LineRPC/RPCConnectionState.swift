import Synchronization
import WireJSON

/// What one connection's reader and its request tasks share: in-flight requests (for limits,
/// `rpc.cancel` and draining), TCP authentication, and the last activity time (for idling).
final class RPCConnectionState: Sendable {
    /// The outcome of asking to start a request.
    enum Admission {
        case admitted(RequestHandle)
        case duplicateID
        case overloaded
    }

    private struct State {
        var byID: [JSONValue: RequestHandle] = [:]
        var anonymous: [ObjectIdentifier: RequestHandle] = [:]
        var inFlight = 0
        /// Replies whose request has released its slot and that are being written.
        var replying = 0
        var replyRoomWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var isIdle: Bool { inFlight == 0 && replying == 0 }
        var authenticated: Bool
        /// What the authenticator returned for this connection's token (TCP only).
        var credential: (any Sendable)?
        var failedHellos = 0
        var closeRequested = false
        var lastActivity = ContinuousClock.now
        var nextWaiter = 0
        var idleWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Shutdown has ended the requests that run until cancelled: one admitted now is
        /// cancelled at once.
        var draining = false

        var handles: [RequestHandle] { Array(byID.values) + Array(anonymous.values) }
    }

    let info: RPCConnectionInfo
    private let state: Mutex<State>
    /// Lines received by the event loop and handled by the connection's task.
    let frames: FrameActivity

    init(info: RPCConnectionInfo, authenticated: Bool, frames: FrameActivity = FrameActivity()) {
        self.info = info
        self.state = Mutex(State(authenticated: authenticated))
        self.frames = frames
    }

    // MARK: In-flight requests

    /// Takes an in-flight slot for a request (`id`) or a notification (`nil`).
    func admit(id: JSONValue?, limit: Int, endsOnShutdown: Bool = false) -> Admission {
        state.withLock { state in
            if let id, state.byID[id] != nil { return .duplicateID }
            guard state.inFlight < limit else { return .overloaded }
            let handle = RequestHandle(endsOnShutdown: endsOnShutdown)
            if endsOnShutdown, state.draining { handle.cancel() }
            if let id { state.byID[id] = handle } else { state.anonymous[ObjectIdentifier(handle)] = handle }
            state.inFlight += 1
            return .admitted(handle)
        }
    }

    /// Releases the slot taken by ``admit(id:limit:)``. With `replyPending`, a reply is about to
    /// be written: the slot is free before the client can read the reply (so a client that
    /// sends its next request as soon as it reads one never finds the slot still taken), and
    /// the connection counts as busy until ``replyWritten()``.
    func finish(id: JSONValue?, handle: RequestHandle, replyPending: Bool = false) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if let id { state.byID[id] = nil } else { state.anonymous[ObjectIdentifier(handle)] = nil }
            state.inFlight -= 1
            if replyPending { state.replying += 1 }
            state.lastActivity = .now
            return Self.takeIdleWaiters(&state)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A reply announced to ``finish(id:handle:replyPending:)`` is written (or failed).
    func replyWritten() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.replying -= 1
            state.lastActivity = .now
            let room = Array(state.replyRoomWaiters.values)
            state.replyRoomWaiters = [:]
            return room + Self.takeIdleWaiters(&state)
        }
        for waiter in waiters { waiter.resume() }
    }

    private static func takeIdleWaiters(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        guard state.isIdle else { return [] }
        defer { state.idleWaiters = [:] }
        return Array(state.idleWaiters.values)
    }

    /// Returns once fewer than `limit` replies are being written, or when cancelled: a client
    /// that does not read its replies is not read from either (its requests wait in its
    /// socket), so that replies cannot pile up in memory.
    func waitForReplyRoom(limit: Int) async {
        while true {
            let id = state.withLock { state -> Int? in
                guard state.replying >= limit else { return nil }
                state.nextWaiter += 1
                return state.nextWaiter
            }
            guard let id, !Task.isCancelled else { return }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.replying < limit || Task.isCancelled { return true }
                        state.replyRoomWaiters[id] = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                state.withLock { $0.replyRoomWaiters.removeValue(forKey: id) }?.resume()
            }
        }
    }

    /// Cancels the in-flight request `id`; returns whether there was one.
    func cancel(id: JSONValue) -> Bool {
        guard let handle = state.withLock({ $0.byID[id] }) else { return false }
        handle.cancel()
        return true
    }

    /// Shutdown begins: cancels the in-flight requests that run until cancelled, and any
    /// admitted from now on; returns how many were running.
    func beginDraining() -> Int {
        let handles = state.withLock { state in
            state.draining = true
            return state.handles.filter(\.endsOnShutdown)
        }
        for handle in handles { handle.cancel() }
        return handles.count
    }

    /// In-flight requests other than those that run until cancelled.
    var finiteInFlightCount: Int { state.withLock { $0.handles.count { !$0.endsOnShutdown } } }

    /// Cancels every in-flight request (drain timeout).
    func cancelAll() -> Int {
        let handles = state.withLock { $0.handles }
        for handle in handles { handle.cancel() }
        return handles.count
    }

    var inFlightCount: Int { state.withLock { $0.inFlight } }

    /// Returns when nothing is in flight (or the calling task is cancelled).
    func waitUntilIdle() async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.isIdle || Task.isCancelled { return true }
                    state.idleWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.idleWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    // MARK: Activity

    func touch() { state.withLock { $0.lastActivity = .now } }

    /// When the connection will have been idle for `timeout`, or `nil` while requests run or
    /// a received line waits to be handled (on a loaded machine a request can wait to be read
    /// longer than the timeout, and must not be dropped for it).
    func idleDeadline(timeout: Duration) -> ContinuousClock.Instant? {
        if frames.hasUnhandledFrames { return nil }
        return state.withLock { $0.isIdle ? $0.lastActivity + timeout : nil }
    }

    // MARK: Authentication and closing

    var isAuthenticated: Bool { state.withLock { $0.authenticated } }

    /// Who the connection authenticated as: what ``RPCServerConfiguration/authenticate``
    /// returned (nil on a Unix socket, and with a plain ``RPCServerConfiguration/token``).
    var credential: (any Sendable)? { state.withLock { $0.credential } }

    func authenticate(as credential: (any Sendable)?) {
        state.withLock {
            $0.authenticated = true
            $0.credential = credential
        }
    }

    /// Counts a failed `rpc.hello`; returns how many there were.
    func recordFailedHello() -> Int {
        state.withLock { state in
            state.failedHellos += 1
            return state.failedHellos
        }
    }

    /// Asks the reader to close the connection after the current line.
    func requestClose() { state.withLock { $0.closeRequested = true } }

    var isCloseRequested: Bool { state.withLock { $0.closeRequested } }
}
