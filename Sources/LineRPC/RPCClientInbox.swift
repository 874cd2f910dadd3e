import NIOCore
import Synchronization
import WireJSON

/// The client's side of the conversation: pending calls by id, their stream notifications,
/// and raw lines for transcript replays.
final class RPCClientInbox: Sendable {
    typealias NotificationHandler = @Sendable (String, JSONValue) async throws -> Void

    private struct Pending {
        var continuation: CheckedContinuation<JSONValue, any Error>?
        var outcome: Result<JSONValue, any Error>?
        var onNotification: NotificationHandler?
        var notificationError: (any Error)?
        /// The request line's length without its `\n`, and its params (for the nesting depth),
        /// to attribute id-null error replies; nil until the request is sent.
        var lineBytes: Int?
        var params: JSONValue?
    }

    private struct State {
        var lastID: Int64 = 0
        var pending: [Int64: Pending] = [:]
        var closedError: (any Error)?
        var rawMode = false
        /// An error reply with id null (parse error, "too many connections"): reported to
        /// calls that fail because the connection then closes.
        var unsolicitedError: RPCError?
    }

    private let state = Mutex(State())
    let rawLines = LineQueue(capacity: 4096)

    /// Reserves an id for a call; throws once the connection is closed.
    func register(onNotification: NotificationHandler?) throws -> Int64 {
        try state.withLock { state in
            if let error = state.closedError { throw error }
            state.lastID += 1
            state.pending[state.lastID] = Pending(onNotification: onNotification)
            return state.lastID
        }
    }

    /// Records what is about to be sent for call `id` (before it is written).
    func sending(_ id: Int64, lineBytes: Int, params: JSONValue) {
        state.withLock { state in
            state.pending[id]?.lineBytes = lineBytes
            state.pending[id]?.params = params
        }
    }

    /// Forgets a call whose request could not be sent.
    func abandon(_ id: Int64) {
        _ = state.withLock { $0.pending.removeValue(forKey: id) }
    }

    /// Fails call `id` now if it is still waiting (a late reply is then ignored).
    func fail(_ id: Int64, with error: any Error) {
        let continuation = state.withLock { state -> CheckedContinuation<JSONValue, any Error>? in
            guard let continuation = state.pending[id]?.continuation else { return nil }
            state.pending[id] = nil
            return continuation
        }
        continuation?.resume(throwing: error)
    }

    /// Waits for the final reply of call `id`; `onCancel` runs if the calling task is cancelled
    /// (the reply, normally `-32800`, is still awaited).
    func wait(for id: Int64, onCancel: @escaping @Sendable () -> Void) async throws -> JSONValue {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready = state.withLock { state -> Result<JSONValue, any Error>? in
                    guard var pending = state.pending[id] else {
                        return .failure(state.closedError ?? RPCClientError.connectionClosed)
                    }
                    if let outcome = pending.outcome {
                        state.pending[id] = nil
                        return outcome
                    }
                    pending.continuation = continuation
                    state.pending[id] = pending
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            onCancel()
        }
    }

    /// Switches to raw mode: from now on every received line goes to ``rawLines``.
    func enterRawMode() { state.withLock { $0.rawMode = true } }

    /// Reads the connection until it ends, routing replies and notifications.
    func consume(_ inbound: NIOAsyncChannelInboundStream<LineFrame>) async throws {
        for try await frame in inbound {
            guard case .line(let buffer) = frame else { continue }
            if state.withLock({ $0.rawMode }) {
                await rawLines.push(String(buffer: buffer))
                continue
            }
            let parsed = buffer.withUnsafeReadableBytes { bytes in try? JSONParser.parse(bytes) }
            if case .object? = parsed, let message = parsed, await route(message) { continue }
            // Not for a pending call (an id-null error, say): keep it for readLine() without
            // ever blocking the calls (bounded; the oldest lines win).
            rawLines.offer(String(buffer: buffer))
        }
    }

    /// Delivers a reply or stream notification to its call; returns whether one took it.
    private func route(_ message: JSONValue) async -> Bool {
        if case .string(let method)? = message["method"] {
            let params = message["params"] ?? .null
            guard let id = params["id"]?.intValue,
                let handler = state.withLock({ $0.pending[id]?.onNotification })
            else { return false }
            do {
                try await handler(method, params)
            } catch {
                state.withLock { state in
                    if state.pending[id]?.notificationError == nil { state.pending[id]?.notificationError = error }
                }
            }
            return true
        }
        guard let idValue = message["id"] else { return false }
        guard let id = idValue.intValue else {
            if idValue.isNull, let error = message["error"].flatMap(RPCError.init(json:)) {
                if failCulprit(of: error) { return true }
                state.withLock { $0.unsolicitedError = error }
            }
            return false
        }
        var outcome: Result<JSONValue, any Error>
        if let error = message["error"] {
            outcome = .failure(RPCError(json: error) ?? RPCError.internalError("malformed error reply: \(error)"))
        } else {
            outcome = .success(message["result"] ?? .null)
        }
        let (known, continuation) = state.withLock { state -> (Bool, CheckedContinuation<JSONValue, any Error>?) in
            guard var pending = state.pending[id] else { return (false, nil) }
            if let error = pending.notificationError { outcome = .failure(error) }
            if let continuation = pending.continuation {
                state.pending[id] = nil
                return (true, continuation)
            }
            pending.outcome = outcome
            state.pending[id] = pending
            return (true, nil)
        }
        continuation?.resume(with: outcome)
        return known
    }

    /// An id-null error reply answers a line the server could not read as a request. Two
    /// such errors can be tied to a call of this client: `-32003` for a line longer than
    /// `data.max_line_bytes` and `-32700` for params nested deeper than the parser allows (this
    /// client never sends other invalid JSON). The server reads lines in order, so the oldest
    /// pending call whose line fits the description is the one; it fails with the error
    /// instead of waiting forever. Returns whether a call took it.
    private func failCulprit(of error: RPCError) -> Bool {
        let matches: (Pending) -> Bool
        switch error.code {
        case -32003:
            guard let limit = error.data?["max_line_bytes"]?.intValue else { return false }
            matches = { ($0.lineBytes ?? 0) > Int(limit) }
        case -32700:
            // The envelope object is one level; the parser refuses more than `defaultMaxDepth`.
            matches = { pending in pending.params.map { 1 + Self.depth($0) > JSONParser.defaultMaxDepth } ?? false }
        default:
            return false
        }
        let (found, continuation) = state.withLock { state -> (Bool, CheckedContinuation<JSONValue, any Error>?) in
            let candidates = state.pending.filter { $0.value.lineBytes != nil && $0.value.outcome == nil && matches($0.value) }
            guard let id = candidates.keys.min(), var pending = state.pending[id] else { return (false, nil) }
            if let continuation = pending.continuation {
                state.pending[id] = nil
                return (true, continuation)
            }
            pending.outcome = .failure(error)
            pending.lineBytes = nil
            state.pending[id] = pending
            return (true, nil)
        }
        continuation?.resume(throwing: error)
        return found
    }

    /// Nesting depth of arrays and objects (a scalar is 0); stops counting past the limit.
    private static func depth(_ value: JSONValue, _ level: Int = 0) -> Int {
        guard level <= JSONParser.defaultMaxDepth + 1 else { return 0 }
        switch value {
        case .array(let items): return 1 + (items.lazy.map { depth($0, level + 1) }.max() ?? 0)
        case .object(let members): return 1 + (members.values.lazy.map { depth($0, level + 1) }.max() ?? 0)
        default: return 0
        }
    }

    /// Fails every pending call and ends the raw line queue.
    func close(error: (any Error)?) {
        let waiting = state.withLock { state -> [CheckedContinuation<JSONValue, any Error>] in
            let failure = error ?? state.unsolicitedError ?? RPCClientError.connectionClosed
            if state.closedError == nil { state.closedError = failure }
            var waiting: [CheckedContinuation<JSONValue, any Error>] = []
            for (id, pending) in state.pending {
                if let continuation = pending.continuation {
                    waiting.append(continuation)
                    state.pending[id] = nil
                } else if pending.outcome == nil {
                    state.pending[id]?.outcome = .failure(failure)
                }
            }
            return waiting
        }
        let failure: any Error = state.withLock { $0.closedError } ?? RPCClientError.connectionClosed
        for continuation in waiting { continuation.resume(throwing: failure) }
        rawLines.finish()
    }
}

/// Client-side failures that are not error replies.
public struct RPCClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    /// The connection closed before the reply arrived.
    public static let connectionClosed = RPCClientError("connection closed")

    public var description: String { message }
}
