#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SegmentCore
import Synchronization

/// An exclusive hold on one database for as long as a ``Store`` has it open.
///
/// Two servers on one file would each keep a book in memory that the other's writes never
/// reach, and their trigger baselines would disagree. The lock is `flock(2)` on `PATH.lock`
/// beside the database: it belongs to the open file, so it is released by the kernel when the
/// process exits for any reason, SIGKILL included, and a stale file never blocks a restart.
/// It conflicts between two opens in one process too. The holder writes its pid into the
/// file so that the refusal can name it.
///
/// A data directory of books is locked the same way (``init(lockFile:subject:advice:)``), so
/// that two servers never share one directory's books.
public final class DatabaseLock: Sendable {
    public let path: String
    /// The open lock file, or -1 once released.
    private let descriptor: Atomic<Int32>

    /// Takes the lock for the database at `databasePath`, or throws naming the holder.
    convenience init(databasePath: String) throws(SegmentError) {
        try self.init(
            lockFile: databasePath + ".lock", subject: "database \(databasePath)",
            advice: "one server per database: stop that one, or give this one another --data-dir (or --db)")
    }

    /// Takes the lock on `lockFile`, or throws "`subject` is in use by … (pid N); `advice`".
    public init(lockFile: String, subject: String, advice: String) throws(SegmentError) {
        path = lockFile
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SegmentError(.internal, "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard Self.lock(fd) else {
            let code = errno
            let holder = Self.readPid(fd)
            close(fd)
            if code == EWOULDBLOCK {
                let who = holder.map { "another process (pid \($0))" } ?? "another process"
                throw SegmentError(
                    .conflict,
                    "\(subject) is in use by \(who); \(advice)"
                )
            }
            throw SegmentError(.internal, "cannot lock \(path): \(String(cString: strerror(code)))")
        }
        descriptor = Atomic(fd)
        let line = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = line.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Releases the lock: closing the file releases it (the file stays, harmless). Idempotent.
    public func release() {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { close(fd) }
    }

    deinit { release() }

    /// Takes the lock, waiting at most 2 s for a holder that is going away: a process that is
    /// exiting (or a child that another thread is starting, which shares open files until it
    /// execs) may hold it a moment longer than the store that owned it.
    private static func lock(_ fd: Int32) -> Bool {
        for attempt in 0..<100 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            guard errno == EWOULDBLOCK, attempt < 99 else { return false }
            usleep(20_000)
        }
        return false
    }

    /// The pid the holder wrote, if the file holds one.
    private static func readPid(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").first ?? ""
        return Int32(text)
    }
}
