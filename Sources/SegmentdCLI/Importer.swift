import Foundation
import LineRPC
import WireJSON

/// Sends rows in batches, pipelined, and tallies the outcome: every row read lands in exactly
/// one count.
final class Importer {
    let client: RPCClient
    /// `--book`: sent with every upsert (nil: the server's default book).
    let book: String?
    let source: any ImportRowSource
    let batchSize: Int
    let maxInFlight: Int
    let requestBudget: Int
    let progress: ProgressLine
    let resumeAt: Int
    let interrupts: Interrupts?

    /// Why the import stopped before the end of the input.
    enum Stop {
        /// The server refused a batch unread: it is shutting down or overloaded.
        case refused(String)
        /// The connection was lost (or a batch was cancelled) before a reply.
        case lost(String)
        /// Ctrl-C.
        case interrupted
    }

    private(set) var rows = 0
    private(set) var created = 0
    private(set) var updated = 0
    private(set) var failedCount = 0
    private(set) var refused = 0
    private(set) var unconfirmed = 0
    private(set) var notSent = 0
    private(set) var skipped = 0
    private(set) var stop: Stop?
    /// After Ctrl-C the input past the first row not sent is left unread.
    private(set) var restUnread = false
    /// Reading the input failed (the error is thrown once the batches in flight are answered).
    private(set) var inputFailed = false
    /// The first line of each row not certainly in: batches in flight or whose reply did not
    /// say what happened, and the first row not sent. The smallest is where to resume.
    private var inFlightFirstLine: [Int: Int] = [:]
    private var firstLineNotIn: Int?
    /// Failed lines to list: all of them with --verbose, else the first `shown` by line (kept
    /// bounded, so a file of a million bad rows does not hold a million messages).
    private(set) var failures: [(line: Int, message: String)] = []
    let keepAllFailures: Bool
    static let shown = 20

    struct Batch: Sendable {
        var id: Int
        var lines: [Int] = []
        var documents: [JSONValue] = []
        var keys: Set<String> = []
        var bytes = 0
    }

    struct Outcome: Sendable {
        enum Kind: Sendable {
            case answered
            case refused(String)
            case unconfirmed(String)
        }
        var id: Int
        var rows: Int
        var firstLine: Int
        var kind = Kind.answered
        var created = 0
        var updated = 0
        var failures: [(line: Int, message: String)] = []
    }

    init(
        client: RPCClient, book: String? = nil, source: any ImportRowSource, batchSize: Int, maxInFlight: Int, requestBudget: Int, progress: ProgressLine,
        keepAllFailures: Bool, resumeAt: Int = 1, interrupts: Interrupts? = nil
    ) {
        self.keepAllFailures = keepAllFailures
        self.client = client
        self.book = book
        self.source = source
        self.batchSize = batchSize
        self.maxInFlight = maxInFlight
        self.requestBudget = requestBudget
        self.progress = progress
        self.resumeAt = resumeAt
        self.interrupts = interrupts
    }

    /// The first input line to send again: every row before it is in (imported or reported
    /// failed); nil when every row is.
    var resumeLine: Int? { ([firstLineNotIn].compactMap { $0 } + inFlightFirstLine.values).min() }

    private func notIn(_ line: Int) { firstLineNotIn = min(firstLineNotIn ?? line, line) }

    private func leaveUnsent(_ batch: Batch) {
        guard let first = batch.lines.first else { return }
        notSent += batch.lines.count
        notIn(first)
    }

    /// Sends every row; an error reading the input is thrown once the batches in flight are
    /// answered, so their rows are counted too.
    func run() async throws {
        let client = self.client, book = self.book
        var inputError: (any Error)?
        await withTaskGroup(of: Outcome.self) { group in
            var inFlight: [Int: Set<String>] = [:]
            var nextID = 0
            var current = Batch(id: nextID)
            var lastLineRead: Int?

            func settleOne() async {
                guard let outcome = await group.next() else {
                    inFlight.removeAll()  // nothing left running: never loop on a stale entry
                    inFlightFirstLine.removeAll()
                    return
                }
                inFlight[outcome.id] = nil
                inFlightFirstLine[outcome.id] = nil
                tally(outcome)
            }
            func send(_ batch: Batch) async {
                guard !batch.documents.isEmpty else { return }
                // Bounded: each pass settles one in-flight batch, and there are at most maxInFlight.
                while inFlight.count >= maxInFlight || inFlight.values.contains(where: { !$0.isDisjoint(with: batch.keys) }) {
                    await settleOne()
                }
                if stop == nil, interrupts?.isFired == true { stop = .interrupted }
                guard stop == nil else { return leaveUnsent(batch) }
                inFlight[batch.id] = batch.keys
                inFlightFirstLine[batch.id] = batch.lines[0]
                group.addTask { await Self.upsert(client, batch, book: book) }
            }

            while true {
                if stop == nil, interrupts?.isFired == true { stop = .interrupted }
                let row: ImportRow?
                do {
                    row = try source.next()
                } catch {
                    inputError = error
                    inputFailed = true
                    // Every row read is counted: the first line not in is the one after the
                    // last row read (or --resume-at, when every row read came before it), even
                    // when no batch is left waiting to be sent.
                    notIn(max(resumeAt, (lastLineRead ?? 0) + 1))
                    break
                }
                guard let row else { break }
                rows += 1
                lastLineRead = row.line
                if row.line < resumeAt {
                    skipped += 1
                    continue
                }
                if stop != nil {
                    // Rows past the stop are counted, not sent; after Ctrl-C only the first is read.
                    notSent += 1
                    notIn(row.line)
                    if interrupts?.isFired == true {
                        restUnread = true
                        break
                    }
                    continue
                }
                switch row {
                case .failure(let line, let message):
                    recordFailures([(line, message)])
                case .contact(let line, let document, let key, let bytes):
                    if current.bytes + bytes + 1 > requestBudget || current.documents.count >= batchSize {
                        await send(current)
                        nextID += 1
                        current = Batch(id: nextID)
                    }
                    if stop != nil {
                        notSent += 1
                        notIn(line)
                    } else {
                        current.lines.append(line)
                        current.documents.append(document)
                        if let key { current.keys.insert(key) }
                        current.bytes += bytes + 1
                    }
                }
                if rows & 255 == 0 { drawProgress() }
            }
            if inputError == nil { await send(current) } else { leaveUnsent(current) }
            while !inFlight.isEmpty { await settleOne() }
        }
        drawProgress(force: true)
        if let inputError { throw inputError }
    }

    private func recordFailures(_ new: [(line: Int, message: String)]) {
        failedCount += new.count
        failures += new
        if !keepAllFailures && failures.count > 50 * Self.shown {
            failures = Array(failures.sorted { $0.line < $1.line }.prefix(Self.shown))
        }
    }

    private func tally(_ outcome: Outcome) {
        switch outcome.kind {
        case .answered:
            created += outcome.created
            updated += outcome.updated
            recordFailures(outcome.failures)
        case .refused(let message):
            refused += outcome.rows
            notIn(outcome.firstLine)
            if stop == nil { stop = .refused(message) }
        case .unconfirmed(let message):
            unconfirmed += outcome.rows
            notIn(outcome.firstLine)
            if stop == nil { stop = .lost(message) }
        }
        drawProgress()
    }

    /// One contacts.upsert call; item failures map back to file lines. An error reply for the
    /// whole call fails its rows (the import goes on), except `shutting_down` and `overloaded`:
    /// those rows were not looked at. A lost connection or a cancelled call leaves them unconfirmed.
    static func upsert(_ client: RPCClient, _ batch: Batch, book: String?) async -> Outcome {
        var outcome = Outcome(id: batch.id, rows: batch.lines.count, firstLine: batch.lines[0])
        do {
            let result = try await client.call("contacts.upsert", CLIBook.params(["contacts": .array(batch.documents)], book: book))
            outcome.created = Int(result["created"]?.intValue ?? 0)
            outcome.updated = Int(result["updated"]?.intValue ?? 0)
            for item in result["failed"]?.arrayValue ?? [] {
                guard let index = item["index"]?.intValue.map(Int.init), batch.lines.indices.contains(index) else { continue }
                outcome.failures.append((batch.lines[index], Self.localMessage(item["error"]?.stringValue ?? "refused", index: index)))
            }
        } catch let error as RPCError where error.code == RPCError.shuttingDown().code {
            outcome.kind = .refused("the server is shutting down")
        } catch let error as RPCError where error.code == RPCError.overloaded("").code {
            outcome.kind = .refused("the server is overloaded (\(error.message)); a lower --in-flight may help")
        } catch let error as RPCError where error.code == RPCError.cancelled().code {
            outcome.kind = .unconfirmed("the server cancelled a batch (\(error.message)); its rows may or may not be in")
        } catch let error as RPCError {
            let message = "the batch was refused: \(error.message)"
            outcome.failures = batch.lines.map { ($0, message) }
        } catch {
            outcome.kind = .unconfirmed("lost the connection to segmentd: \(error)")
        }
        return outcome
    }

    /// `contacts[17].email: not an email address` → `email: not an email address`.
    static func localMessage(_ message: String, index: Int) -> String {
        for prefix in ["contacts[\(index)].", "contacts[\(index)]: ", "contacts[\(index)]"] where message.hasPrefix(prefix) {
            return String(message.dropFirst(prefix.count))
        }
        return message
    }

    private func drawProgress(force: Bool = false) {
        guard progress.enabled else { return }
        let reader = source.reader
        // Rows the server has answered for (and rows that failed before sending); the percentage
        // is of the file read, which runs ahead by at most the batches in flight.
        let (done, read, total) = (created + updated + failedCount + refused + unconfirmed, reader.bytesRead, reader.totalBytes)
        progress.update(force: force) { elapsed in
            let rate = "\(ProgressLine.count(done)) rows  \(ProgressLine.rate(Double(done), over: elapsed)) rows/s"
            guard total > 0 else { return rate + "  \(ProgressLine.bytes(read)) read" }  // stdin: no size to measure against
            let fraction = Double(read) / Double(total)
            return "\(ProgressLine.bar(fraction)) \(String(format: "%3d", Int(fraction * 100)))%  " + rate
                + "  ETA \(ProgressLine.eta(fraction: fraction, elapsed: elapsed))"
        }
    }
}
