import Foundation
import LineRPC
import PostgresStore
import SegmentCore
import TOMLKit

extension ServeSettings {
    // MARK: Parsing

    /// The settings a TOML file gives; every key must be known.
    static func read(file: String) throws(SegmentError) -> [(String, Value)] {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw SegmentError.invalidParams(path: "config", "cannot read the config file \(file): \(error.localizedDescription)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw SegmentError.invalidParams(
                path: "config", "\(file): line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw SegmentError.invalidParams(path: "config", "\(file): \(error)")
        }
        var out: [(String, Value)] = []
        for (key, value) in table {
            guard let spec = specsByKey[key] else {
                let hint = closest(to: key).map { " (did you mean \($0)?)" } ?? ""
                throw SegmentError.invalidParams(path: key, "\(file): unknown key \(key)\(hint); known keys: \(keys.joined(separator: ", "))")
            }
            let given: Value
            switch value.type {
            case .string: given = .string(value.string ?? "")
            case .int: given = .int(value.int ?? 0)
            case .double: given = .double(value.double ?? 0)
            default:
                throw SegmentError.invalidParams(path: key, "\(file): \(key) must be \(describe(spec.kind)), got a TOML \(value.type)")
            }
            out.append((key, try check(given, for: spec, origin: "\(key) (\(file))")))
        }
        return out
    }

    /// A value given as text (the environment, a flag) for `spec`.
    static func parse(_ text: String, for spec: Spec, origin: String) throws(SegmentError) -> Value {
        switch spec.kind {
        case .text, .choice:
            return try check(.string(text), for: spec, origin: origin)
        case .integer:
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw SegmentError.invalidParams(path: spec.key, "\(origin) must be \(describe(spec.kind)), got \"\(text)\"")
            }
            return try check(.int(n), for: spec, origin: origin)
        case .number:
            guard let x = Double(text.trimmingCharacters(in: .whitespaces)), x.isFinite else {
                throw SegmentError.invalidParams(path: spec.key, "\(origin) must be \(describe(spec.kind)), got \"\(text)\"")
            }
            return try check(.double(x), for: spec, origin: origin)
        }
    }

    /// `value` if it suits `spec`; an integer is a number too.
    static func check(_ value: Value, for spec: Spec, origin: String) throws(SegmentError) -> Value {
        func wrong() -> SegmentError {
            let shown = if case .string(let text) = value { quoted(text) } else { value.description }
            return SegmentError.invalidParams(path: spec.key, "\(origin) must be \(describe(spec.kind)), got \(shown)")
        }
        switch (spec.kind, value) {
        case (.text, .string(let text)):
            guard !text.isEmpty else { throw SegmentError.invalidParams(path: spec.key, "\(origin) must not be empty") }
            return value
        case (.choice(let options), .string(let text)):
            guard options.contains(text) else { throw wrong() }
            return value
        case (.integer(let range), .int(let n)):
            guard range.contains(n) else { throw wrong() }
            return value
        case (.number(let range), .int(let n)):
            guard range.contains(Double(n)) else { throw wrong() }
            return .double(Double(n))
        case (.number(let range), .double(let x)):
            guard range.contains(x) else { throw wrong() }
            return value
        default:
            throw wrong()
        }
    }

    static func describe(_ kind: Kind) -> String {
        switch kind {
        case .text: return "a string"
        case .choice(let options): return "one of " + options.joined(separator: ", ")
        case .integer(let range): return "an integer from \(range.lowerBound) to \(range.upperBound)"
        case .number(let range): return "a number from \(range.lowerBound.formatted()) to \(range.upperBound.formatted())"
        }
    }

    /// The known key nearest to a misspelt one (edit distance at most 3).
    static func closest(to key: String) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var row = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var previous = row[0]
                row[0] = i
                for j in stride(from: 1, through: b.count, by: 1) {
                    let current = row[j]
                    row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        let typed = Array(key.lowercased().replacingOccurrences(of: "-", with: "_"))
        let best = specs.map { ($0.key, distance(typed, Array($0.key))) }.min { $0.1 < $1.1 }
        return best.flatMap { $0.1 <= 3 ? $0.0 : nil }
    }
}
