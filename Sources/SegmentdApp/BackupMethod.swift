import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

/// `server.backup {path}`: a consistent copy of the live database, taken with SQLite's online
/// backup while the server keeps serving reads and writes.
///
/// **Where it may write: only inside the export directory** (`--export-dir`, the same
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
public enum BackupMethod {
    public static func make(engine: Engine, exportDirectory: String) -> RPCMethod {
        RPCMethod(
            name: "server.backup",
            summary: "Writes a consistent copy of the live database (SQLite online backup) to `path` inside the export directory; returns {path, bytes, seconds}.",
            paramsSchema: [
                "type": "object",
                "properties": ["path": ["type": "string", "description": "file name relative to the export directory"]],
                "required": ["path"],
                "additionalProperties": false,
            ],
            resultSchema: [
                "type": "object",
                "properties": ["path": ["type": "string"], "bytes": ["type": "integer"], "seconds": ["type": "number"]],
            ]
        ) { request in
            guard case .object(let params) = request.params else { throw RPCError.invalidParams(path: "", "expected an object") }
            if let unknown = params.keys.sorted().first(where: { $0 != "path" }) {
                throw RPCError.invalidParams(path: unknown, "unknown parameter \"\(unknown)\"")
            }
            guard let relative = params["path"]?.stringValue else {
                throw RPCError.invalidParams(path: "path", params["path"] == nil ? "missing: the backup file name" : "expected a string")
            }
            let exporter = FileExporter(directory: exportDirectory)
            let target: String
            do {
                target = try exporter.confine(relative)
            } catch {
                throw RPCError.invalidParams(path: "path", (error as? SegmentError)?.message ?? "\(error)")
            }
            let started = ContinuousClock.now
            let bytes = try await WorkerThreads.blocking.run { try write(engine: engine, to: target) }
            let root = FileExporter.realPath(exportDirectory) ?? exportDirectory
            let shown = target.hasPrefix(root + "/") ? String(target.dropFirst(root.count + 1)) : target
            return [
                "path": .string(shown), "bytes": .int(Int64(bytes)),
                "seconds": .double((ContinuousClock.now - started) / .milliseconds(1) / 1000),
            ]
        }
    }

    /// Backs up to a temporary file beside `target`, makes it durable, renames it into place.
    static func write(engine: Engine, to target: String) throws -> Int {
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
