import Foundation
import WireJSON

/// One line of the bench table: a figure, its baseline in the same run, and their ratio.
public struct BenchFigure: Sendable {
    public var name: String
    public var value: Double
    public var unit: String
    public var baseline: Double?
    /// "higher" when more is better (throughput), "lower" for times.
    public var better: String
    public var target: String
    public var met: Bool?

    /// How many times better than the baseline (>1 means segmentd wins).
    public var ratio: Double? {
        guard let baseline, baseline > 0, value > 0 else { return nil }
        return better == "higher" ? value / baseline : baseline / value
    }

    var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "value": .double(value), "unit": .string(unit), "better": .string(better), "target": .string(target),
        ]
        if let baseline { o["baseline"] = .double(baseline) }
        if let ratio { o["ratio"] = .double(ratio) }
        if let met { o["met"] = .bool(met) }
        return .object(o)
    }
}

/// The bench's output: a table for people and JSON for machines.
public struct BenchReport: Sendable {
    public var contacts: Int
    public var seed: UInt64
    /// Small books of the many-books measurement (0 when it did not run).
    public var books = 0
    public var machine: String
    public var figures: [BenchFigure] = []

    public var table: String {
        func fmt(_ v: Double) -> String {
            v >= 100 ? String(Int(v.rounded())) : v >= 1 ? String(format: "%.2f", v) : String(format: "%.3f", v)
        }
        var lines = ["| figure | segmentd | baseline | ratio | target | met |", "|---|---:|---:|---:|---|---|"]
        for f in figures {
            let base = f.baseline.map { fmt($0) + " " + f.unit } ?? "—"
            let ratio = f.ratio.map { String(format: "%.1f×", $0) } ?? "—"
            let met = f.met.map { $0 ? "yes" : "**no**" } ?? "—"
            lines.append("| \(f.name) | \(fmt(f.value)) \(f.unit) | \(base) | \(ratio) | \(f.target) | \(met) |")
        }
        return lines.joined(separator: "\n")
    }

    public var json: JSONValue {
        [
            "contacts": .int(Int64(contacts)), "seed": .int(Int64(seed)), "books": .int(Int64(books)), "machine": .string(machine),
            "figures": .array(figures.map(\.json)),
        ]
    }
}

/// Median of a list of timings.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// The value `fraction` of the way up a list of timings (0.9: the 90th percentile, nearest rank).
func percentile(_ values: [Double], _ fraction: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))]
}

/// Seconds a body takes.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return (ContinuousClock.now - start) / .seconds(1)
}

func seconds(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    return (ContinuousClock.now - start) / .seconds(1)
}
