/// Polls `condition` every 10 ms until it holds or `seconds` pass; returns whether it held.
/// Every wait in the suites is bounded this way, and the bound only guards against a hang:
/// it is never what a test measures.
public func waitUntil(seconds: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}
