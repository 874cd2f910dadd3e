#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The filesystem side of a Unix socket listener: stale-file replacement, permissions,
/// and removal of exactly the file this server created.
struct UnixSocketFile: Sendable {
    /// `sockaddr_un.sun_path` holds 108 bytes including the terminating NUL.
    static let maxPathBytes = 107

    let path: String
    /// The inode of the socket file this server bound, so shutdown never removes a
    /// file that another process put there since.
    let inode: UInt64

    /// Makes `path` free for binding: nothing there, or a stale socket (removed).
    /// A live socket (someone accepts connections) or a non-socket file is an error.
    static func prepare(path: String) throws(RPCServerError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw RPCServerError("cannot inspect \(path): \(errorText())")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw RPCServerError("\(path) exists and is not a socket; refusing to replace it")
        }
        if isLive(path: path) {
            throw RPCServerError("another server is already listening on \(path)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw RPCServerError("cannot remove stale socket \(path): \(errorText())")
        }
    }

    /// Applies `group` (a name or a numeric id) and `mode` to the freshly bound socket file
    /// and remembers its inode. The group comes first so the file is never group-accessible
    /// under the wrong group.
    static func claim(path: String, mode: UInt16, group: String? = nil) throws(RPCServerError) -> UnixSocketFile {
        if let group {
            let gid: gid_t
            if let numeric = gid_t(group) {
                gid = numeric
            } else if let entry = getgrnam(group) {
                gid = entry.pointee.gr_gid
            } else {
                throw RPCServerError("unknown group \(group) for \(path)")
            }
            guard chown(path, uid_t.max, gid) == 0 else {
                throw RPCServerError("cannot give \(path) to group \(group): \(errorText())")
            }
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            throw RPCServerError("cannot set mode \(String(mode, radix: 8)) on \(path): \(errorText())")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw RPCServerError("cannot inspect \(path): \(errorText())") }
        return UnixSocketFile(path: path, inode: UInt64(info.st_ino))
    }

    /// Removes the socket file if it is still the one this server created.
    func remove() {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_ino) == inode else { return }
        unlink(path)
    }

    /// Whether a server accepts (or queues) connections on `path` right now.
    private static func isLive(path: String) -> Bool {
        #if os(Linux)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        // Non-blocking: a full backlog answers EAGAIN (live) instead of blocking us.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(maxPathBytes))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 { return true }
        return errno == EAGAIN || errno == EINPROGRESS
    }

    private static func errorText() -> String {
        String(cString: strerror(errno))
    }
}
