// Writing a run's outputs so that a reader never sees a half-written file: each file is written under a
// temporary name in the target directory, flushed and renamed into place (AtomicFile); a folder kvstat
// creates for its outputs is marked as its own (OutputFolderMarker). Whether the folder may be written at all
// is decided before the run by OutputGuard.
import Foundation
import KVStat

public enum OutputDirectory {
    /// Creates `directory` if needed, marks it as written by `command` when given (and not marked yet), and
    /// writes each (name, text) atomically.
    public static func write(
        _ files: [String: String], to directory: String, marking command: String? = nil
    ) throws(DumpError) {
        try write(files.mapValues { Data($0.utf8) }, to: directory, marking: command)
    }

    /// Creates `directory` if needed, marks it as written by `command` when given (and not marked yet), and
    /// writes each (name, bytes) atomically.
    public static func write(
        _ files: [String: Data], to directory: String, marking command: String? = nil
    ) throws(DumpError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DumpError(
                .cannotWrite, "cannot create output directory (\(error.localizedDescription))", file: directory)
        }
        if let command, !OutputFolderMarker.isMarked(directory) {
            try OutputFolderMarker.mark(directory, command: command)
        }
        for name in files.keys.sorted() {
            try AtomicFile.write(
                files[name]!, to: (directory as NSString).appendingPathComponent(name), what: "output file")
        }
    }
}
