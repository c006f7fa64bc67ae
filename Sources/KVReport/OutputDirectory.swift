// Writing a run's outputs so that a reader never sees a half-written file: each file is written under a
// temporary name in the target directory and renamed into place.
import Foundation
import KVStat

public enum OutputDirectory {
    /// Creates `directory` if needed and writes each (name, text) atomically.
    public static func write(_ files: [String: String], to directory: String) throws(DumpError) {
        try write(files.mapValues { Data($0.utf8) }, to: directory)
    }

    /// Creates `directory` if needed and writes each (name, bytes) atomically.
    public static func write(_ files: [String: Data], to directory: String) throws(DumpError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DumpError(.cannotWrite, "cannot create output directory (\(error.localizedDescription))", file: directory)
        }
        for name in files.keys.sorted() {
            let target = (directory as NSString).appendingPathComponent(name)
            let temporary = (directory as NSString).appendingPathComponent(".\(name).tmp-\(ProcessInfo.processInfo.processIdentifier)")
            guard FileManager.default.createFile(atPath: temporary, contents: files[name]!) else {
                throw DumpError(.cannotWrite, "cannot write output file", file: target)
            }
            if rename(temporary, target) != 0 {
                unlink(temporary)
                throw DumpError(.cannotWrite, "cannot move output into place (\(String(cString: strerror(errno))))", file: target)
            }
        }
    }
}
