// Writing an HDF5 output so that no reader sees it half-written and a full disk is one clear error: free
// space checked first, the file built in memory by libhdf5 (core driver, no backing store), then its bytes
// written with POSIX calls under a temporary name and renamed into place (AtomicFile). libhdf5 itself never
// writes to the disk, so an ENOSPC cannot leave it with a half-closed file (libhdf5 1.10 then crashed at exit).
import Foundation
import HDF5Kit

enum AtomicHDF5Write {
    /// Creates `path`'s folder if needed, checks `bytes` are free, builds the file with `body` in memory and
    /// writes it to `path` atomically; on any failure nothing is left at `path` or beside it and a
    /// `cannotWrite` error names `what` ("state file", "projections").
    static func write(_ path: String, bytes: Int, what: String, _ body: (HDF5File) throws -> Void) throws(DumpError) {
        let directory = (path as NSString).deletingLastPathComponent
        var created = false
        if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
            created = true
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw DumpError(
                    .cannotWrite, "cannot create the folder for the \(what) (\(error.localizedDescription))", file: path
                )
            }
        }
        do throws(DumpError) {
            try DiskSpace.require(bytes, for: path)
            let image: HDF5MemoryImage
            do {
                image = try HDF5MemoryImage.build(name: path + " (in memory)", body)
            } catch let error as DumpError {
                throw DumpError(.cannotWrite, "cannot write \(what) (\(error.message))", file: path)
            } catch {
                let reason = (error as? HDF5Error)?.message ?? "\(error)"
                throw DumpError(.cannotWrite, "cannot write \(what) (\(reason))", file: path)
            }
            try AtomicFile.write(image.bytes, to: path, what: what)
        } catch {
            if created { rmdir(directory) }  // only a folder this call made, and only while it is empty
            throw error
        }
    }
}
