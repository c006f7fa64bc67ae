// Writing one output file with plain POSIX calls so that no reader ever sees it half-written and a full disk
// is one clear error: the bytes go to a temporary name beside the target, are flushed to the disk (fsync,
// which is where a delayed-allocation file system reports ENOSPC), and the file is renamed into place.
import Foundation

public enum AtomicFile {
    /// Writes `data` to `path` atomically; see `write(_:to:what:)`.
    public static func write(_ data: Data, to path: String, what: String) throws(DumpError) {
        var failure: DumpError?
        data.withUnsafeBytes { bytes in
            do throws(DumpError) { try write(bytes, to: path, what: what) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes `bytes` under a temporary name in `path`'s folder (which must exist), fsyncs and renames it to
    /// `path`. On any failure the temporary file is removed and a `cannotWrite` error names `path`, `what`
    /// ("state file", "output file") and the system's reason, e.g. "No space left on device".
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String, what: String) throws(DumpError) {
        let temporary = temporaryPath(for: path)
        // A stale temporary of a dead run is removed; then the name is created new and never followed (a symlink
        // planted at the predictable name cannot redirect the write).
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DumpError(.cannotWrite, "cannot write \(what) (\(String(cString: strerror(errno))))", file: path)
        }
        var offset = 0
        var failed: Int32 = 0
        while offset < bytes.count {
            // At most 1 GiB per call: Linux writes at most 0x7ffff000 bytes at once anyway.
            let n = Glibc.write(fd, bytes.baseAddress! + offset, min(bytes.count - offset, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                failed = errno
                break
            }
            offset += n
        }
        if failed == 0 && fsync(fd) != 0 { failed = errno }
        if close(fd) != 0 && failed == 0 { failed = errno }
        if failed != 0 {
            unlink(temporary)
            throw DumpError(.cannotWrite, "cannot write \(what) (\(String(cString: strerror(failed))))", file: path)
        }
        if rename(temporary, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DumpError(.cannotWrite, "cannot move \(what) into place (\(reason))", file: path)
        }
    }

    /// `.NAME.tmp-PID` beside `path`: hidden, and recognisable as a leftover by its `.tmp-` part.
    static func temporaryPath(for path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        return (directory.isEmpty ? "." : directory) + "/." + (path as NSString).lastPathComponent
            + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
    }
}
