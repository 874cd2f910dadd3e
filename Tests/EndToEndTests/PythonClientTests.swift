import Foundation
import TestThreads
import Testing
import WireJSON

/// The standard-library Python client of proto-docs drives a live server and checks real answers.
@Suite(.ownThreads) struct PythonClientTests {
    @Test func pythonClientSelftestPasses() async throws {
        let server = try await TestServer.start()
        let script = packageRoot.appendingPathComponent("proto-docs/clients/segmentd_client.py").path
        let run = try await runProcess("/usr/bin/env", ["python3", script, "--socket", server.socketPath, "selftest"])
        #expect(run.status == 0, "python client failed: \(run.err)")
        let summary = try JSONParser.parse(run.out.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(summary["created"] == 3)
        #expect(summary["newsletter"] == ["matched": 3, "sendable": 2])
        #expect(summary["jakarta"] == 2)
        #expect(summary["bad_filter_path"] == "filters[0].op")
        // What Python wrote is really in the book.
        #expect(server.app.engine.contact(email: "budi@example.com")?["fields"]?["city"] == "jakarta")
        #expect(server.app.engine.snapshot.suppressedEmails.contains("budi@example.com"))
        try await server.stop()
    }
}
