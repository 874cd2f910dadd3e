import CoreMetrics
import Logging
import WireJSON

/// Turns request messages into replies: envelope checks, authentication, shutdown, limits,
/// built-in methods, and running registered handlers.
///
/// It holds no per-connection state (that is ``RPCConnectionState``) and no I/O beyond the
/// ``ReplyWriter`` handed to streaming requests.
final class RPCDispatcher: Sendable {
    /// What to do with one request: answer at once (or not at all), or run a handler.
    enum Step: Sendable {
        case reply(JSONValue?)
        case run(Job)
    }

    /// A request admitted to run: its method, the request and its in-flight slot.
    struct Job: Sendable {
        let method: RPCMethod
        let request: RPCRequest
        let handle: RequestHandle
    }

    let configuration: RPCServerConfiguration
    let methods: [String: RPCMethod]
    let metrics: RPCMetrics
    let shutdownSignal: AsyncSignal
    let logger: Logger
    /// Where handlers run (see ``RPCServer``).
    let handlerExecutor: any TaskExecutor
    /// `rpc.discover`'s result, generated once from the registered methods.
    let discoverDocument: JSONValue

    init(
        configuration: RPCServerConfiguration,
        methods: [RPCMethod],
        metrics: RPCMetrics,
        shutdownSignal: AsyncSignal,
        handlerExecutor: any TaskExecutor,
        logger: Logger
    ) {
        var table: [String: RPCMethod] = [:]
        for method in methods {
            precondition(BuiltinMethod(rawValue: method.name) == nil, "\(method.name) is a built-in method of LineRPC")
            precondition(table[method.name] == nil, "method \(method.name) is registered twice")
            table[method.name] = method
        }
        self.configuration = configuration
        self.methods = table
        self.metrics = metrics
        self.shutdownSignal = shutdownSignal
        self.logger = logger
        self.handlerExecutor = handlerExecutor
        self.discoverDocument = OpenRPCDocument.make(
            methods: BuiltinMethod.descriptors + methods,
            configuration: configuration
        )
    }

    /// Decides what to do with one request object (or batch element).
    func prepare(_ message: JSONValue, connection: RPCConnectionState, writer: ReplyWriter, inBatch: Bool) -> Step {
        let envelope: RPCEnvelope
        switch RPCEnvelope.parse(message) {
        case .failure(let rejection):
            logger.debug("rejected request", metadata: [
                "rpc.id": "\(rejection.id ?? .null)", "rpc.connection": "\(connection.info.id)", "outcome": "\(rejection.error.type)",
            ])
            // Spelled out: `JSONValue` is nil-literal convertible, so a bare `nil` here would be JSON null.
            guard rejection.reply else { return .reply(.none) }
            metrics.error(rejection.error.type)
            return .reply(.some(RPCEnvelope.failure(id: rejection.id, error: rejection.error)))
        case .success(let parsed):
            envelope = parsed
        }
        let builtin = BuiltinMethod(rawValue: envelope.method)
        let method = methods[envelope.method]

        if connection.info.transport == .tcp, builtin != .hello, !connection.isAuthenticated {
            return answer(envelope, .unauthorized("not authenticated: call rpc.hello with the token first"), connection: connection.info)
        }
        if shutdownSignal.isFired, builtin != .cancel {
            return answer(envelope, .shuttingDown(), connection: connection.info)
        }
        if let builtin {
            return .reply(runBuiltin(builtin, envelope, connection: connection))
        }
        guard let method else { return answer(envelope, .methodNotFound(envelope.method), connection: connection.info) }
        if method.streaming {
            if inBatch {
                return answer(envelope, .invalidRequest("streaming method \(method.name) cannot be called inside a batch"), connection: connection.info)
            }
            if envelope.isNotification {
                logger.debug("streaming method called as a notification: not run", metadata: ["rpc.method": "\(method.name)"])
                return .reply(.none)
            }
        }
        switch connection.admit(id: envelope.id, limit: configuration.limits.maxInFlightPerConnection, endsOnShutdown: method.endsOnShutdown) {
        case .duplicateID:
            return answer(envelope, .invalidRequest("a request with id \(envelope.id ?? .null) is already in flight on this connection"), connection: connection.info)
        case .overloaded:
            let limit = configuration.limits.maxInFlightPerConnection
            return answer(envelope, .overloaded("too many requests in flight on this connection (max \(limit))"), connection: connection.info)
        case .admitted(let handle):
            var sink: (@Sendable (JSONValue) async throws -> Void)?
            if !envelope.isNotification {
                // A stream's notifications are its output: counted by method.
                let streamed = method.streaming ? metrics.streamBytes(method.name) : nil
                sink = { @Sendable message in
                    let bytes = try await writer.write(message)
                    streamed?.increment(by: bytes)
                }
            }
            let request = RPCRequest(
                id: envelope.id, method: envelope.method, params: envelope.params,
                connection: connection.info, credential: connection.credential, notificationSink: sink
            )
            metrics.started()
            return .run(Job(method: method, request: request, handle: handle))
        }
    }

    /// Runs an admitted job's handler and returns its reply (`nil` for a notification).
    ///
    /// The handler runs in its own task, on the handler threads, so that `rpc.cancel` can
    /// cancel just this request; cancelling the calling task (disconnect, shutdown) cancels it too.
    func execute(_ job: Job) async -> JSONValue? {
        let method = job.method
        let request = job.request
        let started = ContinuousClock.now
        let task = Task(executorPreference: handlerExecutor) { try await method.handler(request) }
        job.handle.attach { task.cancel() }
        let result = await withTaskCancellationHandler {
            await task.result
        } onCancel: {
            job.handle.cancel()
        }
        metrics.finished()
        switch result {
        case .success(let value):
            log(request.method, id: request.id, params: request.params, connection: request.connection, since: started, error: nil, streaming: method.streaming || method.slowByDesign)
            guard let id = request.id else { return nil }
            return RPCEnvelope.success(id: id, result: value)
        case .failure(let error):
            let rpcError = wireError(for: error, cancelled: job.handle.isCancelled, request: request)
            log(request.method, id: request.id, params: request.params, connection: request.connection, since: started, error: rpcError, streaming: method.streaming || method.slowByDesign)
            guard let id = request.id else { return nil }
            metrics.error(rpcError.type)
            return RPCEnvelope.failure(id: id, error: rpcError)
        }
    }

    /// Counts the request in the metrics, and logs one line per request at debug (method, id,
    /// connection, duration, outcome, and what the app adds, such as the book), and at warning when it took longer than the slow-request
    /// threshold (streams excepted: they last as long as the client reads).
    func log(
        _ method: String, id: JSONValue?, params: JSONValue, connection: RPCConnectionInfo, since started: ContinuousClock.Instant,
        error: RPCError?, streaming: Bool, ran: Bool = true
    ) {
        let elapsed = ContinuousClock.now - started
        metrics.request(method, outcome: error?.type ?? "ok", duration: ran ? elapsed : nil)
        let slow = !streaming && configuration.slowRequestThreshold.map { elapsed > $0 } ?? false
        let level: Logger.Level = slow ? .warning : .debug
        guard logger.logLevel <= level else { return }
        var metadata: Logger.Metadata = [
            "rpc.method": "\(method)", "rpc.id": "\(id ?? .null)", "rpc.connection": "\(connection.id)",
            "duration_ms": .stringConvertible((elapsed / .microseconds(1)).rounded() / 1_000), "outcome": "\(error?.type ?? "ok")",
        ]
        metadata.merge(configuration.requestMetadata(method, params)) { own, _ in own }
        logger.log(level: level, slow ? "slow request" : "request", metadata: metadata)
    }

    /// An error reply for `envelope`, or nothing for a notification.
    func answer(_ envelope: RPCEnvelope, _ error: RPCError, connection: RPCConnectionInfo) -> Step {
        // A name the server does not know is logged as such, never as the client wrote it
        // (it could be a megabyte, or forge log lines).
        let known = BuiltinMethod(rawValue: envelope.method) != nil || methods[envelope.method] != nil
        log(known ? envelope.method : "(unknown)", id: envelope.id, params: envelope.params, connection: connection, since: .now, error: error, streaming: false, ran: false)
        guard let id = envelope.id else { return .reply(.none) }
        metrics.error(error.type)
        return .reply(RPCEnvelope.failure(id: id, error: error))
    }

    /// What a handler's error looks like on the wire; unknown errors are logged, not sent.
    private func wireError(for error: any Error, cancelled: Bool, request: RPCRequest) -> RPCError {
        if let rpcError = error as? RPCError { return rpcError }
        if error is CancellationError || cancelled { return .cancelled() }
        logger.error(
            "request failed: \(String(reflecting: error))",
            metadata: [
                "rpc.method": "\(request.method)", "rpc.id": "\(request.id ?? .null)",
                "rpc.connection": "\(request.connection.id)",
            ]
        )
        return .internalError()
    }
}
