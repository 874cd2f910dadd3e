import Foundation
import SegmentCore
import WireJSON

/// What a CSV column becomes in a contact document.
enum ImportColumn {
    case email, name, status, funnel, lost, labels, addLabels, removeLabels
    case field(name: String, type: String)

    static let system: [String: ImportColumn] = [
        "email": .email, "name": .name, "status": .status, "funnel": .funnel, "lost": .lost, "labels": .labels,
        "add_labels": .addLabels, "remove_labels": .removeLabels,
    ]
    /// Columns an export can contain that describe state the import cannot set.
    static let readOnly: Set<String> = ["created_at", "suppressed", "last_open_at", "last_click_at", "last_send_at"]

    /// The key the column sets in a contact document (a custom field: its name).
    var target: String {
        switch self {
        case .email: "email"
        case .name: "name"
        case .status: "status"
        case .funnel: "funnel"
        case .lost: "lost"
        case .labels: "labels"
        case .addLabels: "add_labels"
        case .removeLabels: "remove_labels"
        case .field(let name, _): name
        }
    }
}

/// A custom field as `fields.list` describes it.
struct FieldInfo {
    var name: String
    var type: String
}

/// `--map SOURCE=TARGET`: a header column (or `A+B`, two or more joined with a space) that
/// becomes TARGET: a system column or a custom field.
struct ColumnMap {
    var source: String
    var target: String
    var text: String

    /// `First Name+Last Name=name` → source `First Name+Last Name`, target `name`. The last `=`
    /// splits, so a column name may hold one; `+` is resolved against the header later.
    init(_ text: String) throws {
        self.text = text
        guard let equals = text.lastIndex(of: "=") else {
            throw CommandFailure("--map \"\(text)\": expected SOURCE=TARGET, e.g. --map \"Email Address=email\"")
        }
        source = text[..<equals].trimmingCharacters(in: .whitespaces)
        target = text[text.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard !source.isEmpty, !target.isEmpty else {
            throw CommandFailure("--map \"\(text)\": expected SOURCE=TARGET with both sides named, e.g. --map \"Email Address=email\"")
        }
    }
}

/// What `--define-fields` does with columns that are not defined on the server.
enum DefineFields: String, CaseIterable {
    /// Every unknown column becomes a text field.
    case text
    /// A number, date or boolean field when every non-empty value in the first rows parses as
    /// one (checked in that order), text otherwise.
    case infer

    /// Rows read ahead to infer types.
    static let sampleRows = 1000
}

/// Column planning: the header and `--map`s become the outputs of each row, and
/// `--define-fields infer` types new fields from a sample.
extension CSVRows {
    /// One value of the contact document: the target and the header columns it comes from.
    struct Output {
        var column: ImportColumn
        var sources: [Int]
    }

    /// The header column called `name`: exactly, else the one that matches ignoring case.
    static func index(of name: String, in header: [String]) -> Int? {
        if let i = header.firstIndex(of: name) { return i }
        let matches = header.indices.filter { header[$0].lowercased() == name.lowercased() }
        return matches.count == 1 ? matches[0] : nil
    }

    /// Turns the header (and `--map`s) into outputs; returns them with the indices of the
    /// outputs that are new fields (typed `text` until inferred).
    static func plan(
        header: [String], fields: [FieldInfo], ignoring: Set<String>, maps: [ColumnMap], defineFields: DefineFields?, path: String
    ) throws -> (outputs: [Output], newFields: [Int]) {
        var outputs: [Output] = []
        var newFields: [Int] = []
        var unknown: [String] = []
        var readOnly: [String] = []
        var seen: [String: Int] = [:]
        let columnList = header.map { "\"\($0)\"" }.joined(separator: ", ")
        for (i, name) in header.enumerated() {
            if name.isEmpty { throw CommandFailure("\(path): column \(i + 1) of the header has no name") }
            if let before = seen[name.lowercased()] {
                throw CommandFailure("\(path): column \"\(name)\" appears twice in the header (columns \(before + 1) and \(i + 1))")
            }
            seen[name.lowercased()] = i
        }
        func field(named name: String) -> FieldInfo? {
            fields.first(where: { $0.name == name }) ?? Self.unique(fields.filter { $0.name.lowercased() == name.lowercased() })
        }
        var mapped = Set<Int>()
        for map in maps {
            let parts = index(of: map.source, in: header).map { [$0] } ?? map.source.split(separator: "+").map {
                $0.trimmingCharacters(in: .whitespaces)
            }.map { index(of: $0, in: header) ?? -1 }
            if let missing = parts.firstIndex(of: -1) {
                let names = map.source.split(separator: "+").map { $0.trimmingCharacters(in: .whitespaces) }
                let name = parts.count == 1 ? map.source : names[missing]
                throw CommandFailure("--map \"\(map.text)\": no column \"\(name)\" in the header of \(path) (columns: \(columnList))")
            }
            mapped.formUnion(parts)
            if let system = ImportColumn.system[map.target.lowercased()] {
                outputs.append(Output(column: system, sources: parts))
            } else if let known = field(named: map.target) {
                outputs.append(Output(column: .field(name: known.name, type: known.type), sources: parts))
            } else if ImportColumn.readOnly.contains(map.target.lowercased()) {
                throw CommandFailure("--map \"\(map.text)\": \(map.target) is read-only and cannot be imported")
            } else if defineFields != nil {
                newFields.append(outputs.count)
                outputs.append(Output(column: .field(name: map.target, type: "text"), sources: parts))
            } else {
                let defined = fields.map(\.name)
                throw CommandFailure(
                    "--map \"\(map.text)\": unknown target \"\(map.target)\": expected email, name, status, funnel, lost, labels, "
                        + "add_labels, remove_labels or a custom field defined on the server (defined: "
                        + "\(defined.isEmpty ? "none" : defined.joined(separator: ", "))); --define-fields text|infer defines it")
            }
        }
        for (i, name) in header.enumerated() where !mapped.contains(i) {
            if ignoring.contains(name) || ignoring.contains(name.lowercased()) {
                continue
            } else if let system = ImportColumn.system[name.lowercased()] {
                outputs.append(Output(column: system, sources: [i]))
            } else if let known = field(named: name) {
                outputs.append(Output(column: .field(name: known.name, type: known.type), sources: [i]))
            } else if ImportColumn.readOnly.contains(name.lowercased()) {
                readOnly.append(name)
            } else if defineFields != nil {
                newFields.append(outputs.count)
                outputs.append(Output(column: .field(name: name, type: "text"), sources: [i]))
            } else {
                unknown.append(name)
            }
        }
        var targets: [String: Int] = [:]
        for (n, output) in outputs.enumerated() {
            let key = output.column.target.lowercased()
            if let before = targets[key] {
                let first = outputs[before].sources.map { "\"\(header[$0])\"" }.joined(separator: "+")
                let second = output.sources.map { "\"\(header[$0])\"" }.joined(separator: "+")
                throw CommandFailure(
                    "\(path): \(first) and \(second) would both become \(output.column.target); "
                        + "skip one with --ignore-column or send it elsewhere with --map")
            }
            targets[key] = n
        }
        guard outputs.contains(where: { if case .email = $0.column { true } else { false } }) else {
            throw CommandFailure(
                "\(path): the header has no email column (columns: \(columnList)); name the one that holds it with --map \"COLUMN=email\"")
        }
        var problems: [String] = []
        if !unknown.isEmpty {
            let defined = fields.map(\.name)
            let list = unknown.map { "\"\($0)\"" }.joined(separator: ", ")
            let example = JSONValue.object(["name": .string(unknown[0]), "type": "text"]).serialized()
            problems.append(
                "unknown column\(unknown.count == 1 ? "" : "s") \(list): a column must be email, name, status, funnel, lost, labels, "
                    + "add_labels, remove_labels or a custom field defined on the server "
                    + "(defined: \(defined.isEmpty ? "none" : defined.joined(separator: ", "))). "
                    + "Define \(unknown.count == 1 ? "it" : "each") first, e.g. segmentd call fields.define '\(example)' "
                    + "(type text, number, date or boolean), or pass --define-fields text|infer to define "
                    + "\(unknown.count == 1 ? "it" : "them") from the file, send \(unknown.count == 1 ? "it" : "each") to a known column "
                    + "with --map \"COLUMN=TARGET\", or skip \(unknown.count == 1 ? "it" : "them") with --ignore-column")
        }
        if !readOnly.isEmpty {
            problems.append(
                "read-only column\(readOnly.count == 1 ? "" : "s") \(readOnly.joined(separator: ", ")) cannot be imported; skip with --ignore-column")
        }
        if !problems.isEmpty { throw CommandFailure("\(path): " + problems.joined(separator: "; ") + ". Nothing was imported.") }
        return (outputs, newFields)
    }

    private static func unique(_ fields: [FieldInfo]) -> FieldInfo? { fields.count == 1 ? fields[0] : nil }

    /// The type `infer` gives a column from its sampled values: number, date or boolean when
    /// every non-empty one converts the way a row's value will (so the rows then import), else text.
    static func inferType(_ values: [String]) -> String {
        let present = values.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !present.isEmpty else { return "text" }
        // A leading zero (ZIP codes, account numbers: 02134) would be lost as a number.
        if present.allSatisfy({ number($0) != nil && !hasLeadingZero($0) }) { return "number" }
        let time = ISOTime()
        if present.allSatisfy({ time.parse($0) != nil }) { return "date" }
        if present.allSatisfy({ boolean($0) != nil }) { return "boolean" }
        return "text"
    }

    /// `007`, `-01.5`: digits after a zero that is not alone before the point.
    static func hasLeadingZero(_ text: String) -> Bool {
        let digits = text.utf8.drop(while: { $0 == 43 || $0 == 45 })
        return digits.count >= 2 && digits.first == 48 && digits.dropFirst().first.map { $0 >= 48 && $0 <= 57 } == true
    }

    /// An output's text in a record: the one column as it is, or the non-empty columns of a
    /// join trimmed and separated by one space.
    static func value(of output: Output, in fields: [String]) -> String {
        if output.sources.count == 1 { return fields[output.sources[0]] }
        return output.sources.map { fields[$0].trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}
