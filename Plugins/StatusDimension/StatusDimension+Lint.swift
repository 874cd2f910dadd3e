import SegmentCore
import WireJSON

extension StatusDimension {
    /// `suppression_by_segment`: excluding unsubscribed or hard-bounced contacts by status is
    /// what the send audience already does; addresses belong on the suppression list.
    public func lint(_ filter: ParamReader, book: Book, now: Double, settings: LintSettings) -> [LintWarning] {
        guard (try? filter.string("op")) == "not_equals", let value = (try? filter.string("value"))?.lowercased(),
            value == "unsubscribed" || value == "hard_bounce"
        else { return [] }
        return [LintWarning(
            code: "suppression_by_segment", path: filter.path,
            message: "excluding \(value) contacts by status is redundant: the send audience already leaves them out; use the suppression list for addresses")]
    }
}
