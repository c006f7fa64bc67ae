// What a dump's files were when it was opened (device, inode, size, modification time), so that a run can
// refuse to write results computed from a file that was rewritten or replaced while it was being read: the
// one HDF5 file, or every safetensors file of a folder.
import Foundation

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

/// Snapshots of every file a dump's tensors are read from, in order (one for an HDF5 file or a safetensors
/// file; each `.safetensors` file of a folder). A file that cannot be stat'ed has no snapshot.
struct SourceSnapshot: Sendable, Equatable {
    var paths: [String]
    var files: [FileSnapshot?]

    /// The snapshots of `paths` now.
    init(paths: [String]) {
        self.paths = paths
        files = paths.map { FileSnapshot(path: $0) }
    }

    /// Whether every file could be stat'ed.
    var isComplete: Bool { files.allSatisfy { $0 != nil } }

    /// What differs between `self` (before) and `now` (the same paths), for the error message: as
    /// `FileSnapshot.changes` for one file; for several, the first file that changed, by name.
    func changes(to now: SourceSnapshot) -> String {
        for (index, path) in paths.enumerated() where index < now.files.count && files[index] != now.files[index] {
            let what = files[index].map { $0.changes(to: now.files[index]) } ?? "it could not be stat'ed"
            return paths.count == 1 ? what : "\((path as NSString).lastPathComponent): \(what)"
        }
        return "its files changed"
    }
}

extension Dump {
    /// Throws `.changedDuringRun` (exit 75) when a file the dump is read from is no longer what was opened:
    /// another file, another size or another modification time. Commands call it after reading and before
    /// writing anything, so no result describes a file that changed under it. (A safetensors file shortened
    /// during the run reads as zeros past its end through libhdf5's external storage; its size, checked here,
    /// is what stops those zeros from becoming results.)
    public func checkUnchanged() throws(DumpError) {
        let now = SourceSnapshot(paths: snapshot.paths)
        guard now != snapshot else { return }
        let message = "changed while it was being read (\(snapshot.changes(to: now))); nothing was written"
        throw DumpError(.changedDuringRun, message, file: path)
    }
}
