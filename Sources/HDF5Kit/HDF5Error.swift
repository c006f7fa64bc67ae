// The one error type HDF5Kit throws: what went wrong, in one line, with the file, the object inside it and
// HDF5's own error stack as the cause.

/// An error from the HDF5 library or from HDF5Kit's checks, with enough context for a one-line message.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; callers map these to exit codes and user-facing wording.
    public enum Code: Sendable, Equatable {
        case fileNotFound, fileUnreadable, notHDF5, openFailed, createFailed
        case objectNotFound, readFailed, writeFailed, unsupportedType, unavailableFilter, invalidArgument
    }

    public var code: Code
    /// One sentence saying what is wrong (no file name; `description` adds it).
    public var message: String
    /// The file the error concerns.
    public var file: String?
    /// The group, dataset or attribute path inside the file.
    public var object: String?
    /// HDF5's error stack, innermost call first, when the C library reported one.
    public var cause: String?

    public init(_ code: Code, _ message: String, file: String? = nil, object: String? = nil, cause: String? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.object = object
        self.cause = cause
    }

    /// `file: /object: message (HDF5: cause)` on one line.
    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let object { parts.append(object) }
        parts.append(message)
        var line = parts.joined(separator: ": ")
        if let cause, !cause.isEmpty { line += " (HDF5: \(cause))" }
        return line
    }
}
