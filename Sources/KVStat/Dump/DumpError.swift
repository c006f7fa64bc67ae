// The error every bad dump turns into: one line naming the file, the dataset and what is wrong, with a
// category the CLI maps to a documented exit code.
import HDF5Kit

/// A problem with a dump or with what the user asked of it.
public struct DumpError: Error, CustomStringConvertible, Sendable {
    /// Categories, each with its own exit code (docs/exit-codes.md).
    public enum Category: Sendable, Equatable {
        /// The input path is missing or unreadable (exit 66).
        case cannotOpen
        /// The file is not HDF5, is truncated or is otherwise not readable as HDF5 (exit 65).
        case notReadable
        /// The file is HDF5 but not a KV dump kvstat can interpret (exit 65).
        case badLayout
        /// Shapes, types or values that cannot be analysed (exit 65).
        case badData
        /// A compression filter this libhdf5 lacks (exit 65).
        case unavailableFilter
        /// An output could not be written, or writing it would replace an input or a user's file (exit 73).
        case cannotWrite
        /// An option value or combination of options that cannot be honoured (exit 64).
        case usage
        /// The run would need more memory than this machine has, estimated from declared shapes (exit 69).
        case tooLarge
        /// The dump changed (size, modification time or digest) while it was being read (exit 75).
        case changedDuringRun
    }

    public var category: Category
    public var message: String
    public var file: String?
    public var dataset: String?
    public var cause: String?

    public init(
        _ category: Category, _ message: String, file: String? = nil, dataset: String? = nil, cause: String? = nil
    ) {
        self.category = category
        self.message = message
        self.file = file
        self.dataset = dataset
        self.cause = cause
    }

    /// Wraps an HDF5Kit error, keeping its file, object and cause.
    public init(_ error: HDF5Error, file: String? = nil) {
        let category: Category
        switch error.code {
        case .fileNotFound, .fileUnreadable: category = .cannotOpen
        case .notHDF5, .openFailed: category = .notReadable
        case .unavailableFilter: category = .unavailableFilter
        case .createFailed, .writeFailed: category = .cannotWrite
        case .objectNotFound, .unsupportedType, .invalidArgument: category = .badLayout
        case .readFailed: category = .notReadable
        }
        self.init(category, error.message, file: error.file ?? file, dataset: error.object, cause: error.cause)
    }

    /// `file: dataset: message` on one line (the HDF5 cause is kept for --verbose, not shown here).
    public var description: String {
        [file, dataset, message].compactMap { $0 }.joined(separator: ": ")
    }

    /// Fills in the file when the error was raised without one.
    func with(file: String) -> DumpError {
        var copy = self
        if copy.file == nil { copy.file = file }
        return copy
    }
}

/// Runs `body`, turning HDF5Kit errors into `DumpError`s.
func translatingHDF5Errors<T>(file: String, _ body: () throws -> T) throws(DumpError) -> T {
    do {
        return try body()
    } catch let error as DumpError {
        throw error.with(file: file)
    } catch let error as HDF5Error {
        throw DumpError(error, file: file)
    } catch {
        throw DumpError(.notReadable, "\(error)", file: file)
    }
}
