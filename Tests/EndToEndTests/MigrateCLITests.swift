import Foundation
import Logging
import PostgresStore
import SegmentCore
import SegmentdApp
import SegmentEngine
import TestPostgres
import Testing
import TestThreads
import WireJSON

/// `segmentd migrate`, run as the real binary: an SQLite book into the test PostgreSQL.
@Suite(.ownThreads) struct MigrateCLITests {
    /// A file a server holds is refused; once it is closed the book is copied (the store from
    /// `SEGMENTD_STORE`), with a line per table and the version; the copy serves the same
    /// contacts; a second run into the same book is refused in one line.
    @Test func migrateCopiesAClosedBookOnceAndSaysWhy() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/acme.sqlite"
        let clock = ManualTime(TestServer.epoch)
        let engine = try Engine(configuration: .init(databasePath: path, clock: clock), registry: SegmentdApplication.builtInRegistry(), logger: Self.quiet)
        let vip = try await engine.createSegment(name: "vip", filters: [["dimension": "label", "op": "contains", "value": "vip"]])
        _ = try await engine.createTrigger(segment: vip.id, onEnter: true, onExit: true, includeExisting: false)
        let emails = (0..<40).map { "user\($0)@example.com" }
        _ = try await engine.upsert(contacts: emails.enumerated().map { i, email in
            ["email": .string(email), "labels": i % 2 == 0 ? ["vip"] : [], "status": i % 5 == 0 ? "pending" : "active"]
        })
        let version = engine.snapshot.version
        let contacts = emails.map { engine.contact(email: $0) }

        let url = try TestPostgres.shared().url
        let store = Self.text(url)
        let name = "cli" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        defer { try? PostgresBookSpace(url: url).drop(name) }
        let binary = productsDirectory().appendingPathComponent("segmentd").path
        let plain = ["PATH": "/usr/bin:/bin"]

        let held = try await runProcess(binary, ["migrate", "--from", path, "--to", store, "--book", name], environment: plain)
        #expect(held.status == 1 && held.err.contains("stop that server first, or migrate a backup"), "\(held)")
        try engine.close()

        let noStore = try await runProcess(binary, ["migrate", "--from", path, "--book", name], environment: plain)
        #expect(noStore.status != 0 && noStore.err.contains("SEGMENTD_STORE"), "\(noStore)")
        let badName = try await runProcess(binary, ["migrate", "--from", path, "--to", store, "--book", "Acme!"], environment: plain)
        #expect(badName.status == 1 && badName.err.contains("book names are 1 to 64 characters"), "\(badName)")

        var environment = plain
        environment["SEGMENTD_STORE"] = store
        let done = try await runProcess(binary, ["migrate", "--from", path, "--book", name, "--progress", "always"], environment: environment)
        let sessions = done.status == 0 ? "" : (try? TestPostgres.shared().activity()) ?? "?"
        #expect(done.status == 0, "\(done.status): \(done.out)\n\(done.err)\nPostgreSQL sessions:\n\(sessions)")
        var rows: [String: Int] = [:]
        for line in done.out.split(separator: "\n") where line.hasSuffix(" rows") || line.hasSuffix(" row") {
            let parts = line.split(separator: ":", maxSplits: 1)
            rows[String(parts[0])] = Int(parts[1].split(separator: " ", omittingEmptySubsequences: true)[0])
        }
        #expect(rows["contact"] == 40 && rows["segment"] == 1 && rows["trigger"] == 1 && rows["event"] == 20 && rows["part_label"] == 20, "\(done.out)")
        #expect(rows.count == 8 + SegmentdApplication.builtInRegistry().providers.count)
        #expect(done.out.contains("book \(name): version \(version), copied to \(url) (schema segmentd_\(name))"), "\(done.out)")
        #expect(done.err.contains("rows/s"), "the progress line")

        var configuration = Engine.Configuration(databasePath: "", clock: clock)
        configuration.name = name
        configuration.fleet = FleetSettings()
        configuration.openStore = { book, providers in try PostgresBookStore(url: url, book: book, providers: providers) }
        let copy = try Engine(configuration: configuration, registry: SegmentdApplication.builtInRegistry(), logger: Self.quiet)
        defer { try? copy.close() }
        #expect(emails.map { copy.contact(email: $0) } == contacts)
        #expect(copy.snapshot.version == version && copy.triggers().map(\.members.count) == [20])

        let again = try await runProcess(binary, ["migrate", "--from", path, "--book", name, "--to", store], environment: plain)
        #expect(again.status == 1, "\(again)")
        #expect(again.err.hasPrefix("Error: book \(name) in PostgreSQL (schema segmentd_\(name)) is not empty: it has 40 contacts, 1 segment, 1 trigger, 20 events"), "\(again.err)")
        #expect(again.err.split(separator: "\n").count == 1 && again.out.isEmpty)
    }

    static let quiet: Logger = {
        var logger = Logger(label: "segmentd.migrate.tests")
        logger.logLevel = .warning
        return logger
    }()

    /// `url` as a URL string the CLI parses back to it, password included.
    static func text(_ url: PostgresURL) -> String {
        func encoded(_ part: String) -> String { part.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? part }
        let host: String, port: Int
        switch url.endpoint {
        case .tcp(let h, let p): (host, port) = (h, p)
        case .unixSocket(let directory, let p): (host, port) = (directory, p)
        }
        var text = "postgres://\(encoded(url.user))@/\(encoded(url.database))?host=\(encoded(host))&port=\(port)"
        if let password = url.password { text += "&password=\(encoded(password))" }
        return text
    }
}
