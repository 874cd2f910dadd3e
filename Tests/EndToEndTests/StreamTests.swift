import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import StreamCodec
import Testing
import TestThreads
import WireJSON

/// segments.resolve and segments.export: content, snapshot, backpressure, cancellation, files.
@Suite(.ownThreads) struct StreamTests {
    /// A small book with values that need CSV quoting and non-ASCII text.
    static func seed(_ engine: Engine) async throws {
        let define = engine.providerMethods.first { $0.name == "fields.define" }!
        _ = try await engine.run(define, params: ["name": "city", "type": "text"])
        _ = try await engine.run(define, params: ["name": "spend", "type": "number"])
        var contacts: [JSONValue] = []
        let names = ["Ana, \"the\" first", "Ümit Çelik", "Budi\nNewline", "Dewi", " padded ", "李小龙"]
        for i in 0..<600 {
            contacts.append([
                "email": .string("user\(i)@example.com"), "name": .string(names[i % names.count]),
                "status": .string(i % 7 == 0 ? "unsubscribed" : "active"),
                "labels": .array(i % 3 == 0 ? ["vip", "newsletter"] : ["newsletter"]),
                "fields": ["city": .string(i % 2 == 0 ? "Jakarta" : "Bandung, West Java"), "spend": .int(Int64(i * 10))],
            ])
        }
        _ = try await engine.upsert(contacts: contacts)
        _ = try await engine.suppress(emails: ["user3@example.com"], reason: nil)
    }

    static let segments: [JSONValue] = [
        [["dimension": "label", "op": "contains", "value": "vip"]],
        [["dimension": "field", "field": "city", "op": "contains", "value": "west"], ["dimension": "field", "field": "spend", "op": "between", "value": [1000, 4000]]],
        [["any": [["dimension": "status", "op": "equals", "value": "unsubscribed"], ["dimension": "field", "field": "name", "op": "contains", "value": "ümit"]]]],
    ]

    /// Resolves over the socket and returns the decoded payload text and the final reply.
    static func resolve(_ client: RPCClient, _ params: JSONValue) async throws -> (payload: String, rows: [JSONValue], final: JSONValue) {
        let collected = Collected()
        let final = try await client.call("segments.resolve", params) { method, params in
            #expect(method == "segments.rows")
            collected.add(params)
        }
        let parts = collected.items
        if parts.first?["gzip"] != nil {
            let gunzip = try GzipDecompressor()
            var bytes: [UInt8] = []
            for p in parts { bytes += try gunzip.decompress(Array(Data(base64Encoded: p["gzip"]!.stringValue!)!)) }
            #expect(gunzip.isFinished, "the gzip stream must be complete")
            return (String(decoding: bytes, as: UTF8.self), [], final)
        }
        let csv = parts.compactMap { $0["csv"]?.stringValue }.joined()
        return (csv, parts.flatMap { $0["rows"]?.arrayValue ?? [] }, final)
    }

    @Test(arguments: [("ndjson", false), ("csv", false), ("ndjson", true), ("csv", true)])
    func streamContentEqualsTheEngineMembers(_ format: String, _ gzip: Bool) async throws {
        let server = try await TestServer.start()
        try await Self.seed(server.app.engine)
        let client = try await server.client()
        let engine = server.app.engine
        for (n, filters) in Self.segments.enumerated() {
            for audience in [Audience.send, .all] {
                var params: [String: JSONValue] = [
                    "filters": filters, "format": .string(format), "audience": .string(audience.rawValue),
                    "columns": ["email", "name", "city", "labels", "spend"], "batch_size": 97,
                ]
                if gzip { params["compress"] = "gzip" }
                let (payload, rows, final) = try await Self.resolve(client, .object(params))
                let expected = engine.members(rule: try engine.compile(filters: filters), audience: audience, book: engine.snapshot)
                let expectedEmails = expected.slots.map { engine.snapshot.emails[$0] }
                var gotEmails: [String] = []
                var gotNames: [String] = []
                if format == "csv" {
                    var reader = CSV.Reader()
                    let records = reader.feed(Array(payload.utf8)) + reader.finish()
                    #expect(records.first?.fields == ["email", "name", "city", "labels", "spend"])
                    gotEmails = records.dropFirst().map { $0.fields[0] }
                    gotNames = records.dropFirst().map { $0.fields[1] }
                } else {
                    let objects = gzip ? try payload.split(separator: "\n").map { try JSONParser.parse(String($0)) } : rows
                    gotEmails = objects.compactMap { $0["email"]?.stringValue }
                    gotNames = objects.map { $0["name"]?.stringValue ?? "" }
                }
                #expect(!expectedEmails.isEmpty && gotEmails == expectedEmails, "segment \(n) \(format) gzip=\(gzip) \(audience)")
                #expect(final["rows"]?.intValue == Int64(expected.count) && final["complete"] == true)
                let expectedNames = expected.slots.map { engine.contact(email: engine.snapshot.emails[$0])?["name"]?.stringValue ?? "" }
                #expect(gotNames == expectedNames, "names survive quoting and encoding")
            }
        }
        try await client.close()
        try await server.stop()
    }

    /// The Python client's example program writes the send audience, as CSV and as NDJSON.
    @Test func thePythonExampleWritesTheMembersInBothFormats() async throws {
        let script = packageRoot.appendingPathComponent("clients/python/examples/resolve_gzip.py")
        let server = try await TestServer.start()
        try await Self.seed(server.app.engine)
        let engine = server.app.engine
        for format in ["csv", "ndjson"] {
            let params: JSONValue = ["filters": Self.segments[1], "format": .string(format), "columns": ["email"], "batch_size": 50]
            let run = try await runProcess("/usr/bin/env", ["python3", script.path, server.socketPath, params.serialized()])
            #expect(run.status == 0, "\(run.err)")
            let expected = engine.members(rule: try engine.compile(filters: Self.segments[1]), audience: .send, book: engine.snapshot)
                .slots.map { engine.snapshot.emails[$0] }
            let lines = run.out.split(separator: format == "csv" ? "\r\n" : "\n").map(String.init)
            let emails = format == "csv" ? Array(lines.dropFirst()) : try lines.map { try JSONParser.parse($0)["email"]?.stringValue ?? "" }
            #expect(!expected.isEmpty && emails == expected)
        }
        try await server.stop()
    }

    /// `rpc.cancel` stops a stream of small messages read by a fast client, every time. (The
    /// event loop, kept busy by the stream's writes, used to read the cancel only after the
    /// whole stream, now and then: see ReplyWriter's pacing.)
    @Test func cancelStopsAFastStreamEveryTime() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        for batch in 0..<4 {
            let contacts: [JSONValue] = (0..<5_000).map { ["email": .string("f\(batch)_\($0)@example.com"), "labels": ["a"]] }
            _ = try await client.call("contacts.upsert", ["contacts": .array(contacts)])
        }
        let segment = try await client.call("segments.create", ["name": "a", "filters": [["dimension": "label", "op": "contains", "value": "a"]]])
        let id = try #require(segment["id"]?.intValue)
        let raw = try RawSocket(path: server.socketPath)
        defer { raw.close() }
        for trial in 1...5 {
            raw.send(#"{"jsonrpc":"2.0","id":\#(trial),"method":"segments.resolve","params":{"id":\#(id),"batch_size":1,"columns":["email"]}}"#)
            _ = raw.readLine()
            raw.send(#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":\#(trial)}}"#)
            var final: JSONValue?
            for _ in 0..<20_001 {
                guard let line = raw.readLine() else { break }
                let message = try JSONParser.parse(line)
                if message["id"]?.intValue == Int64(trial) {
                    final = message["result"]
                    break
                }
            }
            let result = try #require(final, "trial \(trial): a final reply")
            #expect(result["complete"] == false, "trial \(trial): the cancel took effect (\(result["rows"] ?? .null) of 20000 rows sent)")
        }
        try await client.close()
        try await server.stop()
    }

    @Test func badRequestsFailBeforeAnyRow() async throws {
        let server = try await TestServer.start()
        try await Self.seed(server.app.engine)
        let client = try await server.client()
        let cases: [(JSONValue, String)] = [
            (["filters": [], "columns": ["email", "shoe_size"]], "columns[1]"),
            (["filters": [], "format": "xml"], "format"),
            (["filters": [], "compress": "zstd"], "compress"),
            (["id": 77], ""),
            (["filters": [["dimension": "label", "op": "near", "value": "x"]]], "filters[0].op"),
        ]
        for (params, path) in cases {
            let collected = Collected()
            do {
                _ = try await client.call("segments.resolve", params) { _, p in collected.add(p) }
                Issue.record("\(params.serialized()) should fail")
            } catch let e as RPCError {
                if path.isEmpty { #expect(e.code == -32001) } else { #expect(e.data?["path"]?.stringValue == path) }
            }
            #expect(collected.items.isEmpty, "no row may be sent before the error")
        }
        try await client.close()
        try await server.stop()
    }

    @Test func fileExportIsAtomicCheckedAndConfined() async throws {
        let server = try await TestServer.start { $0.exportDirectory = NSTemporaryDirectory() + "segd-exp-" + UUID().uuidString }
        try await Self.seed(server.app.engine)
        let client = try await server.client()
        let root = FileExporter.realPath(server.exportDirectory)!
        try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        for (path, gzip) in [("vip.csv", false), ("sub/vip.csv.gz", true)] {
            var params: [String: JSONValue] = ["filters": Self.segments[0], "format": "csv", "path": .string(path)]
            if gzip { params["compress"] = "gzip" }
            let result = try await client.call("segments.export", .object(params))
            let data = try Data(contentsOf: URL(fileURLWithPath: root + "/" + path))
            var hasher = SHA256()
            hasher.update(Array(data))
            #expect(result["sha256"]?.stringValue == hasher.hexDigest())
            #expect(result["bytes"]?.intValue == Int64(data.count))
            #expect(result["path"]?.stringValue == path)
            let text = gzip ? String(decoding: try GzipDecompressor().decompress(Array(data)), as: UTF8.self) : String(decoding: data, as: UTF8.self)
            var reader = CSV.Reader()
            let records = reader.feed(Array(text.utf8)) + reader.finish()
            #expect(Int64(records.count - 1) == result["rows"]?.intValue)
        }
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).allSatisfy { !$0.hasPrefix(".tmp-") })

        let outside = NSTemporaryDirectory() + "segd-outside-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(atPath: outside)
            try? FileManager.default.removeItem(atPath: root)
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: root + "/link.csv", withDestinationPath: outside + "/target.csv")
        for path in ["../x.csv", "/etc/passwd", outside + "/x.csv", "escape/x.csv", "link.csv", "missing/dir/x.csv", ""] {
            do {
                _ = try await client.call("segments.export", ["filters": [], "path": .string(path)])
                Issue.record("export to \(path) must be refused")
            } catch let e as RPCError {
                #expect(e.code == -32602 && e.data?["path"] == "path", "\(path): \(e.message)")
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing was written outside")
        try await client.close()
        try await server.stop()
    }
}

/// Collects stream notifications from a `@Sendable` callback.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [JSONValue] = []
    func add(_ value: JSONValue) { lock.withLock { storage.append(value) } }
    var items: [JSONValue] { lock.withLock { storage } }
}
