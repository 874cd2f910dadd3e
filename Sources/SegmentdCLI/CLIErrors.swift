import Foundation
import LineRPC
import WireJSON

/// How every subcommand words an error, so `call`, `import`, `export` and `backup` read alike.
///
/// An error reply becomes one line: `METHOD: MESSAGE (code -32602 invalid_params, at
/// filters[0].op)`, plus any other `data` members as JSON. Subcommands throw it as a
/// ``CommandFailure`` (ArgumentParser prints `Error: …` on stderr and exits 1), or print it
/// with ``report(_:)`` when they exit with another status.
enum CLIErrors {
    static func text(_ error: RPCError, method: String? = nil) -> String {
        var details = ["code \(error.code) \(error.type)"]
        if let path = error.data?["path"]?.stringValue { details.append("at \(path)") }
        if case .object(var extra)? = error.data {
            extra["type"] = nil
            extra["path"] = nil
            if !extra.isEmpty { details.append(JSONValue.object(extra).serialized()) }
        }
        return (method.map { "\($0): " } ?? "") + error.message + " (" + details.joined(separator: ", ") + ")"
    }

    /// Any error as the CLI reports it (error replies through ``text(_:method:)``).
    static func text(of error: any Error, method: String? = nil) -> String {
        switch error {
        case let error as RPCError: return text(error, method: method)
        case let error as RPCClientError: return "lost the connection to segmentd: \(error.message)"
        default: return "\(error)"
        }
    }

    /// Writes `Error: MESSAGE` on stderr, exactly as ArgumentParser does for a thrown error.
    static func report(_ message: String) {
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    }

    /// What the CLI says when it cannot reach the server, for every subcommand.
    static func cannotConnect(_ target: String, _ error: any Error) -> CommandFailure {
        let reason = (error as? RPCClientError)?.message ?? "cannot connect to \(target): \(error)"
        return CommandFailure("\(reason) (is `segmentd serve` running there? see --socket / --tcp)")
    }
}
