import ArgumentParser
import Foundation
import LineRPC
import WireJSON

/// `segmentd backup PATH`: asks a running server for an online backup of its database.
struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Back up the live database (SQLite online backup) while the server keeps running.",
        discussion: """
            The server writes the copy itself (method server.backup), consistent as of one \
            commit, while reads and writes go on. PATH is a file name inside the book's folder of the \
            server's export directory (serve --export-dir, default ./exports; the folder is \
            exports/BOOK/), relative to it or absolute inside \
            it: like segments.export, the server never writes files elsewhere, because any client \
            holding the token could otherwise make it write anywhere it may. The copy is written \
            under a temporary name and renamed into place, so PATH is either a complete backup or \
            untouched; an existing backup of that name is replaced.

            Prints the result: {"bytes": …, "path": …, "seconds": …}. Exit status 1 on error.

            Examples:
              segmentd backup nightly.sqlite
              segmentd backup backups/$(date +%F).sqlite --socket /run/segmentd/segmentd.sock
              segmentd backup acme-nightly.sqlite --book acme
            """)

    @Argument(help: "Backup file, relative to the book's export folder (exports/BOOK/).") var path: String
    @Option(help: "The book to work on (default: the server's default book).") var book: String?
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Connect over TCP HOST:PORT instead of the socket.") var tcp: String?
    @Option(help: "Token for TCP (default: $SEGMENTD_TOKEN).") var token: String?

    func run() async throws {
        let client = try await CLIConnection.open(socket: socket, tcp: tcp, token: token)
        defer { Task { try? await client.close() } }
        do {
            let result = try await client.call("server.backup", CLIBook.params(["path": .string(path)], book: book))
            print(result.serialized())
        } catch {
            throw CommandFailure(CLIErrors.text(of: error, method: "server.backup"))
        }
    }
}
