import CoreMetrics
import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import StreamCodec
import WireJSON

extension SegmentMethods {
    /// The most rows one `segments.rows` notification carries.
    static let maxBatch = 10_000

    var streamMethods: [RPCMethod] {
        let streamParams: [Param] = [
            .optional("id", Schema.integer), .optional("filters", filtersSchema),
            .optional("audience", Schema.enumeration(["send", "all"])),
            .optional("columns", Schema.array(Schema.string)),
            .optional("format", Schema.enumeration(["ndjson", "csv"])),
            .optional("compress", Schema.enumeration(["gzip"])),
            .optional("batch_size", ["type": "integer", "minimum": 1, "maximum": .int(Int64(Self.maxBatch))]),
        ]
        let final = Schema.object([
            "rows": Schema.integer, "as_of": Schema.timestamp, "version": Schema.integer, "format": Schema.string,
            "columns": Schema.array(Schema.string), "compress": ["type": ["string", "null"]], "complete": Schema.boolean,
        ])
        let methods = self
        return [
            bookMethod(
                "segments.resolve",
                "Streams the matching contacts as segments.rows notifications (rows, csv or gzip chunks), then {rows, as_of}; one snapshot throughout.",
                params: streamParams, result: final, streaming: true
            ) { engine, p, request in
                let (plan, options) = try Self.plan(p, engine: engine)
                return try await Self.stream(plan, options, request: request, engine: engine, rows: methods.streamed.resolvedRows)
            },
            bookMethod(
                "segments.export",
                "As segments.resolve; with `path`, writes the file into the book's export folder atomically (a token needs write access for that) and returns {path, rows, bytes, sha256, as_of}.",
                params: streamParams + [.optional("path", Schema.string)],
                result: Schema.object([
                    "path": Schema.string, "rows": Schema.integer, "bytes": Schema.integer, "sha256": Schema.string, "as_of": Schema.timestamp,
                ]),
                streaming: true
            ) { engine, p, request in
                let book = try Self.bookName(p)
                // A file in the book's export folder may replace an earlier one: that is writing.
                if p.has("path") { try Self.authorize(request, book: book, writing: true) }
                let (plan, options) = try Self.plan(p, engine: engine)
                guard let relative = try p.optionalString("path") else {
                    return try await Self.stream(plan, options, request: request, engine: engine, rows: methods.streamed.exportedRows)
                }
                let exportDirectory = try methods.preparedExportDirectory(for: book)
                let exporter = FileExporter(directory: exportDirectory)
                let target = try exporter.confine(relative)
                let result = try await WorkerThreads.blocking.run { try exporter.write(plan, to: target, gzip: options.gzip) }
                methods.streamed.exportedRows.increment(by: result.rows)
                if let id = options.segment { await engine.markUsed(segment: id) }
                return [
                    "path": .string(String(target.dropFirst((FileExporter.realPath(exportDirectory) ?? "").count + 1))),
                    "rows": .int(Int64(result.rows)), "bytes": .int(Int64(result.bytes)), "sha256": .string(result.sha256),
                    "as_of": .string(ISOTime.format(result.asOf)), "version": .int(plan.book.version),
                ]
            },
        ]
    }

    struct StreamOptions {
        var gzip: Bool
        var batchSize: Int
        var segment: Int64?
    }

    /// Validates everything before any row is sent: target, audience, columns, format, compression.
    static func plan(_ p: ParamReader, engine: Engine) throws(SegmentError) -> (ResolvePlan, StreamOptions) {
        let formatName = try p.optionalString("format") ?? "ndjson"
        guard let format = RowFormat(rawValue: formatName) else {
            throw .invalidParams(path: "format", "unknown format \"\(formatName)\"; expected ndjson or csv")
        }
        let compress = try p.optionalString("compress")
        guard compress == nil || compress == "gzip" else {
            throw .invalidParams(path: "compress", "unknown compression \"\(compress!)\"; expected gzip")
        }
        let batch = Int(try p.optionalInt("batch_size", in: 1...Int64(maxBatch)) ?? 1_000)
        let audience = try audience(p)
        let columns = try p.optionalStrings("columns")
        let plan: ResolvePlan
        var segment: Int64?
        switch try target(p) {
        case .id(let id):
            segment = id
            plan = try engine.plan(segment: id, audience: audience, columns: columns, format: format)
        case .filters(let filters):
            plan = try engine.plan(filters: filters, audience: audience, columns: columns, format: format)
        }
        return (plan, StreamOptions(gzip: compress != nil, batchSize: batch, segment: segment))
    }

    /// Sends the plan's rows in batches, each only when the connection can take it, then the
    /// final reply. Cancelled (rpc.cancel): stops at once and replies with `complete: false`.
    /// `rows` counts the rows as they are sent.
    static func stream(_ plan: ResolvePlan, _ options: StreamOptions, request: RPCRequest, engine: Engine, rows: Counter) async throws -> JSONValue {
        let gzip = options.gzip ? try GzipCompressor(level: 1) : nil
        var sent = 0
        var complete = true
        var pending = plan.header()
        do {
            let slots = plan.members.slots
            for start in stride(from: 0, to: slots.count, by: options.batchSize) {
                try Task.checkCancellation()
                let batch = slots[start..<min(start + options.batchSize, slots.count)]
                if let gzip {
                    let chunk = try gzip.compress(pending + plan.encode(batch))
                    if !chunk.isEmpty { try await request.notify("segments.rows", ["gzip": .string(Data(chunk).base64EncodedString())]) }
                } else if plan.format == .csv {
                    try await request.notify("segments.rows", ["csv": .string(String(decoding: pending + plan.encode(batch), as: UTF8.self))])
                } else {
                    try await request.notify("segments.rows", ["rows": .array(batch.map(plan.rowObject))])
                }
                pending = []
                sent += batch.count
                rows.increment(by: batch.count)
            }
            if let gzip {
                try await request.notify("segments.rows", ["gzip": .string(Data(try gzip.compress(pending) + gzip.finish()).base64EncodedString())])
            } else if !pending.isEmpty {
                try await request.notify("segments.rows", ["csv": .string(String(decoding: pending, as: UTF8.self))])
            }
        } catch is CancellationError {
            complete = false
        }
        if complete, let id = options.segment { await engine.markUsed(segment: id) }
        return [
            "rows": .int(Int64(sent)), "as_of": .string(ISOTime.format(plan.asOf)), "version": .int(plan.book.version),
            "format": .string(plan.format.rawValue), "columns": .array(plan.columns.map { .string($0) }),
            "compress": options.gzip ? "gzip" : .null, "complete": .bool(complete),
        ]
    }
}
