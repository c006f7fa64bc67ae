// The parts of `kvstat batch` on their own: input expansion (folders, globs, manifests), shards, the
// SQLite ledger and the output-folder lock.
import Foundation
import KVStat
import Testing

@testable import KVBatch

@Suite struct BatchPartsTests {
    static func folder() throws -> String {
        let root = NSTemporaryDirectory() + "kvbatch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/a/b", withIntermediateDirectories: true)
        let hdf5 = Data([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
        for name in ["x.h5", "a/y.hdf5", "a/b/z.h5", "a/notes.md", "a/.hidden.h5"] {
            FileManager.default.createFile(atPath: root + "/" + name, contents: hdf5)
        }
        return root
    }

    @Test func foldersGlobsAndManifestsExpand() throws {
        let root = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(BatchInputs.expand([root]) == ["\(root)/a/b/z.h5", "\(root)/a/y.hdf5", "\(root)/x.h5"])
        #expect(BatchInputs.expand(["\(root)/a/*.hdf5"]) == ["\(root)/a/y.hdf5"])
        try "# two dumps\nx.h5\n\na/b/z.h5\nmissing.h5\n".write(
            toFile: root + "/list.txt", atomically: true, encoding: .utf8)
        #expect(
            BatchInputs.expand([root + "/list.txt", root + "/x.h5"]) == [
                "\(root)/a/b/z.h5", "\(root)/missing.h5", "\(root)/x.h5",
            ])
    }

    @Test func shardsPartitionTheSortedList() {
        let paths = (0..<10).map { "/d/\($0).h5" }
        let shards = (0..<4).map { BatchInputs.shard(paths, index: $0, count: 4) }
        #expect(shards.map(\.count) == [3, 3, 2, 2])
        #expect(Set(shards.flatMap { $0 }) == Set(paths))
        #expect(shards[1] == ["/d/1.h5", "/d/5.h5", "/d/9.h5"])
    }

    @Test func ledgerRecordsStatesAndSurvivesReopening() throws {
        let path = NSTemporaryDirectory() + "ledger-\(UUID().uuidString).sqlite"
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        do {
            let ledger = try Ledger(path: path)
            try ledger.record(LedgerEntry(id: "a", path: "/x.h5", state: .running))
            try ledger.record(LedgerEntry(id: "b", path: "/y.h5", state: .failed, message: "truncated"))
            try ledger.rememberID("a", path: "/x.h5", size: 10, mtimeNanoseconds: 5)
        }
        let ledger = try Ledger(path: path)
        #expect(try ledger.entry("b")?.message == "truncated")
        try ledger.resetRunning()
        #expect(try ledger.entry("a")?.state == .pending)
        #expect(try ledger.cachedID(path: "/x.h5", size: 10, mtimeNanoseconds: 5) == "a")
        #expect(try ledger.cachedID(path: "/x.h5", size: 11, mtimeNanoseconds: 5) == nil)
        #expect(try ledger.entries().map(\.id) == ["a", "b"])
    }

    @Test func aSecondLockOnTheSameFolderIsRefused() throws {
        let root = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try DirectoryLock(directory: root)
        #expect(throws: BatchError.self) { try DirectoryLock(directory: root) }
        withExtendedLifetime(first) {}
    }

    /// A fit's projections.safetensors (its header written by kvstat's own writer, which escapes the slash in
    /// `kvstat.fit/1`) is never taken for a dump; another safetensors file is.
    @Test func fitSafetensorsAreKVStatsOwn() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-fitst-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var writer = SafetensorsWriter()
        writer.metadata["format"] = "kvstat.fit/1"
        writer.add("layers.0.key.proj", shape: [2, 1], values: [1, 0])
        let fit = folder.appendingPathComponent("copied.safetensors").path
        try writer.encoded().write(to: URL(fileURLWithPath: fit))
        #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: fit)), as: UTF8.self).contains("fit\\/1"))
        #expect(BatchInputs.isKVStatOwn(fit))
        var other = SafetensorsWriter()
        other.add("layer_0.key", shape: [1, 1, 2, 1], values: [1, 2])
        let dump = folder.appendingPathComponent("dump.safetensors").path
        try other.encoded().write(to: URL(fileURLWithPath: dump))
        #expect(!BatchInputs.isKVStatOwn(dump))
    }
}
