// Checking free space before an HDF5 file is written (see AtomicHDF5Write): a file that would not fit is
// refused with a clear error up front.
import Foundation

enum DiskSpace {
    /// Throws `cannotWrite` unless the file system holding `path` has `bytes` (plus 1 MiB) free.
    static func require(_ bytes: Int, for path: String) throws(DumpError) {
        let directory = (path as NSString).deletingLastPathComponent
        var info = statvfs()
        guard statvfs(directory.isEmpty ? "." : directory, &info) == 0 else { return }
        let free = Int(info.f_bavail) * Int(info.f_frsize)
        if free < bytes + (1 << 20) {
            throw DumpError(
                .cannotWrite,
                "No space left: it needs about \(ByteFormat.megabytes(bytes)), the file system has "
                    + "\(ByteFormat.megabytes(free)) free",
                file: path)
        }
    }
}

enum ByteFormat {
    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
}
