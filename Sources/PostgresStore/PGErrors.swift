import PostgresNIO
import SegmentCore

/// postgres-nio's errors as `SegmentError`s.
///
/// `PSQLError.description` is deliberately generic ("PSQLError – Generic description to
/// prevent accidental leakage…"), so the server's own words are taken from `serverInfo`.
enum PGErrors {
    /// A statement the server refused: `.internal` with the server's message, SQLSTATE, and
    /// detail and hint when it sent them. A lost connection: ``unreachable(_:_:)``. Errors
    /// that are not postgres-nio's (a caller's, a cancellation) pass through unchanged.
    static func map(_ error: any Error, url: PostgresURL) -> any Error {
        guard let error = error as? PSQLError else { return error }
        if let info = error.serverInfo, let message = info[.message] {
            let state = info[.sqlState] ?? ""
            // Class 08 (connection exception), 57P01–57P03 (the server shutting down or
            // starting up), 53300 (too many connections): the store is not there to use.
            if state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300"].contains(state) {
                return unreachable(url, message)
            }
            var text = "PostgreSQL: \(message)"
            if !state.isEmpty { text += " (SQLSTATE \(state))" }
            if let detail = info[.detail] { text += "; \(detail)" }
            if let hint = info[.hint] { text += "; hint: \(hint)" }
            return SegmentError(.internal, text)
        }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            let reason = error.underlying.map { String(describing: $0) } ?? "\(error.code)"
            return unreachable(url, reason)
        default:
            return SegmentError(.internal, "PostgreSQL client error \(error.code)" + (error.underlying.map { ": \($0)" } ?? ""))
        }
    }

    /// Any failure to open a connection, even one the server explained (no such database, a
    /// wrong password), is the store being unreachable.
    static func connectFailed(_ error: any Error, url: PostgresURL) -> SegmentError {
        if let error = error as? SegmentError { return error }
        guard let error = error as? PSQLError else { return unreachable(url, String(describing: error)) }
        let reason = error.serverInfo?[.message] ?? error.underlying.map { String(describing: $0) } ?? "\(error.code)"
        return unreachable(url, reason)
    }

    /// `.unavailable`: the connection is gone or was never made; the URL shows no password.
    static func unreachable(_ url: PostgresURL, _ reason: String) -> SegmentError {
        SegmentError(.unavailable, "PostgreSQL store unreachable at \(url): \(reason)")
    }
}
