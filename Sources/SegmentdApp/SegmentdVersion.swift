import SegmentCore
import SegmentEngine
import WireJSON

/// segmentd's version, in one place: `segmentd --version` prints it and the server reports it
/// in `rpc.hello` (`version`) and `rpc.discover` (`info.version`).
public enum SegmentdVersion {
    public static let current = "0.1.0"

    /// The storage schema of the built-in dimensions' books: its version (how many named
    /// migrations a book has) and the last migration's name. An upgrade that raises it
    /// migrates every book when it opens; a binary with a lower one must not open them.
    public static var schema: (version: Int, latest: String) {
        let names = Engine.schemaMigrations(registry: SegmentdApplication.builtInRegistry())
        return (names.count, names.last ?? "")
    }

    /// What `segmentd --version` prints: `0.1.0 (storage schema 12: engagement.v2)`.
    public static var description: String { "\(current) (storage schema \(schema.version): \(schema.latest))" }

    /// `rpc.hello`'s `storage` member.
    static func storage(registry: DimensionRegistry) -> JSONValue {
        let names = Engine.schemaMigrations(registry: registry)
        return ["schema": .int(Int64(names.count)), "latest_migration": .string(names.last ?? "")]
    }
}
