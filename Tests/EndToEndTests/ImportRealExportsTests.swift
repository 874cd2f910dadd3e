import SegmentdApp
import SegmentCore
import SegmentEngine
import Foundation
import LineRPC
import StreamCodec
import TestThreads
import Testing
import WireJSON

#if canImport(Glibc)
import Glibc
#endif

/// `segmentd import` on files as other tools export them (a Mailchimp audience export), from
/// standard input, and stopped halfway: the real binary against a live server.
@Suite(.ownThreads) struct ImportRealExportsTests {
    typealias CLI = ImportExportCLITests

    static var segmentdPath: String { productsDirectory().appendingPathComponent("segmentd").path }

    /// Runs `segmentd import - ARGS < input` through a shell, as a user piping a file would.
    static func importStdin(_ server: TestServer, input: String, _ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        try await runProcess(
            "/bin/sh", ["-c", #"exec "$0" import - "$@" < "$INPUT""#, segmentdPath] + arguments + ["--socket", server.socketPath],
            cwd: server.directory, environment: ["PATH": "/usr/bin:/bin", "INPUT": input], timeout: 60)
    }

    /// A field quoted whatever it holds, as Mailchimp writes them.
    static func quoted(_ field: String) -> String { "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    struct Member {
        var email, first, last: String
        var rating: Int
        var optin: String
        var gdpr: String
        var notes: String
        var zip: String
        var tags: [String]
        var name: String { [first, last].filter { !$0.isEmpty }.joined(separator: " ") }
    }

    static func members(_ count: Int) -> [Member] {
        let tagSets: [[String]] = [["vip", "newsletter"], ["newsletter"], [], ["new, 2024", "vip"]]
        let firsts = ["Ana", "Zoë", "李", "", "O'Brien"]
        return (0..<count).map { (i: Int) -> Member in
            let optin = String(format: "2024-03-%02d 10:22:%02d", i % 28 + 1, i % 60)
            let notes = i % 2 == 0 ? String(i) : "called, left a message"
            let zip = String(format: "%05d", i * 337 % 99999)
            return Member(
                email: "member\(i)@example.com", first: firsts[i % firsts.count], last: "Last\(i)", rating: i % 5 + 1, optin: optin,
                gdpr: ["yes", "no", ""][i % 3], notes: notes, zip: zip, tags: tagSets[i % tagSets.count])
        }
    }

    /// A Mailchimp-style export: BOM, CRLF, every field quoted, tags as `"a","b"`.
    static func mailchimpCSV(_ members: [Member]) -> [UInt8] {
        var text = "\u{FEFF}" + ["Email Address", "First Name", "Last Name", "MEMBER_RATING", "OPTIN_TIME", "GDPR", "NOTES", "ZIP", "TAGS"].map(quoted)
            .joined(separator: ",") + "\r\n"
        for m in members {
            let tags = m.tags.map(quoted).joined(separator: ",")
            text += [m.email, m.first, m.last, String(m.rating), m.optin, m.gdpr, m.notes, m.zip, tags].map(quoted).joined(separator: ",") + "\r\n"
        }
        return Array(text.utf8)
    }

    static let mailchimpMaps = [
        "--map", "Email Address=email", "--map", "First Name+Last Name=name", "--map", "TAGS=labels", "--labels-separator", ",",
    ]

    static func fieldTypes(_ server: TestServer) async throws -> [String: String] {
        let client = try await server.client()
        defer { Task { try? await client.close() } }
        var types: [String: String] = [:]
        for item in try await client.call("fields.list").arrayValue ?? [] where item["system"]?.boolValue == false {
            types[item["name"]?.stringValue ?? ""] = item["type"]?.stringValue
        }
        return types
    }

    @Test func mailchimpExportImportsWithMapsAndInferredFields() async throws {
        let server = try await TestServer.start()
        let members = Self.members(60)
        let path = server.directory + "/members.csv"
        try Data(Self.mailchimpCSV(members)).write(to: URL(fileURLWithPath: path))

        let run = try await CLI.segmentd(server, ["import", path, "--define-fields", "infer"] + Self.mailchimpMaps)
        #expect(run.status == 0, "\(run.out) \(run.err)")
        #expect(CLI.tally(run.out, "created") == members.count, "\(run.out)")
        #expect(run.out.contains("Defined fields: MEMBER_RATING (number), OPTIN_TIME (date), GDPR (boolean), NOTES (text), ZIP (text)"), "\(run.out)")
        #expect(try await Self.fieldTypes(server) == ["MEMBER_RATING": "number", "OPTIN_TIME": "date", "GDPR": "boolean", "NOTES": "text", "ZIP": "text"])
        for m in members {
            let contact = try #require(server.app.engine.contact(email: m.email), "\(m.email)")
            #expect(contact["name"]?.stringValue == m.name)
            #expect(Set((contact["labels"]?.arrayValue ?? []).compactMap(\.stringValue)) == Set(m.tags), "\(m.email)")
            let fields = contact["fields"]
            #expect(fields?["MEMBER_RATING"]?.doubleValue == Double(m.rating))
            #expect(fields?["OPTIN_TIME"]?.stringValue?.hasPrefix(String(m.optin.prefix(10))) == true, "\(String(describing: fields))")
            #expect(fields?["GDPR"]?.boolValue == (m.gdpr.isEmpty ? nil : m.gdpr == "yes"))
            #expect(fields?["NOTES"]?.stringValue == m.notes)
            #expect(fields?["ZIP"]?.stringValue == m.zip, "a leading zero keeps ZIP text")
        }
        try await server.stop()
    }

    @Test func defineFieldsTextKeepsEveryUnknownColumnAsText() async throws {
        let server = try await TestServer.start()
        let members = Self.members(12)
        let path = server.directory + "/members.csv"
        try Data(Self.mailchimpCSV(members)).write(to: URL(fileURLWithPath: path))

        // Without --define-fields: the unknown columns stop it before anything is sent or defined.
        let refused = try await CLI.segmentd(server, ["import", path] + Self.mailchimpMaps)
        #expect(refused.status == 1)
        for text in ["\"MEMBER_RATING\"", "\"OPTIN_TIME\"", "\"GDPR\"", "\"NOTES\"", "fields.define", "--define-fields", "Nothing was imported"] {
            #expect(refused.err.contains(text), "\(text): \(refused.err)")
        }
        #expect(try await Self.fieldTypes(server).isEmpty)
        #expect(server.app.engine.snapshot.contactCount == 0)

        let run = try await CLI.segmentd(server, ["import", path, "--define-fields", "text"] + Self.mailchimpMaps)
        #expect(run.status == 0, "\(run.out) \(run.err)")
        #expect(try await Self.fieldTypes(server) == ["MEMBER_RATING": "text", "OPTIN_TIME": "text", "GDPR": "text", "NOTES": "text", "ZIP": "text"])
        let contact = try #require(server.app.engine.contact(email: members[3].email))
        #expect(contact["fields"]?["MEMBER_RATING"]?.stringValue == String(members[3].rating))
        #expect(contact["name"]?.stringValue == members[3].last, "an empty first name leaves no leading space")
        try await server.stop()
    }

    @Test func inferLooksAtTheFirstThousandRowsAndALaterMisfitFailsAlone() async throws {
        let server = try await TestServer.start()
        var text = "email,score,joined,opted_in\n"
        for i in 0..<1000 { text += "s\(i)@example.com,\(i % 7 == 0 ? "" : String(Double(i) / 4)),2025-01-\(String(format: "%02d", i % 28 + 1)),\(i % 2 == 0 ? "Yes" : "no")\n" }
        text += "late@example.com,n/a,soon,maybe\nlast@example.com,7,2025-02-01T08:00:00Z,true\n"
        let path = server.directory + "/scores.csv"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let run = try await CLI.segmentd(server, ["import", path, "--define-fields", "infer"])
        #expect(run.status == 2, "\(run.out) \(run.err)")
        #expect(run.out.contains("Defined fields: score (number), joined (date), opted_in (boolean)"), "\(run.out)")
        #expect(CLI.failedLines(run.out) == [1002] && run.out.contains("score: expected a number"), "\(run.out)")
        #expect(CLI.tally(run.out, "created") == 1001)
        #expect(server.app.engine.contact(email: "s5@example.com")?["fields"]?["score"]?.doubleValue == 1.25)
        #expect(server.app.engine.contact(email: "last@example.com")?["fields"]?["opted_in"]?.boolValue == true)
        try await server.stop()
    }

    @Test func byteOrderMarkBeforeAQuotedHeaderIsNotPartOfTheName() async throws {
        let server = try await TestServer.start()
        let path = server.directory + "/bom.csv"
        try Data(("\u{FEFF}\"email\",\"name\",\"labels\"\r\n\"ana@example.com\",\"Ana\",\"a;\"\"b\"\"\"\r\n").utf8).write(to: URL(fileURLWithPath: path))
        let run = try await CLI.segmentd(server, ["import", path])
        #expect(run.status == 0, "\(run.err)")
        let contact = try #require(server.app.engine.contact(email: "ana@example.com"))
        #expect(contact["name"] == "Ana")
        #expect(Set((contact["labels"]?.arrayValue ?? []).compactMap(\.stringValue)) == ["a", "b"])
        try await server.stop()
    }

    @Test func badMappingsAndSeparatorsSayWhatIsWrong() async throws {
        let server = try await TestServer.start()
        let path = server.directory + "/members.csv"
        try Data(Self.mailchimpCSV(Self.members(3))).write(to: URL(fileURLWithPath: path))
        let cases: [([String], [String])] = [
            (["--map", "Email Adress=email"], ["no column \"Email Adress\"", "\"Email Address\""]),
            (["--map", "Email Address=email", "--map", "First Name+Middle=name"], ["no column \"Middle\""]),
            (["--map", "Email Address=emial", "--ignore-column", "TAGS"], ["unknown target \"emial\"", "email, name"]),
            (["--map", "Email Address", "--ignore-column", "TAGS"], ["expected SOURCE=TARGET"]),
            (["--map", "Email Address=email", "--map", "Last Name=email"], ["would both become email"]),
            (["--labels-separator", ",;"], ["--labels-separator must be one character"]),
            (["--define-fields", "guess"], ["--define-fields must be text or infer"]),
            (["--resume-at", "0"], ["--resume-at must be a line number"]),
        ]
        for (arguments, messages) in cases {
            let run = try await CLI.segmentd(server, ["import", path] + arguments)
            #expect(run.status != 0, "\(arguments)")
            for message in messages { #expect(run.err.contains(message), "\(arguments): \(run.err)") }
        }
        #expect(server.app.engine.snapshot.contactCount == 0)
        try await server.stop()
    }

    @Test func standardInputPlainAndGzipped() async throws {
        let server = try await TestServer.start()
        let members = Self.members(40)
        let plain = server.directory + "/members.csv"
        try Data(Self.mailchimpCSV(Array(members[..<20]))).write(to: URL(fileURLWithPath: plain))
        let gzip = try GzipCompressor(level: 6)
        let zipped = server.directory + "/members.bin"  // no telling name: the magic bytes tell
        try Data(try gzip.compress(Self.mailchimpCSV(Array(members[20...]))) + gzip.finish()).write(to: URL(fileURLWithPath: zipped))

        let first = try await Self.importStdin(server, input: plain, ["--define-fields", "infer"] + Self.mailchimpMaps)
        #expect(first.status == 0, "\(first.out) \(first.err)")
        #expect(first.out.hasPrefix("Imported standard input: 20 rows"), "\(first.out)")
        let second = try await Self.importStdin(server, input: zipped, Self.mailchimpMaps)
        #expect(second.status == 0, "\(second.out) \(second.err)")
        #expect(CLI.tally(second.out, "created") == 20, "\(second.out)")
        for m in members { #expect(server.app.engine.contact(email: m.email)?["name"]?.stringValue == m.name) }

        let ndjson = server.directory + "/more.ndjson"
        try #"{"email": "nd@example.com", "name": "Nd"}"#.write(toFile: ndjson, atomically: false, encoding: .utf8)
        let third = try await Self.importStdin(server, input: ndjson, ["--format", "ndjson"])
        #expect(third.status == 0 && server.app.engine.contact(email: "nd@example.com") != nil, "\(third.err)")
        try await server.stop()
    }

    @Test func unreadableInputAfterOnlyFailedRowsSaysWhereToResume() async throws {
        let server = try await TestServer.start()
        // 30 rows that each fail alone (three fields), then 30 good ones. The truncated copy
        // ends after the bad rows: when it fails, no batch is waiting to be sent.
        var text = "email,name\n"
        for i in 0..<30 { text += "bad\(i)@example.com,Bad,\(i)\n" }
        let badEnd = text.utf8.count
        for i in 0..<30 { text += "good\(i)@example.com,Good \(i)\n" }
        let bytes = Array(text.utf8)
        let gzip = try GzipCompressor(level: 6)
        let readable = try gzip.flush(Array(bytes[..<badEnd]))  // decodes to the header and every bad row
        let whole = readable + (try gzip.compress(Array(bytes[badEnd...]))) + (try gzip.finish())
        let truncated = server.directory + "/truncated.bin"
        let intact = server.directory + "/intact.bin"
        try Data(readable).write(to: URL(fileURLWithPath: truncated))
        try Data(whole).write(to: URL(fileURLWithPath: intact))

        let stopped = try await Self.importStdin(server, input: truncated, [])
        #expect(stopped.status == 1, "\(stopped.out) \(stopped.err)")
        #expect(stopped.err.contains("truncated gzip data"), "\(stopped.err)")
        #expect(stopped.out.hasPrefix("Import of standard input stopped: 30 rows"), "\(stopped.out)")
        #expect(Self.tally(stopped.out, "failed") == 30, "\(stopped.out)")
        #expect(!stopped.out.contains("Every row read is in"), "\(stopped.out)")
        let point = try #require(Self.resumePoint(stopped.out), "a resume line: \(stopped.out)")
        #expect(point.lastIn == 31 && point.resumeAt == 32, "the line after the last row read: \(stopped.out)")

        // The intact input resumed there: the bad rows are skipped, the good ones imported.
        let resumed = try await Self.importStdin(server, input: intact, ["--resume-at", String(point.resumeAt)])
        #expect(resumed.status == 0, "\(resumed.out) \(resumed.err)")
        #expect(Self.tally(resumed.out, "skipped") == 30 && Self.tally(resumed.out, "created") == 30, "\(resumed.out)")
        #expect(server.app.engine.snapshot.contactCount == 30)
        try await server.stop()
    }

    // MARK: Interrupted imports

    /// A book of `count` rows (every 500th a bad email) and each row's first line.
    struct Book {
        var bytes: [UInt8] = []
        var rows: [(line: Int, email: String, name: String, good: Bool)] = []

        init(count: Int) {
            // Lines counted per record (CSVFile recounts the whole file on each add: slow here).
            var line = 1
            func add(_ fields: [String]) -> Int {
                let start = bytes.count
                CSV.appendRecord(fields, to: &bytes)
                defer { line += bytes[start...].count(where: { $0 == 10 }) }
                return line
            }
            _ = add(["email", "name", "labels"])
            for i in 0..<count {
                let good = i % 500 != 7
                let email = good ? "reader\(i)@example.com" : "reader\(i) at example.com"
                // Every 50th name spans two lines, so rows and lines differ.
                let name = i % 50 == 0 ? "Reader\n\(i)" : "Reader \(i)"
                rows.append((add([email, name, i % 2 == 0 ? "even;all" : "all"]), email, name, good))
            }
        }

        /// The byte offset where row `index` starts.
        func offset(ofRow index: Int) -> Int {
            var line = 1
            for (i, b) in bytes.enumerated() where b == 10 {
                line += 1
                if line == rows[index].line { return i + 1 }
            }
            return bytes.count
        }
    }

    /// `segmentd import - ARGS < fifo`, whose input the test writes in parts.
    final class FedImport {
        let process: ChildProcess
        let out: String
        let err: String
        var fd: Int32 = -1

        init(server: TestServer, fifo: String, _ arguments: [String]) throws {
            out = server.directory + "/import.out"
            err = server.directory + "/import.err"
            signal(SIGPIPE, SIG_IGN)  // a write after the import stopped reading fails with EPIPE instead
            guard mkfifo(fifo, 0o600) == 0 else { throw ChildProcessError("mkfifo: \(String(cString: strerror(errno)))") }
            process = ChildProcess(
                "/bin/sh", ["-c", #"exec "$0" import - "$@" < "$INPUT""#, ImportRealExportsTests.segmentdPath] + arguments
                    + ["--socket", server.socketPath],
                directory: server.directory, environment: ["PATH": "/usr/bin:/bin", "INPUT": fifo], standardOutput: .file(out),
                standardError: .file(err))
            try process.start()
        }

        /// Opens the FIFO once the child has (non-blocking: never holds a thread the
        /// in-process server may need).
        func open(_ fifo: String) async throws {
            let deadline = Date().addingTimeInterval(60)
            while fd < 0 {
                fd = Glibc.open(fifo, O_WRONLY | O_NONBLOCK)
                if fd < 0 {
                    guard errno == ENXIO, Date() < deadline, process.isRunning else {
                        throw ChildProcessError("open fifo: \(String(cString: strerror(errno)))")
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
        }

        func write(_ bytes: ArraySlice<UInt8>) async throws {
            var rest = bytes
            let deadline = Date().addingTimeInterval(60)
            while !rest.isEmpty {
                let n = rest.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    rest = rest.dropFirst(n)
                } else if errno == EPIPE {
                    return  // the import has stopped reading: what is left is not read
                } else if errno == EAGAIN && Date() < deadline {
                    try await Task.sleep(for: .milliseconds(5))
                } else {
                    throw ChildProcessError("write fifo: \(String(cString: strerror(errno)))")
                }
            }
        }

        func close() {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }

        /// Waits for the child; returns its exit status, stdout and stderr.
        func finish() async throws -> (status: Int32, out: String, err: String) {
            close()
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            return (
                process.terminationStatus ?? -1, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            )
        }
    }

    static func waitForContacts(_ server: TestServer, atLeast count: Int) async throws {
        let deadline = Date().addingTimeInterval(60)
        while server.app.engine.snapshot.contactCount < count {
            guard Date() < deadline else { throw ChildProcessError("the import never reached \(count) contacts") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// `Last line certainly in: N` and the `--resume-at` of the command printed after it.
    static func resumePoint(_ summary: String) -> (lastIn: Int, resumeAt: Int)? {
        let lines = summary.split(separator: "\n").map(String.init)
        guard let last = lines.first(where: { $0.hasPrefix("Last line certainly in: ") }),
            let command = lines.first(where: { $0.hasPrefix("To resume: segmentd import - ") }),
            let n = Int(last.dropFirst("Last line certainly in: ".count).prefix(while: \.isNumber)),
            let range = command.range(of: "--resume-at "), let at = Int(command[range.upperBound...])
        else { return nil }
        return (n, at)
    }

    /// The count after `name:` in the summary (a note in parentheses may follow it).
    static func tally(_ summary: String, _ name: String) -> Int? {
        for line in summary.split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix(name + ":") { return Int(text.dropFirst(name.count + 1).drop(while: \.isWhitespace).prefix(while: \.isNumber)) }
        }
        return nil
    }

    /// Every row counted once, in the summary of a stopped import.
    static func counted(_ summary: String) -> Int {
        ["created", "updated", "failed", "refused", "unconfirmed", "not sent", "skipped"].reduce(0) { $0 + (tally(summary, $1) ?? 0) }
    }

    /// After a stop, resuming on a restarted server completes the book exactly.
    static func resume(_ book: Book, database: String, stopped: (status: Int32, out: String, err: String)) async throws {
        let point = try #require(resumePoint(stopped.out), "\(stopped.out)\n\(stopped.err)")
        #expect(point.resumeAt == point.lastIn + 1)
        #expect(counted(stopped.out) == book.rows.count, "every row counted once: \(stopped.out)")
        #expect(book.rows.contains { $0.line == point.resumeAt }, "the resume line starts a row")

        let server = try await TestServer.start { $0.databasePath = database }
        for row in book.rows where row.line < point.resumeAt && row.good {
            #expect(server.app.engine.contact(email: row.email) != nil, "line \(row.line) is certainly in")
        }
        let path = server.directory + "/book.csv"
        try Data(book.bytes).write(to: URL(fileURLWithPath: path))
        let resumed = try await importStdin(server, input: path, ["--resume-at", String(point.resumeAt)])
        let after = book.rows.filter { $0.line >= point.resumeAt }
        #expect(resumed.status == (after.allSatisfy(\.good) ? 0 : 2), "\(resumed.out) \(resumed.err)")
        #expect((tally(resumed.out, "skipped") ?? 0) == book.rows.count - after.count, "\(resumed.out)")
        #expect(counted(resumed.out) == book.rows.count)
        #expect(CLI.failedLines(resumed.out) == after.filter { !$0.good }.map(\.line))
        #expect(server.app.engine.snapshot.contactCount == book.rows.count(where: \.good))
        for row in book.rows where row.good {
            let contact = server.app.engine.contact(email: row.email)
            #expect(contact?["name"]?.stringValue == row.name, "\(row.email)")
        }
        try await server.stop()
    }

    @Test func serverShutdownMidImportCountsEveryRowAndResumes() async throws {
        let home = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let database = home + "/book.sqlite"
        let book = Book(count: 3000)
        let server = try await TestServer.start { $0.databasePath = database }
        let fifo = home + "/in.fifo"
        let run = try FedImport(server: server, fifo: fifo, ["--batch", "50"])
        try await run.open(fifo)
        // Half the rows, then a shutdown while they are going in; then the rest arrives.
        let half = book.offset(ofRow: 1500)
        try await run.write(book.bytes[..<half])
        try await Self.waitForContacts(server, atLeast: 1000)
        server.app.server.shutdown()
        try await run.write(book.bytes[half...])
        let stopped = try await run.finish()
        try await server.stop()

        #expect(stopped.status == 1, "\(stopped.out) \(stopped.err)")
        #expect(stopped.err.contains("the import stopped"), "\(stopped.err)")
        #expect(stopped.out.hasPrefix("Import of standard input stopped: 3,000 rows"), "\(stopped.out)")
        #expect((Self.tally(stopped.out, "not sent") ?? 0) > 0, "\(stopped.out)")
        try await Self.resume(book, database: database, stopped: stopped)
    }

    @Test func batchesAnOverloadedServerRefusesAreNotCountedAsBadRows() async throws {
        let home = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let database = home + "/book.sqlite"
        let book = Book(count: 1000)
        let server = try await TestServer.start {
            $0.databasePath = database
            $0.limits.maxInFlightPerConnection = 1
        }
        let path = home + "/book.csv"
        try Data(book.bytes).write(to: URL(fileURLWithPath: path))
        let stopped = try await Self.importStdin(server, input: path, ["--batch", "10", "--in-flight", "8"])
        try await server.stop()
        // Up to eight batches in flight on a server that takes one at a time: over a hundred
        // batches, some arrive while another runs and are refused as overloaded.
        #expect(stopped.status == 1, "\(stopped.out) \(stopped.err)")
        #expect((Self.tally(stopped.out, "refused") ?? 0) > 0 && stopped.out.contains("overloaded"), "\(stopped.out)")
        #expect(stopped.err.contains("a lower --in-flight may help"), "\(stopped.err)")
        #expect(CLI.failedLines(stopped.out).allSatisfy { line in book.rows.contains { $0.line == line && !$0.good } })
        try await Self.resume(book, database: database, stopped: stopped)
    }

    @Test func ctrlCStopsSendingAndResumes() async throws {
        let home = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let database = home + "/book.sqlite"
        let book = Book(count: 2000)
        let server = try await TestServer.start { $0.databasePath = database }
        let fifo = home + "/in.fifo"
        let run = try FedImport(server: server, fifo: fifo, ["--batch", "40"])
        try await run.open(fifo)
        let half = book.offset(ofRow: 1000)
        try await run.write(book.bytes[..<half])
        try await Self.waitForContacts(server, atLeast: 500)
        run.process.send(SIGINT)
        // More input wakes a read that waits on the pipe. The signal is handled on a dispatch
        // queue, so on a loaded machine the import may read a little more before it notices:
        // feed the rest slowly (2 KiB every 100 ms, ~3 s for the half) until it exits, which
        // it must do without reading it all.
        var offset = half
        while run.process.isRunning, offset < book.bytes.count {
            let end = min(offset + 2_048, book.bytes.count)
            try await run.write(book.bytes[offset..<end])
            offset = end
            try await Task.sleep(for: .milliseconds(100))
        }
        let stopped = try await run.finish()

        #expect(stopped.status == 130, "\(stopped.out) \(stopped.err)")
        #expect(stopped.out.contains("the input after them was not read"), "\(stopped.out)")
        let point = try #require(Self.resumePoint(stopped.out), "\(stopped.out)")
        let read = stopped.out.split(separator: " ").dropFirst(5).first.flatMap { Int($0.replacingOccurrences(of: ",", with: "")) }
        #expect(read != nil && read! == Self.counted(stopped.out), "rows read are each counted once: \(stopped.out)")
        try await server.stop()

        // Resuming counts every row of the book once and completes it.
        #expect(book.rows.contains { $0.line == point.resumeAt })
        let server2 = try await TestServer.start { $0.databasePath = database }
        let path = server2.directory + "/book.csv"
        try Data(book.bytes).write(to: URL(fileURLWithPath: path))
        let resumed = try await Self.importStdin(server2, input: path, ["--resume-at", String(point.resumeAt)])
        #expect(Self.counted(resumed.out) == book.rows.count, "\(resumed.out)")
        #expect(server2.app.engine.snapshot.contactCount == book.rows.count(where: \.good))
        for row in book.rows where row.good {
            #expect(server2.app.engine.contact(email: row.email)?["name"]?.stringValue == row.name, "\(row.email)")
        }
        try await server2.stop()
    }
}
