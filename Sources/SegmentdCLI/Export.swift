import ArgumentParser
import Foundation
import LineRPC
import StreamCodec
import Synchronization
import WireJSON

/// `segmentd export SEGMENT`: streams a segment's contacts to a file or stdout.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a segment's contacts as CSV or NDJSON (optionally gzip) to a file or stdout.",
        discussion: """
            SEGMENT is a segment id or name (segmentd call segments.list). The rows stream from \
            segments.export over the connection (one snapshot of the Contact Book, whatever is \
            written meanwhile) and are written as they arrive, so memory stays flat however large \
            the segment.

            --format csv writes RFC 4180 with a header row (labels joined with ';'); ndjson one \
            JSON object per line. --columns picks the columns (default email, name, status): \
            email, created_at, suppressed, name, status, funnel, lost, labels, last_open_at, \
            last_click_at, last_send_at and custom fields by name. --audience send (default) \
            exports the contacts a campaign may send to (status active, not suppressed); all \
            exports every member.

            --gzip writes one gzip stream (a valid .gz, `gzip -dc` reads it). With -o, the \
            format and --gzip default from the name (x.csv.gz means --format csv --gzip). The \
            file is written to a temporary name beside it and renamed when complete, so it is \
            either the whole export or untouched. Without -o the export goes to stdout and nothing \
            else does; gzip output is refused on a terminal.

            On a terminal, a progress line on stderr shows rows so far and rows/s.

            Exit status: 0 done; 1 an error (unknown segment or column, no server, the stream \
            ended early); nothing is left at the -o path on error.

            Examples:
              segmentd export "VIP customers" --format csv -o vip.csv
              segmentd export 3 --columns email,name,labels,lifetime_value -o vip.csv.gz
              segmentd export 3 --format ndjson --audience all | jq .email
            """)

    @Argument(help: "The segment's id or name.") var segment: String
    @Option(help: "csv or ndjson (default: from -o's name, else ndjson).") var format: String?
    @Flag(help: "Write gzip-compressed output (default: when -o ends in .gz).") var gzip = false
    @Option(help: "Comma-separated columns, e.g. email,name,labels (default: email,name,status).") var columns: String?
    @Option(help: "send (status active, not suppressed) or all members.") var audience = "send"
    @Option(name: [.customShort("o"), .customLong("output")], help: "Write to this file (atomically) instead of stdout.") var output: String?
    @Option(help: "The book to work on (default: the server's default book).") var book: String?
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Connect over TCP HOST:PORT instead of the socket.") var tcp: String?
    @Option(help: "Token for TCP (default: $SEGMENTD_TOKEN).") var token: String?
    @Option(help: "Progress line on stderr: auto (when it is a terminal), always or never.") var progress = "auto"

    func validate() throws {
        if let format, !["csv", "ndjson"].contains(format) { throw ValidationError("--format must be csv or ndjson") }
        guard ["send", "all"].contains(audience) else { throw ValidationError("--audience must be send or all") }
        guard ProgressMode(rawValue: progress) != nil else { throw ValidationError("--progress must be auto, always or never") }
        if let columns, Self.split(columns).isEmpty { throw ValidationError("--columns needs at least one column name") }
    }

    static func split(_ columns: String) -> [String] {
        columns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        let lowerOutput = output?.lowercased() ?? ""
        let compress = gzip || lowerOutput.hasSuffix(".gz")
        let named = compress && lowerOutput.hasSuffix(".gz") ? String(lowerOutput.dropLast(3)) : lowerOutput
        let kind = format ?? (named.hasSuffix(".csv") ? "csv" : "ndjson")
        if output == nil, compress, isatty(STDOUT_FILENO) == 1 {
            throw CommandFailure("refusing to write gzip data to a terminal; use -o FILE or redirect stdout")
        }

        let client = try await CLIConnection.open(socket: socket, tcp: tcp, token: token)
        defer { Task { try? await client.close() } }
        let id = try await Self.resolve(segment, client: client, book: book)

        var params: [String: JSONValue] = ["id": .int(id), "format": .string(kind), "audience": .string(audience)]
        if compress { params["compress"] = "gzip" }
        if let columns { params["columns"] = .array(Self.split(columns).map { .string($0) }) }
        if let book { params["book"] = .string(book) }

        let progressLine = ProgressLine(enabled: ProgressMode(rawValue: progress)!.isEnabled)
        var expected: Int?
        if progressLine.enabled {
            let counted = try? await client.call("segments.count", CLIBook.params(["id": .int(id), "audience": .string(audience)], book: book))
            expected = counted?["size"]?.intValue.map(Int.init)
        }
        let total = expected
        let sink = try ExportSink(path: output)
        let counter = try ExportRowCounter(csv: kind == "csv", gzip: compress, enabled: progressLine.enabled)
        let result: JSONValue
        do {
            result = try await client.call("segments.export", .object(params)) { _, params in
                let bytes: [UInt8]
                if let rows = params["rows"]?.arrayValue {
                    var out: [UInt8] = []
                    for row in rows {
                        row.write(into: &out)
                        out.append(10)
                    }
                    bytes = out
                } else if let csv = params["csv"]?.stringValue {
                    bytes = Array(csv.utf8)
                } else if let chunk = params["gzip"]?.stringValue {
                    guard let data = Data(base64Encoded: chunk) else { throw CommandFailure("the server sent a gzip chunk that is not valid base64") }
                    bytes = [UInt8](data)
                } else {
                    return
                }
                try sink.write(bytes)
                let rows = try counter.feed(bytes)
                progressLine.update { elapsed in Self.progressText(rows: rows, total: total, bytes: sink.written, elapsed: elapsed) }
            }
        } catch {
            progressLine.clear()
            sink.discard()
            throw CLIClient.describe(error, method: "segments.export")
        }
        guard result["complete"]?.boolValue != false else {
            progressLine.clear()
            sink.discard()
            throw CommandFailure("the export stopped before the end (cancelled on the server); nothing was written")
        }
        do {
            try sink.commit()
        } catch {
            progressLine.clear()
            sink.discard()
            throw error
        }
        let rows = Int(result["rows"]?.intValue ?? 0)
        progressLine.update(force: true) { elapsed in Self.progressText(rows: rows, total: rows, bytes: sink.written, elapsed: elapsed) }
        progressLine.clear()
        if let output, progressLine.enabled {
            FileHandle.standardError.write(Data("Exported \(ProgressLine.count(rows)) rows to \(output) (\(ProgressLine.bytes(sink.written)))\n".utf8))
        }
    }

    static func progressText(rows: Int, total: Int?, bytes: Int64, elapsed: Double) -> String {
        var text = "\(ProgressLine.count(rows)) rows  \(ProgressLine.rate(Double(rows), over: elapsed)) rows/s  \(ProgressLine.bytes(bytes))"
        if let total, total > 0 {
            let fraction = min(1, Double(rows) / Double(total))
            text = "\(ProgressLine.bar(fraction)) \(String(format: "%3d", Int(fraction * 100)))%  " + text
                + "  ETA \(ProgressLine.eta(fraction: fraction, elapsed: elapsed))"
        }
        return text
    }

    /// A segment id, or the id of the segment with that name (exact, else the only
    /// case-insensitive match).
    static func resolve(_ segment: String, client: RPCClient, book: String?) async throws -> Int64 {
        let listed = try await CLIClient.call(client, "segments.list", CLIBook.params([:], book: book))
        let segments = (listed["segments"]?.arrayValue ?? []).compactMap { item -> (id: Int64, name: String)? in
            guard let id = item["id"]?.intValue, let name = item["name"]?.stringValue else { return nil }
            return (id, name)
        }
        let trimmed = segment.trimmingCharacters(in: .whitespaces)
        if let id = Int64(trimmed), segments.contains(where: { $0.id == id }) { return id }
        var matches = segments.filter { $0.name == segment }
        if matches.isEmpty { matches = segments.filter { $0.name.lowercased() == trimmed.lowercased() } }
        if matches.count == 1 { return matches[0].id }
        if matches.count > 1 {
            throw CommandFailure("several segments are named \"\(segment)\" (ids \(matches.map { String($0.id) }.joined(separator: ", "))); give the id")
        }
        let known = segments.prefix(10).map { "\($0.id) \"\($0.name)\"" }.joined(separator: ", ")
        let what = Int64(trimmed) != nil ? "no segment with id \(trimmed)" : "no segment named \"\(segment)\""
        throw CommandFailure(
            "\(what); "
                + (segments.isEmpty ? "there are no segments yet (segments.create)" : "segments: \(known)\(segments.count > 10 ? ", …" : "") (segmentd call segments.list)"))
    }
}

/// Where the export goes: stdout, or a temporary file renamed over `path` on commit.
final class ExportSink: Sendable {
    private struct State {
        var fd: Int32
        var written: Int64 = 0
        var closed = false
    }

    let path: String?
    let temporary: String?
    private let state: Mutex<State>
    nonisolated(unsafe) private var signals: [any DispatchSourceSignal] = []

    init(path: String?) throws {
        self.path = path
        guard let path else {
            temporary = nil
            state = Mutex(State(fd: STDOUT_FILENO))
            return
        }
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw CommandFailure("\(path) is a directory")
        }
        let directory = url.deletingLastPathComponent().path
        let temp = directory + "/." + url.lastPathComponent + ".segmentd-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CommandFailure("cannot write \(path): \(String(cString: strerror(errno))) (creating \(temp))") }
        temporary = temp
        state = Mutex(State(fd: fd))
        // Ctrl-C or SIGTERM mid-export: remove the temporary file, leave the target untouched.
        signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                unlink(temp)
                exit(128 + number)
            }
            source.resume()
            return source
        }
    }

    var written: Int64 { state.withLock { $0.written } }

    func write(_ bytes: [UInt8]) throws {
        try state.withLock { state in
            try bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Foundation.write(state.fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw CommandFailure("write to \(path ?? "stdout") failed: \(String(cString: strerror(errno)))") }
                    offset += n
                }
            }
            state.written += Int64(bytes.count)
        }
    }

    /// Makes the export visible: fsync and rename (a file), or nothing (stdout).
    func commit() throws {
        guard let path, let temporary else { return }
        try state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            if fsync(state.fd) != 0 { throw CommandFailure("fsync \(temporary) failed: \(String(cString: strerror(errno)))") }
            close(state.fd)
            if rename(temporary, path) != 0 { throw CommandFailure("cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))") }
            let directory = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
            if directory >= 0 {
                fsync(directory)
                close(directory)
            }
        }
    }

    /// Removes the temporary file (on error).
    func discard() {
        guard let temporary else { return }
        state.withLock { state in
            if !state.closed {
                state.closed = true
                close(state.fd)
            }
            unlink(temporary)
        }
    }
}

/// Counts exported rows for the progress line: NDJSON lines, CSV records (line breaks
/// outside quotes, minus the header), decompressing gzip first. Off, it costs nothing.
final class ExportRowCounter: Sendable {
    private struct State {
        var inQuotes = false
        var lines = 0
    }

    private let csv: Bool
    private let enabled: Bool
    private let gunzip: Mutex<GzipDecompressor?>
    private let state = Mutex(State())

    init(csv: Bool, gzip: Bool, enabled: Bool) throws {
        self.csv = csv
        self.enabled = enabled
        gunzip = Mutex(enabled && gzip ? try GzipDecompressor() : nil)
    }

    /// Feeds written bytes; returns the rows seen so far.
    func feed(_ bytes: [UInt8]) throws -> Int {
        guard enabled else { return 0 }
        let plain = try gunzip.withLock { gunzip in try gunzip.map { try $0.decompress(bytes) } ?? bytes }
        let csv = self.csv
        return state.withLock { state in
            for b in plain {
                if csv && b == 34 { state.inQuotes.toggle() } else if b == 10 && !state.inQuotes { state.lines += 1 }
            }
            return csv ? max(0, state.lines - 1) : state.lines
        }
    }
}
