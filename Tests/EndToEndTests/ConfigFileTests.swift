import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import TestThreads
import Testing
import WireJSON

/// `serve --config FILE` (TOML), `SEGMENTD_*` variables and flags: one set of settings, in
/// that order of precedence, and `segmentd config check`.
@Suite(.ownThreads) struct ConfigFileTests {
    static var binary: String { productsDirectory().appendingPathComponent("segmentd").path }

    static func write(_ text: String, in directory: String, name: String = "segmentd.toml") throws -> String {
        let path = directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func flagsWinOverTheEnvironmentWhichWinsOverTheFile() throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try Self.write("max_connections = 2048\nmax_in_flight = 8\nidle_timeout_ms = 60000\n", in: directory)
        let fileOnly = try ServeSettings(file: file, environment: [:], flags: [:])
        #expect(fileOnly.int("max_connections") == 2048 && fileOnly.values["max_connections"]?.source == .file)
        #expect(fileOnly.int("max_batch") == 100 && fileOnly.values["max_batch"]?.source == .defaults)
        let environment = ["SEGMENTD_MAX_CONNECTIONS": "99"]
        let withEnvironment = try ServeSettings(file: file, environment: environment, flags: [:])
        #expect(withEnvironment.int("max_connections") == 99 && withEnvironment.values["max_connections"]?.source == .environment)
        let withFlag = try ServeSettings(file: file, environment: environment, flags: ["max_connections": .int(7)])
        #expect(withFlag.int("max_connections") == 7 && withFlag.values["max_connections"]?.source == .flag)
        // The limits reach the server's configuration, as rpc.hello will advertise them.
        let limits = try withFlag.appConfiguration().limits
        #expect(limits.maxConnections == 7 && limits.maxInFlightPerConnection == 8 && limits.idleTimeout == .seconds(60))
    }

    /// Every mistake names the key, and where it was given.
    @Test func mistakesNameTheKey() throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func error(_ toml: String, environment: [String: String] = [:], flags: [String: ServeSettings.Value] = [:]) throws -> SegmentError? {
            let file = try Self.write(toml, in: directory)
            do {
                _ = try ServeSettings(file: file, environment: environment, flags: flags).appConfiguration()
                return nil
            } catch {
                return error
            }
        }
        let typo = try error("max_conections = 5\n")
        #expect(typo?.path == "max_conections" && typo?.message.contains("unknown key max_conections (did you mean max_connections?)") == true)
        let type = try error("max_connections = \"many\"\n")
        #expect(type?.path == "max_connections" && type?.message.contains("must be an integer") == true && type?.message.contains("\"many\"") == true)
        let range = try error("max_connections = 0\n")
        #expect(range?.path == "max_connections" && range?.message.contains("from 1 to") == true)
        let syntax = try error("socket = \"a.sock\"\nmax_batch = \n")
        #expect(syntax?.path == "config" && syntax?.message.contains("line 2") == true, "\(String(describing: syntax))")
        let table = try error("[limits]\nmax_batch = 5\n")
        #expect(table?.path == "limits" && table?.message.contains("unknown key limits") == true)
        let zone = try error("time_zone = \"Mars/Olympus\"\n")
        #expect(zone?.path == "time_zone" && zone?.message.contains("Mars/Olympus") == true)
        let mode = try error("socket_mode = \"999\"\n")
        #expect(mode?.path == "socket_mode")
        let choice = try error("log_format = \"xml\"\n")
        #expect(choice?.message.contains("one of text, json") == true)
        let tcpWithoutToken = try error("tcp = \"127.0.0.1:7070\"\n")
        #expect(tcpWithoutToken?.path == "tcp" && tcpWithoutToken?.message.contains("needs a token") == true)
        let badTCP = try error("tcp = \"localhost\"\ntoken_file = \"/x\"\n")
        #expect(badTCP?.path == "tcp" && badTCP?.message.contains("HOST:PORT") == true)
        let badMetrics = try error("metrics = \"localhost:http\"\n")
        #expect(badMetrics?.path == "metrics" && badMetrics?.message.contains("localhost:http") == true)
        let variable = try error("", environment: ["SEGMENTD_DRAIN_SECONDS": "soon"])
        #expect(variable?.path == "drain_seconds" && variable?.message.contains("SEGMENTD_DRAIN_SECONDS") == true)
        let flag = try error("", flags: ["max_batch": .int(0)])
        #expect(flag?.message.contains("--max-batch") == true)
        // A number setting takes an integer; a variable that names no setting is only noted.
        let lenient = try ServeSettings(file: try Self.write("book_load_wait = 5\n", in: directory), environment: ["SEGMENTD_BIN": "x"], flags: [:])
        #expect(lenient.double("book_load_wait") == 5 && lenient.unknownVariables == ["SEGMENTD_BIN"])
    }

    /// The file takes every serve flag, and every key has a flag (the help lists them).
    @Test func everyServeFlagIsAKey() async throws {
        let help = try await runProcess(Self.binary, ["serve", "--help"], environment: ["PATH": "/usr/bin:/bin", "COLUMNS": "400"], timeout: 60)
        // Option lines start with the flag (`  --max-batch <max-batch>  Most requests…`).
        let flags = Set(help.out.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.drop { $0 == " " }
            guard trimmed.hasPrefix("--") else { return nil }
            return String(trimmed.prefix { $0 != " " && $0 != "," })
        })
        let flagOnly: Set<String> = ["--config", "--subscriber-queue", "--help", "--version"]
        let keys = Set(ServeSettings.keys.map { "--" + $0.replacingOccurrences(of: "_", with: "-") })
        #expect(flags.subtracting(flagOnly) == keys, "flags without a key: \(flags.subtracting(flagOnly).subtracting(keys)); keys without a flag: \(keys.subtracting(flags))")
    }

    /// The real binary started with a file (and a variable over it): it listens where the file
    /// says and advertises the limits the settings give.
    @Test func serveReadsTheFileAndTheEnvironment() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try Self.write("""
            # segmentd.toml
            data_dir = "\(directory)/data"
            socket = "\(directory)/from-file.sock"
            max_connections = 64
            max_in_flight = 4
            line_timeout_ms = 5000
            """, in: directory)
        let process = ChildProcess(Self.binary, ["serve", "--config", file, "--max-batch", "7"], directory: directory,
                                   environment: ["PATH": "/usr/bin:/bin", "SEGMENTD_MAX_IN_FLIGHT": "6"])
        try process.start()
        defer { process.send(SIGKILL); process.waitUntilExit() }
        var hello: JSONValue?
        _ = await waitUntil(seconds: 60) {
            guard let client = try? await RPCClient.connect(unixPath: directory + "/from-file.sock") else { return false }
            hello = try? await client.call("rpc.hello")
            try? await client.close()
            return hello != nil
        }
        let limits = try #require(hello?["limits"])
        #expect(limits["max_connections"] == 64, "from the file")
        #expect(limits["max_in_flight"] == 6, "SEGMENTD_MAX_IN_FLIGHT over the file")
        #expect(limits["max_batch"] == 7, "the flag")
        #expect(limits["line_timeout_ms"] == 5000 && limits["idle_timeout_ms"] == 300_000)
        #expect(FileManager.default.fileExists(atPath: directory + "/data/books/default.sqlite"))
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }

    @Test func configCheckPrintsTheEffectiveConfigurationOrTheMistake() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = try Self.write("max_connections = 2048\ntoken = \"s3cret\"\n", in: directory)
        let checked = try await runProcess(Self.binary, ["config", "check", good],
                                           environment: ["PATH": "/usr/bin:/bin", "SEGMENTD_SLOW_REQUEST_MS": "250"], timeout: 60)
        #expect(checked.status == 0, "\(checked.err)")
        #expect(checked.out.contains("max_connections = 2048  # file"))
        #expect(checked.out.contains("slow_request_ms = 250  # environment"))
        #expect(checked.out.contains("max_batch = 100  # default"))
        #expect(checked.out.contains("# token is set (masked)  # file") && !checked.out.contains("s3cret"), "secrets are masked")
        // What it prints is itself a valid config file.
        let printed = try Self.write(checked.out, in: directory, name: "printed.toml")
        let reread = try ServeSettings(file: printed, environment: [:], flags: [:])
        #expect(reread.int("max_connections") == 2048 && reread.int("slow_request_ms") == 250)

        let bad = try Self.write("max_connections = 10\nidle_timout_ms = 5\n", in: directory, name: "bad.toml")
        let refused = try await runProcess(Self.binary, ["config", "check", bad], environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
        #expect(refused.status == 1)
        #expect(refused.err.contains("unknown key idle_timout_ms (did you mean idle_timeout_ms?)"), "\(refused.err)")
        let missing = try await runProcess(Self.binary, ["config", "check", directory + "/nope.toml"], environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
        #expect(missing.status == 1 && missing.err.contains("nope.toml"))
    }
}
