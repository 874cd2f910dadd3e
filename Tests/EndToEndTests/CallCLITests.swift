import Foundation
import LineRPC
import SegmentdApp
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// `segmentd call` (and the other subcommands' errors), run as the real binary against a live
/// server: streams print as they arrive, Ctrl-C cancels and still prints the final reply, exit
/// statuses, the one error format, the connection messages and `--version`.
@Suite(.ownThreads) struct CallCLITests {
    static var binary: String { productsDirectory().appendingPathComponent("segmentd").path }

    /// Runs `segmentd ARGUMENTS --socket SERVER` to completion.
    static func segmentd(_ server: TestServer, _ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        try await runProcess(binary, arguments + ["--socket", server.socketPath], cwd: server.directory,
                             environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
    }

    static func lines(_ text: String) throws -> [JSONValue] {
        try text.split(separator: "\n").map { try JSONParser.parse(String($0)) }
    }

    static func seed(_ server: TestServer) async throws {
        let client = try await server.client()
        _ = try await client.call("contacts.upsert", ["contacts": [
            ["email": "ana@example.com", "labels": ["vip"]], ["email": "budi@example.com", "labels": ["vip"]],
            ["email": "citra@example.com", "labels": ["vip"]], ["email": "dewi@example.com"],
        ]])
        try await client.close()
    }

    @Test func streamingCallsPrintEachNotificationThenTheResult() async throws {
        let server = try await TestServer.start()
        try await Self.seed(server)
        let params = #"{"filters": [{"dimension": "label", "op": "contains", "value": "vip"}], "columns": ["email"], "batch_size": 1}"#
        let run = try await Self.segmentd(server, ["call", "segments.resolve", params])
        #expect(run.status == 0, "\(run.err)")
        let lines = try Self.lines(run.out)
        #expect(lines.count == 4, "three notifications and the result: \(run.out)")
        for line in lines.dropLast() {
            #expect(line["jsonrpc"] == "2.0" && line["method"] == "segments.rows")
            #expect(line["params"]?["rows"]?.arrayValue?.count == 1)
        }
        let emails = lines.dropLast().compactMap { $0["params"]?["rows"]?[0]?["email"]?.stringValue }
        #expect(emails == ["ana@example.com", "budi@example.com", "citra@example.com"])
        #expect(lines.last?["rows"] == 3 && lines.last?["complete"] == true)
        try await server.stop()
    }

    @Test func ctrlCSendsRPCCancelAndExitsAfterTheFinalReply() async throws {
        let server = try await TestServer.start()
        let setup = try await server.client()
        _ = try await setup.call("segments.create", ["name": "VIP", "filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
        _ = try await setup.call("triggers.create", ["segment": 1, "on": ["enter"]])
        try await Self.seed(server)  // three contacts enter: events 1…3

        let output = NSTemporaryDirectory() + "segd-call-" + UUID().uuidString
        defer {
            try? FileManager.default.removeItem(atPath: output + ".out")
            try? FileManager.default.removeItem(atPath: output + ".err")
        }
        let child = ChildProcess(Self.binary, ["call", "events.subscribe", #"{"after": 0}"#, "--socket", server.socketPath],
                                 environment: ["PATH": "/usr/bin:/bin"], standardOutput: .file(output + ".out"), standardError: .file(output + ".err"))
        try child.start()
        defer {
            child.send(SIGKILL)
            child.waitUntilExit()
        }
        func printed() -> [JSONValue] {
            let text = (try? String(contentsOfFile: output + ".out", encoding: .utf8)) ?? ""
            // Only whole lines: the child may be mid-write.
            return text.split(separator: "\n", omittingEmptySubsequences: true).dropLast(text.hasSuffix("\n") ? 0 : 1)
                .compactMap { try? JSONParser.parse(String($0)) }
        }
        // The subscription is live and printing: the replayed events, then one written now.
        var live = await waitUntil(seconds: 30) { printed().count >= 3 }
        #expect(live, "the subscriber printed \(printed().count) of 3 replayed events")
        _ = try await setup.call("contacts.upsert", ["contacts": [["email": "eko@example.com", "labels": ["vip"]]]])
        live = await waitUntil(seconds: 30) { printed().count >= 4 }
        #expect(live, "a live event was not printed")
        #expect(printed().allSatisfy { $0["method"] == "events.event" })
        #expect(child.isRunning, "a subscription runs until cancelled")

        child.send(SIGINT)
        let exited = await waitUntil(seconds: 30) { !child.isRunning }
        #expect(exited, "segmentd call did not exit after Ctrl-C")
        #expect(child.terminationStatus == 130)
        // The final reply is what the server sends for rpc.cancel (a dropped connection would
        // have had no reply at all), printed last.
        let final = printed().last
        #expect(final?["ended"] == "cancelled" && final?["last_cursor"] == 4, "\(String(describing: final))")
        try await setup.close()
        try await server.stop()
    }

    @Test func withoutAServerItSaysWhatToCheck() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for arguments in [["call", "rpc.ping"], ["backup", "x.sqlite"], ["export", "1"]] {
            let run = try await runProcess(Self.binary, arguments + ["--socket", directory + "/segmentd.sock"], cwd: directory,
                                           environment: ["PATH": "/usr/bin:/bin"])
            #expect(run.status == 1)
            #expect(run.err == "Error: cannot connect to \(directory)/segmentd.sock: No such file or directory "
                + "(is `segmentd serve` running there? see --socket / --tcp)\n", "\(arguments[0]): \(run.err)")
        }
    }

    @Test func failedItemsExitWithStatus2() async throws {
        let server = try await TestServer.start()
        let allBad = try await Self.segmentd(server, ["call", "contacts.upsert", #"{"contacts": [{"email": "nope"}, {"email": "also nope"}]}"#])
        #expect(allBad.status == 2, "\(allBad.err)")
        #expect(try JSONParser.parse(allBad.out)["failed"]?.arrayValue?.count == 2, "the result is still printed")
        #expect(allBad.err == "Error: contacts.upsert: 2 items failed (listed in \"failed\" of the result)\n")

        let oneBad = try await Self.segmentd(server, ["call", "contacts.upsert", #"{"contacts": [{"email": "ok@example.com"}, {"email": "nope"}]}"#])
        let oneBadResult = try JSONParser.parse(oneBad.out)
        #expect(oneBad.status == 2 && oneBadResult["created"] == 1)

        let fine = try await Self.segmentd(server, ["call", "contacts.upsert", #"{"contacts": [{"email": "ok@example.com"}]}"#])
        #expect(fine.status == 0 && fine.err.isEmpty, "\(fine.err)")
        try await server.stop()
    }

    @Test func everySubcommandPrintsErrorRepliesTheSameWay() async throws {
        let server = try await TestServer.start()
        let call = try await Self.segmentd(server, ["call", "segments.count", #"{"filters": [{"dimension": "label", "op": "near", "value": "x"}]}"#])
        #expect(call.status == 1 && call.out.isEmpty)
        #expect(call.err.hasPrefix("Error: segments.count: ") && call.err.hasSuffix(" (code -32602 invalid_params, at filters[0].op)\n"), "\(call.err)")

        let backup = try await Self.segmentd(server, ["backup", "../outside.sqlite"])
        #expect(backup.status == 1)
        #expect(backup.err.hasPrefix("Error: server.backup: ") && backup.err.hasSuffix(" (code -32602 invalid_params, at path)\n"), "\(backup.err)")

        let missing = try await Self.segmentd(server, ["call", "segments.get", #"{"id": 404}"#])
        #expect(missing.status == 1)
        #expect(missing.err.hasPrefix("Error: segments.get: ") && missing.err.contains("(code -32001 not_found"), "\(missing.err)")
        try await server.stop()
    }

    @Test func versionComesFromOnePlace() async throws {
        let run = try await runProcess(Self.binary, ["--version"])
        #expect(run.status == 0)
        #expect(run.out == SegmentdVersion.description + "\n")
        #expect(run.out.hasPrefix(SegmentdVersion.current + " (commit \(SegmentdVersion.commit), storage schema "))
        // Built from this checkout: its HEAD, "-dirty" with uncommitted changes.
        let head = try await runProcess("/usr/bin/env", ["git", "-C", packageRoot.path, "rev-parse", "--short=12", "HEAD"])
        if head.status == 0 {
            let commit = head.out.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(SegmentdVersion.commit == commit || SegmentdVersion.commit == commit + "-dirty", "built from \(SegmentdVersion.commit), HEAD is \(commit)")
        } else {
            #expect(SegmentdVersion.commit == "unknown")
        }
        let server = try await TestServer.start()
        let client = try await server.client()
        let hello = try await client.call("rpc.hello")
        #expect(hello["version"] == .string(SegmentdVersion.current))
        #expect(hello["commit"] == .string(SegmentdVersion.commit))
        // The storage schema reported is the one the book's database was migrated to.
        let applied = try await runProcess("/usr/bin/env", [
            "python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM grdb_migrations').fetchone()[0])",
            server.databasePath,
        ])
        #expect(hello["storage"]?["schema"] == .int(Int64(SegmentdVersion.schema.version)))
        #expect(applied.out.trimmingCharacters(in: .whitespacesAndNewlines) == String(SegmentdVersion.schema.version), "\(applied.err)")
        #expect(hello["storage"]?["latest_migration"] == .string(SegmentdVersion.schema.latest))
        #expect(try await client.call("rpc.discover")["info"]?["version"] == .string(SegmentdVersion.current))
        try await client.close()
        try await server.stop()
    }

    @Test func tcpWithoutATokenIsToldATokenIsRequired() async throws {
        let server = try await TestServer.start { config in
            config.tcp = ":0"
            config.token = "s3cret-token"
        }
        let port = try #require(server.app.server.tcpPort)
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port)
        for params: JSONValue in [[:], ["token": ""]] {
            let error = await #expect(throws: RPCError.self) { try await client.call("rpc.hello", params) }
            #expect(error?.code == -32005 && error?.message.hasPrefix("token required") == true, "\(params): \(String(describing: error))")
        }
        let wrong = await #expect(throws: RPCError.self) { try await client.call("rpc.hello", ["token": "guess"]) }
        #expect(wrong?.message == "invalid token")
        try await client.close()

        let tcp = "127.0.0.1:\(port)"
        let anonymous = try await runProcess(Self.binary, ["call", "rpc.ping", "--tcp", tcp], environment: ["PATH": "/usr/bin:/bin"])
        #expect(anonymous.status == 1)
        #expect(anonymous.err.hasPrefix("Error: segmentd at \(tcp) refused the connection: rpc.hello: token required"), "\(anonymous.err)")
        #expect(anonymous.err.contains("(code -32005 unauthorized)") && anonymous.err.contains("SEGMENTD_TOKEN"), "\(anonymous.err)")
        let member = try await runProcess(Self.binary, ["call", "rpc.ping", "--tcp", tcp],
                                          environment: ["PATH": "/usr/bin:/bin", "SEGMENTD_TOKEN": "s3cret-token"])
        #expect(member.status == 0 && member.out == "{\"pong\":true}\n", "\(member.err)")
        try await server.stop()
    }

}
