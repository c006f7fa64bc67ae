// Reading small input files (layout descriptions, a report's JSON) only when they are regular files: a FIFO or
// a device would block the read or never end it.
import Foundation

public enum InputFile {
    /// The bytes of the regular file at `path`; `cannotOpen` (exit 66) when it is missing, unreadable, a folder,
    /// a FIFO, a device or larger than `limit` bytes (`what` names it in the message).
    public static func contents(_ path: String, what: String, limit: Int = 64 << 20) throws(DumpError) -> Data {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw DumpError(.cannotOpen, "no such \(what), or it is not readable", file: path)
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw DumpError(
                .cannotOpen, "is not a regular file (a folder, FIFO, device or socket); give a \(what)", file: path)
        }
        guard Int(status.st_size) <= limit else {
            throw DumpError(.cannotOpen, "is \(status.st_size) bytes, too large for a \(what)", file: path)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DumpError(.cannotOpen, "cannot read the \(what)", file: path)
        }
        return data
    }
}
