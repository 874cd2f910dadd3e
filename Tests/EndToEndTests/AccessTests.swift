import SegmentdApp
import Foundation
import LineRPC
import SegmentCore
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Access (issue 8, item 5) and online backup (item 6): socket permissions, TCP on loopback
/// with a token and a cap on failed hellos, no SQL built from client strings, strings that look
/// like SQL stored verbatim; `segmentd backup` under write load.
@Suite(.serialized, .ownThreads) struct AccessTests {
    static func mode(of path: String) -> UInt16 {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return UInt16(info.st_mode & 0o7777)
    }

    @Test func unixSocketIsOwnerOnlyByDefaultAndConfigurable() async throws {
        let server = try await TestServer.start()
        #expect(Self.mode(of: server.socketPath) == 0o600)
        try await server.stop()

        // A group that exists but is not the process's own: its members may connect with 0660.
        let group = getgrnam("daemon").map { String($0.pointee.gr_gid) } ?? "1"
        let shared = try await TestServer.start {
            $0.socketMode = 0o660
            $0.socketGroup = group
        }
        #expect(Self.mode(of: shared.socketPath) == 0o660)
        var info = stat()
        #expect(lstat(shared.socketPath, &info) == 0 && String(info.st_gid) == group)
        let client = try await shared.client()
        #expect(try await client.call("rpc.ping") == ["pong": true])
        try await client.close()
        try await shared.stop()

        // An unknown group is a clear start-up error, not a socket with the wrong owner.
        await #expect(throws: RPCServerError.self) { _ = try await TestServer.start { $0.socketGroup = "no-such-group-segmentd" } }
    }

    /// The listening address of a TCP port, from /proc/net/tcp (e.g. "0100007F" is 127.0.0.1).
    static func listeningAddress(port: Int) throws -> String? {
        let table = try String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)
        let wanted = String(format: ":%04X", port)
        for line in table.split(separator: "\n").dropFirst() {
            let cols = line.split(separator: " ")
            guard cols.count > 3, cols[1].hasSuffix(wanted), cols[3] == "0A" else { continue }  // 0A = LISTEN
            return String(cols[1].dropLast(wanted.count))
        }
        return nil
    }

    @Test func tcpIsLoopbackOnlyNeedsTheTokenAndCapsFailedHellos() async throws {
        // No token: a configuration error, not an open port.
        await #expect(throws: (any Error).self) {
            let s = try await TestServer.start { $0.tcp = ":0" }
            try await s.stop()
        }
        let server = try await TestServer.start { config in
            config.tcp = ":0"  // no host given: loopback
            config.token = "s3cret-token"
            config.limits.maxFailedHellos = 3
        }
        let port = try #require(server.app.server.tcpPort)
        #expect(try Self.listeningAddress(port: port) == "0100007F", "TCP must listen on 127.0.0.1 only")

        // Nothing but rpc.hello works before authenticating.
        let anonymous = try await RPCClient.connect(host: "127.0.0.1", port: port)
        do {
            _ = try await anonymous.call("segments.list")
            Issue.record("an unauthenticated TCP call succeeded")
        } catch let error as RPCError {
            #expect(error.code == -32005 && error.type == "unauthorized")
        }
        do {
            _ = try await anonymous.call("no.such.method")
            Issue.record("an unauthenticated TCP call succeeded")
        } catch let error as RPCError {
            #expect(error.code == -32005, "unknown methods are hidden too")
        }
        // Failed hellos: each answered -32005; after the third the server closes the connection.
        var answered = 0
        for attempt in 1...3 {
            do {
                _ = try await anonymous.call("rpc.hello", ["token": .string("guess-\(attempt)")])
            } catch let error as RPCError {
                #expect(error.code == -32005)
                answered += 1
            }
        }
        #expect(answered == 3)
        var closed = false
        for _ in 0..<50 {
            do {
                _ = try await anonymous.call("rpc.hello", ["token": "s3cret-token"])
            } catch let error as RPCClientError {
                closed = error == .connectionClosed || error.message.contains("connection")
                break
            } catch {
                closed = true
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(closed, "the connection stayed open after maxFailedHellos failures, even for the right token")
        try? await anonymous.close()

        // The right token opens the door (and a near miss of the same length does not).
        let near = try await RPCClient.connect(host: "127.0.0.1", port: port)
        await #expect(throws: RPCError.self) { _ = try await near.call("rpc.hello", ["token": "s3cret-tokem"]) }
        try? await near.close()
        let member = try await RPCClient.connect(host: "127.0.0.1", port: port, token: "s3cret-token")
        let hello = try await member.call("rpc.hello")
        #expect(hello["transport"] == "tcp")
        #expect(try await member.call("segments.list")["segments"] == [])
        try await member.close()
        try await server.stop()
    }

    /// Code reading made a test: every SQL text in the engine, the store and the plugins is a
    /// literal; client values travel as bound arguments. The only interpolations into SQL are
    /// a provider's document table (`part_` and its registered name, which registration checks
    /// is a lower-case identifier), numbers of placeholders, and the table and column names of
    /// `segmentd migrate`'s fixed list.
    @Test func noSQLIsBuiltFromClientStrings() throws {
        let roots = ["Sources/SegmentEngine", "Sources/SegmentStore", "Sources/PostgresStore", "Sources/SegmentCore", "Plugins"]
        let keywords = try NSRegularExpression(pattern: #"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|WHERE|VALUES)\b"#)
        var interpolated: [String] = []
        var sqlLiterals = 0
        for root in roots {
            let base = packageRoot.appendingPathComponent(root)
            guard let files = FileManager.default.enumerator(atPath: base.path) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: base.appendingPathComponent(file), encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let s = String(line)
                    guard keywords.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil, s.contains("\"") || s.hasPrefix(" ") else { continue }
                    sqlLiterals += 1
                    if s.contains("\\(") && s.range(of: #"(SELECT|INSERT|UPDATE|DELETE)\s"#, options: .regularExpression) != nil {
                        interpolated.append("\(root)/\(file):\(n + 1): \(s.trimmingCharacters(in: .whitespaces))")
                    }
                }
            }
        }
        #expect(sqlLiterals > 20, "the scan found no SQL; did the layout change?")
        // `segmentd migrate` copies tables named in its own fixed list (`PostgresBookImport.tables`).
        let allowed = interpolated.filter {
            $0.contains("PostgresBookImport.swift") ||
            ($0.contains("PartStorage.swift") || $0.contains("Engine+Fleet.swift")) && $0.replacingOccurrences(of: #"\\\((table\(name\)|table\(provider\.name\)|table|marks)\)"#, with: "", options: .regularExpression).range(of: "\\(") == nil
        }
        #expect(interpolated == allowed, "SQL built with interpolation: \(interpolated)")
        let registry = try String(contentsOf: packageRoot.appendingPathComponent("Sources/SegmentCore/DimensionRegistry.swift"), encoding: .utf8)
        #expect(registry.contains(#"guard Self.isIdentifier(provider.name) else {"#) && registry.contains(#"if let refusal = refusal(for: provider) { preconditionFailure(refusal) }"#),
                "a provider's name, part of its table's name, must be checked before it is registered")
        let parts = try String(contentsOf: packageRoot.appendingPathComponent("Sources/SegmentStore/PartStorage.swift"), encoding: .utf8)
        #expect(parts.contains(#"let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")"#), "IN lists must be placeholders only")
        let copy = try String(contentsOf: packageRoot.appendingPathComponent("Sources/PostgresStore/PostgresBookImport.swift"), encoding: .utf8)
        #expect(copy.contains(#"Table(name: "contact", columns: [("id", .integer)"#), "migrate's tables must come from its fixed list")
        // Multi-row inserts add only placeholder groups to a fixed prefix.
        let rowBatch = try String(contentsOf: packageRoot.appendingPathComponent("Sources/SegmentCore/RowBatch.swift"), encoding: .utf8)
        #expect(rowBatch.contains(#"let row = "(" + Array(repeating: "?", count: width).joined(separator: ", ") + ")""#),
                "multi-row inserts must add fixed placeholder groups only")
    }

    /// Field names, labels, emails, names and segment names that look like SQL are stored and
    /// returned verbatim, and the schema is exactly what it was.
    @Test func quotesAndSQLInNamesAreJustText() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let db = server.databasePath
        let schemaBefore = try await Self.schema(db)

        let nasty = [
            "x'); DROP TABLE contact;--", "\"; DELETE FROM segment; --", "' OR '1'='1", "Robert'); DROP TABLE Students;--",
            "a\"b'c`d[e]f", "%_\\", "naïve Ωμέγα 🏙️", "; PRAGMA writable_schema=1;",
        ]
        for name in nasty {
            let defined = try await client.call("fields.define", ["name": .string(name), "type": "text"])
            #expect(defined["name"]?.stringValue == name)
        }
        let emails = ["o'hara\");DROP/**/TABLE/**/contact;--@example.com", "'or'1'='1@example.com", "\"quoted\"@example.com"]
        var contacts: [JSONValue] = []
        for (i, email) in emails.enumerated() {
            var fields: [String: JSONValue] = [:]
            for name in nasty { fields[name] = .string(nasty[(nasty.firstIndex(of: name)! + i) % nasty.count]) }
            contacts.append(["email": .string(email), "name": .string(nasty[i]), "labels": .array(nasty.map { .string($0) }), "fields": .object(fields)])
        }
        let upserted = try await client.call("contacts.upsert", ["contacts": .array(contacts)])
        #expect(upserted["created"]?.intValue == Int64(emails.count), "\(upserted.serialized())")

        for (i, email) in emails.enumerated() {
            let got = try await client.call("contacts.get", ["email": .string(email)])
            let contact = got["contact"] ?? got
            #expect(contact["email"]?.stringValue == email, "\(got.serialized())")
            #expect(contact["name"]?.stringValue == nasty[i])
            let labels = Set((contact["labels"]?.arrayValue ?? []).compactMap(\.stringValue))
            #expect(labels == Set(nasty), "\(got.serialized())")
            for name in nasty {
                #expect(contact["fields"]?[name]?.stringValue == nasty[(nasty.firstIndex(of: name)! + i) % nasty.count], "field \(name): \(got.serialized())")
            }
        }
        for (i, name) in nasty.enumerated() {
            let created = try await client.call("segments.create", ["name": .string(name), "filters": [
                ["dimension": "label", "op": "contains", "value": .string(name)],
                ["dimension": "field", "field": .string(name), "op": "equals", "value": .string(nasty[i % nasty.count])],
            ]])
            #expect(created["name"]?.stringValue == name || created["segment"]?["name"]?.stringValue == name, "\(created.serialized())")
        }
        let listed = try await client.call("segments.list")
        let names = Set((listed["segments"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
        #expect(names == Set(nasty))
        let fieldNames = Set((try await client.call("fields.list").arrayValue ?? []).compactMap { $0["name"]?.stringValue })
        #expect(fieldNames.isSuperset(of: Set(nasty)))
        // The filters match by value, quotes and all: contact 0's field `nasty[0]` is nasty[0].
        let counted = try await client.call("segments.count", ["filters": [["dimension": "field", "field": .string(nasty[0]), "op": "equals", "value": .string(nasty[0])]], "audience": "all"])
        #expect(counted["matched"]?.intValue == 1)

        // Nothing reached the schema; and after a restart everything reads back the same.
        let schemaAfter = try await Self.schema(db)
        #expect(schemaAfter == schemaBefore)
        try await client.close()
        try await server.stop()
    }

    /// `sqlite_master` as text, read by python3's sqlite3 (a second, independent reader).
    static func schema(_ db: String) async throws -> String {
        let script = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print('\\n'.join(sorted(repr(r) for r in c.execute('select type,name,tbl_name,sql from sqlite_master'))))"
        let r = try await runProcess("/usr/bin/python3", ["-c", script, db])
        #expect(r.status == 0, "\(r.err)")
        return r.out
    }

    // MARK: Backup (issue 8, item 6)

    @Test func backupUnderWriteLoadIsConsistent() async throws {
        let server = try await TestServer.start()
        let writer = try await server.client()
        _ = try await writer.call("fields.define", ["name": "n", "type": "number"])
        let acknowledged = Tally()
        let stop = Tally()
        // Write load: batches of upserts as fast as they are acknowledged.
        let load = Task {
            var batch = 0
            while stop.value == 0 && batch < 2_000 {
                let contacts: JSONValue = .array((0..<50).map { j in ["email": .string("b\(batch)-\(j)@example.com"), "labels": ["bk"], "fields": ["n": .int(Int64(j))]] })
                _ = try await writer.call("contacts.upsert", ["contacts": contacts])
                acknowledged.add(50)
                batch += 1
            }
        }
        while acknowledged.value < 2_000 { try await Task.sleep(for: .milliseconds(10)) }
        let before = acknowledged.value
        let binary = productsDirectory().appendingPathComponent("segmentd").path
        let result = try await runProcess(binary, ["backup", "nightly/copy.sqlite", "--socket", server.socketPath], timeout: 120)
            .status == 0 ? nil : "failed"
        // The directory must exist inside the export directory first: the CLI refuses, clearly.
        #expect(result == "failed")
        try FileManager.default.createDirectory(atPath: server.exportDirectory + "/nightly", withIntermediateDirectories: true)
        let run = try await runProcess(binary, ["backup", "nightly/copy.sqlite", "--socket", server.socketPath], timeout: 120)
        let after = acknowledged.value
        stop.add(1)
        try await load.value
        #expect(run.status == 0, "backup failed: \(run.err)")
        let printed = try JSONParser.parse(run.out.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(printed["path"] == "nightly/copy.sqlite")
        let copy = server.exportDirectory + "/nightly/copy.sqlite"
        #expect(printed["bytes"]?.intValue == Int64((try? FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int) ?? -1))

        let check = try await runProcess("/usr/bin/python3", ["-c", """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1])
            print(c.execute('PRAGMA integrity_check').fetchone()[0])
            print(c.execute('SELECT count(*) FROM contact').fetchone()[0])
            print(c.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])
            """, copy])
        let lines = check.out.split(separator: "\n").map(String.init)
        #expect(check.status == 0 && lines.count == 3, "\(check.out) \(check.err)")
        #expect(lines.first == "ok", "integrity_check: \(lines)")
        let contacts = Int(lines.count > 1 ? lines[1] : "") ?? -1
        // Consistent as of one commit during the backup: every write acknowledged before it
        // started is in, nothing beyond what was acknowledged right after it finished, and the
        // count is a whole number of 50-contact transactions.
        #expect(contacts >= before && contacts <= after + 50 && contacts % 50 == 0, "backup holds \(contacts); acknowledged \(before)…\(after)")
        print("backup: \(contacts) contacts in a consistent copy taken under write load (acknowledged \(before) before, \(after) after); integrity \(lines.first ?? "?")")

        // Confined to the export directory.
        let client = try await server.client()
        for bad in ["../escape.sqlite", "/tmp/escape.sqlite", "", "nightly/"] {
            do {
                _ = try await client.call("server.backup", ["path": .string(bad)])
                Issue.record("server.backup wrote to \(bad)")
            } catch let error as RPCError {
                #expect(error.code == -32602 && error.data?["path"] == "path", "\(bad): \(error)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: server.directory + "/escape.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escape.sqlite"))
        // An absolute path inside the export directory is fine, and replaces atomically.
        let again = try await client.call("server.backup", ["path": .string(server.exportDirectory + "/nightly/copy.sqlite")])
        #expect(again["path"] == "nightly/copy.sqlite")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: server.exportDirectory + "/nightly").filter { $0.hasPrefix(".tmp-") }
        #expect(leftovers.isEmpty)
        try await client.close()
        try await writer.close()
        try await server.stop()
    }
}
