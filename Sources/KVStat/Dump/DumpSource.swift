// What a dump path names: an HDF5 file, a safetensors file, or a folder of safetensors files (vLLM's KV
// connector writes one per layer), and the files a run reads for it.
import Foundation

/// The kind of input a dump path is, and the files its tensors are read from.
enum DumpSource: Equatable {
    /// An HDF5 file (or a path that is neither of the others: opening it as HDF5 gives the error).
    case hdf5(String)
    /// Safetensors files: one file as given, or a folder's `*.safetensors` files in byte order of their names.
    case safetensors(files: [String], inFolder: Bool)

    /// The files read (snapshotted for `checkUnchanged`, hashed in this order for the digest).
    var files: [String] {
        switch self {
        case .hdf5(let path): return [path]
        case .safetensors(let files, _): return files
        }
    }

    /// The 8-byte HDF5 signature (`\x89HDF\r\n\x1a\n`).
    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// File name extensions of HDF5 files, for the message about a folder that holds only those.
    static let hdf5Extensions: Set<String> = ["h5", "hdf5", "he5"]

    /// Resolves `path`. A folder is its non-hidden `*.safetensors` regular files (not recursive); one without
    /// any is `cannotOpen` (exit 66), and one holding HDF5 files says to pass one of them. A regular file is
    /// safetensors when its name ends in `.safetensors` or its content starts like one (a plausible header
    /// length followed by `{`), and not the HDF5 signature; anything else is left to the HDF5 opener.
    static func resolve(_ path: String) throws(DumpError) -> DumpSource {
        var status = stat()
        guard stat(path, &status) == 0 else { return .hdf5(path) }
        switch status.st_mode & S_IFMT {
        case S_IFDIR: return try folder(path)
        case S_IFREG:
            if path.lowercased().hasSuffix(".safetensors") { return .safetensors(files: [path], inFolder: false) }
            let head = firstBytes(path, count: 9)
            if head.starts(with: hdf5Signature) { return .hdf5(path) }
            if SafetensorsHeader.looksLikeSafetensors(head, fileSize: Int(status.st_size)) {
                return .safetensors(files: [path], inFolder: false)
            }
            return .hdf5(path)
        default: return .hdf5(path)
        }
    }

    /// The safetensors files of the folder `path` (see `resolve`).
    static func folder(_ path: String) throws(DumpError) -> DumpSource {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw DumpError(
                .cannotOpen, "is a folder that cannot be listed (\(error.localizedDescription))", file: path)
        }
        let visible = names.filter { !$0.hasPrefix(".") }
        let base = path.hasSuffix("/") ? path : path + "/"
        func isRegularFile(_ name: String) -> Bool {
            var status = stat()
            return stat(base + name, &status) == 0 && status.st_mode & S_IFMT == S_IFREG
        }
        let files = visible.filter { $0.lowercased().hasSuffix(".safetensors") && isRegularFile($0) }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        if !files.isEmpty { return .safetensors(files: files.map { base + $0 }, inFolder: true) }
        let hdf5 = visible.filter { hdf5Extensions.contains(($0 as NSString).pathExtension.lowercased()) }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        if let example = hdf5.first {
            throw DumpError(
                .cannotOpen,
                "is a folder of HDF5 files, not of .safetensors files; pass one of them (e.g. \(base + example)), or "
                    + "use `kvstat batch` for all", file: path)
        }
        throw DumpError(
            .cannotOpen,
            "is a folder with no .safetensors files (a dump is an HDF5 file, a .safetensors file, or a "
                + "folder of .safetensors files)", file: path)
    }

    /// Up to `count` bytes from the start of the regular file at `path` (fewer when it is shorter or unreadable).
    static func firstBytes(_ path: String, count: Int) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { return [] }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, count, 0) }
        return Array(bytes.prefix(max(n, 0)))
    }
}

extension Dump {
    /// The files `Dump(path:)` would read for `path`: the file itself, or a folder's `.safetensors` files in
    /// byte order of their names (the order `sha256()` hashes them in). A folder without any is an error.
    public static func sourceFiles(at path: String) throws(DumpError) -> [String] {
        try DumpSource.resolve(path).files
    }

    /// The tensor names of the safetensors file at `path`, nil when its header is not valid.
    public static func safetensorsTensorNames(at path: String) -> [String]? {
        (try? SafetensorsHeader.read(path))?.tensors.map(\.name)
    }

    /// The `__metadata__` of the safetensors file at `path`, nil when its header is not valid.
    public static func safetensorsMetadata(at path: String) -> [String: String]? {
        (try? SafetensorsHeader.read(path))?.metadata
    }
}
