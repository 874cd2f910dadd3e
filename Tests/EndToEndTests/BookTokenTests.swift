import SegmentRPC
import SegmentEngine
import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Isolation by token over TCP: a token for one book can do nothing with another, a read
/// token cannot write, only admin tokens create and drop books; the token file is re-read
/// on SIGHUP, and the Unix socket stays fully trusted.
@Suite(.ownThreads) struct BookTokenTests {
    static let acmeWriter = "acme-writer-token-0001"
    static let acmeReader = "acme-reader-token-0001"
    static let globexWriter = "globex-writer-token-01"
    static let admin = "admin-token-0000000001"

    static let tokenFile = """
        # token                  access  books
        \(acmeWriter)   write   acme
        \(acmeReader)   read    acme
        \(globexWriter)   write   globex,other   # two books
        \(admin)   admin   *
        """

    /// A server on TCP with the token file above and the books acme and globex.
    static func server(tokens: String = tokenFile) async throws -> (TestServer, String) {
        let file = try TestServer.makeTemporaryDirectory() + "/tokens"
        try tokens.write(toFile: file, atomically: true, encoding: .utf8)
        let server = try await TestServer.start {
            $0.tcp = "127.0.0.1:0"
            $0.tokenFile = file
        }
        let local = try await server.client()
        for name in ["acme", "globex"] { _ = try await local.call("books.create", ["name": .string(name)]) }
        try await local.close()
        return (server, file)
    }

    static func tcp(_ server: TestServer, _ token: String) async throws -> RPCClient {
        try await RPCClient.connect(host: "127.0.0.1", port: try #require(server.app.server.tcpPort), token: token)
    }

    /// The methods rpc.discover lists, with `x-book` ("read", "write" or nil).
    static func discover(_ client: RPCClient) async throws -> [(name: String, book: String?, hasBookParam: Bool)] {
        let document = try await client.call("rpc.discover")
        return (document["methods"]?.arrayValue ?? []).map { method in
            let name = method["name"]?.stringValue ?? "?"
            let hasBookParam = method["x-params-schema"]?["properties"]?["book"] != nil
            return (name, method["x-book"]?.stringValue, hasBookParam)
        }
    }

    /// Every book-scoped method, taken from rpc.discover so that none is forgotten: a token
    /// for acme gets unauthorized naming globex, and the reverse; a read token gets
    /// unauthorized for each write method of its own book and not for the read methods.
    @Test func everyBookScopedMethodChecksTheTokensBook() async throws {
        let (server, _) = try await Self.server()
        let local = try await server.client()
        let methods = try await Self.discover(local)
        let scoped = methods.filter { $0.book != nil }
        // The methods that are about the server, not a book: a new method must be one or the other.
        let unscoped = Set(methods.filter { $0.book == nil }.map(\.name))
        #expect(unscoped == ["rpc.hello", "rpc.ping", "rpc.cancel", "rpc.discover", "books.create", "books.list", "books.drop", "server.stats"])
        #expect(scoped.count >= 30, "\(scoped.map(\.name))")
        for method in methods { #expect(method.hasBookParam == (method.book != nil), "\(method.name): x-book and the book param disagree") }
        #expect(Set(scoped.filter { $0.book == "write" }.map(\.name)).isSuperset(of: ["contacts.upsert", "segments.create", "server.backup", "fields.define", "engagement.record"]))

        let acme = try await Self.tcp(server, Self.acmeWriter)
        let globex = try await Self.tcp(server, Self.globexWriter)
        let reader = try await Self.tcp(server, Self.acmeReader)
        for method in scoped {
            let wrong = await BooksTests.failure(acme, method.name, ["book": "globex"])
            #expect(wrong?.code == -32005 && wrong?.message.contains("\"globex\"") == true, "\(method.name): \(String(describing: wrong))")
            let reverse = await BooksTests.failure(globex, method.name, ["book": "acme"])
            #expect(reverse?.code == -32005 && reverse?.message.contains("\"acme\"") == true, "\(method.name): \(String(describing: reverse))")
            // No book named: the default book, which these tokens were not given either.
            let unnamed = await BooksTests.failure(acme, method.name, [:])
            #expect(unnamed?.code == -32005 && unnamed?.message.contains("\"default\"") == true, "\(method.name): \(String(describing: unnamed))")
            // A read method may run for good (events.subscribe): it is cancelled after a while.
            let call = Task { await BooksTests.failure(reader, method.name, ["book": "acme"]) }
            let watchdog = Task {
                try await Task.sleep(for: .seconds(2))
                call.cancel()
            }
            let read = await call.value
            watchdog.cancel()
            if method.book == "write" {
                #expect(read?.code == -32005 && read?.message.contains("only read") == true, "\(method.name): \(String(describing: read))")
            } else {
                #expect(read?.code != -32005, "\(method.name) refused a read token on its own book: \(String(describing: read))")
            }
        }
        // Writing a file is writing, even from a read method: an export with a path.
        let file = await BooksTests.failure(reader, "segments.export", ["book": "acme", "filters": [], "path": "all.csv"])
        #expect(file?.code == -32005 && file?.message.contains("only read") == true, "\(String(describing: file))")
        #expect(!FileManager.default.fileExists(atPath: server.app.exportDirectory + "/acme/all.csv"))
        _ = try await acme.call("segments.export", ["book": "acme", "filters": [], "path": "all.csv"])
        #expect(FileManager.default.fileExists(atPath: server.app.exportDirectory + "/acme/all.csv"))
        // What the right tokens can do, for real.
        _ = try await acme.call("contacts.upsert", ["book": "acme", "contacts": [["email": "a@example.com"]]])
        #expect(try await reader.call("contacts.count", ["book": "acme"])["total"] == 1)
        #expect(try await globex.call("contacts.count", ["book": "globex"])["total"] == 0)
        for client in [acme, globex, reader, local] { try await client.close() }
        try await server.stop()
    }

    @Test func bookMethodsNeedAdminAndListingShowsOnlyGrantedBooks() async throws {
        let (server, _) = try await Self.server()
        let acme = try await Self.tcp(server, Self.acmeWriter)
        let admin = try await Self.tcp(server, Self.admin)
        for (method, params) in [("books.create", ["name": "new"]), ("books.drop", ["name": "acme", "confirm": "acme"])] as [(String, JSONValue)] {
            let refused = await BooksTests.failure(acme, method, params)
            #expect(refused?.code == -32005 && refused?.message.contains("admin") == true, "\(method): \(String(describing: refused))")
        }
        let listed = try await acme.call("books.list")["books"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        #expect(listed == ["acme"])
        let beyond = await BooksTests.failure(acme, "books.list", ["names": ["acme", "globex"]])
        #expect(beyond?.code == -32005 && beyond?.message.contains("\"globex\"") == true)
        #expect(try await acme.call("books.list", ["names": ["acme"]])["books"]?[0]?["name"] == "acme")
        let stats = try await acme.call("server.stats")
        #expect(stats["books"]?.objectValue?.keys.sorted() == ["acme"])
        #expect(stats["rpc"] == nil && stats["resident_bytes"] == nil, "all tenants' traffic is for operators: \(stats)")
        let operatorStats = try await admin.call("server.stats")
        #expect(operatorStats["rpc"] != nil && operatorStats["books"]?.objectValue?.count == 3)
        let hello = try await acme.call("rpc.hello")
        #expect(hello["books"]?["granted"] == ["acme"] && hello["books"]?["access"] == "write" && hello["books"]?["default"] == "default")
        // The admin token sees and manages every book.
        #expect(try await admin.call("books.create", ["name": "new"])["name"] == "new")
        #expect(try await admin.call("books.list")["books"]?.arrayValue?.count == 4)
        #expect(try await admin.call("books.drop", ["name": "new", "confirm": "new"]) == ["dropped": "new"])
        #expect(try await admin.call("rpc.hello")["books"]?["granted"] == "*")
        // The Unix socket is trusted: everything, no token.
        let local = try await server.client()
        #expect(try await local.call("books.create", ["name": "other"])["state"] == "ready")
        #expect(try await local.call("books.list")["books"]?.arrayValue?.count == 4)
        for client in [acme, admin, local] { try await client.close() }
        try await server.stop()
    }

    /// A reload applies to open connections: a removed token is refused at its next request,
    /// a new one is accepted, and a broken file leaves the tokens in force.
    @Test func reloadingTheTokenFileAppliesToOpenConnections() async throws {
        let (server, file) = try await Self.server()
        let acme = try await Self.tcp(server, Self.acmeWriter)
        let reader = try await Self.tcp(server, Self.acmeReader)
        #expect(try await acme.call("contacts.count", ["book": "acme"])["total"] == 0)
        let fresh = "acme-writer-token-0002"
        try """
        \(Self.acmeReader) write acme,globex
        \(fresh) write acme
        """.write(toFile: file, atomically: true, encoding: .utf8)
        try server.app.reloadTokens()
        let revoked = await BooksTests.failure(acme, "contacts.count", ["book": "acme"])
        #expect(revoked?.code == -32005 && revoked?.message.contains("no longer accepted") == true, "\(String(describing: revoked))")
        await #expect(throws: RPCError.self) { _ = try await Self.tcp(server, Self.acmeWriter) }
        // The reader's grant changed on its open connection: it may now write, and use globex.
        _ = try await reader.call("contacts.upsert", ["book": "globex", "contacts": [["email": "r@example.com"]]])
        let newcomer = try await Self.tcp(server, fresh)
        #expect(try await newcomer.call("contacts.count", ["book": "acme"])["total"] == 0)
        // A broken file is refused with its line; the tokens in force stay.
        try "\(fresh) write acme\nshort read acme\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect {
            try server.app.reloadTokens()
        } throws: { error in
            "\(error)".contains("line 2") && "\(error)".contains("16")
        }
        #expect(try await newcomer.call("contacts.count", ["book": "acme"])["total"] == 0)
        _ = try await reader.call("contacts.count", ["book": "globex"])
        for client in [acme, reader, newcomer] { try? await client.close() }
        try await server.stop()
    }

    /// Files edited on Windows (CRLF), tabs, trailing blanks and comments parse as expected.
    @Test func tokenFilesInEveryUsualShapeParse() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "# tokens\r\n\(Self.acmeWriter)\twrite\tacme  \r\n\r\n  \(Self.admin) admin * # ops\r\n".write(toFile: directory + "/tokens", atomically: true, encoding: .utf8)
        var config = AppConfiguration()
        config.dataDirectory = directory + "/data"
        config.socketPath = directory + "/s.sock"
        config.tcp = "127.0.0.1:0"
        config.tokenFile = directory + "/tokens"
        let app = try SegmentdApplication.build(config)
        #expect(app.tokens?.count == 2)
        try await app.catalog.close()
        // An empty file is no token at all: TCP would be open to nobody, which is a mistake.
        try "# nobody yet\n".write(toFile: directory + "/tokens", atomically: true, encoding: .utf8)
        #expect {
            _ = try SegmentdApplication.build(config)
        } throws: { error in
            "\(error)".contains("needs --token or a --token-file with at least one token")
        }
    }

    @Test(arguments: [
        ("tok-long-enough-0001#x write acme", "line 1", "three fields"),
        ("tok-long-enough-0001 write", "line 1", "three fields"),
        ("short write acme", "line 1", "at least 16"),
        ("tok-long-enough-0001 owner acme", "line 1", "read, write or admin"),
        ("tok-long-enough-0001 admin acme", "line 1", "admin token's books"),
        ("tok-long-enough-0001 read Acme", "line 1", "1 to 64 characters"),
        ("# comment\n\ntok-long-enough-0001 read acme\ntok-long-enough-0001 write acme", "line 4", "earlier line"),
    ])
    func aBadTokenFileStopsStartUpNamingTheLine(text: String, line: String, message: String) async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try text.write(toFile: directory + "/tokens", atomically: true, encoding: .utf8)
        var config = AppConfiguration()
        config.dataDirectory = directory + "/data"
        config.socketPath = directory + "/s.sock"
        config.tcp = "127.0.0.1:0"
        config.tokenFile = directory + "/tokens"
        #expect {
            _ = try SegmentdApplication.build(config)
        } throws: { error in
            "\(error)".contains(line) && "\(error)".contains(message) && "\(error)".contains(directory + "/tokens")
        }
    }

    /// The real binary re-reads its token file on SIGHUP.
    @Test func sighupReReadsTheTokenFile() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/tokens"
        try "\(Self.admin) admin *\n".write(toFile: file, atomically: true, encoding: .utf8)
        let log = directory + "/server.log"
        let child = ChildProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["serve", "--data-dir", directory + "/data", "--socket", directory + "/s.sock", "--export-dir", directory + "/exports",
             "--tcp", "127.0.0.1:0", "--token-file", file, "--log-level", "info"],
            directory: directory, standardOutput: .file(log), standardError: .file(log))
        try child.start()
        defer {
            child.terminate()
            child.waitUntilExit()
        }
        var port: Int?
        #expect(await waitUntil(seconds: 60) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").first(where: { $0.contains("rpc.transport=tcp") && $0.contains("listening") }),
                  let range = line.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression)
            else { return false }
            port = Int(line[range].split(separator: ":").last ?? "")
            return port != nil
        })
        let tcpPort = try #require(port)
        let fresh = "fresh-token-after-hup-01"
        await #expect(throws: RPCError.self) { _ = try await RPCClient.connect(host: "127.0.0.1", port: tcpPort, token: fresh) }
        try "\(Self.admin) admin *\n\(fresh) read default\n".write(toFile: file, atomically: true, encoding: .utf8)
        child.send(SIGHUP)
        #expect(await waitUntil(seconds: 30) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("token file re-read") })
        let client = try await RPCClient.connect(host: "127.0.0.1", port: tcpPort, token: fresh)
        #expect(try await client.call("contacts.count")["total"] == 0)
        try await client.close()
        #expect(child.isRunning, "SIGHUP must not stop the server")
    }
}
