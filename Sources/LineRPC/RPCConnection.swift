import Logging
import NIOCore
import WireJSON

/// Serves one connection: reads frames, answers inline what can be answered at once, runs
/// handlers as child tasks, and watches for idleness and shutdown.
///
/// Everything here is async code over `NIOAsyncChannel`; the channel handlers only frame.
/// Requests run concurrently and may reply out of order. When the peer goes away, the task
/// group is cancelled and with it every in-flight handler.
struct RPCConnection: Sendable {
    let state: RPCConnectionState
    let dispatcher: RPCDispatcher
    let writer: ReplyWriter
    let channel: any Channel
    let logger: Logger

    var limits: RPCLimits { dispatcher.configuration.limits }

    /// Reads until EOF, error, a close request, or the watchdog closes the channel.
    func run(inbound: NIOAsyncChannelInboundStream<LineFrame>) async {
        await withDiscardingTaskGroup { group in
            group.addTask { await watchdog() }
            do {
                for try await frame in inbound {
                    state.touch()
                    defer { state.frames.frameHandled() }
                    await state.waitForReplyRoom(limit: limits.maxInFlightPerConnection)
                    try await handle(frame, group: &group)
                    if state.isCloseRequested { break }
                }
            } catch {
                logger.debug("connection ended: \(error)")
            }
            group.cancelAll()
        }
    }

    private func handle(_ frame: LineFrame, group: inout DiscardingTaskGroup) async throws {
        switch frame {
        case .oversized:
            rejected("too_large", "line over max_line_bytes")
            let error = RPCError.tooLarge(
                "line exceeds the \(limits.maxLineBytes)-byte limit and was discarded",
                extra: ["max_line_bytes": .int(Int64(limits.maxLineBytes))]
            )
            try await writer.write(RPCEnvelope.failure(id: nil, error: error))
        case .line(let buffer):
            dispatcher.metrics.bytesIn(buffer.readableBytes + 1)
            let parsed = buffer.withUnsafeReadableBytes { bytes -> Result<JSONValue, JSONParseError> in
                do throws(JSONParseError) {
                    return .success(try JSONParser.parse(bytes))
                } catch {
                    return .failure(error)
                }
            }
            switch parsed {
            case .failure(let error):
                rejected("parse_error", "invalid JSON")
                try await writer.write(RPCEnvelope.failure(id: nil, error: .parseError("invalid JSON: \(error)")))
            case .success(.array(let elements)):
                try await handleBatch(elements, group: &group)
            case .success(let message):
                try await handleSingle(message, group: &group)
            }
        }
    }

    /// A line answered with an error before any request in it could be read: counted, and
    /// logged at debug like a request (it has no method or id).
    private func rejected(_ type: String, _ what: String) {
        dispatcher.metrics.error(type)
        logger.debug("rejected line", metadata: ["outcome": "\(type)", "reason": "\(what)"])
    }

    private func handleSingle(_ message: JSONValue, group: inout DiscardingTaskGroup) async throws {
        switch dispatcher.prepare(message, connection: state, writer: writer, inBatch: false) {
        case .reply(let reply?):
            try await writer.write(reply)
        case .reply(.none):
            break
        case .run(let job):
            group.addTask {
                let reply = await dispatcher.execute(job)
                state.finish(id: job.request.id, handle: job.handle, replyPending: reply != nil)
                if let reply {
                    _ = try? await writer.write(reply)
                    state.replyWritten()
                }
            }
        }
    }

    /// A batch answers with one array line, in element order; notifications add no entry and
    /// an all-notification batch writes nothing. Its slots are released once that line is out.
    private func handleBatch(_ elements: [JSONValue], group: inout DiscardingTaskGroup) async throws {
        guard !elements.isEmpty else {
            rejected("invalid_request", "empty batch")
            try await writer.write(RPCEnvelope.failure(id: nil, error: .invalidRequest("empty batch")))
            return
        }
        guard elements.count <= limits.maxBatch else {
            rejected("too_large", "batch over max_batch")
            let error = RPCError.tooLarge(
                "batch of \(elements.count) requests exceeds the limit of \(limits.maxBatch)",
                extra: ["max_batch": .int(Int64(limits.maxBatch))]
            )
            try await writer.write(RPCEnvelope.failure(id: nil, error: error))
            return
        }
        let steps = elements.map { dispatcher.prepare($0, connection: state, writer: writer, inBatch: true) }
        let jobs = steps.enumerated().compactMap { index, step -> (Int, RPCDispatcher.Job)? in
            if case .run(let job) = step { return (index, job) }
            return nil
        }
        guard !jobs.isEmpty else {
            let replies = steps.compactMap { step -> JSONValue? in
                if case .reply(let reply) = step { return reply }
                return nil
            }
            if !replies.isEmpty { try await writer.write(.array(replies)) }
            return
        }
        group.addTask {
            var replies = steps.map { step -> JSONValue? in
                if case .reply(let reply) = step { return reply }
                return nil
            }
            await withTaskGroup(of: (Int, JSONValue?).self) { runs in
                for (index, job) in jobs {
                    runs.addTask { (index, await dispatcher.execute(job)) }
                }
                for await (index, reply) in runs { replies[index] = reply }
            }
            let present = replies.compactMap { $0 }
            for (offset, (_, job)) in jobs.enumerated() {
                // One pending reply (the batch's line) is carried by the first job.
                state.finish(id: job.request.id, handle: job.handle, replyPending: offset == 0 && !present.isEmpty)
            }
            if !present.isEmpty {
                _ = try? await writer.write(.array(present))
                state.replyWritten()
            }
        }
    }

    // MARK: Idle timeout and graceful shutdown

    /// Closes the connection when it idles too long, or drains it when the server shuts down.
    private func watchdog() async {
        let shutdown = dispatcher.shutdownSignal
        while !Task.isCancelled {
            let deadline = state.idleDeadline(timeout: limits.idleTimeout) ?? .now + limits.idleTimeout
            _ = await withDeadline(max(.zero, deadline - .now)) { await shutdown.wait() }
            if Task.isCancelled { return }
            if shutdown.isFired {
                await drain()
                return
            }
            if let idleSince = state.idleDeadline(timeout: limits.idleTimeout), idleSince <= .now {
                logger.info("closing idle connection", metadata: ["rpc.peer": "\(state.info.peer)"])
                channel.close(promise: nil)
                return
            }
        }
    }

    /// Ends the requests that run until cancelled (subscriptions) at once, lets the others
    /// finish within the drain timeout, cancels the rest (each still replies), flushes, then
    /// closes. New requests meanwhile get `-32006`.
    ///
    /// A client that stopped reading cannot take its subscription's final reply: once only
    /// such replies are left, and the connection cannot take more bytes, it is closed rather
    /// than waited for (the client resumes from the last event it handled).
    private func drain() async {
        let state = self.state
        let deadline = ContinuousClock.now + dispatcher.configuration.drainTimeout
        let ended = state.beginDraining()
        if ended > 0 { logger.debug("shutdown: ended \(ended) subscriptions") }
        var idle = false
        while !idle, ContinuousClock.now < deadline, !Task.isCancelled {
            idle = await withDeadline(min(.milliseconds(250), max(.zero, deadline - .now)), { await state.waitUntilIdle() }) != nil
            if !idle, state.finiteInFlightCount == 0, !channel.isWritable {
                logger.notice("closing a connection that does not read its subscription's final reply", metadata: ["rpc.peer": "\(state.info.peer)"])
                channel.close(promise: nil)
                return
            }
        }
        if !idle, state.inFlightCount > 0 {
            let count = state.cancelAll()
            logger.warning("drain timeout: cancelled \(count) in-flight requests", metadata: ["rpc.peer": "\(state.info.peer)"])
            if await withDeadline(.seconds(10), { await state.waitUntilIdle() }) == nil {
                logger.error("requests ignored cancellation; closing anyway", metadata: ["rpc.peer": "\(state.info.peer)"])
            }
        }
        await flushAndClose(channel, within: .seconds(2))
    }
}
