import ArgumentParser
import Foundation
import LineRPC
import Synchronization
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// `segmentd call METHOD [JSON]`: one request; its stream notifications and its result on
/// stdout, an error on stderr.
struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call one method and print its result as JSON.",
        discussion: """
            Prints one JSON line per stream notification of the call as it arrives (for \
            segments.resolve, segments.export without path, events.subscribe: the whole \
            notification, {"jsonrpc", "method", "params"}), then the result on the last line.

            Ctrl-C sends rpc.cancel for the call and exits after the server's final reply \
            (printed as usual), waiting at most 5 s for it; a second Ctrl-C exits at once.

            Exit status: 0 success; 1 an error reply or no connection (the error on stderr: \
            METHOD: MESSAGE (code, data.type, at data.path)); 2 the result lists failed items \
            (a non-empty "failed" array, e.g. contacts.upsert, engagement.record); 130 \
            interrupted with Ctrl-C.

            Examples:
              segmentd call segments.count '{"id": 2}'
              segmentd call segments.resolve '{"id": 2, "format": "csv"}'
              segmentd call events.subscribe '{"after": 0}'
            """)

    @Argument(help: "The method, e.g. segments.count.") var method: String
    @Argument(help: "The params as a JSON object; '-' reads them from stdin; default {}.") var params: String?
    @Option(help: "The book to call the method on: added to the params as \"book\" (default: the server's default book).") var book: String?
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Connect over TCP HOST:PORT instead of the socket.") var tcp: String?
    @Option(help: "Token for TCP (default: $SEGMENTD_TOKEN).") var token: String?

    /// Exit status when the result lists failed items.
    static let failedItemsStatus: Int32 = 2
    /// Exit status after Ctrl-C.
    static let interruptedStatus = Interrupts.exitStatus

    func run() async throws {
        var text = params ?? "{}"
        if text == "-" { text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
        var value: JSONValue
        do { value = try JSONParser.parse(text) } catch { throw ValidationError("params are not valid JSON: \(error)") }
        if let book {
            guard case .object(var object) = value else { throw ValidationError("--book needs params that are an object") }
            if let named = object["book"], named != .string(book) {
                throw ValidationError("--book \(book) and the params' \"book\": \(named.serialized()) disagree; give one")
            }
            object["book"] = .string(book)
            value = .object(object)
        }
        let client = try await CLIConnection.open(socket: socket, tcp: tcp, token: token)

        // Notifications are written as they arrive; stdout closing (a pipe's reader gone)
        // cancels the call like Ctrl-C does, so a subscription never runs on unread.
        let outputClosed = Mutex(false)
        let running = Mutex<Task<JSONValue, any Error>?>(nil)
        let method = self.method
        // Installed before the call starts: a Ctrl-C from then on cancels it (rpc.cancel)
        // instead of killing the process. One that comes before the task is stored in
        // `running` is caught by the isFired check after storing it.
        let interrupts = Interrupts { running.withLock { $0?.cancel() } }
        let call = Task {
            try await client.call(method, value) { name, params in
                let line = JSONValue.object(["jsonrpc": "2.0", "method": .string(name), "params": params]).serialized()
                if !StandardOutput.line(line) {
                    outputClosed.withLock { $0 = true }
                    running.withLock { $0?.cancel() }
                    throw CommandFailure("stdout closed")
                }
            }
        }
        running.withLock { $0 = call }
        if interrupts.isFired { call.cancel() }
        let outcome = await call.result
        interrupts.stop()
        try? await client.close()
        let interrupted = interrupts.count > 0

        switch outcome {
        case .success(let result):
            _ = StandardOutput.line(result.serialized())
            if interrupted { throw ExitCode(Self.interruptedStatus) }
            if let failed = result["failed"]?.arrayValue, !failed.isEmpty {
                CLIErrors.report("\(method): \(failed.count) item\(failed.count == 1 ? "" : "s") failed (listed in \"failed\" of the result)")
                throw ExitCode(Self.failedItemsStatus)
            }
        case .failure(let error):
            if outputClosed.withLock({ $0 }) { throw ExitCode(1) }
            if interrupted {
                CLIErrors.report(error is CancellationError
                    ? "\(method): interrupted; the server sent no final reply within \(RPCClient.cancellationGrace)"
                    : CLIErrors.text(of: error, method: method))
                throw ExitCode(Self.interruptedStatus)
            }
            throw CommandFailure(CLIErrors.text(of: error, method: method))
        }
    }
}

/// Writes lines straight to file descriptor 1, unbuffered: a subscriber piped into another
/// program sees each event at once, not when a buffer fills.
enum StandardOutput {
    /// Returns false once stdout is closed.
    @discardableResult
    static func line(_ text: String) -> Bool {
        var bytes = Array(text.utf8)
        bytes.append(10)
        return bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }
}
