import ArgumentParser
import Foundation
import LineRPC
import WireJSON

/// `segmentd import FILE`: bulk upsert of contacts from CSV or NDJSON (optionally gzipped).
struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import contacts from a CSV or NDJSON file (optionally .gz) in batches, with a summary of what failed by line.",
        discussion: """
            FILE is read as a stream (never loaded whole): .csv, .ndjson or .jsonl, each optionally \
            gzipped (.gz; gzip is also recognised by its magic bytes). --format overrides the name.

            CSV: RFC 4180 (quoted fields may hold commas, quotes and line breaks; UTF-8). The \
            header row names the columns:
              email          required
              name           text
              status         active, pending, unsubscribed or hard_bounce
              funnel         aware, engaged, customer, loyal_customer or promoter
              lost           true/false (also 1/0, yes/no)
              labels         separated by ';', replacing the contact's labels
                             (add_labels and remove_labels add and remove)
              other columns  custom fields defined on the server (segmentd
                             call fields.list), converted by type: number;
                             boolean (true/false, 1/0, yes/no); date, text
            An empty cell leaves that value unchanged (the key is not sent). Unknown columns \
            stop the import before any row is sent: define them with `segmentd call \
            fields.define '{"name": "…", "type": "text"}'` or skip them with --ignore-column.

            NDJSON: one contact document per line, sent as is (the keys contacts.upsert takes).

            Rows go to contacts.upsert in batches of --batch over one connection, up to \
            --in-flight batches at a time (rows for the same email are never in flight together, \
            so the file's order wins). A bad row (wrong number of fields, a value of the wrong \
            type, invalid JSON, or one the server refuses such as a bad email) fails alone and is \
            reported with its line number; the rest is imported.

            On a terminal, a progress line on stderr shows rows, rows/s, percent of the file read \
            and the time left. At the end a summary goes to stdout: rows created, updated and \
            failed, and the first 20 failed lines with their errors (--verbose: all of them).

            Exit status: 0 every row was imported; 2 some rows failed (the others were \
            imported); 1 a fatal error (unreadable file, unknown column, no server) — rows sent \
            before a fatal error stay imported.

            Examples:
              segmentd import contacts.csv
              segmentd import export.ndjson.gz --socket /run/segmentd.sock --batch 5000
              segmentd import leads.csv --ignore-column notes --verbose
            """)

    @Argument(help: "The file: .csv, .ndjson or .jsonl, optionally .gz.") var file: String
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Connect over TCP HOST:PORT instead of the socket.") var tcp: String?
    @Option(help: "Token for TCP (default: $SEGMENTD_TOKEN).") var token: String?
    @Option(help: "Contacts per contacts.upsert call (1-10000).") var batch = 1000
    @Option(help: "Batches sent before waiting for replies (1-16).") var inFlight = 4
    @Option(help: "The file's format when its name does not tell: csv or ndjson.") var format: String?
    @Option(name: .customLong("ignore-column"), help: "A CSV column to skip (repeatable).") var ignoreColumns: [String] = []
    @Option(help: "Progress line on stderr: auto (when it is a terminal), always or never.") var progress = "auto"
    @Flag(help: "List every failed line in the summary (default: the first 20).") var verbose = false

    func validate() throws {
        guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 10000") }
        guard (1...16).contains(inFlight) else { throw ValidationError("--in-flight must be between 1 and 16") }
        if let format, ImportFormat(rawValue: format.lowercased()) == nil { throw ValidationError("--format must be csv or ndjson") }
        guard ProgressMode(rawValue: progress) != nil else { throw ValidationError("--progress must be auto, always or never") }
    }

    func run() async throws {
        guard let kind = format.flatMap({ ImportFormat(rawValue: $0.lowercased()) }) ?? ImportFormat.infer(from: file) else {
            throw CommandFailure("\(file): cannot tell the format from the name; expected .csv, .ndjson or .jsonl (optionally .gz), or give --format")
        }
        let reader = try ChunkReader(path: file)
        let client = try await CLIClient.open(socket: socket, tcp: tcp, token: token)
        defer { Task { try? await client.close() } }

        let hello = try await CLIClient.call(client, "rpc.hello")
        let maxLine = Int(hello["limits"]?["max_line_bytes"]?.intValue ?? 1 << 20)
        // What one request line may carry: the envelope and separators take the rest.
        let budget = max(1024, maxLine - 512)
        let source: any ImportRowSource
        switch kind {
        case .ndjson:
            source = NDJSONRows(reader: reader, maxDocumentBytes: budget)
        case .csv:
            let listed = try await CLIClient.call(client, "fields.list")
            let fields = (listed.arrayValue ?? []).compactMap { item -> FieldInfo? in
                guard item["system"]?.boolValue == false, let name = item["name"]?.stringValue, let type = item["type"]?.stringValue else { return nil }
                return FieldInfo(name: name, type: type)
            }
            source = try CSVRows(reader: reader, fields: fields, ignoring: Set(ignoreColumns), maxDocumentBytes: budget)
        }

        let importer = Importer(
            client: client, source: source, batchSize: batch, maxInFlight: inFlight, requestBudget: budget,
            progress: ProgressLine(enabled: ProgressMode(rawValue: progress)!.isEnabled), keepAllFailures: verbose)
        let fatal: (any Error)?
        do {
            try await importer.run()
            fatal = nil
        } catch {
            fatal = error
        }
        importer.progress.clear()
        let summary = importer.summary(file: file, verbose: verbose, interrupted: fatal != nil)
        if importer.rows > 0 || fatal == nil { print(summary, terminator: "") }
        if let fatal { throw CLIClient.describe(fatal) }
        if importer.failedCount > 0 { throw ExitCode(2) }
    }
}

/// Sends rows in batches, pipelined, and tallies the outcome.
final class Importer {
    let client: RPCClient
    let source: any ImportRowSource
    let batchSize: Int
    let maxInFlight: Int
    let requestBudget: Int
    let progress: ProgressLine

    private(set) var rows = 0
    private(set) var created = 0
    private(set) var updated = 0
    private(set) var failedCount = 0
    /// Failed lines to list: all of them with --verbose, else the first `shown` by line (kept
    /// bounded, so a file of a million bad rows does not hold a million messages).
    private var failures: [(line: Int, message: String)] = []
    let keepAllFailures: Bool
    static let shown = 20

    struct Batch: Sendable {
        var id: Int
        var lines: [Int] = []
        var documents: [JSONValue] = []
        var keys: Set<String> = []
        var bytes = 0
    }

    struct Outcome: Sendable {
        var id: Int
        var created = 0
        var updated = 0
        var failures: [(line: Int, message: String)] = []
    }

    init(
        client: RPCClient, source: any ImportRowSource, batchSize: Int, maxInFlight: Int, requestBudget: Int, progress: ProgressLine,
        keepAllFailures: Bool
    ) {
        self.keepAllFailures = keepAllFailures
        self.client = client
        self.source = source
        self.batchSize = batchSize
        self.maxInFlight = maxInFlight
        self.requestBudget = requestBudget
        self.progress = progress
    }

    func run() async throws {
        let client = self.client
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            var inFlight: [Int: Set<String>] = [:]
            var nextID = 0
            var current = Batch(id: nextID)

            func settleOne() async throws {
                guard let outcome = try await group.next() else {
                    inFlight.removeAll()  // nothing left running: never loop on a stale entry
                    return
                }
                inFlight[outcome.id] = nil
                tally(outcome)
            }
            func send(_ batch: Batch) async throws {
                guard !batch.documents.isEmpty else { return }
                // Bounded: each pass settles one in-flight batch, and there are at most maxInFlight.
                while inFlight.count >= maxInFlight || inFlight.values.contains(where: { !$0.isDisjoint(with: batch.keys) }) {
                    try await settleOne()
                }
                inFlight[batch.id] = batch.keys
                group.addTask { try await Self.upsert(client, batch) }
            }

            while let row = try source.next() {
                rows += 1
                switch row {
                case .failure(let line, let message):
                    recordFailures([(line, message)])
                case .contact(let line, let document, let key, let bytes):
                    if current.bytes + bytes + 1 > requestBudget || current.documents.count >= batchSize {
                        try await send(current)
                        nextID += 1
                        current = Batch(id: nextID)
                    }
                    current.lines.append(line)
                    current.documents.append(document)
                    if let key { current.keys.insert(key) }
                    current.bytes += bytes + 1
                }
                if rows & 255 == 0 { drawProgress() }
            }
            try await send(current)
            while !inFlight.isEmpty { try await settleOne() }
        }
        drawProgress(force: true)
    }

    private func recordFailures(_ new: [(line: Int, message: String)]) {
        failedCount += new.count
        failures += new
        if !keepAllFailures && failures.count > 50 * Self.shown {
            failures = Array(failures.sorted { $0.line < $1.line }.prefix(Self.shown))
        }
    }

    private func tally(_ outcome: Outcome) {
        created += outcome.created
        updated += outcome.updated
        recordFailures(outcome.failures)
        drawProgress()
    }

    /// One contacts.upsert call; item failures map back to file lines. An error reply for the
    /// whole call fails its rows (the import goes on); a lost connection is fatal.
    static func upsert(_ client: RPCClient, _ batch: Batch) async throws -> Outcome {
        var outcome = Outcome(id: batch.id)
        do {
            let result = try await client.call("contacts.upsert", ["contacts": .array(batch.documents)])
            outcome.created = Int(result["created"]?.intValue ?? 0)
            outcome.updated = Int(result["updated"]?.intValue ?? 0)
            for item in result["failed"]?.arrayValue ?? [] {
                guard let index = item["index"]?.intValue.map(Int.init), batch.lines.indices.contains(index) else { continue }
                outcome.failures.append((batch.lines[index], Self.localMessage(item["error"]?.stringValue ?? "refused", index: index)))
            }
        } catch let error as RPCError {
            let message = "the batch was refused: \(error.message)"
            outcome.failures = batch.lines.map { ($0, message) }
        }
        return outcome
    }

    /// `contacts[17].email: not an email address` → `email: not an email address`.
    static func localMessage(_ message: String, index: Int) -> String {
        for prefix in ["contacts[\(index)].", "contacts[\(index)]: ", "contacts[\(index)]"] where message.hasPrefix(prefix) {
            return String(message.dropFirst(prefix.count))
        }
        return message
    }

    private func drawProgress(force: Bool = false) {
        guard progress.enabled else { return }
        let reader = source.reader
        // Rows the server has answered for (and rows that failed before sending); the percentage
        // is of the file read, which runs ahead by at most the batches in flight.
        let (done, read, total) = (created + updated + failedCount, reader.bytesRead, reader.totalBytes)
        progress.update(force: force) { elapsed in
            let fraction = total > 0 ? Double(read) / Double(total) : 0
            return "\(ProgressLine.bar(fraction)) \(String(format: "%3d", Int(fraction * 100)))%  "
                + "\(ProgressLine.count(done)) rows  \(ProgressLine.rate(Double(done), over: elapsed)) rows/s  "
                + "ETA \(ProgressLine.eta(fraction: fraction, elapsed: elapsed))"
        }
    }

    /// The summary printed to stdout.
    func summary(file: String, verbose: Bool, interrupted: Bool) -> String {
        let elapsed = progress.elapsed
        var out = "\(interrupted ? "Import of \(file) stopped" : "Imported \(file)"): \(ProgressLine.count(rows)) row\(rows == 1 ? "" : "s") in "
            + "\(String(format: "%.1f", elapsed)) s" + (elapsed >= 0.05 ? " (\(ProgressLine.rate(Double(rows), over: elapsed)) rows/s)\n" : "\n")
        out += "  created: \(created)\n  updated: \(updated)\n  failed:  \(failedCount)\n"
        let sorted = failures.sorted { $0.line < $1.line }
        let shown = verbose ? sorted[...] : sorted.prefix(Self.shown)
        if !shown.isEmpty { out += "Failed rows:\n" }
        for failure in shown {
            out += "  line \(failure.line): \(failure.message.replacingOccurrences(of: "\n", with: "\\n"))\n"
        }
        if shown.count < failedCount { out += "  … and \(failedCount - shown.count) more (--verbose lists them all)\n" }
        return out
    }
}

/// Connection helpers shared by import and export: clear messages instead of NIO's.
enum CLIClient {
    /// `CLIConnection.open`, which words connection failures for every subcommand.
    static func open(socket: String, tcp: String?, token: String?) async throws -> RPCClient {
        try await CLIConnection.open(socket: socket, tcp: tcp, token: token)
    }

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
