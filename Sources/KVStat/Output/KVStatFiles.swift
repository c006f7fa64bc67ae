// Recognising files kvstat wrote from their first bytes, without libhdf5 (so that looking at an arbitrary
// user's file, or a corrupt one, can never crash or slow the caller): state files for `--save-state` and
// `kvstat batch`'s input expansion, report pages for `kvstat report -o`.
import Foundation

public enum KVStatFiles {
    /// The 8-byte signature every HDF5 file starts with (no user block).
    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Whether `path` is a kvstat state file of any version: an HDF5 file whose first 64 KiB hold the root
    /// attribute `format = "kvstat.state/…"` (written first, so it sits in the root group's object header,
    /// right after the superblock). A byte scan without libhdf5, for filtering many batch inputs cheaply; a
    /// command that goes on to read the file asks `AnalysisStateFile.isStateFile`, which reads the attribute.
    public static func isStateFile(_ path: String) -> Bool {
        guard let head = head(path, bytes: 1 << 16), head.starts(with: hdf5Signature) else { return false }
        return head.range(of: Data("kvstat.state/".utf8)) != nil
    }

    /// Whether `path` is a fit's projections.h5: an HDF5 file whose first 64 KiB hold the root attribute
    /// `format = "kvstat.fit/…"` (written first).
    public static func isFitArtifact(_ path: String) -> Bool {
        guard let head = head(path, bytes: 1 << 16), head.starts(with: hdf5Signature) else { return false }
        return head.range(of: Data("kvstat.fit/".utf8)) != nil
    }

    /// Whether `path` is a page `kvstat` rendered (report.html): its head holds kvstat's report title.
    public static func isReportPage(_ path: String) -> Bool {
        guard let head = head(path, bytes: 4096) else { return false }
        return head.range(of: Data("<title>kvstat report".utf8)) != nil
    }

    /// The first `bytes` bytes of the regular file at `path`, nil when it cannot be read.
    static func head(_ path: String, bytes: Int) -> Data? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
            let handle = FileHandle(forReadingAtPath: path)
        else {
            return nil
        }
        defer { try? handle.close() }
        return try? handle.read(upToCount: bytes)
    }
}
