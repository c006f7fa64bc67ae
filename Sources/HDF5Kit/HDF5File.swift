// Opening and creating HDF5 files, with distinct errors for a missing path, an unreadable one and a file
// that is not HDF5 at all.
internal import CHDF5
internal import CProcessControl
import Foundation

/// An open HDF5 file. Objects opened from it stay valid while they are referenced.
public final class HDF5File: Sendable {
    let handle: Handle
    /// The path the file was opened with.
    public let path: String

    init(handle: Handle, path: String) {
        self.handle = handle
        self.path = path
    }

    /// `open` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public static func open(_ path: String) throws -> HDF5File {
        try MetadataWatchdog.bracket { try openUnguarded(path) }
    }

    /// Opens an existing file read-only.
    private static func openUnguarded(_ path: String) throws -> HDF5File {
        silenceHDF5ErrorPrinting()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw HDF5Error(.fileNotFound, "no such file", file: path)
        }
        if isDirectory.boolValue { throw HDF5Error(.fileUnreadable, "is a directory, not a file", file: path) }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw HDF5Error(.fileUnreadable, "permission denied", file: path)
        }
        // A FIFO, device or socket would block libhdf5's read (or never end): only regular files are opened.
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw HDF5Error(
                .fileUnreadable, "is not a regular file (a FIFO, device or socket); give a file", file: path)
        }
        kv_crash_guard_note_file(path)
        let isHDF5 = H5Fis_hdf5(path)
        if isHDF5 == 0 {
            throw HDF5Error(.notHDF5, "not an HDF5 file (no HDF5 signature found)", file: path)
        }
        let id = H5Fopen(path, kv_h5f_acc_rdonly(), kv_h5p_default())
        if id < 0 {
            let stack = currentErrorStack() ?? ""
            var message = "cannot open HDF5 file"
            if stack.contains("truncated") || stack.contains("eof") {
                message = "file is truncated (shorter than its HDF5 metadata says)"
            } else if stack.contains("layout") || stack.contains("superblock") || stack.contains("version") {
                message =
                    "cannot open HDF5 file; if it was written by h5py with libver='latest', rewrite it with the "
                    + "default libver (HDF5 1.10 reads those)"
            }
            throw HDF5Error(.openFailed, message, file: path, cause: stack)
        }
        return HDF5File(handle: Handle(id, .file), path: path)
    }

    /// Creates a file, replacing any existing one at `path`.
    public static func create(_ path: String) throws -> HDF5File {
        silenceHDF5ErrorPrinting()
        let id = H5Fcreate(path, kv_h5f_acc_trunc(), kv_h5p_default(), kv_h5p_default())
        try check(id, .createFailed, "cannot create HDF5 file", file: path, object: nil)
        return HDF5File(handle: Handle(id, .file), path: path)
    }

    /// The root group `/`.
    public func root() throws -> HDF5Group {
        try HDF5Group(openIn: handle, path: "/", file: path)
    }

    /// Flushes buffered writes to disk.
    public func flush() throws {
        try check(H5Fflush(handle.id, H5F_SCOPE_GLOBAL), .writeFailed, "cannot flush file", file: path, object: nil)
    }
}
