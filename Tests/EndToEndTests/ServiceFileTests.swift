import Foundation
import LineRPC
import SegmentdApp
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// contrib/systemd/segmentd.service and the config file it reads, contrib/segmentd.toml:
/// systemd accepts the unit, it carries the hardening a production unit needs, and its
/// ExecStart with that file is what the real binary serves with (paths moved into a temporary
/// directory) and stops cleanly on SIGTERM.
@Suite(.ownThreads) struct ServiceFileTests {
    static let unitPath = packageRoot.appendingPathComponent("contrib/systemd/segmentd.service").path
    static var binary: String { productsDirectory().appendingPathComponent("segmentd").path }

    static let configPath = packageRoot.appendingPathComponent("contrib/segmentd.toml").path
    /// Where the unit expects the config file (the README installs contrib/segmentd.toml there).
    static let installedConfig = "/etc/segmentd/segmentd.toml"

    static func unit() throws -> String { try String(contentsOfFile: unitPath, encoding: .utf8) }

    /// The example config, as `ServeSettings` reads it.
    static func config() throws -> ServeSettings { try ServeSettings(file: configPath, environment: [:], flags: [:]) }

    /// `Key=value` lines, continuation lines joined.
    static func settings(_ text: String) -> [(key: String, value: String)] {
        text.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n").compactMap { line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#"), !trimmed.hasPrefix("["), let equals = trimmed.firstIndex(of: "=") else { return nil }
            return (String(trimmed[..<equals]), String(trimmed[trimmed.index(after: equals)...]).trimmingCharacters(in: .whitespaces))
        }
    }

    /// A bound Unix datagram socket, as systemd's NOTIFY_SOCKET is.
    static func datagramSocket(at path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw RPCClientError("cannot bind \(path)") }
        return fd
    }

    @Test func theUnitIsHardenedAndGivesTheDrainRoomToFinish() throws {
        let values = Dictionary(Self.settings(try Self.unit()).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        for (key, value) in [
            ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"), ("User", "segmentd"),
            ("RuntimeDirectory", "segmentd"), ("StateDirectory", "segmentd"), ("KillSignal", "SIGTERM"), ("Type", "notify"),
        ] {
            #expect(values[key] == value, "\(key)=\(values[key] ?? "missing")")
        }
        let exec = try #require(values["ExecStart"])
        #expect(exec.hasSuffix("serve --config \(Self.installedConfig)"))
        let config = try Self.config()
        let drain = config.int("drain_seconds")
        let stop = try #require(values["TimeoutStopSec"].flatMap { Int($0) })
        #expect(stop >= drain + 10, "TimeoutStopSec \(stop) leaves no room after the \(drain) s drain to close the books")
        #expect(config.string("socket")?.hasPrefix("/run/segmentd/") == true, "the socket in RuntimeDirectory")
        #expect(config.string("data_dir")?.hasPrefix("/var/lib/segmentd/") == true && config.string("export_dir")?.hasPrefix("/var/lib/segmentd/") == true,
                "books and exports in StateDirectory")
        #expect(config.string("socket_mode") == "660" && config.string("socket_group") == "segmentd")
    }

    /// `systemd-analyze verify`, where systemd is installed (it checks the binary exists, so
    /// the copy points at the one just built).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")))
    func systemdAcceptsTheUnit() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.unit().replacingOccurrences(of: "/usr/local/bin/segmentd", with: Self.binary)
            .write(toFile: directory + "/segmentd.service", atomically: true, encoding: .utf8)
        let run = try await runProcess("/usr/bin/systemd-analyze", ["verify", directory + "/segmentd.service"], cwd: directory, timeout: 60)
        #expect(run.status == 0, "\(run.out)\(run.err)")
        #expect(!run.err.contains("segmentd.service"), "systemd-analyze complained: \(run.err)")
    }

    /// The unit's command line serves, answers, and drains on SIGTERM with status 0.
    @Test func theUnitsCommandLineServesAndStopsCleanly() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let exec = try #require(Dictionary(Self.settings(try Self.unit()).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })["ExecStart"])
        // The example config with its paths moved; the unit's group does not exist here (the
        // process's own stands in), and the metrics port is any free one.
        let config = try String(contentsOfFile: Self.configPath, encoding: .utf8)
            .replacingOccurrences(of: "/var/lib/segmentd", with: directory + "/state")
            .replacingOccurrences(of: "/run/segmentd", with: directory + "/run")
            .replacingOccurrences(of: "socket_group = \"segmentd\"", with: "socket_group = \"\(getgid())\"")
            .replacingOccurrences(of: "metrics = \"127.0.0.1:9464\"", with: "metrics = \"127.0.0.1:0\"")
        try config.write(toFile: directory + "/segmentd.toml", atomically: true, encoding: .utf8)
        let arguments = exec.split(separator: " ").map(String.init).dropFirst().map {
            $0 == Self.installedConfig ? directory + "/segmentd.toml" : $0
        }
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory + "/state", withIntermediateDirectories: true)
        // Type=notify: systemd's datagram socket, to which the server says READY=1.
        let notify = try Self.datagramSocket(at: directory + "/notify.sock")
        defer { close(notify) }
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = directory + "/notify.sock"
        let log = directory + "/server.log"
        let child = ChildProcess(
            Self.binary, arguments, directory: directory + "/state", environment: environment, standardOutput: .file(log), standardError: .file(log))
        try child.start()
        let logText = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        var ready = ""
        #expect(await waitUntil(seconds: 60) {
            var buffer = [UInt8](repeating: 0, count: 256)
            let n = recv(notify, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { ready = String(decoding: buffer[0..<n], as: UTF8.self) }
            return n > 0 || !child.isRunning
        })
        #expect(ready == "READY=1", "\(logText())")
        // Ready means ready: the socket accepts at once.
        let connected = try await RPCClient.connect(unixPath: directory + "/run/segmentd.sock")
        #expect(try await connected.call("contacts.count")["total"] == 0)
        #expect(FileManager.default.fileExists(atPath: directory + "/state/data/books/default.sqlite"))
        try await connected.close()
        child.terminate()
        child.waitUntilExit()
        #expect(child.terminationStatus == 0, "\(logText())")
        #expect(!FileManager.default.fileExists(atPath: directory + "/run/segmentd.sock"), "the socket is removed on stop")
    }
}
