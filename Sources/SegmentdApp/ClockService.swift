import Logging
import SegmentEngine
import ServiceLifecycle

/// Re-evaluates time-dependent triggers and prunes the event log on a schedule, so
/// `within_last` rules fire with the clock alone.
struct ClockService: Service {
    let engine: Engine
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
        do {
            let fired = try await engine.reevaluateClock()
            let pruned = try await engine.pruneEvents()
            if fired > 0 || pruned > 0 {
                logger.info("clock tick", metadata: ["triggers.events": "\(fired)", "events.pruned": "\(pruned)"])
            }
        } catch {
            logger.error("clock tick failed", metadata: ["error": "\(error)"])
        }
    }
}
