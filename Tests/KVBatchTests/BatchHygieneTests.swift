// Batch hygiene on its own: kvstat's own files are never inputs (OUT, marked folders, ledgers, state files),
// the ledger keeps a child's real error line (not the usage hint after it), and a child that exits 0 without a
// stats.json counting tokens has failed. Children are stand-in shell scripts, so each outcome is exact.
import Foundation
import Testing

@testable import KVBatch

@Suite struct BatchHygieneTests {
    static let hdf5 = Data([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])

    static func folder() throws -> String {
        let root = NSTemporaryDirectory() + "kvbatch-hygiene-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/out/abc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/old/run", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/legacy", withIntermediateDirectories: true)
        func write(_ name: String, _ data: Data) throws { try data.write(to: URL(fileURLWithPath: root + "/" + name)) }
        for name in ["x.h5", "out/abc/y.h5", "old/run/z.h5", "legacy/w.h5"] {
            try write(name, hdf5 + Data("dump \(name)".utf8))
        }
        // A state file (found by its format attribute, here its bytes), a marked folder, a batch OUT from before
        // markers (it holds a ledger).
        try write("copied-state.h5", hdf5 + Data(repeating: 0, count: 100) + Data("kvstat.state/2".utf8))
        try write("old/.kvstat", Data(#"{"schema":"kvstat.folder/1","command":"analyze","kvstat_version":"0"}"#.utf8))
        try write("legacy/ledger.sqlite", Data())
        return root
    }

    @Test func kvstatsOwnFilesAreNeverInputs() throws {
        let root = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let folder = BatchInputs.expand([root], output: root + "/out")
        #expect(folder.paths == ["\(root)/x.h5"])
        #expect(folder.ignored == 4)  // out/abc/y.h5, old/run/z.h5 (marked folder), legacy/w.h5, copied-state.h5
        #expect(folder.insideOutput.isEmpty)
        let globbed = BatchInputs.expand(["\(root)/*/*/*.h5", "\(root)/*/*.h5", "\(root)/*.h5"], output: root + "/out")
        #expect(globbed.paths == ["\(root)/x.h5"] && globbed.ignored == 4)
        // Named explicitly: inside OUT is refused; a state file is left out; elsewhere in a marked folder it is taken.
        let named = BatchInputs.expand(
            ["\(root)/out/abc/y.h5", "\(root)/copied-state.h5", "\(root)/old/run/z.h5"], output: root + "/out")
        #expect(named.insideOutput == ["\(root)/out/abc/y.h5"])
        #expect(named.paths == ["\(root)/old/run/z.h5"] && named.ignored == 1)
        // OUT reached through a symbolic link is still OUT.
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: root + "/out")
        #expect(BatchInputs.expand([root + "/link"], output: root + "/out").paths.isEmpty)
    }

    /// A stand-in child: a shell script run as the kvstat executable.
    static func child(_ body: String) throws -> String {
        let path = NSTemporaryDirectory() + "kvstat-child-\(UUID().uuidString).sh"
        // `$out` is the value of the child's --output=DIR (ChildArguments.swift).
        let header =
            "#!/bin/sh\nout=''\n"
            + "for a in \"$@\"; do case \"$a\" in --output=*) out=\"${a#--output=}\";; esac; done\n"
        try (header + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    static func runBatch(child body: String) throws -> BatchSummary {
        let root = try Self.folder()
        let executable = try Self.child(body)
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: executable)
        }
        var options = BatchOptions(inputs: [root + "/x.h5"], output: root + "/batch-out", executable: executable)
        options.quiet = true
        return try BatchRunner(options).run()
    }

    @Test func theLedgerKeepsTheChildsRealError() throws {
        let usage = try Self.runBatch(
            child: """
                echo "Error: --layers: cannot read 'x'; use e.g. 0-7,12" >&2
                echo "Usage: kvstat analyze <dump> [--layers <list>]" >&2
                echo "  See 'kvstat analyze --help' for more information." >&2
                exit 64
                """)
        #expect(
            usage.failed.map(\.message) == [
                "Error: --layers: cannot read 'x'; use e.g. 0-7,12 (kvstat analyze exit 64)"
            ])
        let error = try Self.runBatch(
            child: """
                echo "kvstat: error: x.h5: /layers/0/key: boom" >&2
                echo "a warning printed afterwards" >&2
                exit 65
                """)
        #expect(error.failed.map(\.message) == ["x.h5: /layers/0/key: boom (kvstat analyze exit 65)"])
        #expect(KVStatChild.errorLine("\n\nlast words\n") == "last words")
    }

    /// The sample's real stats.json (schema kvstat.stats/2), with `dump.tokens` set to `tokens`, in a temporary file.
    static func statsFile(tokens: Int) throws -> String {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("notebooks-data/minilm-sample.kvstat/stats.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: sample)) as? [String: Any])
        var dump = try #require(json["dump"] as? [String: Any])
        try #require(dump["tokens"] as? Int == 452, "the sample's stats.json changed: \(sample.path)")
        dump["tokens"] = tokens
        json["dump"] = dump
        let path = NSTemporaryDirectory() + "kvbatch-stats-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// stats.json is read as KVStat's StatsReport: missing, not a stats report, or counting no tokens is a failure.
    @Test func aChildThatExitsZeroWithoutTokensHasFailed() throws {
        let nothing = try Self.runBatch(child: "exit 0")
        #expect(nothing.done == 0)
        #expect(nothing.failed.map(\.message) == ["kvstat analyze exited 0 but wrote no readable stats.json"])
        let untyped = try Self.runBatch(
            child: #"mkdir -p "$out"; echo '{"dump": {"tokens": 5}}' > "$out/stats.json"; exit 0"#)
        #expect(untyped.done == 0)
        #expect(
            untyped.failed.map(\.message)
                == ["kvstat analyze exited 0 but wrote no readable stats.json (no 'schema')"])
        let empty = try Self.statsFile(tokens: 0)
        let full = try Self.statsFile(tokens: 452)
        defer { for path in [empty, full] { try? FileManager.default.removeItem(atPath: path) } }
        let zero = try Self.runBatch(child: #"mkdir -p "$out"; cp "\#(empty)" "$out/stats.json"; exit 0"#)
        #expect(zero.done == 0)
        #expect(zero.failed.map(\.message) == ["kvstat analyze exited 0 but counted 0 tokens"])
        // The same file with its tokens is done: the failures above come from the contract, not the stand-in.
        let good = try Self.runBatch(child: #"mkdir -p "$out"; cp "\#(full)" "$out/stats.json"; exit 0"#)
        #expect(good.done == 1 && good.failed.isEmpty && good.tokens == 452, "\(good.failed)")
    }
}
