// The `.kvstat` file that marks a folder as kvstat's own output (analyze, fit-lowrank, merge, a batch's OUT):
// such a folder may be rewritten freely, is never taken for input by `kvstat batch`, and a folder without it
// that holds other files is the user's and is not written into without --force.
import Foundation

public enum OutputFolderMarker {
    /// The marker's file name inside an output folder.
    public static let fileName = ".kvstat"
    /// The marker's `schema`.
    public static let schema = "kvstat.folder/1"

    /// What the marker records.
    struct Contents: Codable {
        var schema: String
        var command: String
        var kvstatVersion: String
        enum CodingKeys: String, CodingKey {
            case schema, command
            case kvstatVersion = "kvstat_version"
        }
    }

    /// Whether `directory` holds a kvstat marker.
    public static func isMarked(_ directory: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName),
            let contents = try? JSONDecoder().decode(Contents.self, from: data)
        else { return false }
        return contents.schema.hasPrefix("kvstat.folder/")
    }

    /// Whether kvstat wrote `directory`: it holds the marker. (A kvstat-looking stats.json, manifest.json or ledger
    /// is not enough: a user may keep one beside their own files; a folder from before markers needs --force once.)
    public static func isKVStatFolder(_ directory: String) -> Bool { isMarked(directory) }

    /// Writes the marker into the existing `directory` (atomically), recording `command`.
    public static func mark(
        _ directory: String, command: String, version: String = KVStatVersion.current
    ) throws(DumpError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let contents = Contents(schema: schema, command: command, kvstatVersion: version)
        guard let data = try? encoder.encode(contents) else { return }
        try AtomicFile.write(data + Data("\n".utf8), to: directory + "/" + fileName, what: "folder marker")
    }

    /// Whether the JSON file at `path` holds `"schema": "<prefix>…"` (as kvstat writes it, pretty-printed or
    /// compact). Searched in the mapped bytes, so a large stats.json costs no parse.
    static func declares(_ path: String, schema prefix: String) -> Bool {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else { return false }
        return ["\"schema\" : \"\(prefix)", "\"schema\":\"\(prefix)"].contains { data.range(of: Data($0.utf8)) != nil }
    }
}
