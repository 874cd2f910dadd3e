import SegmentCore
import SegmentEngine
import WireJSON

/// segmentd's version, in one place: `segmentd --version` prints it and the server reports it
/// in `rpc.hello` (`version`) and `rpc.discover` (`info.version`).
public enum SegmentdVersion {
    public static let current = "0.1.0"

    /// The git commit this binary was built from (`-dirty` with uncommitted changes), or
    /// `unknown` when it was built outside a git checkout (the GitCommit build plugin).
    public static let commit = BuildInfo.commit

    /// The storage schema of the built-in dimensions' books: its version (how many named
    /// migrations a book has) and the last migration's name. An upgrade that raises it
    /// migrates every book when it opens; a binary with a lower one must not open them.
    public static var schema: (version: Int, latest: String) {
        let names = Engine.schemaMigrations(registry: SegmentdApplication.builtInRegistry())
        return (names.count, names.last ?? "")
    }

    /// What `segmentd --version` prints: `0.1.0 (commit 1a2b3c4d5e6f, storage schema 12: engagement.v1)`.
    public static var description: String { "\(current) (commit \(commit), storage schema \(schema.version): \(schema.latest))" }

    /// `rpc.hello`'s `storage` member.
    static func storage(registry: DimensionRegistry) -> JSONValue {
        let names = Engine.schemaMigrations(registry: registry)
        return ["schema": .int(Int64(names.count)), "latest_migration": .string(names.last ?? "")]
    }
}
