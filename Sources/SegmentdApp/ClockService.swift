import Logging
import SegmentCore
import SegmentEngine
import ServiceLifecycle

/// Re-evaluates time-dependent triggers and prunes the event log on a schedule, so
/// `within_last` rules fire with the clock alone.
///
/// A tick visits every loaded book, but a book with no time-dependent trigger whose rule
/// moved and no event due for pruning costs an in-memory check: no query, no transaction.
/// Work, and SQL, is in proportion to the books that need it.
struct ClockService: Service {
    let catalog: BookCatalog
    let every: Duration
    let logger: Logger

    func run() async {
        // The loop ends with the server, never mid-write: each tick is one transaction that
        // either commits or does not happen. Ending is not a failure of the group.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: every)
                await tick()
            }
        }
    }

    func tick() async {
        for (name, _) in catalog.loaded {
            guard !Task.isCancelled else { return }
            do {
                // Holding the book: a drop waits for the tick instead of closing it mid-write.
                // In a fleet, one node per book (its clock leader) re-evaluates and prunes.
                let (fired, pruned) = try await catalog.withBook(name) { engine -> (Int, Int) in
                    guard await engine.holdsClockLead() else { return (0, 0) }
                    return (try await engine.reevaluateClock(), try await engine.pruneEvents())
                }
                if fired > 0 || pruned > 0 {
                    logger.info("clock tick", metadata: ["book": "\(name)", "triggers.events": "\(fired)", "events.pruned": "\(pruned)"])
                }
            } catch let error as SegmentError where error.kind == .notFound {
                continue  // dropped since the list was taken
            } catch {
                logger.error("clock tick failed", metadata: ["book": "\(name)", "error": "\(error)"])
            }
        }
    }
}
