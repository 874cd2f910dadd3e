import Foundation
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The client programs of proto-docs are shown verbatim and run against a live server: each
/// gets a real audience, and each ends with exit status 1 (never a hang) on an error reply.
/// Python and Node always run; Go runs when `go` is on the PATH and is reported as skipped
/// otherwise.
@Suite(.ownThreads) struct ClientExampleTests {
    static let clients = packageRoot.appendingPathComponent("proto-docs/clients")

    /// The first `go` executable on the PATH, if any.
    static let go: String? = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        .map { String($0) + "/go" }.first { FileManager.default.isExecutableFile(atPath: $0) }

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

        // An error reply instead of any row: reported, exit 1, well within the deadline.
        let started = Date()
        let bad = try await runProcess(command[0], Array(command.dropFirst()) + [server.socketPath, #"{"id": 404}"#], timeout: 30)
        #expect(bad.status == 1, "\(command) on an error reply: status \(bad.status), \(bad.err)", sourceLocation: sourceLocation)
        #expect(bad.err.contains("-32001") && bad.err.contains("segments.resolve"), "\(command): \(bad.err)", sourceLocation: sourceLocation)
        #expect(Date().timeIntervalSince(started) < 25, sourceLocation: sourceLocation)
        #expect(bad.out.isEmpty, sourceLocation: sourceLocation)
    }

    /// streams.md shows the file exactly.
    static func shownVerbatim(_ file: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let doc = try String(contentsOf: packageRoot.appendingPathComponent("proto-docs/streams.md"), encoding: .utf8)
        let source = try String(contentsOf: clients.appendingPathComponent(file), encoding: .utf8)
        #expect(doc.contains("\n" + source + "```\n"), "proto-docs/streams.md must show clients/\(file) verbatim", sourceLocation: sourceLocation)
    }

    @Test func pythonGzipClient() async throws {
        try Self.shownVerbatim("resolve_gzip.py")
        let server = try await TestServer.start()
        try await Self.seed(server)
        try await Self.check(["/usr/bin/env", "python3", Self.clients.appendingPathComponent("resolve_gzip.py").path], server)
        try await server.stop()
    }

    @Test func nodeGzipClient() async throws {
        try Self.shownVerbatim("resolve_gzip.js")
        let server = try await TestServer.start()
        try await Self.seed(server)
        try await Self.check(["/usr/bin/env", "node", Self.clients.appendingPathComponent("resolve_gzip.js").path], server)
        try await server.stop()
    }

    @Test(.enabled(if: go != nil, "go is not on the PATH: the Go client example is not compiled or run"))
    func goGzipClient() async throws {
        try Self.shownVerbatim("resolve_gzip.go")
        let go = try #require(Self.go)
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let built = try await runProcess(go, ["build", "-o", directory + "/resolve_gzip", Self.clients.appendingPathComponent("resolve_gzip.go").path],
                                         cwd: directory, timeout: 300)
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
}
