import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import Testing
import TestThreads
import WireJSON

/// The example programs of proto-docs/streams.md, one per client library
/// (`clients/<language>/examples/`), are shown verbatim and run against a live server: each
/// writes a real audience, and each ends with exit status 2 (never a hang) on an error reply.
@Suite(.ownThreads) struct ClientExampleTests {
    static let clients = packageRoot.appendingPathComponent("clients")

    static let vip: JSONValue = [["dimension": "label", "op": "contains", "value": "vip"]]

    static func seed(_ server: TestServer) async throws {
        let client = try await server.client()
        var contacts: [JSONValue] = []
        for i in 0..<300 {
            contacts.append(["email": .string("user\(i)@example.com"), "name": .string("Name, \"\(i)\" ü"), "labels": i % 3 == 0 ? ["vip"] : []])
        }
        _ = try await client.call("contacts.upsert", ["contacts": .array(contacts)])
        try await client.close()
    }

    /// Runs one example (`command` + socket + params) on a real audience and on an unknown segment.
    static func check(_ command: [String], _ server: TestServer, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let engine = server.app.engine
        let expected = engine.members(rule: try engine.compile(filters: vip), audience: .send, book: engine.snapshot)
            .slots.map { engine.snapshot.emails[$0] }
        let params: JSONValue = ["filters": vip, "format": "csv", "columns": ["email"], "batch_size": 25]
        let good = try await runProcess(command[0], Array(command.dropFirst()) + [server.socketPath, params.serialized()], timeout: 120)
        #expect(good.status == 0, "\(command): \(good.err)", sourceLocation: sourceLocation)
        let emails = good.out.split(separator: "\r\n").dropFirst().map(String.init)
        #expect(expected.count == 100 && emails == expected, "\(command)", sourceLocation: sourceLocation)
        let final = try JSONParser.parse(good.err.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(final["rows"] == 100 && final["complete"] == true, sourceLocation: sourceLocation)

        // An error reply instead of any row: reported with its code, type and message, exit 2,
        // well within the deadline.
        let started = Date()
        let bad = try await runProcess(command[0], Array(command.dropFirst()) + [server.socketPath, #"{"id": 404}"#], timeout: 30)
        #expect(bad.status == 2, "\(command) on an error reply: status \(bad.status), \(bad.err)", sourceLocation: sourceLocation)
        #expect(bad.err.contains("error -32001 not_found") && bad.err.contains("404"), "\(command): \(bad.err)", sourceLocation: sourceLocation)
        #expect(Date().timeIntervalSince(started) < 25, sourceLocation: sourceLocation)
        #expect(bad.out.isEmpty, sourceLocation: sourceLocation)
    }

    /// streams.md shows the file exactly.
    static func shownVerbatim(_ file: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let doc = try String(contentsOf: packageRoot.appendingPathComponent("proto-docs/streams.md"), encoding: .utf8)
        let source = try String(contentsOf: clients.appendingPathComponent(file), encoding: .utf8)
        #expect(doc.contains("\n" + source + "```\n"), "proto-docs/streams.md must show clients/\(file) verbatim", sourceLocation: sourceLocation)
    }

    @Test func python() async throws {
        let example = "python/examples/resolve_gzip.py"
        try Self.shownVerbatim(example)
        let server = try await TestServer.start()
        try await Self.seed(server)
        try await Self.check(["/usr/bin/env", "python3", Self.clients.appendingPathComponent(example).path], server)
        try await server.stop()
    }

    @Test func node() async throws {
        let example = "node/examples/resolve_gzip.js"
        try Self.shownVerbatim(example)
        let server = try await TestServer.start()
        try await Self.seed(server)
        try await Self.check(["/usr/bin/env", "node", Self.clients.appendingPathComponent(example).path], server)
        try await server.stop()
    }

    @Test func go() async throws {
        try Self.shownVerbatim("go/examples/resolve_gzip/main.go")
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let built = try await runProcess("/usr/bin/env", ["go", "build", "-o", directory + "/resolve_gzip", "./examples/resolve_gzip"],
                                         cwd: Self.clients.appendingPathComponent("go").path, environment: ClientLibraryTests.goEnvironment(), timeout: 300)
        try #require(built.status == 0, "go build failed: \(built.err)")
        let server = try await TestServer.start()
        try await Self.seed(server)
        try await Self.check([directory + "/resolve_gzip"], server)
        try await server.stop()
    }

    /// transport.md's minimal client runs as shown, in the server's directory.
    @Test func minimalPythonClientOfTransportDoc() async throws {
        let doc = try String(contentsOf: packageRoot.appendingPathComponent("proto-docs/transport.md"), encoding: .utf8)
        let section = try #require(doc.components(separatedBy: "## A minimal client").dropFirst().first)
        let code = try #require(section.components(separatedBy: "```python\n").dropFirst().first?.components(separatedBy: "```").first)
        let server = try await TestServer.start()
        let script = server.directory + "/minimal.py"
        try code.write(toFile: script, atomically: true, encoding: .utf8)
        let run = try await runProcess("/usr/bin/env", ["python3", script], cwd: server.directory, timeout: 30)
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out == "segmentd\nerror: -32001 not_found no segment with id 404\n", "\(run.out)")
        try await server.stop()
    }

    /// clients.md's Python example prints what the page says it prints.
    @Test func clientsPagePythonExampleRunsAsShown() async throws {
        let doc = try String(contentsOf: packageRoot.appendingPathComponent("proto-docs/clients.md"), encoding: .utf8)
        let section = try #require(doc.components(separatedBy: "## In Python").dropFirst().first)
        let code = try #require(section.components(separatedBy: "```python\n").dropFirst().first?.components(separatedBy: "```").first)
        let printed = try #require(section.components(separatedBy: "```text\n").dropFirst().first?.components(separatedBy: "```").first)
        let server = try await TestServer.start()
        let script = server.directory + "/example.py"
        try code.write(toFile: script, atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = Self.clients.appendingPathComponent("python").path
        let run = try await runProcess("/usr/bin/env", ["python3", script], cwd: server.directory, environment: environment, timeout: 60)
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out == printed, "\(run.out)")
        try await server.stop()
    }
}
