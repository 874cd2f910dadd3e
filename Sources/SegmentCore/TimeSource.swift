import Foundation
import Synchronization

/// Where "now" comes from: the system clock in production, a hand-moved clock in tests.
///
/// Times are seconds since 1970-01-01T00:00:00Z as `Double` throughout the engine.
///
/// ```swift
/// let clock = ManualTime(ISOTime.parseInstant("2026-03-01T00:00:00Z")!)
/// clock.advance(days: 31)
/// ```
public protocol TimeSource: Sendable {
    func now() -> Double
}

/// The system's wall clock.
public struct SystemTime: TimeSource {
    public init() {}
    public func now() -> Double { Date().timeIntervalSince1970 }
}

/// A clock that moves only when told to: relative-time rules are tested with it, never with sleeps.
public final class ManualTime: TimeSource {
    private let current: Mutex<Double>

    public init(_ start: Double) { current = Mutex(start) }

    public func now() -> Double { current.withLock { $0 } }

    public func set(_ time: Double) { current.withLock { $0 = time } }

    public func advance(seconds: Double) { current.withLock { $0 += seconds } }

    public func advance(days: Double) { advance(seconds: days * 86_400) }
}
