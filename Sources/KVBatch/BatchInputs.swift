// Turns batch inputs — files, folders (recursive), globs, manifest files (one path per line) — into the
// sorted list of dump paths, and picks one shard of it for `--shard i/n`.
import Foundation

public enum BatchInputs {
    /// File name extensions taken from folders.
    static let dumpExtensions: Set<String> = ["h5", "hdf5", "he5"]

    /// The dump paths the inputs name, sorted and unique. A path that does not exist and matches no glob
    /// is kept, so that the batch records it as failed rather than dropping it silently.
    public static func expand(_ inputs: [String]) -> [String] {
        var result: Set<String> = []
        for input in inputs { result.formUnion(expand(input, depth: 0)) }
        return result.sorted()
    }

    static func expand(_ input: String, depth: Int) -> [String] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return folder(input) }
            if depth == 0, isManifest(input) { return manifest(input, depth: depth) }
            return [standardized(input)]
        }
        if input.contains(where: { "*?[".contains($0) }) {
            let matches = glob(input)
            return matches.flatMap { expand($0, depth: depth + 1) }
        }
        return [standardized(input)]
    }

    /// Every file below `path` with a dump extension (hidden files and folders skipped).
    static func folder(_ path: String) -> [String] {
        guard let walker = FileManager.default.enumerator(at: URL(fileURLWithPath: path), includingPropertiesForKeys: [.isRegularFileKey],
                                                         options: [.skipsHiddenFiles]) else { return [] }
        var files: [String] = []
        for case let url as URL in walker where dumpExtensions.contains(url.pathExtension.lowercased()) {
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true { files.append(standardized(url.path)) }
        }
        return files
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

    static func manifest(_ path: String, depth: Int) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [standardized(path)] }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        return text.split(whereSeparator: \.isNewline).flatMap { raw -> [String] in
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#") else { return [] }
            let resolved = line.hasPrefix("/") ? line : base.appendingPathComponent(line).path
            return expand(resolved, depth: depth + 1)
        }
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
