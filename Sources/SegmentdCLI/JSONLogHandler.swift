import Foundation
import Logging
import SegmentCore
import Synchronization
import WireJSON

/// `--log-format json`: one JSON object per line on standard error, for log shippers.
///
/// ```text
/// {"label":"segmentd","level":"debug","message":"request","metadata":{"book":"acme","duration_ms":"0.412","outcome":"ok","rpc.connection":"3","rpc.id":"7","rpc.method":"segments.count"},"source":"LineRPC","time":"2026-11-27T16:40:01.123Z"}
/// ```
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    /// One line at a time, whichever thread logs.
    private static let output = Mutex(())

    init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        var object: [String: JSONValue] = [
            "time": .string(ISOTime.format(Date().timeIntervalSince1970)),
            "level": .string(event.level.rawValue), "label": .string(label),
            "message": .string(event.message.description), "source": .string(event.source),
        ]
        if !merged.isEmpty { object["metadata"] = Self.json(.dictionary(merged)) }
        let line = JSONValue.object(object).serialized() + "\n"
        // A log line that cannot be written (a full disk, a closed pipe) is lost, never fatal.
        Self.output.withLock { _ in try? FileHandle.standardError.write(contentsOf: Data(line.utf8)) }
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): return .string(text)
        // Numbers stay numbers (`duration_ms`), so a log query can compare them.
        case .stringConvertible(let number as Int): return .int(Int64(number))
        case .stringConvertible(let number as Double) where number.isFinite: return .double(number)
        case .stringConvertible(let convertible): return .string(convertible.description)
        case .array(let items): return .array(items.map(json))
        case .dictionary(let entries): return .object(entries.mapValues(json))
        }
    }
}
