import ArgumentParser
import Foundation
import LineRPC
import WireJSON

/// `segmentd call METHOD [JSON]`: one request, the result on stdout, an error on stderr.
struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call one method and print its result as JSON (exit 1 with the error on stderr if it fails).")

    @Argument(help: "The method, e.g. segments.count.") var method: String
    @Argument(help: "The params as a JSON object; '-' reads them from stdin; default {}.") var params: String?
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Connect over TCP HOST:PORT instead of the socket.") var tcp: String?
    @Option(help: "Token for TCP (default: $SEGMENTD_TOKEN).") var token: String?

    func run() async throws {
        var text = params ?? "{}"
        if text == "-" { text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
        let value: JSONValue
        do { value = try JSONParser.parse(text) } catch { throw ValidationError("params are not valid JSON: \(error)") }
        let client = try await CLIConnection.open(socket: socket, tcp: tcp, token: token)
        defer { Task { try? await client.close() } }
        do {
            let result = try await client.call(method, value)
            print(result.serialized())
        } catch let error as RPCError {
            FileHandle.standardError.write(Data((error.json.serialized() + "\n").utf8))
            throw ExitCode(1)
        }
    }
}

/// Opens a client the way every subcommand does: TCP with the token's hello, or the socket.
enum CLIConnection {
    static func open(socket: String, tcp: String?, token: String?) async throws -> RPCClient {
        guard let tcp else { return try await RPCClient.connect(unixPath: socket) }
        guard let colon = tcp.lastIndex(of: ":"), let port = Int(tcp[tcp.index(after: colon)...]) else {
            throw ValidationError("--tcp must be HOST:PORT")
        }
        let client = try await RPCClient.connect(host: String(tcp[..<colon]), port: port)
        let secret = token ?? ProcessInfo.processInfo.environment["SEGMENTD_TOKEN"] ?? ""
        _ = try await client.call("rpc.hello", ["token": .string(secret)])
        return client
    }
}
