// Checks, made before any work starts, that a command's outputs replace neither one of its inputs nor a
// file of the user's: every output path is compared with every input by resolved path and by device and
// inode, an output folder must be new, empty or kvstat's own (OutputFolderMarker) unless --force, and a
// single output file may replace only a file of the same kvstat kind unless --force. Every refusal is a
// `cannotWrite` error (exit 73) and nothing has been written when it is raised.
import Foundation

/// Where a path leads: its resolved absolute path (symbolic links and `..` resolved in the part that exists)
/// and, when it exists, its device and inode.
public struct PathIdentity: Equatable, Sendable {
    public var resolved: String
    public var device: UInt64?
    public var inode: UInt64?

    /// The identity of `path` now (relative paths are taken from the working directory).
    public init(_ path: String) {
        resolved = PathIdentity.resolve(path)
        var info = stat()
        if stat(path, &info) == 0 {
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    /// Whether the two paths name the same file: the same resolved path, or the same existing inode (a hard
    /// link, a bind mount).
    public func isSameFile(as other: PathIdentity) -> Bool {
        if resolved == other.resolved { return true }
        guard let device, let inode, let d = other.device, let i = other.inode else { return false }
        return device == d && inode == i
    }

    /// Whether `self` lies inside the folder `folder` (or is it).
    public func isInside(_ folder: PathIdentity) -> Bool {
        resolved == folder.resolved || resolved.hasPrefix(folder.resolved == "/" ? "/" : folder.resolved + "/")
    }

    /// realpath of the longest existing prefix, then the rest of the components applied lexically (they do not
    /// exist yet, so they will be created as plain folders: `..` among them goes up one of them).
    static func resolve(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var components = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var rest: [String] = []
        while true {
            let prefix = "/" + components.joined(separator: "/")
            if let real = realpath(prefix, nil) {
                defer { free(real) }
                var parts = String(cString: real).split(separator: "/").map(String.init)
                for part in rest {
                    if part == "." { continue }
                    if part == ".." { _ = parts.popLast() } else { parts.append(part) }
                }
                return "/" + parts.joined(separator: "/")
            }
            guard let last = components.popLast() else { return absolute }
            rest.insert(last, at: 0)
        }
    }
}

/// The inputs of one command and the checks its outputs must pass.
public struct OutputGuard: Sendable {
    struct Input: Sendable {
        var path: String
        /// What the input is, for messages: "the dump", "a state file", "the artifact", ….
        var role: String
        var identity: PathIdentity
        /// A folder input (a folder of safetensors files): nothing may be written anywhere inside it.
        var isFolder: Bool
    }

    private var inputs: [Input] = []
    /// `--force`: write into a folder holding other files, replace a file of another kind (never an input).
    public var force: Bool

    public init(force: Bool) {
        self.force = force
    }

    /// Records an input (a file the command reads) under `role`.
    public mutating func addInput(_ path: String, role: String) {
        var isDirectory: ObjCBool = false
        let isFolder = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        inputs.append(Input(path: path, role: role, identity: PathIdentity(path), isFolder: isFolder))
    }

    /// Throws when writing `path` would replace an input, or add a file inside a folder input (a later run would
    /// read it as part of the dump).
    public func checkNotInput(_ path: String) throws(DumpError) {
        let identity = PathIdentity(path)
        if let folder = inputs.first(where: { $0.isFolder && identity.isInside($0.identity) }) {
            throw DumpError(
                .cannotWrite,
                "is inside \(folder.role) this command reads (\(folder.path), a folder); writing there would change "
                    + "it: choose another output path", file: path)
        }
        guard let input = inputs.first(where: { identity.isSameFile(as: $0.identity) }) else { return }
        let also = input.path == path ? "" : " (\(input.path))"
        throw DumpError(
            .cannotWrite,
            "is \(input.role) this command reads\(also); writing there would replace it: choose another output path",
            file: path)
    }

    /// Checks the output folder `directory`, into which the files `names` will be written: it is not an
    /// existing file, none of `names` inside it is an input, and if it exists and holds anything it is kvstat's
    /// own (or `force`). Returns whether the folder should be marked as kvstat's when written: yes when it is
    /// new, empty or already kvstat's; no when `force` lets kvstat write into a folder of other files.
    public func checkFolder(_ directory: String, names: [String]) throws(DumpError) -> Bool {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue {
            try checkNotInput(directory)
            throw DumpError(.cannotWrite, "exists and is not a folder; choose another -o", file: directory)
        }
        // A dump that is a folder (of safetensors files) would gain kvstat's files, and a later run would read them.
        if let input = inputs.first(where: { PathIdentity(directory).isSameFile(as: $0.identity) }) {
            let message =
                "is \(input.role) this command reads (a folder); writing into it would change it: choose another -o"
            throw DumpError(.cannotWrite, message, file: directory)
        }
        for name in names + [OutputFolderMarker.fileName] {
            try checkNotInput(directory + "/" + name)
            // An output name taken by a folder (or anything not a file) would stop the writes half-way.
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isFolder),
                isFolder.boolValue
            {
                throw DumpError(
                    .cannotWrite, "exists and is a folder where kvstat writes \(name)", file: directory + "/" + name)
            }
        }
        guard exists else { return true }
        // kvstat's own leftovers (`.NAME.tmp-PID`, removed on failure) do not make a folder the user's.
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            !($0.hasPrefix(".") && $0.contains(".tmp-"))
        }
        if entries.isEmpty || OutputFolderMarker.isKVStatFolder(directory) { return true }
        if force { return false }
        throw DumpError(
            .cannotWrite, "exists and holds files kvstat did not write; choose another -o, or --force", file: directory)
    }

    /// Checks a single output file (`--save-state`, `report -o`): it is not an input, not a folder, and an
    /// existing file is replaced only when `isReplaceable` says it is of the same kvstat kind (or `force`).
    /// `kind` names that kind and `option` the option giving the path, for the message.
    public func checkFile(
        _ path: String, kind: String, option: String, isReplaceable: (String) -> Bool
    ) throws(DumpError) {
        try checkNotInput(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
        if isDirectory.boolValue {
            throw DumpError(.cannotWrite, "is a folder; give \(option) a file name", file: path)
        }
        if force || isReplaceable(path) { return }
        throw DumpError(
            .cannotWrite, "exists and is not \(kind); choose another \(option) path, or --force", file: path)
    }
}
