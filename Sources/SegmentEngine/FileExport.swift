import Foundation
import SegmentCore
import StreamCodec

/// The result of writing an export file.
public struct ExportResult: Sendable {
    public var path: String
    public var rows: Int
    public var bytes: Int
    public var sha256: String
    public var asOf: Double
}

/// Writes a resolution to a file under the export directory, atomically: a temporary file
/// in the same directory, fsync, rename, fsync of the directory. A reader never sees a
/// half-written export, and a crash leaves at most a stray `.tmp-*` file.
public struct FileExporter: Sendable {
    public let directory: String
    public static let batchSize = 2_000

    public init(directory: String) { self.directory = directory }

    /// Resolves `relative` inside the export directory, refusing anything that would land
    /// outside it: absolute paths elsewhere, `..`, and symbolic links that lead out.
    public func confine(_ relative: String) throws(SegmentError) -> String {
        guard !relative.isEmpty, !relative.hasSuffix("/") else { throw .invalidParams(path: "path", "give a file name") }
        guard !relative.split(separator: "/").contains("..") else {
            throw .invalidParams(path: "path", "\"..\" is not allowed; paths are relative to the export directory")
        }
        guard let root = Self.realPath(directory) else {
            throw SegmentError(.internal, "the export directory \(directory) does not exist")
        }
        var candidate = relative
        if relative.hasPrefix("/") {
            guard relative.hasPrefix(root + "/") else {
                throw .invalidParams(path: "path", "outside the export directory; give a path relative to it")
            }
            candidate = String(relative.dropFirst(root.count + 1))
        }
        let full = root + "/" + candidate
        let parent = (full as NSString).deletingLastPathComponent
        guard let realParent = Self.realPath(parent) else {
            throw .invalidParams(path: "path", "the directory \((candidate as NSString).deletingLastPathComponent) does not exist in the export directory")
        }
        guard realParent == root || realParent.hasPrefix(root + "/") else {
            throw .invalidParams(path: "path", "a symbolic link leads outside the export directory")
        }
        let target = realParent + "/" + (full as NSString).lastPathComponent
        if let attrs = try? FileManager.default.attributesOfItem(atPath: target), attrs[.type] as? FileAttributeType == .typeSymbolicLink {
            throw .invalidParams(path: "path", "the target is a symbolic link; refusing to write through it")
        }
        return target
    }

    /// Writes the plan's rows to `target` (already confined), gzipped if asked.
    public func write(_ plan: ResolvePlan, to target: String, gzip: Bool) throws -> ExportResult {
        let dir = (target as NSString).deletingLastPathComponent
        let temp = dir + "/.tmp-" + UUID().uuidString + "-" + (target as NSString).lastPathComponent
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL, 0o640)
        guard fd >= 0 else { throw SegmentError(.internal, "cannot create \(temp): \(String(cString: strerror(errno)))") }
        var closed = false
        defer {
            if !closed { close(fd) }
            unlink(temp)  // a no-op after the rename
        }
        var hasher = SHA256()
        var bytes = 0
        let compressor = gzip ? try GzipCompressor(level: 6) : nil
        func emit(_ chunk: [UInt8]) throws {
            let out = try compressor.map { try $0.compress(chunk) } ?? chunk
            try Self.writeAll(fd, out)
            hasher.update(out)
            bytes += out.count
        }
        try emit(plan.header())
        let slots = plan.members.slots
        for start in stride(from: 0, to: slots.count, by: Self.batchSize) {
            try emit(plan.encode(slots[start..<min(start + Self.batchSize, slots.count)]))
        }
        if let compressor {
            let tail = try compressor.finish()
            try Self.writeAll(fd, tail)
            hasher.update(tail)
            bytes += tail.count
        }
        guard fsync(fd) == 0 else { throw SegmentError(.internal, "fsync failed: \(String(cString: strerror(errno)))") }
        close(fd)
        closed = true
        guard rename(temp, target) == 0 else { throw SegmentError(.internal, "rename failed: \(String(cString: strerror(errno)))") }
        let dirfd = open(dir, O_RDONLY)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
        return ExportResult(path: target, rows: slots.count, bytes: bytes, sha256: hasher.hexDigest(), asOf: plan.asOf)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw SegmentError(.internal, "write failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    public static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
