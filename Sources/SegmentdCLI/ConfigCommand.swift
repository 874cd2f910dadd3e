import ArgumentParser
import Foundation
import SegmentCore
import SegmentdApp

/// `segmentd config check FILE`: validates a config file and prints the effective settings.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Configuration files.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a TOML config file and print the effective configuration: the file over the defaults, under the SEGMENTD_* variables set now (each line says where its value came from). Exit status 1 if anything is wrong.")

        @Argument(help: "The TOML file.") var file: String

        func run() throws {
            let settings: ServeSettings
            do {
                settings = try ServeSettings(file: file, environment: ProcessInfo.processInfo.environment, flags: [:])
                // What serve would refuse at start-up (an unknown time zone, a bad socket mode…).
                _ = try settings.appConfiguration()
            } catch {
                throw CommandFailure(error.message)
            }
            print(settings.rendered(), terminator: "")
            for name in settings.unknownVariables {
                FileHandle.standardError.write(Data("warning: \(name) is not a segmentd setting and is ignored\n".utf8))
            }
        }
    }
}
