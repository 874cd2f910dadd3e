import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

/// `server.backup {path, book}`: a consistent copy of one book's live database, taken with SQLite's online
/// backup while the server keeps serving reads and writes.
///
/// **Where it may write: only inside the export directory** (`--export-dir`, in the book's folder `exports/<book>/`, the same
/// confinement as `segments.export {path}`: relative paths, or absolute paths that resolve
/// inside it; `..`, symbolic links leading out and writing through a symbolic link are
/// refused). Why not any absolute path the operator names: the method is reachable by every
/// client that can talk to the server — on TCP, anyone holding the token, who need not be the
/// account the server runs as — so an unconfined path would be a "write a file anywhere the
/// server may write" primitive (replace a config file, fill another disk). The export
/// directory is the one place the operator has already chosen for files the server creates;
/// `segmentd backup PATH` names a file there, and the operator moves it on from there.
///
/// The copy is written to a temporary name beside the target, fsynced, then renamed over it
/// (and the directory fsynced), so the path holds either a complete backup or what was
/// there before; an earlier backup of the same name is replaced atomically.
///
/// ```text
/// > {"jsonrpc":"2.0","id":1,"method":"server.backup","params":{"path":"nightly.sqlite"}}
/// < {"id":1,"jsonrpc":"2.0","result":{"bytes":53248,"path":"nightly.sqlite","seconds":0.01}}
/// ```
extension SegmentMethods {
    var backupMethod: RPCMethod {
        let methods = self
        var backup = bookMethod(
            "server.backup", access: .write,
            "Writes a consistent copy of the book's live database (SQLite online backup) to `path` inside the book's export folder; returns {path, bytes, seconds}.",
            params: [.required("path", ["type": "string", "description": "file name relative to the book's export folder (exports/<book>/)"])],
            result: Schema.object(["path": Schema.string, "bytes": Schema.integer, "seconds": ["type": "number"]])
        ) { engine, p, _ in
            let exportDirectory = try methods.preparedExportDirectory(for: try Self.bookName(p))
            let relative = try p.string("path")
            let exporter = FileExporter(directory: exportDirectory)
            let target = try exporter.confine(relative)
            let started = ContinuousClock.now
            let bytes = try await WorkerThreads.blocking.run { try Self.backup(engine: engine, to: target) }
            let root = FileExporter.realPath(exportDirectory) ?? exportDirectory
            let shown = target.hasPrefix(root + "/") ? String(target.dropFirst(root.count + 1)) : target
            return [
                "path": .string(shown), "bytes": .int(Int64(bytes)),
                "seconds": .double((ContinuousClock.now - started) / .milliseconds(1) / 1000),
            ]
        }
        backup.slowByDesign = true
        return backup
    }

    /// Backs up to a temporary file beside `target`, makes it durable, renames it into place.
    static func backup(engine: Engine, to target: String) throws -> Int {
        let directory = (target as NSString).deletingLastPathComponent
        let temp = directory + "/.tmp-" + UUID().uuidString + "-" + (target as NSString).lastPathComponent
        defer {
            // No-ops after a successful rename (and for files that were never made).
            for suffix in ["", "-wal", "-shm", "-journal"] { unlink(temp + suffix) }
        }
        do {
            try engine.backup(to: temp)
        } catch {
            throw RPCError.internalError("backup failed: \(error)")
        }
        let fd = open(temp, O_RDONLY)
        guard fd >= 0 else { throw RPCError.internalError("backup failed: cannot reopen the copy") }
        var info = stat()
        let statted = fstat(fd, &info) == 0
        let synced = fsync(fd) == 0
        close(fd)
        guard statted, synced else { throw RPCError.internalError("backup failed: cannot sync the copy") }
        guard rename(temp, target) == 0 else {
            throw RPCError.internalError("backup failed: cannot rename into place: \(String(cString: strerror(errno)))")
        }
        let dirfd = open(directory, O_RDONLY)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
        return Int(info.st_size)
    }
}
