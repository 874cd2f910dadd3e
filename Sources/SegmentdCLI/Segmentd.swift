import ArgumentParser
import SegmentCore
import SegmentdApp
import Synchronization

/// The segmentd command line (`serve`, `call`, `import`, `export`, `bench`, `backup`,
/// `migrate`, `config`): a thin layer over SegmentdApp and the LineRPC client.
///
/// The entry point of a `segmentd` with dimensions of its own, as a package outside this
/// repository builds it:
///
/// ```swift
/// import SegmentdCLI
///
/// @main struct CustomSegmentd {
///     static func main() async { await Segmentd.main(dimensions: [MailboxDimension()]) }
/// }
/// ```
///
/// `serve` then registers them after the built-in ones (their filters, contact keys,
/// methods and `rpc.discover` entries), and `migrate` copies their stored parts.
public struct Segmentd: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "segmentd",
        abstract: "An audience segmentation sidecar: a Contact Book, stored segments, exact answers over JSON-RPC.",
        version: SegmentdVersion.description,
        subcommands: [Serve.self, Call.self, Import.self, Export.self, Bench.self, Backup.self, Migrate.self, ConfigCommand.self])

    public init() {}

    /// Parses the process's arguments and runs the command, with `dimensions` added to the
    /// built-in ones (a name or contact key already taken ends the command with an error naming it).
    public static func main(dimensions: [any DimensionProvider]) async {
        extraDimensions.withLock { $0 = dimensions }
        await main()
    }

    /// What `main(dimensions:)` was given.
    static let extraDimensions = Mutex<[any DimensionProvider]>([])

    /// The built-in dimensions and the extra ones.
    static func registry() throws -> DimensionRegistry {
        var registry = SegmentdApplication.builtInRegistry()
        for dimension in extraDimensions.withLock({ $0 }) {
            if let refusal = registry.refusal(for: dimension) { throw CommandFailure(refusal) }
            registry.register(dimension)
        }
        return registry
    }
}
