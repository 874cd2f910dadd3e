/// Tasks parked until their owner's state changes: the cancellation-aware wait that
/// ``EventHub`` (new events) and the book catalog (a book loaded, dropped, released) share.
///
/// The owner keeps a ``ParkedWaiters`` inside the state its lock guards, so that checking
/// whether to wait and parking happen under one lock: a change made between the two would
/// otherwise be missed. A change resumes every parked task (`resumeAll`); a cancelled task
/// takes itself out and returns.
struct ParkedWaiters {
    private var next = 0
    private var parked: [Int: CheckedContinuation<Void, Never>] = [:]

    var count: Int { parked.count }

    mutating func newID() -> Int {
        next += 1
        return next
    }

    mutating func park(_ id: Int, _ continuation: CheckedContinuation<Void, Never>) { parked[id] = continuation }

    mutating func unpark(_ id: Int) -> CheckedContinuation<Void, Never>? { parked.removeValue(forKey: id) }

    /// Takes every parked continuation out, to be resumed after the lock is released.
    mutating func takeAll() -> [CheckedContinuation<Void, Never>] {
        defer { parked = [:] }
        return Array(parked.values)
    }
}

/// An owner of parked waiters: three steps under its own lock.
protocol ParkingLot: AnyObject, Sendable {
    /// What a waiter waits for (a cursor to pass, a state generation to move).
    associatedtype Condition: Sendable
    /// A new waiter id.
    func waiterID() -> Int
    /// Parks `continuation` unless `condition` is already met or the calling task is
    /// cancelled (then returns false). Both are checked under the owner's lock, the lock
    /// ``unpark(_:)`` takes: a cancellation between the check and parking would otherwise
    /// find nothing to resume and leave the task parked.
    func park(_ id: Int, _ continuation: CheckedContinuation<Void, Never>, unlessMet condition: Condition) -> Bool
    /// Removes a parked waiter (cancellation).
    func unpark(_ id: Int) -> CheckedContinuation<Void, Never>?
}

extension ParkingLot {
    /// Returns once resumed by a change, at once if `condition` is met, or when the calling
    /// task is cancelled (the caller checks which).
    func parkedWait(for condition: Condition) async {
        let id = waiterID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                if !park(id, continuation, unlessMet: condition) { continuation.resume() }
            }
        } onCancel: {
            unpark(id)?.resume()
        }
    }
}
