import Foundation
import LineRPC
import Testing
import TestThreads
import WireJSON

/// Replays every ```transcript block of proto-docs against a live server, so the documented
/// examples cannot drift from the code.
///
/// In a block, `> ` lines are sent byte for byte and each `< ` line is the next line the
/// server must send. The string `"<any>"` in an expected line matches any value. Each file
/// gets a fresh server with the clock at 2026-01-15T12:00:00Z; its blocks run in order on
/// one connection.
@Suite(.ownThreads) struct TranscriptTests {
    static var documents: [String] {
        let dir = packageRoot.appendingPathComponent("proto-docs")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return files.filter { $0.hasSuffix(".md") }.sorted()
    }

    @Test(arguments: documents)
    func transcriptReplaysExactly(_ document: String) async throws {
        let text = try String(contentsOf: packageRoot.appendingPathComponent("proto-docs/" + document), encoding: .utf8)
        let lines = Self.transcriptLines(text)
        guard !lines.isEmpty else { return }
        let server = try await TestServer.start()
        let client = try await server.client()
        for (n, line) in lines.enumerated() {
            if line.hasPrefix("> ") {
                try await client.sendLine(String(line.dropFirst(2)))
            } else if line.hasPrefix("< ") {
                let expected = try JSONParser.parse(String(line.dropFirst(2)))
                let got = try #require(try await client.readLine(), "\(document): server closed before transcript line \(n)")
                let actual = try JSONParser.parse(got)
                #expect(Self.matches(actual, expected), "\(document) line \(n):\n expected \(expected.serialized())\n      got \(got)")
            }
        }
        try await client.close()
        try await server.stop()
    }

    @Test func everyDocumentedMethodHasATranscriptExample() async throws {
        let server = try await TestServer.start()
        let c = try await server.client()
        let discover = try await c.call("rpc.discover")
        let methods = discover["methods"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(methods.count >= 25)
        var sent = Set<String>()
        var headings = Set<String>()
        for document in Self.documents {
            let text = try String(contentsOf: packageRoot.appendingPathComponent("proto-docs/" + document), encoding: .utf8)
            for line in Self.transcriptLines(text) where line.hasPrefix("> ") {
                if let m = (try? JSONParser.parse(String(line.dropFirst(2))))?["method"]?.stringValue { sent.insert(m) }
            }
            for line in text.split(separator: "\n") where line.hasPrefix("### ") {
                headings.insert(line.dropFirst(4).trimmingCharacters(in: CharacterSet(charactersIn: " `")))
            }
        }
        for method in methods {
            #expect(sent.contains(method), "no transcript example calls \(method)")
            #expect(headings.contains(method), "proto-docs has no '### \(method)' section")
        }
        try await c.close()
        try await server.stop()
    }

    static func transcriptLines(_ markdown: String) -> [String] {
        var out: [String] = []
        var inside = false
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inside = line == "```transcript" ? true : false
                continue
            }
            if inside, line.hasPrefix("> ") || line.hasPrefix("< ") { out.append(String(line)) }
        }
        return out
    }

    static func matches(_ actual: JSONValue, _ expected: JSONValue) -> Bool {
        if expected == "<any>" { return true }
        switch (actual, expected) {
        case (.object(let a), .object(let e)):
            return a.count == e.count && e.allSatisfy { key, value in a[key].map { matches($0, value) } ?? false }
        case (.array(let a), .array(let e)):
            return a.count == e.count && zip(a, e).allSatisfy { matches($0, $1) }
        case (.int(let a), .double(let e)), (.double(let e), .int(let a)):
            return Double(a) == e
        default:
            return actual == expected
        }
    }
}
