// Writing an HDF5 output so that no reader sees it half-written: free space checked first (libhdf5 1.10 can
// crash at exit after an ENOSPC write), the file written under a temporary name, then renamed into place.
import Foundation
import HDF5Kit

enum AtomicHDF5Write {
    /// Creates `path`'s folder if needed, checks `bytes` are free, runs `body` on a temporary path in the same
    /// folder and renames the result to `path`; on any failure the temporary file is removed and a
    /// `cannotWrite` error names `what` ("state file", "projections").
    static func write(_ path: String, bytes: Int, what: String, _ body: (String) throws -> Void) throws(DumpError) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        try DiskSpace.require(bytes, for: path)
        let temporary = (directory.isEmpty ? "." : directory) + "/." + (path as NSString).lastPathComponent
            + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
        do {
            try body(temporary)
        } catch {
            unlink(temporary)
            let reason = (error as? HDF5Error)?.message ?? "\(error)"
            throw DumpError(.cannotWrite, "cannot write \(what) (\(reason))", file: path)
        }
        if rename(temporary, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DumpError(.cannotWrite, "cannot move \(what) into place (\(reason))", file: path)
        }
    }
}
