// Turns batch inputs — files, folders (recursive), globs, manifest files (one path per line) — into the
// sorted list of dump paths, and picks one shard of it for `--shard i/n`. A dump is an HDF5 file, a
// `.safetensors` file, or a folder of vLLM KV-connector files (one `.safetensors` per layer holding `kv_cache`),
// which is one dump however many files it has. What kvstat wrote is never an input: the batch's own OUT, any
// folder marked as kvstat output (`.kvstat`), batch ledgers, state files and fit projections are left out of
// folders and globs (and counted), and a file named explicitly inside OUT is refused.
import Foundation
import KVStat

public enum BatchInputs {
    /// File name extensions taken from folders.
    static let dumpExtensions: Set<String> = ["h5", "hdf5", "he5", "safetensors"]

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
                if isDirectory.boolValue {
                    // A vLLM request folder named explicitly (or by a glob) is one dump.
                    if BatchInputs.isLayerFileFolder(input) { return file(input, explicit: explicit) }
                    return folder(input)
                }
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
                    } else if BatchInputs.isLayerFileFolder(url.path) {
                        walker.skipDescendants()
                        files.append(standardized(url.path))
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
    /// projections.h5 or projections.safetensors.
    static func isKVStatOwn(_ path: String) -> Bool {
        (path as NSString).lastPathComponent.hasPrefix("ledger.sqlite") || KVStatFiles.isStateFile(path)
            || KVStatFiles.isFitArtifact(path) || isFitSafetensors(path)
    }

    /// Whether `path` is a fit's projections.safetensors: a `.safetensors` file whose header metadata says
    /// `format` = `kvstat.fit/…` (read from the parsed header: the writer escapes the slash in its JSON).
    static func isFitSafetensors(_ path: String) -> Bool {
        guard path.lowercased().hasSuffix(".safetensors") else { return false }
        return Dump.safetensorsMetadata(at: path)?["format"]?.hasPrefix("kvstat.fit/") ?? false
    }

    /// Whether `directory` is a vLLM KV-connector request folder, one dump of per-layer files: its first
    /// `.safetensors` file (byte order of names) holds a tensor named `kv_cache`. Other folders of safetensors
    /// files are walked file by file (each file a dump); `kvstat analyze FOLDER` reads any folder as one dump.
    static func isLayerFileFolder(_ directory: String) -> Bool {
        guard let first = (try? Dump.sourceFiles(at: directory))?.first else { return false }
        return Dump.safetensorsTensorNames(at: first)?.contains("kv_cache") ?? false
    }

    /// What the content id of the dump at `path` covers: its files (the file itself, or a folder dump's
    /// `.safetensors` files in name order, hashed one after another), their total size, and a modification
    /// time in nanoseconds (the newest of the files' and, for a folder, the folder's own, which changes when a
    /// file is added, removed or renamed) for the ledger's cache of ids. A failure message when it has none.
    public static func contents(_ path: String) -> Result<(files: [String], bytes: Int, modified: Int), BatchFailure> {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return .failure(BatchFailure("no such file, or it is not readable"))
        }
        var files = [path]
        if isDirectory.boolValue {
            do throws(DumpError) {
                files = try Dump.sourceFiles(at: path)
            } catch {
                return .failure(BatchFailure(error.message))
            }
        }
        var bytes = 0
        var modified = 0
        for file in files + (isDirectory.boolValue ? [path] : []) {
            // stat(2) follows links, as reading does (a hub snapshot's layer files are links into blobs/).
            var status = stat()
            guard stat(file, &status) == 0 else {
                return .failure(BatchFailure("\(file): no such file, or it is not readable"))
            }
            if file != path || !isDirectory.boolValue {
                // Hashing a FIFO or a device would block or never end.
                guard status.st_mode & S_IFMT == S_IFREG else {
                    return .failure(BatchFailure("is not a regular file (a folder, FIFO, device or socket)"))
                }
                bytes += Int(status.st_size)
            }
            modified = max(modified, Int(status.st_mtim.tv_sec) * 1_000_000_000 + Int(status.st_mtim.tv_nsec))
        }
        return .success((files, bytes, modified))
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
