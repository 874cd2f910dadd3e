import Foundation
import Logging
import PostgresStore
import SegmentCore
import SegmentEngine
import Synchronization
import TestPostgres
import Testing
import WireJSON

import EngagementDimension
import FieldDimension
import FunnelDimension
import LabelDimension
import SegmentDimension
import StatusDimension

/// One engine on a fresh SQLite file in its own temporary directory, with a hand-moved clock.
///
/// Every test builds its own book, so tests never share state and run in parallel. The
/// directory is removed when the fixture is released.
///
/// ```swift
/// let book = try TestBook()
/// try await book.seed([["email": "ana@example.com", "labels": ["vip"]]])
/// #expect(try book.emails([["dimension": "label", "op": "contains", "value": "vip"]]) == ["ana@example.com"])
/// ```
/// Where a test book lives: an SQLite file, or a schema of the test process's PostgreSQL
/// server (``TestPostgres/shared()``) with the engine in fleet mode. Suites that hold for
/// both take it as an argument.
enum Backend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }
}

final class TestBook: Sendable {
    /// The test's "now": 2026-06-01T12:00:00Z.
    static let start = ISOTime().parseInstant("2026-06-01T12:00:00Z")!
    static let day = 86_400.0

    let clock: ManualTime
    let directory: String
    let path: String
    let timeZone: TimeZone
    let extra: [any DimensionProvider]
    let backend: Backend
    /// The PostgreSQL book (schema) name, unique per fixture.
    let bookName: String
    private let current: Mutex<Engine?>
    /// Whether the fixture closes the engine and removes the directory when released.
    private let owned: Bool

    init(
        extra: [any DimensionProvider] = [], timeZone: TimeZone = TimeZone(identifier: "UTC")!, clock: ManualTime? = nil,
        backend: Backend = .sqlite
    ) throws {
        self.clock = clock ?? ManualTime(Self.start)
        self.extra = extra
        self.timeZone = timeZone
        self.backend = backend
        bookName = "t" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        directory = NSTemporaryDirectory() + "segment-engine-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/t.sqlite"
        current = Mutex(nil)
        owned = true
        let engine = try Self.open(path: path, clock: self.clock, timeZone: timeZone, extra: extra, backend: backend, book: bookName)
        current.withLock { $0 = engine }
    }

    /// A fixture over an engine someone else owns (a book of a `BookCatalog`): releasing it
    /// neither closes the engine nor removes files.
    init(borrowing engine: Engine, clock: ManualTime) {
        self.clock = clock
        self.extra = []
        self.backend = .sqlite
        self.bookName = engine.configuration.name
        self.timeZone = engine.configuration.timeZone
        directory = (engine.configuration.databasePath as NSString).deletingLastPathComponent
        path = engine.configuration.databasePath
        current = Mutex(engine)
        owned = false
    }

    deinit {
        guard owned else { return }
        current.withLock { engine in
            try? engine?.close()
            engine = nil
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func registry(extra: [any DimensionProvider] = []) -> DimensionRegistry {
        var registry = DimensionRegistry()
        registry.register(StatusDimension())
        registry.register(FieldDimension())
        registry.register(LabelDimension())
        registry.register(FunnelDimension())
        registry.register(EngagementDimension())
        registry.register(SegmentDimension())
        for provider in extra { registry.register(provider) }
        registry.defaultColumns = ["email", "name", "status"]
        return registry
    }

    static func open(
        path: String, clock: ManualTime, timeZone: TimeZone, extra: [any DimensionProvider], backend: Backend = .sqlite, book: String = "default",
        fleet: FleetSettings = FleetSettings()
    ) throws -> Engine {
        var configuration = Engine.Configuration(databasePath: path, clock: clock, timeZone: timeZone)
        if backend == .postgres {
            let url = try TestPostgres.shared().url
            configuration.name = book
            configuration.openStore = { book, providers in try PostgresBookStore(url: url, book: book, providers: providers, logger: quietLogger) }
            configuration.fleet = fleet
        }
        return try Engine(configuration: configuration, registry: registry(extra: extra), logger: quietLogger)
    }

    /// Another node of this book's fleet (PostgreSQL): an engine of its own on the same book.
    func node(fleet: FleetSettings = FleetSettings()) throws -> Engine {
        try Self.open(path: path, clock: clock, timeZone: timeZone, extra: extra, backend: backend, book: bookName, fleet: fleet)
    }

    /// Start-up logging stays out of the test output.
    static let quietLogger: Logger = {
        var logger = Logger(label: "segmentd.engine.tests")
        logger.logLevel = .warning
        return logger
    }()

    /// The open engine; while ``rotateWriters(among:)`` is in effect, each use takes the next
    /// node of the fleet (so a builder's writes land on every node in turn).
    var engine: Engine {
        if let node = rotation.withLock({ state -> Engine? in
            guard !state.nodes.isEmpty else { return nil }
            defer { state.next += 1 }
            return state.nodes[state.next % state.nodes.count]
        }) { return node }
        return current.withLock { $0! }
    }

    private let rotation = Mutex<(nodes: [Engine], next: Int)>(([], 0))

    /// Sends each use of `engine` to the next of `nodes` (empty: back to the fixture's own).
    func rotateWriters(among nodes: [Engine]) {
        rotation.withLock { $0 = (nodes, 0) }
    }

    /// Closes the engine and opens a new one on the same file (a process restart).
    @discardableResult
    func restart() throws -> Engine {
        try current.withLock { engine in
            try engine?.close()
            engine = nil
        }
        let engine = try Self.open(path: path, clock: clock, timeZone: timeZone, extra: extra, backend: backend, book: bookName)
        current.withLock { $0 = engine }
        return engine
    }

    // MARK: Writing

    /// Upserts contacts that must all be valid.
    @discardableResult
    func seed(_ contacts: [JSONValue], sourceLocation: SourceLocation = #_sourceLocation) async throws -> UpsertResult {
        let result = try await engine.upsert(contacts: contacts, atomic: false)
        #expect(result.failed.isEmpty, "unexpected failures: \(result.failed.map { "\($0.index): \($0.error)" })", sourceLocation: sourceLocation)
        return result
    }

    func method(_ name: String) throws -> DimensionMethod {
        try #require(engine.providerMethods.first { $0.name == name }, "no method \(name)")
    }

    @discardableResult
    func define(_ field: String, _ type: String) async throws -> JSONValue {
        try await engine.run(try method("fields.define"), params: ["name": .string(field), "type": .string(type)])
    }

    /// Records `(email, type, at)` events.
    @discardableResult
    func record(_ events: [(String, String, String)]) async throws -> JSONValue {
        let list: [JSONValue] = events.map { ["email": .string($0.0), "type": .string($0.1), "at": .string($0.2)] }
        return try await engine.run(try method("engagement.record"), params: ["events": .array(list)])
    }

    // MARK: Reading

    /// The emails of the rule's members in `audience`, on the current snapshot.
    func emails(_ filters: JSONValue, audience: Audience = .all) throws -> Set<String> {
        let book = engine.snapshot
        let rule = try engine.compile(filters: filters, book: book)
        let members = engine.members(rule: rule, audience: audience, book: book)
        return Set(members.slots.map { book.emails[$0] })
    }

    /// The single-contact path: which live contacts `matches` says are in.
    func emailsByMatching(_ filters: JSONValue) throws -> Set<String> {
        let book = engine.snapshot
        let rule = try engine.compile(filters: filters, book: book)
        let now = engine.now
        return Set(book.alive.slots.filter { rule.matches(slot: $0, in: book, at: now) }.map { book.emails[$0] })
    }

    func count(_ filters: JSONValue, audience: Audience = .send) throws -> CountResult {
        try engine.count(filters: filters, audience: audience)
    }

    func contact(_ email: String) throws -> [String: JSONValue] {
        try #require(engine.contact(email: email)?.objectValue, "no contact \(email)")
    }
}

/// Parses a full ISO timestamp for test data; crashes the test on a typo.
func instant(_ text: String) -> Double {
    guard let t = ISOTime().parseInstant(text) else { fatalError("bad test timestamp \(text)") }
    return t
}

/// A filter object with the usual keys.
func filter(_ dimension: String, _ op: String, _ value: JSONValue? = nil, extra: [String: JSONValue] = [:]) -> JSONValue {
    var o: [String: JSONValue] = ["dimension": .string(dimension), "op": .string(op)]
    if let value { o["value"] = value }
    o.merge(extra) { _, new in new }
    return .object(o)
}

func field(_ name: String, _ op: String, _ value: JSONValue? = nil) -> JSONValue {
    filter("field", op, value, extra: ["field": .string(name)])
}

func engagement(_ event: String, _ op: String, _ value: JSONValue? = nil) -> JSONValue {
    filter("engagement", op, value, extra: ["event": .string(event)])
}

func days(_ n: Int64) -> JSONValue { ["days": .int(n)] }

/// One filter (or rule) with the members a person expects, for parameterised tests.
struct FilterCase: Sendable, CustomTestStringConvertible {
    let name: String
    let filters: JSONValue
    let expected: Set<String>

    init(_ name: String, _ filter: JSONValue, _ expected: [String]) {
        self.name = name
        self.filters = filter.arrayValue != nil ? filter : [filter]
        self.expected = Set(expected)
    }

    var testDescription: String { name }
}

/// Checks one case: the bulk path (`members`) and the single-contact path (`matches`) both
/// give exactly the expected emails, and `count` agrees.
func check(_ c: FilterCase, on book: TestBook, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let bulk = try book.emails(c.filters)
    #expect(bulk == c.expected, "\(c.name): members \(bulk.sorted()) expected \(c.expected.sorted())", sourceLocation: sourceLocation)
    let single = try book.emailsByMatching(c.filters)
    #expect(single == c.expected, "\(c.name): matches \(single.sorted()) expected \(c.expected.sorted())", sourceLocation: sourceLocation)
    #expect(try book.count(c.filters, audience: .all).matched == c.expected.count, "\(c.name): count", sourceLocation: sourceLocation)
}
