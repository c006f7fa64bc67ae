// Turns batch inputs — files, folders (recursive), globs, manifest files (one path per line) — into the
// sorted list of dump paths, and picks one shard of it for `--shard i/n`. What kvstat wrote is never an
// input: the batch's own OUT, any folder marked as kvstat output (`.kvstat`), batch ledgers and state files
// are left out of folders and globs (and counted), and a file named explicitly inside OUT is refused.
import Foundation
import KVStat

public enum BatchInputs {
    /// File name extensions taken from folders.
    static let dumpExtensions: Set<String> = ["h5", "hdf5", "he5"]

    /// The result of expanding the inputs.
    public struct Expansion: Sendable, Equatable {
        /// The dump paths, sorted and unique.
        public var paths: [String] = []
        /// Files left out because kvstat wrote them (inside OUT or a marked folder, ledgers, state files).
        public var ignored = 0
        /// Files named explicitly (on the command line or in a manifest) that lie inside OUT.
        public var insideOutput: [String] = []
    }

    /// The dump paths the inputs name, sorted and unique, without kvstat's own files. A path that does not
    /// exist and matches no glob is kept, so that the batch records it as failed rather than dropping it.
    public static func expand(_ inputs: [String]) -> [String] {
        expand(inputs, output: nil).paths
    }

    /// As `expand(_:)`, also leaving out everything inside `output` (the batch's OUT).
    public static func expand(_ inputs: [String], output: String?) -> Expansion {
        var walk = Walk(output: output.map { PathIdentity($0) })
        var result: Set<String> = []
        for input in inputs { result.formUnion(walk.expand(input, depth: 0, explicit: true)) }
        var expansion = walk.expansion
        expansion.paths = result.sorted()
        return expansion
    }

    /// One expansion, counting what it leaves out.
    struct Walk {
        let output: PathIdentity?
        var expansion = Expansion()

        mutating func expand(_ input: String, depth: Int, explicit: Bool) -> [String] {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) {
                if isDirectory.boolValue { return folder(input) }
                if depth == 0, isManifest(input) { return manifest(input, depth: depth) }
                return file(input, explicit: explicit)
            }
            if input.contains(where: { "*?[".contains($0) }) {
                return BatchInputs.glob(input).flatMap { expand($0, depth: depth + 1, explicit: false) }
            }
            return [standardized(input)]
        }

        /// `path` if it is not kvstat's own; an explicit file inside OUT is recorded as refused.
        mutating func file(_ path: String, explicit: Bool) -> [String] {
            let identity = PathIdentity(path)
            if let output, identity.isInside(output) {
                if explicit { expansion.insideOutput.append(path) } else { expansion.ignored += 1 }
                return []
            }
            let parent = (identity.resolved as NSString).deletingLastPathComponent
            if (!explicit && insideMarkedFolder(parent)) || BatchInputs.isKVStatOwn(path) {
                expansion.ignored += 1
                return []
            }
            return [standardized(path)]
        }

        /// Every file below `path` with a dump extension (hidden files and folders skipped, and folders kvstat
        /// wrote skipped whole).
        mutating func folder(_ path: String) -> [String] {
            let root = PathIdentity(path)
            if (output.map { root.isInside($0) } ?? false) || insideMarkedFolder(root.resolved) {
                countIgnored(below: path)
                return []
            }
            guard
                let walker = FileManager.default.enumerator(
                    at: URL(fileURLWithPath: path),
                    includingPropertiesForKeys: [.isRegularFileKey, .isDirectoryKey],
                    options: [.skipsHiddenFiles])
            else { return [] }
            var files: [String] = []
            for case let url as URL in walker {
                let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .isDirectoryKey])
                if values?.isDirectory == true {
                    let identity = PathIdentity(url.path)
                    if (output.map { identity.isInside($0) } ?? false) || BatchInputs.isKVStatFolder(url.path) {
                        walker.skipDescendants()
                        countIgnored(below: url.path)
                    }
                    continue
                }
                guard values?.isRegularFile == true, dumpExtensions.contains(url.pathExtension.lowercased()) else {
                    continue
                }
                if BatchInputs.isKVStatOwn(url.path) {
                    expansion.ignored += 1
                } else {
                    files.append(standardized(url.path))
                }
            }
            return files
        }

        /// Counts the dump-named files below `path` as ignored.
        mutating func countIgnored(below path: String) {
            guard
                let walker = FileManager.default.enumerator(
                    at: URL(fileURLWithPath: path), includingPropertiesForKeys: nil,
                    options: [.skipsHiddenFiles])
            else { return }
            for case let url as URL in walker where dumpExtensions.contains(url.pathExtension.lowercased()) {
                expansion.ignored += 1
            }
        }

        /// Whether `directory` or a folder above it is kvstat output.
        func insideMarkedFolder(_ directory: String) -> Bool {
            var current = directory
            while !current.isEmpty {
                if BatchInputs.isKVStatFolder(current) { return true }
                if current == "/" { break }
                current = (current as NSString).deletingLastPathComponent
            }
            return false
        }

        mutating func manifest(_ path: String, depth: Int) -> [String] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [standardized(path)] }
            let base = URL(fileURLWithPath: path).deletingLastPathComponent()
            return text.split(whereSeparator: \.isNewline).flatMap { raw -> [String] in
                let line = raw.trimmingCharacters(in: .whitespaces)
                guard !line.isEmpty, !line.hasPrefix("#") else { return [] }
                let resolved = line.hasPrefix("/") ? line : base.appendingPathComponent(line).path
                return expand(resolved, depth: depth + 1, explicit: true)
            }
        }
    }

    /// Whether `path` is a file kvstat wrote that is never a dump: a batch ledger, a state file or a fit's
    /// projections.h5.
    static func isKVStatOwn(_ path: String) -> Bool {
        (path as NSString).lastPathComponent.hasPrefix("ledger.sqlite") || KVStatFiles.isStateFile(path)
            || KVStatFiles.isFitArtifact(path)
    }

    /// Whether `directory` is kvstat output: it holds the `.kvstat` marker, or a batch ledger (a batch OUT
    /// written before markers existed). Folders are not judged by a stats.json, which a user may keep beside
    /// their dumps.
    static func isKVStatFolder(_ directory: String) -> Bool {
        OutputFolderMarker.isMarked(directory) || FileManager.default.fileExists(atPath: directory + "/ledger.sqlite")
    }

    /// A text file listing inputs, one per line (blank lines and `#` comments skipped; relative paths are
    /// relative to the manifest's folder). A file starting with the HDF5 signature is a dump, not a manifest.
    static func isManifest(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 8)) ?? Data()
        if head == Data([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return false }
        return ["txt", "list", "lst", "manifest"].contains(URL(fileURLWithPath: path).pathExtension.lowercased())
    }

    static func glob(_ pattern: String) -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        guard Glibc.glob(pattern, 0, nil, &matches) == 0 else { return [] }
        return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }
    }

    static func standardized(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    /// Shard `index` of `count`: the paths at positions ≡ index (mod count) of the sorted list, so every
    /// machine of a job array computes the same partition from the same inputs.
    public static func shard(_ paths: [String], index: Int, count: Int) -> [String] {
        paths.enumerated().filter { $0.offset % count == index }.map(\.element)
    }
}
