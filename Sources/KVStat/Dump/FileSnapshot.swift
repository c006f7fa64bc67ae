// What a dump file was when it was opened (device, inode, size, modification time), so that a run can
// refuse to write results computed from a file that was rewritten or replaced while it was being read.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file's identity and version as `stat(2)` reports them. Two snapshots are equal when the path still
/// names the same file (device and inode) with the same size and modification time (nanoseconds).
struct FileSnapshot: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    /// The snapshot of the file at `path` now, nil when it cannot be stat'ed.
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(truncatingIfNeeded: info.st_dev)
        inode = UInt64(truncatingIfNeeded: info.st_ino)
        size = Int(info.st_size)
        #if canImport(Darwin)
            (modifiedSeconds, modifiedNanoseconds) = (Int(info.st_mtimespec.tv_sec), Int(info.st_mtimespec.tv_nsec))
        #else
            (modifiedSeconds, modifiedNanoseconds) = (Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_nsec))
        #endif
    }

    /// What differs between `self` (before) and `now`, for the error message.
    func changes(to now: FileSnapshot?) -> String {
        guard let now else { return "it was removed or can no longer be read" }
        var parts: [String] = []
        if (now.device, now.inode) != (device, inode) { parts.append("it was replaced by another file") }
        if now.size != size { parts.append("size \(size) → \(now.size) bytes") }
        if (now.modifiedSeconds, now.modifiedNanoseconds) != (modifiedSeconds, modifiedNanoseconds) {
            let before = Self.time(modifiedSeconds, modifiedNanoseconds)
            parts.append("mtime \(before) → \(Self.time(now.modifiedSeconds, now.modifiedNanoseconds))")
        }
        return parts.joined(separator: ", ")
    }

    private static func time(_ seconds: Int, _ nanoseconds: Int) -> String {
        let fraction = String(nanoseconds)
        return "\(seconds).\(String(repeating: "0", count: max(0, 9 - fraction.count)))\(fraction)"
    }
}

extension Dump {
    /// Throws `.changedDuringRun` (exit 75) when the file at `path` is no longer what was opened: another
    /// file, another size or another modification time. Commands call it after reading and before writing
    /// anything, so no result describes a file that changed under it.
    public func checkUnchanged() throws(DumpError) {
        let now = FileSnapshot(path: path)
        guard now != snapshot else { return }
        let message = "changed while it was being read (\(snapshot.changes(to: now))); nothing was written"
        throw DumpError(.changedDuringRun, message, file: path)
    }
}
