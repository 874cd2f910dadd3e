import Foundation
import LineRPC
import PostgresStore
import SegmentCore
import TOMLKit

/// `segmentd serve`'s settings from their three sources: command-line flags, then environment
/// variables (`SEGMENTD_<KEY>`), then a TOML file (`--config FILE` or `SEGMENTD_CONFIG`), then
/// the defaults. Every setting has the same name in all three: key `max_connections`, flag
/// `--max-connections`, variable `SEGMENTD_MAX_CONNECTIONS`.
///
/// ```swift
/// let settings = try ServeSettings(file: "segmentd.toml", environment: ProcessInfo.processInfo.environment,
///                                  flags: ["socket": .string("/run/segmentd/segmentd.sock")])
/// let config = try settings.appConfiguration()
/// ```
///
/// A key the file does not know, a value of the wrong type or out of range, and a TOML
/// syntax error are errors that name the key (and the line, for syntax).
public struct ServeSettings: Sendable {
    /// A setting's value as given: TOML, the environment and flags all map to these.
    public enum Value: Sendable, Equatable, CustomStringConvertible {
        case string(String)
        case int(Int)
        case double(Double)

        public var description: String {
            switch self {
            case .string(let text): return text
            case .int(let n): return String(n)
            case .double(let x): return String(x)
            }
        }
    }

    /// Where a setting's value came from.
    public enum Source: String, Sendable {
        case defaults = "default"
        case file
        case environment
        case flag
    }

    /// What a setting takes.
    enum Kind: Sendable {
        case text
        case integer(ClosedRange<Int>)
        case number(ClosedRange<Double>)
        case choice([String])
    }

    /// One setting: its key, what it takes, its default (nil: unset), and whether it is a secret.
    struct Spec: Sendable {
        let key: String
        let kind: Kind
        let defaultValue: Value?
        var secret = false

        var flag: String { "--" + key.replacingOccurrences(of: "_", with: "-") }
        var variable: String { "SEGMENTD_" + key.uppercased() }
    }

    static let limitsDefaults = RPCLimits()

    /// Every setting, in the order `config check` prints them.
    static let specs: [Spec] = [
        Spec(key: "data_dir", kind: .text, defaultValue: .string("segmentd-data")),
        Spec(key: "db", kind: .text, defaultValue: nil),
        Spec(key: "store", kind: .text, defaultValue: nil, secret: true),
        Spec(key: "read_wait_ms", kind: .integer(0...600_000), defaultValue: .int(1_000)),
        Spec(key: "catch_up_ms", kind: .integer(10...3_600_000), defaultValue: .int(1_000)),
        Spec(key: "socket", kind: .text, defaultValue: .string("segmentd.sock")),
        Spec(key: "socket_mode", kind: .text, defaultValue: .string("600")),
        Spec(key: "socket_group", kind: .text, defaultValue: nil),
        Spec(key: "export_dir", kind: .text, defaultValue: .string("exports")),
        Spec(key: "tcp", kind: .text, defaultValue: nil),
        Spec(key: "token", kind: .text, defaultValue: nil, secret: true),
        Spec(key: "token_file", kind: .text, defaultValue: nil),
        Spec(key: "metrics", kind: .text, defaultValue: nil),
        Spec(key: "book_load_wait", kind: .number(0.001...86_400), defaultValue: .double(30)),
        Spec(key: "time_zone", kind: .text, defaultValue: .string("UTC")),
        Spec(key: "drain_seconds", kind: .integer(0...3_600), defaultValue: .int(10)),
        Spec(key: "reevaluate_every", kind: .number(0.1...86_400), defaultValue: .double(60)),
        Spec(key: "event_retention_days", kind: .number(0...36_500), defaultValue: .double(30)),
        Spec(key: "event_retention_count", kind: .integer(1...Int(Int32.max)), defaultValue: .int(1_000_000)),
        Spec(key: "subscriber_timeout", kind: .number(0.001...86_400), defaultValue: .double(60)),
        Spec(key: "frozen_clock", kind: .text, defaultValue: nil),
        Spec(key: "log_level", kind: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]), defaultValue: .string("info")),
        Spec(key: "log_format", kind: .choice(["text", "json"]), defaultValue: .string("text")),
        Spec(key: "slow_request_ms", kind: .integer(0...3_600_000), defaultValue: .int(100)),
        Spec(key: "max_connections", kind: .integer(1...1_000_000), defaultValue: .int(limitsDefaults.maxConnections)),
        Spec(key: "max_in_flight", kind: .integer(1...100_000), defaultValue: .int(limitsDefaults.maxInFlightPerConnection)),
        Spec(key: "max_batch", kind: .integer(1...100_000), defaultValue: .int(limitsDefaults.maxBatch)),
        Spec(key: "max_line_bytes", kind: .integer(1_024...(1 << 30)), defaultValue: .int(limitsDefaults.maxLineBytes)),
        Spec(key: "line_timeout_ms", kind: .integer(100...86_400_000), defaultValue: .int(Int(limitsDefaults.lineTimeout / .milliseconds(1)))),
        Spec(key: "idle_timeout_ms", kind: .integer(100...86_400_000), defaultValue: .int(Int(limitsDefaults.idleTimeout / .milliseconds(1)))),
        Spec(key: "max_failed_hellos", kind: .integer(1...1_000), defaultValue: .int(limitsDefaults.maxFailedHellos)),
    ]

    static let specsByKey = Dictionary(uniqueKeysWithValues: specs.map { ($0.key, $0) })

    /// The keys a file may set.
    public static var keys: [String] { specs.map(\.key) }

    /// The effective value of each setting that has one, and where it came from.
    public private(set) var values: [String: (value: Value, source: Source)] = [:]
    /// `SEGMENTD_*` variables that name no setting (a typo, or another tool's): worth a warning.
    public private(set) var unknownVariables: [String] = []
    /// The file read, if any.
    public let file: String?

    /// Reads `file` (if any), then `environment`'s `SEGMENTD_*` variables, then `flags` (keys
    /// as in the file), each over the one before.
    public init(file: String?, environment: [String: String], flags: [String: Value]) throws(SegmentError) {
        self.file = file
        for spec in Self.specs {
            if let value = spec.defaultValue { values[spec.key] = (value, .defaults) }
        }
        if let file {
            for (key, value) in try Self.read(file: file) { values[key] = (value, .file) }
        }
        let known = Set(Self.specs.map(\.variable) + ["SEGMENTD_CONFIG"])
        // An empty variable is an unset one (an EnvironmentFile line `SEGMENTD_TOKEN=`).
        for (name, text) in environment where name.hasPrefix("SEGMENTD_") && !text.isEmpty {
            guard known.contains(name) else {
                unknownVariables.append(name)
                continue
            }
            guard let spec = Self.specs.first(where: { $0.variable == name }) else { continue }
            values[spec.key] = (try Self.parse(text, for: spec, origin: name), .environment)
        }
        unknownVariables.sort()
        for (key, value) in flags {
            guard let spec = Self.specsByKey[key] else { throw SegmentError.invalidParams(path: key, "unknown setting \(key)") }
            let checked: Value
            switch value {
            case .string(let text): checked = try Self.parse(text, for: spec, origin: spec.flag)
            default: checked = try Self.check(value, for: spec, origin: spec.flag)
            }
            values[key] = (checked, .flag)
        }
    }

    // MARK: Reading values

    public func string(_ key: String) -> String? {
        guard let value = values[key]?.value else { return nil }
        return value.description
    }

    public func int(_ key: String) -> Int {
        switch values[key]?.value {
        case .int(let n): return n
        case .double(let x): return Int(x)
        default: preconditionFailure("\(key) is not an integer setting")
        }
    }

    public func double(_ key: String) -> Double {
        switch values[key]?.value {
        case .int(let n): return Double(n)
        case .double(let x): return x
        default: preconditionFailure("\(key) is not a number setting")
        }
    }

    /// The server's configuration from these settings; throws naming the setting that is wrong.
    public func appConfiguration() throws(SegmentError) -> AppConfiguration {
        var config = AppConfiguration()
        config.dataDirectory = string("data_dir") ?? config.dataDirectory
        config.databasePath = string("db")
        if let store = string("store") {
            do {
                _ = try PostgresURL(store)
            } catch {
                throw SegmentError.invalidParams(path: "store", "\(origin("store")): \(error)")
            }
            guard config.databasePath == nil else {
                throw SegmentError.invalidParams(path: "store", "\(origin("store")) and db (an SQLite file) cannot both be the default book")
            }
            config.store = store
        }
        config.readWait = .milliseconds(int("read_wait_ms"))
        config.catchUpInterval = .milliseconds(int("catch_up_ms"))
        config.socketPath = string("socket") ?? config.socketPath
        let modeText = string("socket_mode") ?? "600"
        guard let mode = UInt16(modeText, radix: 8), mode <= 0o777 else {
            throw SegmentError.invalidParams(path: "socket_mode", "\(origin("socket_mode")) must be an octal file mode such as 600 or 660, got \(modeText)")
        }
        config.socketMode = mode
        config.socketGroup = string("socket_group")
        config.exportDirectory = string("export_dir") ?? config.exportDirectory
        config.tcp = string("tcp")
        config.token = string("token")
        config.tokenFile = string("token_file")
        config.metrics = string("metrics")
        // What start-up would refuse, refused here too (so `config check` catches it).
        if let tcp = config.tcp {
            do {
                _ = try AppConfiguration.parseTCP(tcp)
            } catch {
                throw SegmentError.invalidParams(path: "tcp", "\(origin("tcp")): \(error.message)")
            }
            guard config.token != nil || config.tokenFile != nil else {
                throw SegmentError.invalidParams(path: "tcp", "\(origin("tcp")) needs a token: set token (better: SEGMENTD_TOKEN) or token_file")
            }
        }
        if let metrics = config.metrics {
            do {
                _ = try AppConfiguration.parseAddress(metrics, option: "metrics", example: "127.0.0.1:9464")
            } catch {
                throw SegmentError.invalidParams(path: "metrics", "\(origin("metrics")): \(error.message)")
            }
        }
        config.bookLoadWait = .milliseconds(Int64((double("book_load_wait") * 1_000).rounded(.up)))
        let zoneName = string("time_zone") ?? "UTC"
        guard let zone = TimeZone(identifier: zoneName) else {
            throw SegmentError.invalidParams(path: "time_zone", "\(origin("time_zone")): unknown time zone \(zoneName) (an IANA name such as Asia/Jakarta)")
        }
        config.timeZone = zone
        config.drainTimeout = .seconds(int("drain_seconds"))
        config.reevaluateEvery = .milliseconds(Int64((double("reevaluate_every") * 1_000).rounded()))
        config.eventRetentionDays = double("event_retention_days")
        config.eventRetentionCount = int("event_retention_count")
        config.subscriberTimeout = .milliseconds(Int64((double("subscriber_timeout") * 1_000).rounded(.up)))
        if let frozen = string("frozen_clock") {
            guard let instant = ISOTime().parseInstant(frozen) else {
                throw SegmentError.invalidParams(path: "frozen_clock", "\(origin("frozen_clock")) needs a full ISO 8601 time, got \(frozen)")
            }
            config.clock = ManualTime(instant)
        }
        let slow = int("slow_request_ms")
        config.slowRequest = slow == 0 ? nil : .milliseconds(slow)
        config.limits = RPCLimits(
            maxLineBytes: int("max_line_bytes"), maxBatch: int("max_batch"), maxInFlightPerConnection: int("max_in_flight"),
            maxConnections: int("max_connections"), idleTimeout: .milliseconds(int("idle_timeout_ms")),
            lineTimeout: .milliseconds(int("line_timeout_ms")), maxFailedHellos: int("max_failed_hellos"))
        return config
    }

    /// How to name a setting in an error: as it was given.
    func origin(_ key: String) -> String {
        guard let spec = Self.specsByKey[key] else { return key }
        switch values[key]?.source {
        case .flag: return spec.flag
        case .environment: return spec.variable
        case .file: return "\(key) (\(file ?? "config file"))"
        default: return key
        }
    }

    /// The effective configuration as TOML, every setting with where its value came from;
    /// a secret is only said to be set, in a comment. What `segmentd config check` prints.
    public func rendered() -> String {
        var lines: [String] = ["# segmentd serve: effective configuration (flags > SEGMENTD_* > file > defaults)"]
        if let file { lines.append("# file: \(file)") }
        for spec in Self.specs {
            guard let (value, source) = values[spec.key] else {
                lines.append("# \(spec.key) is not set")
                continue
            }
            let shown: String
            if spec.secret {
                // A comment, not a value: saved as a config file, this must not become the token.
                lines.append("# \(spec.key) is set (masked)  # \(source.rawValue)")
                continue
            } else {
                switch value {
                case .string(let text): shown = Self.quoted(text)
                case .int(let n): shown = String(n)
                case .double(let x): shown = x == x.rounded() && abs(x) < 1e15 ? String(format: "%.1f", x) : String(x)
                }
            }
            lines.append("\(spec.key) = \(shown)  # \(source.rawValue)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
