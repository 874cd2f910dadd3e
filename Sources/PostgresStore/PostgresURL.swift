import SegmentCore

/// Where a PostgreSQL store lives, parsed from a libpq-style URL.
///
/// ```
/// postgres://USER[:PASSWORD]@HOST[:PORT]/DB
/// postgresql://USER@[::1]:5433/DB
/// postgres://USER@/DB?host=/var/run/postgresql         (Unix socket directory, as libpq)
/// postgres://USER@%2Fvar%2Frun%2Fpostgresql/DB         (the same, percent-encoded)
/// ```
///
/// User, password, host and database are percent-decoded. The query accepts `host`, `port`,
/// `user`, `password`, `dbname` (each overriding the part before it, as libpq) and
/// `sslmode=disable|allow|prefer`: the store speaks plain TCP or a Unix socket, never TLS.
/// `description` never shows the password, and neither does any parse error.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// A directory holding the server's socket `.s.PGSQL.<port>`.
        case unixSocket(directory: String, port: Int)
    }

    public var user: String
    public var password: String?
    public var database: String
    public var endpoint: Endpoint

    public init(user: String, password: String? = nil, database: String, endpoint: Endpoint) {
        self.user = user
        self.password = password
        self.database = database
        self.endpoint = endpoint
    }

    /// Parses a `postgres://` or `postgresql://` URL; throws `SegmentError(.invalidParams)`
    /// naming what is wrong.
    public init(_ string: String) throws {
        let rest: Substring
        if string.hasPrefix("postgres://") {
            rest = string.dropFirst("postgres://".count)
        } else if string.hasPrefix("postgresql://") {
            rest = string.dropFirst("postgresql://".count)
        } else {
            let scheme = string.firstRange(of: "://").map { String(string[..<$0.lowerBound]) } ?? String(string.prefix(12))
            throw Self.invalid("must start with postgres:// or postgresql://, not \"\(scheme)\"")
        }
        if rest.contains("#") { throw Self.invalid("a fragment (#…) is not allowed") }

        let (main, query) = rest.splitOnce("?")
        let (authority, path) = main.splitOnce("/")

        var user = "", password: String?, host = "", portText: Substring?
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            let (userPart, passwordPart) = userInfo.splitOnce(":")
            user = try Self.decode(userPart, "user name")
            password = try passwordPart.map { try Self.decode($0, "password") }
        }
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw Self.invalid("IPv6 host \"\(hostPort)\" lacks its closing ]") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Self.invalid("unexpected \"\(after)\" after the IPv6 host") }
                portText = after.dropFirst()
            }
        } else {
            let (hostPart, portPart) = hostPort.splitOnce(":")
            host = try Self.decode(hostPart, "host")
            portText = portPart
        }
        var database = try path.map { try Self.decode($0, "database name") } ?? ""

        for item in (query ?? "").split(separator: "&", omittingEmptySubsequences: true) {
            let (rawKey, rawValue) = item.splitOnce("=")
            let key = try Self.decode(rawKey, "query parameter name")
            let value = try Self.decode(rawValue ?? "", "value of \(key)")
            switch key {
            case "host": host = value
            case "port": portText = Substring(value)
            case "user": user = value
            case "password": password = value
            case "dbname": database = value
            case "sslmode":
                guard ["disable", "allow", "prefer"].contains(value) else {
                    throw Self.invalid("sslmode=\(value) is not supported: the store connects without TLS (sslmode=disable)")
                }
            default:
                throw Self.invalid("unknown query parameter \"\(key)\" (known: host, port, user, password, dbname, sslmode)")
            }
        }

        var port = 5432
        if let portText, !portText.isEmpty {
            guard let number = Int(portText), (1...65_535).contains(number) else {
                throw Self.invalid("port \"\(portText)\" is not a number from 1 to 65535")
            }
            port = number
        }
        guard !user.isEmpty else { throw Self.invalid("no user name: write postgres://USER@HOST/DB") }
        guard !database.isEmpty else { throw Self.invalid("no database name: write postgres://USER@HOST/DB") }
        guard !host.isEmpty else {
            throw Self.invalid("no host: write postgres://USER@HOST/DB, or ?host=/socket/directory for a Unix socket")
        }
        self.user = user
        self.password = password
        self.database = database
        endpoint = host.hasPrefix("/") ? .unixSocket(directory: host, port: port) : .tcp(host: host, port: port)
    }

    /// The socket file for a Unix-socket endpoint (`DIR/.s.PGSQL.PORT`).
    public var socketPath: String? {
        guard case .unixSocket(let directory, let port) = endpoint else { return nil }
        return (directory.hasSuffix("/") ? directory : directory + "/") + ".s.PGSQL.\(port)"
    }

    /// The same server and credentials with another database.
    public func with(database: String) -> PostgresURL {
        var copy = self
        copy.database = database
        return copy
    }

    /// The URL with the password shown as `***`.
    public var description: String {
        var text = "postgres://" + Self.encode(user)
        if password != nil { text += ":***" }
        text += "@"
        switch endpoint {
        case .tcp(let host, let port):
            text += (host.contains(":") ? "[\(host)]" : Self.encode(host)) + (port == 5432 ? "" : ":\(port)") + "/" + Self.encode(database)
        case .unixSocket(let directory, let port):
            text += "/" + Self.encode(database) + "?host=" + Self.encode(directory, keeping: "/") + (port == 5432 ? "" : "&port=\(port)")
        }
        return text
    }

    private static func invalid(_ message: String) -> SegmentError {
        SegmentError(.invalidParams, "PostgreSQL URL: \(message)")
    }

    /// Percent-decodes one part; `what` names it in the error (never its text, which may be a
    /// password).
    private static func decode(_ part: Substring, _ what: String) throws -> String {
        guard part.contains("%") else { return String(part) }
        var bytes: [UInt8] = []
        var iterator = part.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw invalid("bad percent-encoding in the \(what) (% must be followed by two hex digits)")
            }
            bytes.append(high << 4 | low)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw invalid("the \(what) is not UTF-8 once percent-decoded") }
        return text
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func encode(_ text: String, keeping kept: Character? = nil) -> String {
        var out = ""
        for character in text {
            if character == kept || !":@/?#&=%[] ".contains(character) {
                out.append(character)
            } else {
                for byte in String(character).utf8 { out += "%" + String(byte, radix: 16, uppercase: true) }
            }
        }
        return out
    }
}

extension Substring {
    /// The part before the first `separator` and, if there was one, the part after it.
    fileprivate func splitOnce(_ separator: Character) -> (Substring, Substring?) {
        guard let index = firstIndex(of: separator) else { return (self, nil) }
        return (self[..<index], self[self.index(after: index)...])
    }
}
