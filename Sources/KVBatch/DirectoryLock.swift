// One batch per output folder: an exclusive, non-blocking flock on OUT/.lock, released by the kernel when
// the process exits (even by kill -9), so a crashed run never leaves a stale lock.
import Foundation

public final class DirectoryLock {
    private let descriptor: Int32

    /// Takes the lock, or throws `BatchError.locked` naming the process that holds it.
    public init(directory: String) throws {
        let path = directory + "/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BatchError("cannot create \(path) (\(String(cString: strerror(errno))))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, 32, 0)
            let holder =
                n > 0
                ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            close(fd)
            throw BatchError(
                "another kvstat batch (pid \(holder)) is working on \(directory); wait for it or use another -o")
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        descriptor = fd
    }

    deinit { close(descriptor) }
}

/// What stops a batch as a whole (as opposed to one dump failing): exit 1 (nothing could run), or 64 for a bad
/// argument found only once the inputs are expanded (a file named inside OUT).
public struct BatchError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}
