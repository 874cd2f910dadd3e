import ArgumentParser
import SegmentdApp

/// The segmentd command line: a thin layer over SegmentdApp and the LineRPC client.
@main
struct Segmentd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segmentd",
        abstract: "An audience segmentation sidecar: a Contact Book, stored segments, exact answers over JSON-RPC.",
        version: SegmentdVersion.description,
        subcommands: [Serve.self, Call.self, Import.self, Export.self, Bench.self, Backup.self, Migrate.self, ConfigCommand.self])
}
