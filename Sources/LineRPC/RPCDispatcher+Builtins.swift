import Logging
import WireJSON

extension RPCDispatcher {
    /// Answers a built-in method inline; `nil` for a notification.
    func runBuiltin(_ builtin: BuiltinMethod, _ envelope: RPCEnvelope, connection: RPCConnectionState) -> JSONValue? {
        let outcome: Result<JSONValue, RPCError>
        switch builtin {
        case .hello: outcome = hello(envelope.params, connection: connection)
        case .ping: outcome = .success(["pong": true])
        case .cancel: outcome = cancel(envelope.params, connection: connection)
        case .discover: outcome = .success(discoverDocument)
        }
        guard let id = envelope.id else { return nil }
        switch outcome {
        case .success(let result):
            return RPCEnvelope.success(id: id, result: result)
        case .failure(let error):
            stats.error(error.type)
            return RPCEnvelope.failure(id: id, error: error)
        }
    }

    private func hello(_ params: JSONValue, connection: RPCConnectionState) -> Result<JSONValue, RPCError> {
        if connection.info.transport == .tcp, !connection.isAuthenticated {
            let presented = params["token"]?.stringValue
            guard let presented, let expected = configuration.token, Self.constantTimeEquals(presented, expected) else {
                let failures = connection.recordFailedHello()
                let limit = configuration.limits.maxFailedHellos
                logger.warning(
                    "rejected rpc.hello (\(failures)/\(limit))",
                    metadata: ["rpc.connection": "\(connection.info)"]
                )
                if failures >= limit { connection.requestClose() }
                return .failure(.unauthorized(presented?.isEmpty ?? true ? "token required: call rpc.hello with {\"token\": …}" : "invalid token"))
            }
            connection.authenticate()
            logger.debug("authenticated", metadata: ["rpc.connection": "\(connection.info)"])
        }
        var result = configuration.helloExtras()
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

    /// Compares secrets in time independent of where they differ.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let left = Array(a.utf8)
        let right = Array(b.utf8)
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count) | (left.count == right.count ? 0 : 1)
        for index in 0..<max(left.count, right.count) {
            let x = index < left.count ? left[index] : 0
            let y = index < right.count ? right[index] : 0
            difference |= x ^ y
        }
        return difference == 0
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
