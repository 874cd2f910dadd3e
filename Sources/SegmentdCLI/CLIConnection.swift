import ArgumentParser
import Foundation
import LineRPC
import WireJSON

/// Opens a client the way every subcommand does: TCP with the token's hello, or the socket.
/// Failures are worded once, here: no server, or a refused token.
enum CLIConnection {
    static func open(socket: String, tcp: String?, token: String?) async throws -> RPCClient {
        guard let tcp else {
            do {
                return try await RPCClient.connect(unixPath: socket)
            } catch {
                throw CLIErrors.cannotConnect(socket, error)
            }
        }
        guard let colon = tcp.lastIndex(of: ":"), let port = Int(tcp[tcp.index(after: colon)...]) else {
            throw ValidationError("--tcp must be HOST:PORT")
        }
        let client: RPCClient
        do {
            client = try await RPCClient.connect(host: String(tcp[..<colon]), port: port)
        } catch {
            throw CLIErrors.cannotConnect(tcp, error)
        }
        // No token at all is sent as none, so the server answers "token required".
        let secret = token ?? ProcessInfo.processInfo.environment["SEGMENTD_TOKEN"] ?? ""
        do {
            _ = try await client.call("rpc.hello", secret.isEmpty ? [:] : ["token": .string(secret)])
        } catch {
            try? await client.close()
            throw CommandFailure("segmentd at \(tcp) refused the connection: " + CLIErrors.text(of: error, method: "rpc.hello")
                + (secret.isEmpty ? " (pass --token or set SEGMENTD_TOKEN)" : ""))
        }
        return client
    }
}

/// `--book NAME` as a call's param: absent when not given, so the server's default applies.
enum CLIBook {
    static func params(_ params: [String: JSONValue], book: String?) -> JSONValue {
        var params = params
        if let book { params["book"] = .string(book) }
        return .object(params)
    }
}

/// Call helpers shared by import and export: clear messages instead of NIO's.
enum CLIClient {
    /// A call whose error reply becomes a fatal, readable error.
    static func call(_ client: RPCClient, _ method: String, _ params: JSONValue = .object([:])) async throws -> JSONValue {
        do {
            return try await client.call(method, params)
        } catch {
            throw describe(error, method: method)
        }
    }

    static func describe(_ error: any Error, method: String? = nil) -> any Error {
        switch error {
        case is CommandFailure, is ExitCode, is ValidationError: return error
        default: return CommandFailure(CLIErrors.text(of: error, method: method))
        }
    }
}
