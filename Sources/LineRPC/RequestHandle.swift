import Synchronization

/// A cancellable in-flight request: lets `rpc.cancel`, a disconnect or a shutdown cancel the
/// task that runs the handler, even before that task exists.
final class RequestHandle: Sendable {
    private struct State {
        var cancel: (@Sendable () -> Void)?
        var cancelled = false
    }

    private let state = Mutex(State())
    /// Cancelled when a graceful shutdown starts (``RPCMethod/endsOnShutdown``).
    let endsOnShutdown: Bool

    init(endsOnShutdown: Bool = false) { self.endsOnShutdown = endsOnShutdown }

    /// Whether cancellation was requested (the request then replies `-32800` unless it
    /// produced a result).
    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Connects the running task; cancels it at once if cancellation came first.
    func attach(_ cancel: @escaping @Sendable () -> Void) {
        let cancelNow = state.withLock { state -> Bool in
            state.cancel = cancel
            return state.cancelled
        }
        if cancelNow { cancel() }
    }

    func cancel() {
        let cancel = state.withLock { state -> (@Sendable () -> Void)? in
            state.cancelled = true
            return state.cancel
        }
        cancel?()
    }
}
