import SegmentCore
import WireJSON

extension Engine {
    /// Names that say nothing about who is in the segment.
    static let genericNames: [String] = [
        "test", "testing", "new segment", "segment", "untitled", "untitled segment", "my segment", "temp", "tmp",
        "list", "new list", "asdf", "foo", "bar", "copy", "draft",
    ]

    /// Lint findings for a rule (and, for a stored segment, its name and usage). Never errors:
    /// a rule that does not compile is reported by validation, not here.
    public func lint(filters: JSONValue, name: String? = nil, segment: Segment? = nil, book: Book? = nil) -> [LintWarning] {
        let book = book ?? snapshot
        let now = self.now
        var out: [LintWarning] = []
        let items = filters.arrayValue ?? []
        // Filters that only restate the send audience ("status = active"), if all of them do.
        let restatements = items.map { registry.audience?.restatement(of: $0) }
        let restated = restatements.allSatisfy { $0 != nil } ? restatements.first ?? nil : nil
        if items.isEmpty || restated != nil {
            out.append(LintWarning(
                code: "overly_broad", path: "filters",
                message: items.isEmpty
                    ? "no filter: this is the whole book, not a segment; add what the audience has in common"
                    : "only \(restated ?? ""), not a segment; add what the audience has in common"))
        }
        for (i, item) in items.enumerated() { lintNode(item, path: "filters".index(i), book: book, now: now, into: &out) }
        if let name, Self.isGeneric(name) {
            out.append(LintWarning(
                code: "generic_name", path: "name",
                message: "\"\(name)\" does not say who is in it; name it for its audience, e.g. \"Inactive Buyers > 30 Days\""))
        }
        // A segment with a trigger is in use: its rule is re-checked on every write. So is
        // one that another segment contains (a segment filter).
        if let segment, !book.triggers.values.contains(where: { $0.segmentID == segment.id }),
            Segment.referrers(of: segment.id, in: book, directly: true).isEmpty {
            let last = segment.lastUsedAt ?? segment.createdAt
            if now - last > lintSettings.unusedDays * 86_400 {
                let days = Int((now - last) / 86_400)
                out.append(LintWarning(
                    code: "unused", path: "id",
                    message: "not counted for a send, resolved, exported or used by a trigger for \(days) days; retire it if nobody needs it"))
            }
        }
        return out
    }

    /// Lint for a stored segment.
    public func lint(segment: Segment) -> [LintWarning] {
        lint(filters: segment.filters, name: segment.name, segment: segment)
    }

    private func lintNode(_ item: JSONValue, path: String, book: Book, now: Double, into out: inout [LintWarning]) {
        if let children = item["any"]?.arrayValue {
            for (i, child) in children.enumerated() { lintNode(child, path: path.member("any").index(i), book: book, now: now, into: &out) }
            return
        }
        guard let dimension = item["dimension"]?.stringValue, let provider = registry.provider(named: dimension),
            let reader = try? ParamReader(item, path: path)
        else { return }
        out.append(contentsOf: provider.lint(reader, book: book, now: now, settings: lintSettings))
    }

    static func isGeneric(_ name: String) -> Bool {
        let lower = name.lowercased().trimmingSpaces
        var stem = lower
        while let last = stem.last, last.isNumber || last == " " || last == "#" || last == "-" || last == "_" { stem.removeLast() }
        if stem.isEmpty { return true }  // only digits
        if genericNames.contains(stem) || stem.hasPrefix("copy of ") { return true }
        // "Test segment", "Draft list": a generic word with a generic noun after it.
        for noun in [" segment", " list"] where stem.hasSuffix(noun) {
            if genericNames.contains(String(stem.dropLast(noun.count)).trimmingSpaces) { return true }
        }
        return false
    }
}
