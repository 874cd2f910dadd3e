import SegmentCore
import WireJSON

extension LabelDimension {
    /// `stale_label`: a label nobody carries, or that nobody has gained for a while —
    /// campaign labels ("campaign-q1") outlive their purpose.
    public func lint(_ filter: ParamReader, book: Book, now: Double, settings: LintSettings) -> [LintWarning] {
        guard let labels = try? filter.stringOrList() else { return [] }
        let index = book.part(Index.self) ?? Index()
        var out: [LintWarning] = []
        for label in labels {
            let key = label.trimmingWhitespace.lowercased()
            let entry = index.labels[key]
            if entry == nil || entry!.members.intersectionCount(book.alive) == 0 {
                out.append(LintWarning(
                    code: "stale_label", path: filter.path.member("value"),
                    message: "no contact carries the label \"\(label)\"; check the spelling or retire this filter"))
            } else if let last = entry!.lastAddedAt, now - last > settings.staleLabelDays * 86_400 {
                let days = Int((now - last) / 86_400)
                out.append(LintWarning(
                    code: "stale_label", path: filter.path.member("value"),
                    message: "no contact has gained the label \"\(entry!.name)\" for \(days) days (last \(ISOTime.formatDay(last))); it may have outlived its campaign"))
            }
        }
        return out
    }
}
