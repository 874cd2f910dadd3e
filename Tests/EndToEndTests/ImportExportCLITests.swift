import Foundation
import LineRPC
import SegmentdApp
import SegmentEngine
import StreamCodec
import Testing
import TestThreads
import WireJSON

/// `segmentd import` and `segmentd export`, run as the real binary against a live server.
@Suite(.ownThreads) struct ImportExportCLITests {
    /// Runs the built `segmentd` in the server's directory, on its socket.
    static func segmentd(_ server: TestServer, _ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        try await runProcess(
            productsDirectory().appendingPathComponent("segmentd").path, arguments + ["--socket", server.socketPath],
            cwd: server.directory, environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
    }

    /// The line numbers the summary lists as failed (`  line 7: …`).
    static func failedLines(_ summary: String) -> [Int] {
        summary.split(separator: "\n").compactMap { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            guard text.hasPrefix("line "), let colon = text.firstIndex(of: ":") else { return nil }
            return Int(text[text.index(text.startIndex, offsetBy: 5)..<colon])
        }
    }

    /// The number after `name:` in the summary.
    static func tally(_ summary: String, _ name: String) -> Int? {
        for line in summary.split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix(name + ":") { return Int(text.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) }
        }
        return nil
    }

    /// A CSV file built record by record, remembering the line each record starts on.
    struct CSVFile {
        var bytes: [UInt8] = []
        var line: Int { bytes.count(where: { $0 == 10 }) + 1 }

        /// Appends a record; returns its first line.
        @discardableResult mutating func add(_ fields: [String]) -> Int {
            let start = line
            CSV.appendRecord(fields, to: &bytes)
            return start
        }
    }

    /// What the import should have produced for one good row.
    struct Expected: Equatable {
        var email: String
        var name: String
        var labels: [String]
        var value: Int64?
    }

    static let names = [
        "Ana", "Zoë Ñúñez", "李小龍", "Dewi 🌺", "O'Brien, Pat", "Say \"hi\"", "two\nlines", " spaced ", "Ærøskøbing", "Budi",
    ]

    /// A few hundred contacts whose names need quoting, are not ASCII, or span lines.
    static func goodRows(_ count: Int, prefix: String = "user") -> [Expected] {
        (0..<count).map { (i: Int) -> Expected in
            let labelChoices: [[String]] = [["newsletter", "vip"], ["newsletter"], []]
            let value: Int64? = i % 4 == 3 ? nil : Int64(i * 10)
            let name: String = names[i % names.count] + " " + String(i)
            return Expected(email: prefix + String(i) + "@example.com", name: name, labels: labelChoices[i % 3], value: value)
        }
    }

    static func defineField(_ server: TestServer) async throws {
        let client = try await server.client()
        _ = try await client.call("fields.define", ["name": "lifetime_value", "type": "number"])
        try await client.close()
    }

    static func check(_ server: TestServer, _ rows: [Expected], sourceLocation: SourceLocation = #_sourceLocation) {
        for row in rows {
            guard let contact = server.app.engine.contact(email: row.email) else {
                Issue.record("\(row.email) was not imported", sourceLocation: sourceLocation)
                continue
            }
            #expect(contact["name"]?.stringValue == row.name, sourceLocation: sourceLocation)
            #expect(Set((contact["labels"]?.arrayValue ?? []).compactMap(\.stringValue)) == Set(row.labels), sourceLocation: sourceLocation)
            #expect(contact["fields"]?["lifetime_value"]?.intValue == row.value, "\(row.email)", sourceLocation: sourceLocation)
        }
    }

    @Test func csvImportReportsBadRowsByLineAndImportsTheRest() async throws {
        let server = try await TestServer.start()
        try await Self.defineField(server)
        let rows = Self.goodRows(300)
        var file = CSVFile()
        file.add(["email", "name", "labels", "lifetime_value"])
        var bad: [Int] = []
        for (i, row) in rows.enumerated() {
            file.add([row.email, row.name, row.labels.joined(separator: ";"), row.value.map { String($0) } ?? ""])
            switch i {
            case 10: bad.append(file.add(["not-an-email", "Bad Email", "", "1"]))  // refused by the server
            case 50: bad.append(file.add(["short@example.com", "Too few fields"]))  // wrong field count
            case 120: bad.append(file.add(["nan@example.com", "Nan", "vip", "a lot"]))  // not a number
            case 121: bad.append(file.add(["long@example.com", "Too, many", "x", "1", "extra"]))
            case 250: bad.append(file.add(["also bad@example.com", "Spaces\nand lines", "", ""]))
            default: break
            }
        }
        let path = server.directory + "/contacts.csv"
        try Data(file.bytes).write(to: URL(fileURLWithPath: path))

        let run = try await Self.segmentd(server, ["import", path, "--batch", "64"])
        #expect(run.status == 2, "\(run.err)")
        #expect(Self.failedLines(run.out) == bad, "\(run.out)")
        #expect(Self.tally(run.out, "created") == rows.count)
        #expect(Self.tally(run.out, "failed") == bad.count)
        #expect(run.out.contains("not an email address"))
        #expect(run.out.contains("expected 4 fields"))
        #expect(run.out.contains("lifetime_value: expected a number"))
        #expect(run.err.isEmpty, "no progress output when stderr is not a terminal: \(run.err)")
        Self.check(server, rows)
        for email in ["short@example.com", "nan@example.com", "long@example.com"] {
            #expect(server.app.engine.contact(email: email) == nil)
        }
        try await server.stop()
    }

    @Test func summaryListsTwentyFailuresUnlessVerbose() async throws {
        let server = try await TestServer.start()
        var text = "email,name\n"
        for i in 0..<40 { text += i % 4 == 0 ? "ok\(i)@example.com,Ok\n" : "bad\(i),Bad\n" }
        let path = server.directory + "/many.csv"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let short = try await Self.segmentd(server, ["import", path])
        #expect(short.status == 2)
        #expect(Self.failedLines(short.out).count == 20 && short.out.contains("and 10 more"), "\(short.out)")
        #expect(Self.tally(short.out, "failed") == 30 && Self.tally(short.out, "updated") == 0)
        let verbose = try await Self.segmentd(server, ["import", path, "--verbose"])
        let expected = (0..<40).filter { $0 % 4 != 0 }.map { $0 + 2 }
        #expect(Self.failedLines(verbose.out) == expected, "\(verbose.out)")
        #expect(Self.tally(verbose.out, "updated") == 10)
        try await server.stop()
    }

    @Test func unknownColumnStopsBeforeAnyRowIsSent() async throws {
        let server = try await TestServer.start()
        try await Self.defineField(server)
        let path = server.directory + "/contacts.csv"
        try "email,name,shoe_size,lifetime_value\r\nana@example.com,Ana,38,1\r\n".write(toFile: path, atomically: false, encoding: .utf8)
        let run = try await Self.segmentd(server, ["import", path])
        #expect(run.status == 1)
        #expect(run.err.contains("shoe_size") && run.err.contains("fields.define"), "\(run.err)")
        #expect(!run.err.contains("lifetime_value\""), "a defined field is not reported: \(run.err)")
        #expect(server.app.engine.contact(email: "ana@example.com") == nil)
        let client = try await server.client()
        #expect(try await client.call("contacts.count")["total"] == 0)
        try await client.close()

        // Skipping it works.
        let skipped = try await Self.segmentd(server, ["import", path, "--ignore-column", "shoe_size"])
        #expect(skipped.status == 0, "\(skipped.err)")
        #expect(server.app.engine.contact(email: "ana@example.com")?["fields"]?["lifetime_value"] == 1)
        try await server.stop()
    }

    @Test func gzippedNDJSONImportReportsBadLines() async throws {
        let server = try await TestServer.start()
        try await Self.defineField(server)
        let rows = Self.goodRows(200, prefix: "nd")
        var lines: [String] = []
        var bad: [Int] = []
        for (i, row) in rows.enumerated() {
            var document: [String: JSONValue] = [
                "email": .string(row.email), "name": .string(row.name), "labels": .array(row.labels.map { .string($0) }),
            ]
            if let value = row.value { document["fields"] = ["lifetime_value": .int(value)] }
            lines.append(JSONValue.object(document).serialized())
            switch i {
            case 5: lines.append(""); lines.append("   ")  // blank lines are skipped
            case 20: lines.append(#"{"email": "broken@example.com", "name": "#); bad.append(lines.count)
            case 60: lines.append(#"["not", "an", "object"]"#); bad.append(lines.count)
            case 61: lines.append(#"{"email": "nope"}"#); bad.append(lines.count)
            case 150: lines.append(#"{"email": "nan@example.com", "fields": {"lifetime_value": "a lot"}}"#); bad.append(lines.count)
            default: break
            }
        }
        let gzip = try GzipCompressor(level: 6)
        let compressed = try gzip.compress(Array((lines.joined(separator: "\n") + "\n").utf8)) + gzip.finish()
        let path = server.directory + "/contacts.ndjson.gz"
        try Data(compressed).write(to: URL(fileURLWithPath: path))

        let run = try await Self.segmentd(server, ["import", path, "--batch", "50", "--progress", "always"])
        #expect(run.status == 2, "\(run.err)")
        #expect(Self.failedLines(run.out) == bad, "\(run.out)")
        #expect(Self.tally(run.out, "created") == rows.count)
        #expect(run.err.contains("rows/s"), "forced progress goes to stderr: \(run.err)")
        #expect(!run.out.contains("\r"), "stdout carries only the summary")
        Self.check(server, rows)
        try await server.stop()
    }

    @Test func importThenExportGivesBackTheSameContacts() async throws {
        let server = try await TestServer.start()
        try await Self.defineField(server)
        let rows = Self.goodRows(250, prefix: "rt")
        var file = CSVFile()
        file.add(["email", "name", "labels", "lifetime_value"])
        for row in rows { file.add([row.email, row.name, row.labels.joined(separator: ";"), row.value.map { String($0) } ?? ""]) }
        let path = server.directory + "/in.csv"
        try Data(file.bytes).write(to: URL(fileURLWithPath: path))
        let imported = try await Self.segmentd(server, ["import", path])
        #expect(imported.status == 0, "\(imported.out) \(imported.err)")

        let client = try await server.client()
        _ = try await client.call("segments.create", ["name": "Everyone here", "filters": [["dimension": "field", "field": "email", "op": "contains", "value": "@example.com"]]])
        try await client.close()

        let columns = ["--columns", "email,name,labels,lifetime_value", "--audience", "all"]
        let plain = try await Self.segmentd(server, ["export", "Everyone here", "--format", "csv", "-o", "out.csv"] + columns)
        #expect(plain.status == 0 && plain.out.isEmpty, "\(plain.err)")
        let zipped = try await Self.segmentd(server, ["export", "1", "--format", "csv", "--gzip", "-o", "out.csv.gz"] + columns)
        #expect(zipped.status == 0 && zipped.out.isEmpty, "\(zipped.err)")
        let stdout = try await Self.segmentd(server, ["export", "everyone HERE", "--format", "ndjson"] + columns)
        #expect(stdout.status == 0, "\(stdout.err)")

        let csvBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: server.directory + "/out.csv")))
        let gzBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: server.directory + "/out.csv.gz")))
        #expect(gzBytes.starts(with: [0x1F, 0x8B]))
        let gunzip = try GzipDecompressor()
        let unzipped = try gunzip.decompress(gzBytes)
        #expect(gunzip.isFinished, "one complete gzip stream")
        #expect(unzipped == csvBytes)

        var reader = CSV.Reader()
        let records = reader.feed(csvBytes) + reader.finish()
        #expect(records.first?.fields == ["email", "name", "labels", "lifetime_value"])
        let exported = records.dropFirst().map { record in
            Expected(
                email: record.fields[0], name: record.fields[1],
                labels: record.fields[2].split(separator: ";").map(String.init).sorted(), value: Int64(record.fields[3]))
        }
        let sortedRows = rows.map { Expected(email: $0.email, name: $0.name, labels: $0.labels.sorted(), value: $0.value) }
        #expect(exported.sorted { $0.email < $1.email } == sortedRows.sorted { $0.email < $1.email })

        let fromStdout = try stdout.out.split(separator: "\n").map { line -> Expected in
            let row = try JSONParser.parse(String(line))
            return Expected(
                email: row["email"]?.stringValue ?? "", name: row["name"]?.stringValue ?? "",
                labels: (row["labels"]?.arrayValue ?? []).compactMap(\.stringValue).sorted(), value: row["lifetime_value"]?.intValue)
        }
        #expect(fromStdout.sorted { $0.email < $1.email } == sortedRows.sorted { $0.email < $1.email })
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: server.directory).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty)
        try await server.stop()
    }

    @Test func exportOfAnUnknownSegmentFails() async throws {
        let server = try await TestServer.start()
        let run = try await Self.segmentd(server, ["export", "No such segment", "-o", "x.csv"])
        #expect(run.status == 1)
        #expect(run.err.contains("no segment named \"No such segment\""), "\(run.err)")
        #expect(run.out.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: server.directory + "/x.csv"))
        let byID = try await Self.segmentd(server, ["export", "42"])
        #expect(byID.status == 1 && byID.err.contains("no segment with id 42"), "\(byID.err)")
        try await server.stop()
    }
}
