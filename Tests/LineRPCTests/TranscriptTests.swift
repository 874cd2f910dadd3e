import Foundation
import LineRPC
import TestThreads
import Testing
import WireJSON

/// Replays proto-docs/transport.md's ```transcript blocks against a bare LineRPC server.
@Suite(.ownThreads) struct TranscriptTests {
    static let transportDoc = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("proto-docs/transport.md")

    /// `"<any>"` in the expected value matches anything; objects and arrays compare deeply.
    static func matches(_ actual: JSONValue, _ expected: JSONValue) -> Bool {
        switch (actual, expected) {
        case (_, .string("<any>")): return true
        case (.object(let a), .object(let e)):
            return a.count == e.count && e.allSatisfy { key, value in a[key].map { matches($0, value) } ?? false }
        case (.array(let a), .array(let e)):
            return a.count == e.count && zip(a, e).allSatisfy(matches)
        default: return actual == expected
        }
    }

    @Test func transportTranscriptsReplay() async throws {
        let text = try String(contentsOf: Self.transportDoc, encoding: .utf8)
        var steps: [(send: Bool, line: String)] = []
        var inTranscript = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inTranscript = !inTranscript && line == "```transcript"
                continue
            }
            guard inTranscript else { continue }
            if line.hasPrefix("> ") { steps.append((true, String(line.dropFirst(2)))) }
            if line.hasPrefix("< ") { steps.append((false, String(line.dropFirst(2)))) }
        }
        #expect(steps.count > 20)
        let server = try await TestServer()
        let client = try await server.client()
        for step in steps {
            if step.send {
                try await client.sendLine(step.line)
            } else {
                let received = try await withTimeout { try await client.readLine() }
                let actual = try json(received)
                let expected = try JSONParser.parse(step.line)
                #expect(Self.matches(actual, expected), "expected \(step.line)\n got \(received ?? "EOF")")
            }
        }
        try await client.close()
        try await server.stop()
    }
}
