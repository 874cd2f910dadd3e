import Foundation
import LineRPC
import MailboxDimension
import SegmentCore
import SegmentEngine
import SegmentdApp
import Subprocess
import Testing
import WireJSON
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// The mailbox dimension in an engine (counts, a restart, a delete, errors), and in the
/// `custom-segmentd` binary this package builds, over its socket.
@Suite struct MailboxDimensionTests {
    static let emails = [
        "ana@gmail.com", "budi@GoogleMail.com", "citra@hotmail.com", "dewi@outlook.com", "eka@yahoo.com",
        "fajar@icloud.com", "gita@example.org", "hadi@company.co.id",
    ]
    static func gmailOrOutlook(_ op: String = "in") -> JSONValue {
        [["dimension": "mailbox", "op": .string(op), "value": ["gmail", "outlook"]]]
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "mailbox-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func engine(at path: String) throws -> Engine {
        var registry = SegmentdApplication.builtInRegistry()
        registry.register(MailboxDimension())
        return try Engine(configuration: .init(databasePath: path), registry: registry)
    }

    @Test func countsFollowTheAddressesAcrossARestartAndADelete() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/book.sqlite"
        var engine = try Self.engine(at: path)
        _ = try await engine.upsert(contacts: Self.emails.map { ["email": .string($0)] })
        #expect(try engine.count(filters: Self.gmailOrOutlook(), audience: .all).matched == 4)
        #expect(try engine.count(filters: Self.gmailOrOutlook("not_in"), audience: .all).matched == 4)
        #expect(try engine.count(filters: [["dimension": "mailbox", "op": "in", "value": ["other"]]], audience: .all).matched == 2)

        // Rebuilt from the addresses when the book loads again.
        try engine.close()
        engine = try Self.engine(at: path)
        #expect(try engine.count(filters: Self.gmailOrOutlook(), audience: .all).matched == 4)
        _ = try await engine.delete(emails: ["ana@gmail.com"])
        #expect(try engine.count(filters: Self.gmailOrOutlook(), audience: .all).matched == 3)
        try engine.close()
    }

    @Test func aBadFilterIsRefusedNamingWhatIsWrong() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try Self.engine(at: directory + "/book.sqlite")
        defer { try? engine.close() }
        let unknown = #expect(throws: SegmentError.self) {
            try engine.count(filters: [["dimension": "mailbox", "op": "in", "value": ["gmail", "aol"]]])
        }
        #expect(unknown?.path == "filters[0].value[1]")
        #expect(unknown?.message.contains("unknown mailbox provider \"aol\"") == true)
        let op = #expect(throws: SegmentError.self) {
            try engine.count(filters: [["dimension": "mailbox", "op": "equals", "value": ["gmail"]]])
        }
        #expect(op?.path == "filters[0].op")
    }

    /// The binary this package builds: `custom-segmentd serve`, asked over its socket.
    @Test func theServerBinaryAnswersMailboxFilters() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while binary.path != "/", !FileManager.default.fileExists(atPath: binary.appendingPathComponent("custom-segmentd").path) {
            binary.deleteLastPathComponent()
        }
        let socket = directory + "/s.sock"
        let result = try await run(
            .path(FilePath(binary.appendingPathComponent("custom-segmentd").path)),
            arguments: ["serve", "--data-dir", directory + "/data", "--socket", socket, "--log-level", "warning"],
            workingDirectory: FilePath(directory), input: .none, output: .discarded, error: .string(limit: 1 << 16)
        ) { execution in
            defer { try? execution.send(signal: .terminate) }
            var client: RPCClient?
            for _ in 0..<600 where client == nil {  // up to a minute: a hang guard
                client = try? await RPCClient.connect(unixPath: socket)
                if client == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let rpc = try #require(client, "custom-segmentd serve did not come up")
            let hello = try await rpc.call("rpc.hello")
            _ = try await rpc.call("contacts.upsert", ["contacts": .array(Self.emails.map { ["email": .string($0)] })])
            let count = try await rpc.call("segments.count", ["filters": Self.gmailOrOutlook(), "audience": "all"])
            let contact = try await rpc.call("contacts.get", ["email": "dewi@outlook.com"])
            try await rpc.close()
            return (hello, count, contact)
        }
        let (hello, count, contact) = result.closureResult
        let dimensions = hello["dimensions"]?.arrayValue?.compactMap { $0["name"]?.stringValue ?? $0.stringValue } ?? []
        #expect(dimensions.contains("mailbox") && dimensions.contains("label"), "rpc.hello dimensions: \(dimensions)")
        #expect(count["matched"] == 4)
        #expect(contact["mailbox"] == "outlook")
        #expect(result.terminationStatus.isSuccess, "custom-segmentd serve did not shut down cleanly: \(result.standardError)")
    }
}
