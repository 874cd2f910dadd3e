import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import Synchronization

/// What one TCP token may do: which books, and whether it may write to them or administer
/// books (create and drop them).
public struct BookGrant: Sendable, Equatable {
    public enum Access: String, Sendable, Comparable, CaseIterable {
        case read, write, admin

        public static func < (a: Access, b: Access) -> Bool { a.rank < b.rank }
        private var rank: Int {
            switch self {
            case .read: 0
            case .write: 1
            case .admin: 2
            }
        }
    }

    /// The books it may use; nil means every book.
    public var books: Set<String>?
    public var access: Access
    /// Where it came from, for logs: `token-file line 3`, `--token`.
    public var origin: String

    public init(books: Set<String>?, access: Access, origin: String) {
        self.books = books
        self.access = access
        self.origin = origin
    }

    /// The grant of `--token`: every book, administration included.
    public static let everything = BookGrant(books: nil, access: .admin, origin: "--token")

    public func mayUse(_ book: String) -> Bool { books?.contains(book) ?? true }

    /// Throws `unauthorized`, naming the book, unless this grant may use `book` (and write to it).
    func check(book: String, writing: Bool) throws(RPCError) {
        guard mayUse(book) else { throw RPCError.unauthorized("this token may not use book \"\(book)\"") }
        if writing, access < .write { throw RPCError.unauthorized("this token may only read book \"\(book)\"") }
    }
}

/// The TCP tokens a server accepts: `--token` (every book, admin) and the lines of
/// `--token-file`, re-read on SIGHUP.
///
/// **The token file**, one token per line, `#` starts a comment:
///
/// ```text
/// # token                            access  books
/// 4c1f0e2a9b7d45e3a8c6f1d2b3e4a5c6   write   acme,globex
/// 9a8b7c6d5e4f30211f2e3d4c5b6a7988   read    acme
/// 0f1e2d3c4b5a69788796a5b4c3d2e1f0   admin   *
/// ```
///
/// `access` is `read` (read methods of its books), `write` (every method of its books) or
/// `admin` (every book, and `books.create`/`books.drop`; its books must be `*`). `books` is a
/// comma-separated list of book names, or `*` for every book, present and future. Tokens are
/// at least 16 characters of printable ASCII without spaces or `#`, and appear once.
///
/// A presented token is compared with every known token in constant time. A connection keeps
/// its token, not the grant it had: after a reload, its next request gets the token's new
/// grant, and a token removed from the file is refused from then on.
public final class TokenTable: Sendable {
    struct Entry: Sendable {
        let token: String
        let grant: BookGrant
    }

    private struct State {
        var entries: [Entry]
        var generation = 0
    }

    private let state: Mutex<State>
    /// `--token`, which a reload keeps.
    private let fixed: [Entry]
    public let file: String?

    /// Reads `file` (if any); throws a ``SegmentError`` naming the line that is wrong.
    public init(token: String?, file: String?) throws(SegmentError) {
        fixed = token.map { [Entry(token: $0, grant: .everything)] } ?? []
        self.file = file
        let fromFile = try file.map { path throws(SegmentError) in try Self.read(path) } ?? []
        state = Mutex(State(entries: fixed + fromFile))
    }

    /// Whether any token is known (a TCP listener needs one).
    public var isEmpty: Bool { state.withLock { $0.entries.isEmpty } }

    public var count: Int { state.withLock { $0.entries.count } }

    /// Re-reads the token file. On error the tokens in force stay and the error is thrown.
    public func reload() throws(SegmentError) {
        guard let file else { return }
        let entries = try Self.read(file)
        state.withLock { state in
            state.entries = fixed + entries
            state.generation += 1
        }
    }

    /// For `rpc.hello`: the credential of `presented`, or nil if no token matches.
    public func authenticate(_ presented: String) -> TokenCredential? {
        let (grant, generation) = state.withLock { state in (Self.find(presented, in: state.entries), state.generation) }
        guard let grant else { return nil }
        return TokenCredential(table: self, token: presented, grant: grant, generation: generation)
    }

    /// The grant `token` has now (nil once it was removed), and the generation it was read at.
    func current(_ token: String, cached: (grant: BookGrant?, generation: Int)) -> (grant: BookGrant?, generation: Int) {
        state.withLock { state in
            guard state.generation != cached.generation else { return cached }
            return (Self.find(token, in: state.entries), state.generation)
        }
    }

    /// Compares with every entry (no early exit), each comparison in constant time.
    private static func find(_ presented: String, in entries: [Entry]) -> BookGrant? {
        var found: BookGrant?
        for entry in entries where RPCServerConfiguration.constantTimeEquals(presented, entry.token) {
            if found == nil { found = entry.grant }
        }
        return found
    }

    /// Parses a token file; throws naming the file and line.
    static func read(_ path: String) throws(SegmentError) -> [Entry] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SegmentError(.invalidParams, "cannot read the token file \(path): \((error as NSError).localizedDescription)", path: "token-file")
        }
        return try parse(text, source: path)
    }

    static func parse(_ text: String, source: String) throws(SegmentError) -> [Entry] {
        var entries: [Entry] = []
        var seen: Set<String> = []
        // Any line break: "\r\n" (a file edited on Windows) is one Character in Swift.
        for (offset, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard !fields.isEmpty else { continue }
            let at = "\(source) line \(offset + 1)"
            func fail(_ message: String) -> SegmentError { SegmentError(.invalidParams, "\(at): \(message)", path: "token-file") }
            guard fields.count == 3 else {
                throw fail("expected TOKEN ACCESS BOOKS (three fields separated by spaces), found \(fields.count) field(s)")
            }
            let token = fields[0]
            guard token.utf8.count >= 16, token.utf8.allSatisfy({ (0x21...0x7e).contains($0) && $0 != UInt8(ascii: "#") }) else {
                throw fail("a token is at least 16 printable ASCII characters, without spaces or # (which starts a comment)")
            }
            guard seen.insert(token).inserted else { throw fail("this token appears on an earlier line too") }
            guard let access = BookGrant.Access(rawValue: fields[1]) else {
                throw fail("access is read, write or admin, not \"\(fields[1])\"")
            }
            var books: Set<String>?
            if fields[2] != "*" {
                var names: Set<String> = []
                for name in fields[2].split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
                    do {
                        try BookCatalog.validate(name: name)
                    } catch {
                        throw fail(error.message)
                    }
                    names.insert(name)
                }
                books = names
            }
            if access == .admin, books != nil { throw fail("an admin token's books are \"*\" (it may create and drop any book)") }
            entries.append(Entry(token: token, grant: BookGrant(books: books, access: access, origin: at)))
        }
        return entries
    }
}

/// A TCP connection's token (``RPCRequest/credential``): it reads its grant from the table
/// at each request, so a reload applies to open connections too.
public final class TokenCredential: Sendable {
    let table: TokenTable
    let token: String
    private let cached: Mutex<(grant: BookGrant?, generation: Int)>

    init(table: TokenTable, token: String, grant: BookGrant, generation: Int) {
        self.table = table
        self.token = token
        self.cached = Mutex((grant, generation))
    }

    /// The token's grant now; nil if a reload removed the token.
    public var grant: BookGrant? {
        cached.withLock { cached in
            cached = table.current(token, cached: cached)
            return cached.grant
        }
    }
}
