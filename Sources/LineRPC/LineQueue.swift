import Synchronization

/// A bounded single-consumer queue of lines with backpressure: the producer waits while it is
/// full, the consumer waits while it is empty. Used by ``RPCClient``'s raw mode.
final class LineQueue: Sendable {
    private struct State {
        var lines: [String] = []
        var head = 0
        var finished = false
        var consumer: CheckedContinuation<String?, any Error>?
        var producer: CheckedContinuation<Void, Never>?
        var count: Int { lines.count - head }
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Appends a line, waiting while the queue is full; dropped once finished.
    func push(_ line: String) async {
        while true {
            enum Action { case done, resume(CheckedContinuation<String?, any Error>), wait }
            let action = state.withLock { state -> Action in
                if state.finished { return .done }
                if let consumer = state.consumer {
                    state.consumer = nil
                    return .resume(consumer)
                }
                if state.count < capacity {
                    state.lines.append(line)
                    return .done
                }
                return .wait
            }
            switch action {
            case .done: return
            case .resume(let consumer):
                consumer.resume(returning: line)
                return
            case .wait:
                await withCheckedContinuation { continuation in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.finished || state.count < capacity { return true }
                        state.producer = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    /// Appends a line without waiting; drops it if the queue is full or finished.
    func offer(_ line: String) {
        let consumer = state.withLock { state -> CheckedContinuation<String?, any Error>? in
            if state.finished { return nil }
            if let consumer = state.consumer {
                state.consumer = nil
                return consumer
            }
            if state.count < capacity { state.lines.append(line) }
            return nil
        }
        consumer?.resume(returning: line)
    }

    /// The next line, `nil` once finished and empty; throws `CancellationError` if cancelled.
    func pop() async throws -> String? {
        enum Outcome { case line(String?), cancelled, wait }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                var producer: CheckedContinuation<Void, Never>?
                let outcome = state.withLock { state -> Outcome in
                    if state.count > 0 {
                        let line = state.lines[state.head]
                        state.head += 1
                        if state.head > 64, state.head * 2 > state.lines.count {
                            state.lines.removeFirst(state.head)
                            state.head = 0
                        }
                        producer = state.producer
                        state.producer = nil
                        return .line(line)
                    }
                    if state.finished { return .line(nil) }
                    if Task.isCancelled { return .cancelled }
                    state.consumer = continuation
                    return .wait
                }
                producer?.resume()
                switch outcome {
                case .line(let line): continuation.resume(returning: line)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            state.withLock { state -> CheckedContinuation<String?, any Error>? in
                defer { state.consumer = nil }
                return state.consumer
            }?.resume(throwing: CancellationError())
        }
    }

    /// Ends the queue: the waiting consumer gets `nil` after the buffered lines.
    func finish() {
        let (consumer, producer) = state.withLock { state in
            state.finished = true
            defer {
                state.consumer = nil
                state.producer = nil
            }
            return (state.count == 0 ? state.consumer : nil, state.producer)
        }
        consumer?.resume(returning: nil)
        producer?.resume()
    }
}
