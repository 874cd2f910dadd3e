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
            gzipped (.gz; gzip is also recognised by its magic bytes). --format overrides the name. \
            FILE - reads standard input (CSV unless --format ndjson; gzip is recognised there too).

            CSV: RFC 4180 (quoted fields may hold commas, quotes and line breaks; UTF-8, with or \
            without a byte order mark; CRLF or LF). The header row names the columns:
              email          required
              name           text
              status         active, pending, unsubscribed or hard_bounce
              funnel         aware, engaged, customer, loyal_customer or promoter
              lost           true/false (also 1/0, yes/no)
              labels         separated by --labels-separator (default ';'), replacing
                             the contact's labels; a tag in double quotes loses them
                             and may hold the separator (add_labels and remove_labels
                             add and remove)
              other columns  custom fields defined on the server (segmentd
                             call fields.list), converted by type: number;
                             boolean (true/false, 1/0, yes/no); date, text
            An empty cell leaves that value unchanged (the key is not sent). Unknown columns \
            stop the import before any row is sent: define them with `segmentd call \
            fields.define '{"name": "…", "type": "text"}'` or --define-fields, send them to \
            another column with --map, or skip them with --ignore-column.

            --map "SOURCE=TARGET" (repeatable) reads column SOURCE as TARGET: email, name, \
            status, funnel, lost, labels, add_labels, remove_labels or a custom field. \
            "A+B=TARGET" joins columns A and B with a space (empty ones are left out), e.g. \
            --map "First Name+Last Name=name". Column names match exactly, else ignoring case.

            --define-fields text|infer defines every unknown column (or --map target) as a \
            custom field before any row is sent: text, or with infer a number, date or \
            boolean field when every non-empty value in the first 1,000 rows parses as one \
            (checked in that order: a 0/1 column is a number; a value with a leading zero \
            such as 02134 keeps the column text), text otherwise. A later row whose value \
            does not parse fails alone.

            NDJSON: one contact document per line, sent as is (the keys contacts.upsert takes).

            Rows go to contacts.upsert in batches of --batch over one connection, up to \
            --in-flight batches at a time (rows for the same email are never in flight together, \
            so the file's order wins). A bad row (wrong number of fields, a value of the wrong \
            type, invalid JSON, or one the server refuses such as a bad email) fails alone and is \
            reported with its line number; the rest is imported.

            On a terminal, a progress line on stderr shows rows, rows/s, percent of the file read \
            and the time left. At the end a summary goes to stdout. Every row of the input is \
            counted once: created, updated, failed (bad rows, with their lines: the first 20, \
            --verbose all), refused (the server was shutting down or overloaded: not written), unconfirmed \
            (sent, but the connection was lost before the reply: maybe written), not sent (after \
            the import stopped) and skipped (before --resume-at).

            Interrupted (the server shuts down, the connection is lost, or Ctrl-C), the import \
            stops sending, waits for the replies in flight, counts the rest of the input as not \
            sent (after Ctrl-C the rest is not read; a second Ctrl-C stops at once, with no \
            summary) and prints the last line certainly in: every row up to it was imported or \
            reported failed. Run the same command again with --resume-at LINE, LINE being that \
            line + 1 (the summary prints the command; for -, pipe the same input again): rows \
            that start before LINE are skipped. Rows sent again are upserted again, which \
            leaves the same contacts.

            Exit status: 0 every row was imported; 2 some rows failed (the others were \
            imported); 1 a fatal error (unreadable file, unknown column, no server) or the \
            server stopped the import; 130 interrupted by Ctrl-C. Rows sent before a fatal \
            error stay imported.

            Examples:
              segmentd import contacts.csv
              segmentd import export.ndjson.gz --socket /run/segmentd.sock --batch 5000
              segmentd import leads.csv --ignore-column notes --verbose
              segmentd import members.csv --map "Email Address=email" \\
                --map "First Name+Last Name=name" --map TAGS=labels \\
                --labels-separator , --define-fields infer
              gunzip -c leads.csv.gz | segmentd import - --resume-at 42001
            """)

    @Argument(help: "The file: .csv, .ndjson or .jsonl, optionally .gz; - reads standard input.") var file: String
    @Option(help: "The book to work on (default: the server's default book).") var book: String?
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Connect over TCP HOST:PORT instead of the socket.") var tcp: String?
    @Option(help: "Token for TCP (default: $SEGMENTD_TOKEN).") var token: String?
    @Option(help: "Contacts per contacts.upsert call (1-10000).") var batch = 1000
    @Option(help: "Batches sent before waiting for replies (1-16).") var inFlight = 4
    @Option(help: "The file's format when its name does not tell: csv or ndjson.") var format: String?
    @Option(name: .customLong("ignore-column"), help: "A CSV column to skip (repeatable).") var ignoreColumns: [String] = []
    @Option(name: .customLong("map"), help: ArgumentHelp("Read CSV column SOURCE as TARGET; A+B joins two with a space (repeatable).", valueName: "SOURCE=TARGET"))
    var maps: [String] = []
    @Option(name: .customLong("labels-separator"), help: ArgumentHelp("The character between labels in a CSV cell.", valueName: "char"))
    var labelsSeparator = ";"
    @Option(name: .customLong("define-fields"), help: ArgumentHelp("Define unknown CSV columns as fields first: text, or infer number/date/boolean.", valueName: "text|infer"))
    var defineFields: String?
    @Option(name: .customLong("resume-at"), help: ArgumentHelp("Skip the rows that start before this input line (as the summary of a stopped import says).", valueName: "line"))
    var resumeAt: Int?
    @Option(help: "Progress line on stderr: auto (when it is a terminal), always or never.") var progress = "auto"
    @Flag(help: "List every failed line in the summary (default: the first 20).") var verbose = false

    func validate() throws {
        guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 10000") }
        guard (1...16).contains(inFlight) else { throw ValidationError("--in-flight must be between 1 and 16") }
        if let format, ImportFormat(rawValue: format.lowercased()) == nil { throw ValidationError("--format must be csv or ndjson") }
        guard ProgressMode(rawValue: progress) != nil else { throw ValidationError("--progress must be auto, always or never") }
        guard labelsSeparator.count == 1 else {
            throw ValidationError("--labels-separator must be one character, got \"\(labelsSeparator)\"")
        }
        if let defineFields, DefineFields(rawValue: defineFields) == nil {
            throw ValidationError("--define-fields must be text or infer, got \"\(defineFields)\"")
        }
        if let resumeAt, resumeAt < 1 { throw ValidationError("--resume-at must be a line number (1 or more), got \(resumeAt)") }
        for map in maps {
            do { _ = try ColumnMap(map) } catch let error as CommandFailure { throw ValidationError(error.description) }
        }
    }

    func run() async throws {
        let fromName: ImportFormat? = file == "-" ? .csv : ImportFormat.infer(from: file)
        let named = format.flatMap { ImportFormat(rawValue: $0.lowercased()) } ?? fromName
        guard let kind = named else {
            throw CommandFailure("\(file): cannot tell the format from the name; expected .csv, .ndjson or .jsonl (optionally .gz), or give --format")
        }
        if kind == .ndjson {
            let csvOnly = [("--map", !maps.isEmpty), ("--define-fields", defineFields != nil), ("--labels-separator", labelsSeparator != ";")]
            if let hit = csvOnly.first(where: { $0.1 }) { throw ValidationError("\(hit.0) applies to CSV input; \(file) is NDJSON") }
        }
        let columnMaps = try maps.map(ColumnMap.init)
        let reader = try ChunkReader(path: file)
        let client = try await CLIConnection.open(socket: socket, tcp: tcp, token: token)
        defer { Task { try? await client.close() } }

        let hello = try await CLIClient.call(client, "rpc.hello")
        let maxLine = Int(hello["limits"]?["max_line_bytes"]?.intValue ?? 1 << 20)
        // What one request line may carry: the envelope and separators take the rest.
        let budget = max(1024, maxLine - 512)
        let source: any ImportRowSource
        var defined: [FieldInfo] = []
        switch kind {
        case .ndjson:
            source = NDJSONRows(reader: reader, maxDocumentBytes: budget)
        case .csv:
            let listed = try await CLIClient.call(client, "fields.list", CLIBook.params([:], book: book))
            let fields = (listed.arrayValue ?? []).compactMap { item -> FieldInfo? in
                guard item["system"]?.boolValue == false, let name = item["name"]?.stringValue, let type = item["type"]?.stringValue else { return nil }
                return FieldInfo(name: name, type: type)
            }
            let csv = try CSVRows(
                reader: reader, fields: fields, ignoring: Set(ignoreColumns), maps: columnMaps, labelSeparator: labelsSeparator.first!,
                defineFields: defineFields.flatMap(DefineFields.init), maxDocumentBytes: budget)
            // Before any row: a row never meets a field that is not there yet.
            for field in csv.fieldsToDefine {
                _ = try await CLIClient.call(client, "fields.define", CLIBook.params(["name": .string(field.name), "type": .string(field.type)], book: book))
                defined.append(field)
            }
            source = csv
        }

        // The first Ctrl-C asks the import to stop (it finishes what is in flight and prints
        // its summary); a second one ends the process at once.
        let interrupts = Interrupts()
        defer { interrupts.stop() }
        let importer = Importer(
            client: client, book: book, source: source, batchSize: batch, maxInFlight: inFlight, requestBudget: budget,
            progress: ProgressLine(enabled: ProgressMode(rawValue: progress)!.isEnabled), keepAllFailures: verbose,
            resumeAt: resumeAt ?? 1, interrupts: interrupts)
        let fatal: (any Error)?
        do {
            try await importer.run()
            fatal = nil
        } catch {
            fatal = error
        }
        importer.progress.clear()
        let summary = importer.summary(file: file, verbose: verbose, defined: defined, resumeCommand: Self.resumeCommand)
        if importer.rows > 0 || fatal == nil { print(summary, terminator: "") }
        if let fatal { throw CLIClient.describe(fatal) }
        switch importer.stop {
        case .interrupted?:
            FileHandle.standardError.write(Data("Interrupted.\n".utf8))
            throw ExitCode(Interrupts.exitStatus)
        case .refused(let message)?, .lost(let message)?:
            throw CommandFailure("the import stopped: \(message)")
        case nil:
            break
        }
        if importer.failedCount > 0 { throw ExitCode(2) }
    }

    /// This command line with `--resume-at LINE` in place of any earlier one, quoted for a shell.
    static func resumeCommand(at line: Int) -> String {
        var arguments = Array(CommandLine.arguments.dropFirst())
        var i = 0
        while i < arguments.count {
            if arguments[i] == "--resume-at" {
                arguments.removeSubrange(i..<min(i + 2, arguments.count))
            } else if arguments[i].hasPrefix("--resume-at=") {
                arguments.remove(at: i)
            } else {
                i += 1
            }
        }
        return (["segmentd"] + arguments + ["--resume-at", String(line)]).map(shellQuoted).joined(separator: " ")
    }

    static func shellQuoted(_ word: String) -> String {
        let safe = word.utf8.allSatisfy { b in
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || "-_./,:=+@%".utf8.contains(b)
        }
        return safe && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}
