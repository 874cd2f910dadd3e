import CoreMetrics
import SegmentCore

/// What a book's writes did, recorded through swift-metrics with a `book` label:
/// `segmentd_contacts_upserted_total` (contacts created or updated by `contacts.upsert`) and
/// `segmentd_trigger_events_total` by `type` (`enter`, `exit`); on a fleet node,
/// `segmentd_fleet_changes_applied_total` (other nodes' change records applied) and
/// `segmentd_fleet_reloads_total` (whole-book reloads).
///
/// The figures a scrape reads off the book's state (size, version, subscribers) are the
/// application's: it samples them when scraped.
struct EngineMetrics: Sendable {
    private let upserted: Counter
    private let entered: Counter
    private let exited: Counter
    /// A fleet node's only.
    private let changesApplied: Counter?
    private let reloads: Counter?

    init(book: String, fleet: Bool, factory: any MetricsFactory) {
        upserted = Counter(label: "segmentd_contacts_upserted_total", dimensions: [("book", book)], factory: factory)
        entered = Counter(label: "segmentd_trigger_events_total", dimensions: [("book", book), ("type", "enter")], factory: factory)
        exited = Counter(label: "segmentd_trigger_events_total", dimensions: [("book", book), ("type", "exit")], factory: factory)
        changesApplied = fleet ? Counter(label: "segmentd_fleet_changes_applied_total", dimensions: [("book", book)], factory: factory) : nil
        reloads = fleet ? Counter(label: "segmentd_fleet_reloads_total", dimensions: [("book", book)], factory: factory) : nil
    }

    func upserted(_ count: Int) { if count > 0 { upserted.increment(by: count) } }

    func appended(_ events: [TriggerEvent]) {
        guard !events.isEmpty else { return }
        let enters = events.count { $0.type == "enter" }
        if enters > 0 { entered.increment(by: enters) }
        if events.count > enters { exited.increment(by: events.count - enters) }
    }

    func applied(changes: Int) { if changes > 0 { changesApplied?.increment(by: changes) } }

    func reloaded() { reloads?.increment() }

    /// Removes the book's series (a dropped book's figures do not linger in scrapes).
    func destroy() {
        upserted.destroy()
        entered.destroy()
        exited.destroy()
        changesApplied?.destroy()
        reloads?.destroy()
    }
}
