#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import PostgresNIO

/// A recursive mutex: a transaction's body, on the thread that holds it, runs statements
/// (and nested transactions) through the same connection. `depth` is read and written only
/// while it is held.
final class TransactionGate: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    var depth = 0
    /// Inside a transaction, statements whose rows nobody reads are sent without waiting for
    /// their answers (PostgreSQL runs them in order); they are waited for before the next
    /// read returns and before COMMIT.
    var pipelining = false
    var deferred: [EventLoopFuture<PostgresQueryResult>] = []

    init() {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
