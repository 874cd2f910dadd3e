import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A child process started with `posix_spawn`, for tests that run the real `segmentd` binary,
/// Python clients or compilers.
///
/// Why not Foundation's `Process`: on Linux its `run()` copies each `/proc/self/fd` entry's
/// whole 256-byte `d_name` out of `readdir`'s buffer to find the highest open descriptor; when
/// the test process holds ~1,000+ descriptors (the load suites do, in parallel with others) the
/// copy can run off the end of that buffer and the whole test run dies with SIGSEGV in
/// `memcpy` (seen in CI). Here the child closes every inherited descriptor above stderr with
/// glibc's `posix_spawn_file_actions_addclosefrom_np`, which needs no enumeration at all.
final class ChildProcess: @unchecked Sendable {
    /// Where a child's stdout or stderr goes.
    enum Output {
        case null
        /// Appended to the file at this path (created if missing).
        case file(String)
    }

    let executable: String
    let arguments: [String]
    let directory: String?
    let environment: [String: String]?
    let standardOutput: Output
    let standardError: Output

    private struct State {
        var pid: pid_t = 0
        /// Exit code, or 128 + signal number, once reaped.
        var status: Int32?
    }
    private let state = Mutex(State())

    init(_ executable: String, _ arguments: [String], directory: String? = nil, environment: [String: String]? = nil,
         standardOutput: Output = .null, standardError: Output = .null) {
        self.executable = executable
        self.arguments = arguments
        self.directory = directory
        self.environment = environment
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    var processIdentifier: pid_t { state.withLock { $0.pid } }

    /// Starts the child; throws with the failing call and errno if it cannot.
    func start() throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        try check(posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0), "stdin")
        for (fd, output) in [(Int32(1), standardOutput), (Int32(2), standardError)] {
            switch output {
            case .null: try check(posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0), "/dev/null")
            case .file(let path):
                try check(posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644), path)
            }
        }
        try check(Self.closeFrom(&actions, 3), "closefrom")
        if let directory { try check(Self.changeDirectory(&actions, directory), "chdir \(directory)") }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Default signal handling and an empty mask: the test process ignores SIGPIPE (NIO) and
        // a child must not inherit that.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { $0.withCString { strdup($0) } } + [nil]
        let pairs = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = pairs.map { $0.withCString { strdup($0) } } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        try check(result, "posix_spawn \(executable)")
        state.withLock { $0.pid = pid }
    }

    /// Whether the child is still running (reaps it when it has ended).
    var isRunning: Bool { reap(blocking: false) == nil }

    /// Blocks until the child ends; for `defer` blocks after `terminate()`.
    func waitUntilExit() { _ = reap(blocking: true) }

    /// Exit code, or 128 + signal number; nil while running.
    var terminationStatus: Int32? { reap(blocking: false) }

    func terminate() { send(SIGTERM) }

    func send(_ signal: Int32) {
        let pid = processIdentifier
        if pid > 0 && isRunning { kill(pid, signal) }
    }

    private func reap(blocking: Bool) -> Int32? {
        let pid = state.withLock { state -> pid_t? in state.status == nil ? state.pid : nil }
        guard let pid else { return state.withLock { $0.status } }
        guard pid > 0 else { return nil }
        var raw: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &raw, blocking ? 0 : WNOHANG) } while result == -1 && errno == EINTR
        guard result == pid else { return nil }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
        let signal = raw & 0x7f
        let status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        state.withLock { $0.status = status }
        return status
    }

    private func check(_ result: Int32, _ what: String) throws {
        if result != 0 { throw ChildProcessError("\(what): \(String(cString: strerror(result)))") }
    }

    // glibc ≥ 2.34 has both, but Swift's Glibc module does not import them (GNU extensions).
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias ChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    private static func closeFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ fd: Int32) -> Int32 {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return ENOSYS }
        return unsafeBitCast(symbol, to: CloseFrom.self)(actions, fd)
    }

    private static func changeDirectory(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: String) -> Int32 {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return ENOSYS }
        return path.withCString { unsafeBitCast(symbol, to: ChangeDirectory.self)(actions, $0) }
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
