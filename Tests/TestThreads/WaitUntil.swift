/// Polls `condition` every 10 ms until it holds or `hangGuardScale` × `seconds` pass; returns
/// whether it held. Every wait in the suites is bounded this way, and the bound only guards
/// against a hang: it is never what a test measures. The bounds are stretched (×4) because the
/// whole suite, PostgreSQL clusters included, runs at once on two cores: a wait that takes 2 s
/// alone once took over 30 s there. A wait that succeeds returns as soon as it does.
public func waitUntil(seconds: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds * hangGuardScale)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// How much the suites' hang guards are stretched (see ``waitUntil(seconds:_:)``).
public let hangGuardScale = 4.0
