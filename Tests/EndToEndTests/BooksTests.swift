import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import Testing
import TestThreads
import WireJSON

/// Many Contact Books in one server: isolation by name, the book methods, files, loading.
@Suite(.ownThreads) struct BooksTests {
    /// The error a call fails with (nil when it succeeds).
    static func failure(_ client: RPCClient, _ method: String, _ params: JSONValue = [:]) async -> RPCError? {
        do {
            _ = try await client.call(method, params)
            return nil
        } catch let error as RPCError {
            return error
        } catch {
            return RPCError(code: 0, type: "transport", message: "\(error)")
        }
    }

    @Test func booksAreWholeSeparateContactBooks() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        for name in ["acme", "globex"] { _ = try await client.call("books.create", ["name": .string(name)]) }
        // The same email in two books is two contacts, with their own fields, labels, status.
        _ = try await client.call("fields.define", ["book": "acme", "name": "plan", "type": "text"])
        _ = try await client.call("contacts.upsert", ["book": "acme", "contacts": [["email": "ana@example.com", "labels": ["vip"], "fields": ["plan": "pro"]]]])
        _ = try await client.call("contacts.upsert", ["book": "globex", "contacts": [["email": "ana@example.com", "status": "unsubscribed"], ["email": "bo@example.com"]]])
        let inAcme = try await client.call("contacts.get", ["book": "acme", "email": "ana@example.com"])
        let inGlobex = try await client.call("contacts.get", ["book": "globex", "email": "ana@example.com"])
        #expect(inAcme["labels"] == ["vip"] && inAcme["fields"]?["plan"] == "pro" && inAcme["status"] == "active")
        #expect(inGlobex["labels"] == [] && inGlobex["status"] == "unsubscribed")
        #expect(try await client.call("contacts.count", ["book": "acme"])["total"] == 1)
        #expect(try await client.call("contacts.count", ["book": "globex"])["total"] == 2)
        #expect(try await client.call("contacts.count")["total"] == 0, "the default book is a book of its own")
        // Fields, segments, triggers, events, suppression and version are per book.
        let globexFields = try await client.call("fields.list", ["book": "globex"])
        #expect(globexFields.arrayValue?.contains { $0["name"] == "plan" } == false)
        let segment = try await client.call("segments.create", ["book": "acme", "name": "vips", "filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
        _ = try await client.call("triggers.create", ["book": "acme", "segment": segment["id"]!, "on": ["enter"]])
        #expect(try await client.call("segments.list", ["book": "globex"])["segments"] == [])
        #expect(await Self.failure(client, "segments.get", ["book": "globex", "id": segment["id"]!])?.code == -32001)
        _ = try await client.call("contacts.upsert", ["book": "globex", "contacts": [["email": "cy@example.com", "labels": ["vip"]]]])
        #expect(try await client.call("events.read", ["book": "globex"])["events"] == [])
        _ = try await client.call("contacts.upsert", ["book": "acme", "contacts": [["email": "cy@example.com", "labels": ["vip"]]]])
        let events = try await client.call("events.read", ["book": "acme"])["events"]?.arrayValue ?? []
        #expect(events.map { $0["email"] } == ["cy@example.com"])
        _ = try await client.call("suppression.add", ["book": "acme", "emails": ["ana@example.com"]])
        #expect(try await client.call("suppression.check", ["book": "globex", "email": "ana@example.com"])["suppressed"] == false)
        #expect(try await client.call("segments.count", ["book": "acme", "id": segment["id"]!])["size"] == 1)
        let listed = try await client.call("books.list")["books"]?.arrayValue ?? []
        #expect(listed.map { $0["name"] } == ["acme", "default", "globex"])
        let acme = try #require(listed.first { $0["name"] == "acme" })
        #expect(acme["contacts"] == 2 && acme["segments"] == 1 && acme["triggers"] == 1 && acme["state"] == "ready")
        #expect((acme["resident_bytes"]?.intValue ?? 0) > 0)
        #expect(listed.first { $0["name"] == "default" }?["version"] == 0)
        let stats = try await client.call("server.stats")
        #expect(stats["contacts"] == 5 && stats["books"]?["globex"]?["contacts"] == 3)
        try await client.close()
        try await server.stop()
    }

    @Test func namesAreCheckedAndNothingCreatesABookByAccident() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        for bad: JSONValue in ["Acme", "", .string(String(repeating: "a", count: 65)), "a.b", "../x", "ü"] {
            let error = await Self.failure(client, "books.create", ["name": bad])
            #expect(error?.code == -32602 && error?.data?["path"] == "name", "\(bad): \(String(describing: error))")
        }
        #expect(try await client.call("books.create", ["name": .string(String(repeating: "a", count: 64))])["state"] == "ready")
        _ = try await client.call("books.create", ["name": "a_b-9"])
        let again = await Self.failure(client, "books.create", ["name": "a_b-9"])
        #expect(again?.code == -32002 && again?.message.contains("already exists") == true)
        // A write naming a book that does not exist is refused: a typo never creates a book.
        let typo = await Self.failure(client, "contacts.upsert", ["book": "acmee", "contacts": [["email": "a@example.com"]]])
        #expect(typo?.code == -32001 && typo?.message.contains("acmee") == true)
        let badName = await Self.failure(client, "contacts.count", ["book": "Acme"])
        #expect(badName?.code == -32602 && badName?.data?["path"] == "book")
        let notString = await Self.failure(client, "contacts.count", ["book": 3])
        #expect(notString?.code == -32602 && notString?.data?["path"] == "book")
        #expect(await Self.failure(client, "labels.list", ["book": "acmee"])?.code == -32001)
        let names = try await client.call("books.list")["books"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(!names.contains("acmee") && names.contains("a_b-9"))
        #expect(!FileManager.default.fileExists(atPath: server.directory + "/data/books/acmee.sqlite"))
        try await client.close()
        try await server.stop()
    }

    @Test func dropRemovesTheBookAndItsFiles() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        _ = try await client.call("books.create", ["name": "gone"])
        _ = try await client.call("contacts.upsert", ["book": "gone", "contacts": [["email": "a@example.com"]]])
        _ = try await client.call("segments.export", ["book": "gone", "filters": [], "path": "all.csv", "format": "csv"])
        _ = try await client.call("server.backup", ["book": "gone", "path": "gone.sqlite"])
        let database = server.directory + "/data/books/gone.sqlite"
        #expect(FileManager.default.fileExists(atPath: database))
        #expect(FileManager.default.fileExists(atPath: server.app.exportDirectory + "/gone/all.csv"))
        #expect(FileManager.default.fileExists(atPath: server.app.exportDirectory + "/gone/gone.sqlite"))
        #expect(await Self.failure(client, "books.drop", ["name": "gone"])?.data?["path"] == "confirm")
        #expect(await Self.failure(client, "books.drop", ["name": "gone", "confirm": "gone2"])?.data?["path"] == "confirm")
        #expect(await Self.failure(client, "books.drop", ["name": "default", "confirm": "default"])?.code == -32602)
        #expect(await Self.failure(client, "books.drop", ["name": "never", "confirm": "never"])?.code == -32001)
        #expect(try await client.call("books.drop", ["name": "gone", "confirm": "gone"]) == ["dropped": "gone"])
        let left = try FileManager.default.contentsOfDirectory(atPath: server.directory + "/data/books").filter { $0.hasPrefix("gone") }
        #expect(left.isEmpty, "\(left)")
        #expect(!FileManager.default.fileExists(atPath: server.app.exportDirectory + "/gone"))
        #expect(await Self.failure(client, "contacts.count", ["book": "gone"])?.code == -32001)
        // The name is free again, for an empty book.
        _ = try await client.call("books.create", ["name": "gone"])
        #expect(try await client.call("contacts.count", ["book": "gone"])["total"] == 0)
        try await client.close()
        try await server.stop()
    }

    /// A drop ends the book's streams (a subscription replies) instead of waiting forever.
    @Test func dropEndsSubscriptionsOnTheBook() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        _ = try await client.call("books.create", ["name": "live"])
        let subscriber = try await server.client()
        let subscription = Task { try await subscriber.call("events.subscribe", ["book": "live"]) { _, _ in } }
        #expect(await waitUntil(seconds: 30) { server.app.catalog.loaded.first { $0.name == "live" }?.engine.eventHub.waiterCount == 1 })
        #expect(try await client.call("books.drop", ["name": "live", "confirm": "live"]) == ["dropped": "live"])
        let ended = await subscription.result
        switch ended {
        case .success(let result): #expect(result["ended"] == "cancelled")
        case .failure(let error): #expect((error as? RPCError)?.code == -32800, "\(error)")
        }
        try await subscriber.close()
        try await client.close()
        try await server.stop()
    }

    /// Books found at start load in the background; a request for one not loaded yet starts
    /// its load and waits (bounded), then the book answers.
    @Test func booksLoadAfterARestartAndRequestsWaitBoundedForThem() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func configure(_ config: inout AppConfiguration) {
            config.dataDirectory = directory + "/data"
            config.bookLoadParallelism = 1
        }
        let first = try await TestServer.start(configure: configure)
        let client = try await first.client()
        for index in 0..<12 {
            let name = "b\(index)"
            _ = try await client.call("books.create", ["name": .string(name)])
            let contacts = (0..<(index == 11 ? 20_000 : 3)).map { i -> JSONValue in ["email": .string("c\(i)@example.com"), "labels": [.string("l\(i % 7)")]] }
            for start in stride(from: 0, to: contacts.count, by: 5_000) {
                _ = try await client.call("contacts.upsert", ["book": .string(name), "contacts": .array(Array(contacts[start..<min(start + 5_000, contacts.count)]))])
            }
        }
        try await client.close()
        try await first.stop()  // removes its own directory, not the data directory given

        // Without the background loads, a book loads on its first request, which waits at
        // most the load wait (1 ms here: far less than opening and reading 20,000 contacts).
        let second = try await TestServer.start { config in
            configure(&config)
            config.bookLoadWait = .milliseconds(1)
            config.loadBooksInBackground = false
        }
        let again = try await second.client()
        var unavailable = 0
        var total: JSONValue?
        for _ in 0..<2_000 where total == nil {
            do {
                total = try await again.call("contacts.count", ["book": "b11"])["total"]
            } catch let error as RPCError {
                #expect(error.code == -32007 && error.message.contains("b11"), "\(error)")
                unavailable += 1
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(total == 20_000)
        #expect(unavailable > 0, "a 20,000-contact book loaded within 1 ms")
        let states = try await again.call("books.list")["books"]?.arrayValue ?? []
        #expect(states.first { $0["name"] == "b11" }?["state"] == "ready")
        #expect(states.filter { $0["state"] == "loading" }.count == 11, "the books nobody asked for are not loaded: \(states)")
        // A small book asked for: loaded on that request (or by the next ones, after -32007).
        var small: JSONValue?
        for _ in 0..<2_000 where small == nil {
            small = try? await again.call("contacts.count", ["book": "b3"])["total"]
            if small == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(small == 3)
        try await again.close()
        try await second.stop()

        // With them (the default), every book is loaded without being asked for.
        let third = try await TestServer.start(configure: configure)
        #expect(await waitUntil(seconds: 60) { third.app.catalog.statuses().allSatisfy { $0.state == "ready" } })
        let client3 = try await third.client()
        let books = try await client3.call("books.list")["books"]?.arrayValue ?? []
        #expect(books.count == 13 && books.allSatisfy { $0["state"] == "ready" })
        #expect(books.first { $0["name"] == "b11" }?["contacts"] == 20_000)
        try await client3.close()
        try await third.stop()
    }

    /// `--db FILE` keeps serving a database of an earlier segmentd as the default book, and
    /// new books still go to the data directory.
    @Test func dbFileIsTheDefaultBookAndOtherBooksLiveInTheDataDirectory() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await TestServer.start { config in
            config.databasePath = directory + "/old.sqlite"
            config.dataDirectory = directory + "/data"
        }
        let client = try await server.client()
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "a@example.com"]]])
        _ = try await client.call("books.create", ["name": "acme"])
        #expect(FileManager.default.fileExists(atPath: directory + "/old.sqlite"))
        #expect(FileManager.default.fileExists(atPath: directory + "/data/books/acme.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/data/books/default.sqlite"))
        try await client.close()
        try await server.stop()
    }

    /// The server's clock ticks touch the database only of the books with something due.
    @Test func backgroundWorkIsInProportionToTheBooksThatNeedIt() async throws {
        let server = try await TestServer.start {
            $0.eventRetentionDays = 1
            $0.reevaluateEvery = .milliseconds(100)
        }
        let client = try await server.client()
        for index in 0..<40 { _ = try await client.call("books.create", ["name": .string("quiet\(index)")]) }
        _ = try await client.call("contacts.upsert", ["book": "quiet7", "contacts": [["email": "a@example.com"]]])
        _ = try await client.call("books.create", ["name": "timed"])
        _ = try await client.call("contacts.upsert", ["book": "timed", "contacts": [["email": "a@example.com"]]])
        _ = try await client.call("engagement.record", ["book": "timed", "events": [["email": "a@example.com", "type": "open", "at": "2026-01-15T11:00:00Z"]]])
        let segment = try await client.call("segments.create", ["book": "timed", "name": "recent", "filters": [["dimension": "engagement", "event": "open", "op": "within_last", "value": ["days": 1]]]])
        _ = try await client.call("triggers.create", ["book": "timed", "segment": segment["id"]!, "on": ["exit"]])
        let before = Dictionary(uniqueKeysWithValues: server.app.catalog.loaded.map { ($0.name, $0.engine.storeOperations) })
        server.clock.advance(days: 2)
        // The ticks see the contact leave "recent": one exit event, written by the clock.
        #expect(await waitUntil(seconds: 60) {
            (try? await client.call("events.read", ["book": "timed"]))?["events"]?.arrayValue?.count == 1
        })
        // Several more ticks pass (100 ms apart): the quiet books are still untouched.
        try await Task.sleep(for: .milliseconds(600))
        let touched = server.app.catalog.loaded.filter { $0.engine.storeOperations != before[$0.name] }.map(\.name)
        #expect(touched == ["timed"], "books whose database a tick touched: \(touched)")
        try await client.close()
        try await server.stop()
    }

    /// Two servers never share a data directory, whatever their --db.
    @Test func oneServerPerDataDirectory() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = AppConfiguration()
        config.dataDirectory = directory + "/data"
        config.socketPath = directory + "/one.sock"
        config.exportDirectory = directory + "/exports"
        let first = try SegmentdApplication.build(config)
        config.socketPath = directory + "/two.sock"
        config.databasePath = directory + "/elsewhere.sqlite"
        #expect {
            _ = try SegmentdApplication.build(config)
        } throws: { error in
            "\(error)".contains("data directory \(directory)/data is in use by another process (pid \(getpid()))")
        }
        try await first.catalog.close()
        let again = try SegmentdApplication.build(config)
        try await again.catalog.close()
    }

    /// Where an earlier segmentd kept ./segmentd.sqlite, a bare `serve` refuses to start
    /// empty beside it and says the two ways on.
    @Test func serveRefusesToStartEmptyBesideAnEarlierDatabase() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data("not read".utf8).write(to: URL(fileURLWithPath: directory + "/segmentd.sqlite"))
        let binary = productsDirectory().appendingPathComponent("segmentd").path
        let run = try await runProcess(binary, ["serve", "--socket", directory + "/s.sock"], cwd: directory,
                                       environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
        #expect(run.status == 1)
        #expect(run.err.contains("--db segmentd.sqlite") && run.err.contains("segmentd-data/books/default.sqlite"), "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/segmentd-data"))
    }

    /// `--book` on call, import, export and backup works on that book, and only on it.
    @Test func cliBookFlagReachesTheNamedBook() async throws {
        let server = try await TestServer.start()
        let binary = productsDirectory().appendingPathComponent("segmentd").path
        func segmentd(_ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
            try await runProcess(binary, arguments + ["--socket", server.socketPath], cwd: server.directory,
                                 environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
        }
        #expect(try await segmentd(["call", "books.create", #"{"name": "acme"}"#]).status == 0)
        let csv = server.directory + "/people.csv"
        try "email,name,labels\nana@example.com,Ana,vip\nbudi@example.com,Budi,\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let imported = try await segmentd(["import", csv, "--book", "acme"])
        #expect(imported.status == 0, "\(imported.err)")
        let upsert = try await segmentd(["call", "contacts.upsert", "--book", "acme", #"{"contacts": [{"email": "cy@example.com", "labels": ["vip"]}]}"#])
        #expect(upsert.status == 0, "\(upsert.err)")
        let counted = try await segmentd(["call", "contacts.count", "--book", "acme"])
        #expect(try JSONParser.parse(counted.out.trimmingCharacters(in: .whitespacesAndNewlines))["total"] == 3)
        #expect(server.app.engine.snapshot.contactCount == 0, "the default book is untouched")
        let disagree = try await segmentd(["call", "contacts.count", "--book", "acme", #"{"book": "default"}"#])
        #expect(disagree.status != 0 && disagree.err.contains("disagree"), "\(disagree.err)")
        let created = try await segmentd(["call", "segments.create", "--book", "acme", #"{"name": "VIP", "filters": [{"dimension": "label", "op": "contains", "value": "vip"}]}"#])
        #expect(created.status == 0, "\(created.err)")
        let exported = try await segmentd(["export", "VIP", "--book", "acme", "--format", "csv", "--columns", "email", "-o", server.directory + "/vip.csv"])
        #expect(exported.status == 0, "\(exported.err)")
        let text = try String(contentsOfFile: server.directory + "/vip.csv", encoding: .utf8)
        let rows = text.split(whereSeparator: \.isNewline).dropFirst().map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.sorted()
        #expect(rows == ["ana@example.com", "cy@example.com"], "\(text) \(exported.err)")
        let backup = try await segmentd(["backup", "acme.sqlite", "--book", "acme"])
        #expect(backup.status == 0, "\(backup.err)")
        #expect(FileManager.default.fileExists(atPath: server.app.exportDirectory + "/acme/acme.sqlite"))
        let missing = try await segmentd(["export", "VIP", "--book", "nope"])
        #expect(missing.status == 1 && missing.err.contains("nope"), "\(missing.err)")
        try await server.stop()
    }
}
