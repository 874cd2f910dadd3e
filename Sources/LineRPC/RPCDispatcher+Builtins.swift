import Logging
import WireJSON

extension RPCDispatcher {
    /// Answers a built-in method inline; `nil` for a notification.
    func runBuiltin(_ builtin: BuiltinMethod, _ envelope: RPCEnvelope, connection: RPCConnectionState) -> JSONValue? {
        let started = ContinuousClock.now
        let outcome: Result<JSONValue, RPCError>
        switch builtin {
        case .hello: outcome = hello(envelope.params, connection: connection)
        case .ping: outcome = .success(["pong": true])
        case .cancel: outcome = cancel(envelope.params, connection: connection)
        case .discover: outcome = .success(discoverDocument)
        }
        let failure: RPCError? = if case .failure(let error) = outcome { error } else { nil }
        log(envelope.method, id: envelope.id, params: envelope.params, connection: connection.info, since: started, error: failure, streaming: false)
        guard let id = envelope.id else { return nil }
        switch outcome {
        case .success(let result):
            return RPCEnvelope.success(id: id, result: result)
        case .failure(let error):
            metrics.error(error.type)
            return RPCEnvelope.failure(id: id, error: error)
        }
    }

    private func hello(_ params: JSONValue, connection: RPCConnectionState) -> Result<JSONValue, RPCError> {
        if connection.info.transport == .tcp, !connection.isAuthenticated {
            let presented = params["token"]?.stringValue
            guard let presented, let credential = configuration.check(token: presented) else {
                let failures = connection.recordFailedHello()
                let limit = configuration.limits.maxFailedHellos
                logger.warning(
                    "rejected rpc.hello (\(failures)/\(limit))",
                    metadata: ["rpc.connection": "\(connection.info.id)", "rpc.peer": "\(connection.info.peer)"]
                )
                if failures >= limit { connection.requestClose() }
                return .failure(.unauthorized(presented?.isEmpty ?? true ? "token required: call rpc.hello with {\"token\": …}" : "invalid token"))
            }
            connection.authenticate(as: credential.value)
            logger.debug("authenticated", metadata: ["rpc.connection": "\(connection.info.id)", "rpc.peer": "\(connection.info.peer)"])
        }
        var result = configuration.helloExtras(connection.info, connection.credential)
        result["server"] = .string(configuration.serverName)
        result["version"] = .string(configuration.serverVersion)
        result["protocol"] = .string(configuration.protocolVersion)
        result["limits"] = configuration.limits.json
        result["transport"] = .string(connection.info.transport.rawValue)
        result["connection"] = .int(Int64(connection.info.id))
        return .success(.object(result))
    }

    private func cancel(_ params: JSONValue, connection: RPCConnectionState) -> Result<JSONValue, RPCError> {
        switch params["id"] {
        case let id? where id.isValidRequestID:
            return .success(["cancelled": .bool(connection.cancel(id: id))])
        case nil:
            return .failure(.invalidParams(path: "id", "missing: the id of the request to cancel"))
        default:
            return .failure(.invalidParams(path: "id", "expected a string, an integer or null"))
        }
    }
}

extension JSONValue {
    /// Whether this can be a JSON-RPC id here: a string, an integer or null.
    var isValidRequestID: Bool {
        switch self {
        case .string, .int, .null: return true
        default: return false
        }
    }
}
