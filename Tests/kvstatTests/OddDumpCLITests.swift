// The odd dumps of Tests/Fixtures/make_odd_dumps.py through the binary: exit codes and one-line errors,
// layer numbers as in the file in outputs, and exit 75 when the dump is rewritten during a run.
import Foundation
import Testing

/// The odd dumps, generated once per test process into a temporary folder.
enum OddDumpFiles {
    static let directory: String = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kvstat-odd-cli-\(UUID().uuidString)"
        ).path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", CLI.repository.appendingPathComponent("Tests/Fixtures/make_odd_dumps.py").path, folder,
        ]
        try? process.run()  // a failure shows as missing files in the tests that use them, not a crash
        process.waitUntilExit()
        return folder
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}

@Suite struct OddDumpCLITests {
    @Test(arguments: [
        ("stacked_layer_mismatch.h5", "/values: has 3 layers but /keys has 2"),
        ("ambiguous.h5", "ambiguous layout: both stacked /keys,/values and per-layer"),
        ("mask_half.h5", "/attention_mask: attention mask holds 0.5"),
        ("lengths_fraction.h5", "/lengths: lengths holds 10.5"),
        ("huge_unwritten.h5", "/layer_00/key: is declared but never written (it holds only its fill value)"),
        ("partial_chunks.h5", "/layer_00/key: has unwritten chunks"),
        ("vds_missing.h5", "source file 'vds_missing_source.h5' is missing"),
        ("axes_not_string.h5", "'axes' attribute that is not a string"),
    ])
    func refusedWithOneLine(file: String, message: String) throws {
        let path = OddDumpFiles.path(file)
        let result = try CLI.run(["inspect", path])
        #expect(result.status == 65)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("kvstat: error: \(path): "))
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }

    @Test func unknownLayoutKeyIsRefused() throws {
        let layout = OddDumpFiles.path("typo.layout.yaml")
        let result = try CLI.run(["inspect", CLI.fixture("custom_thd.h5"), "--layout", layout])
        #expect(result.status == 65)
        #expect(
            result.stderr
                == "kvstat: error: \(layout): unknown key 'lenghts' in layout file; known keys are key, value, axes "
                + "(together) and query, key_pre_rope, layers, lengths, attention_mask, kv_heads, query_heads\n"
        )
    }

    /// `layer_00, layer_05, layer_07`: inspect lists 0,5,7; `--layers 5` analyses layer 5 and says so.
    @Test func layerNumbersAsInTheFile() throws {
        let dump = OddDumpFiles.path("gaps_layers.h5")
        let inspect = try CLI.run(["inspect", dump, "--json"])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect(summary["layer_numbers"] as? [Int] == [0, 5, 7])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("odd-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let analyze = try CLI.run(["analyze", dump, "--layers", "5", "-o", directory, "--quiet"])
        #expect(analyze.status == 0, "\(analyze.stderr)")
        let stats = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/stats.json")))
                as? [String: Any])
        #expect(stats["layer_numbers"] as? [Int] == [5])
        #expect((stats["layers"] as? [[String: Any]])?.map { $0["layer"] as? Int } == [5])
    }

    /// The dump's mtime changes after analyze has started reading: exit 75, an error event, no output.
    @Test(.timeLimit(.minutes(10))) func dumpChangedDuringAnalyzeExits75() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("odd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dump = folder + "/changing.h5"
        try FileManager.default.copyItem(atPath: OddDumpFiles.path("changing.h5"), toPath: dump)
        let process = Process()
        process.executableURL = CLI.binary
        process.arguments = ["analyze", dump, "-o", folder + "/out", "--block-tokens", "1", "--log-json"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        // Wait for the first progress event (the dump is open and being read), then rewrite its mtime.
        var seen = Data()
        let deadline = Date().addingTimeInterval(60)
        while !String(decoding: seen, as: UTF8.self).contains("\"progress\"") && Date() < deadline {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += chunk
        }
        #expect(
            String(decoding: seen, as: UTF8.self).contains("\"progress\""),
            "no progress event: \(String(decoding: seen, as: UTF8.self))")
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)], ofItemAtPath: dump)
        seen += err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 75)
        let last = String(decoding: seen, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.contains("\"exit_code\":75") || last.contains("\"exit_code\" : 75"), "\(last)")
        #expect(last.contains("changed while it was being read"), "\(last)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/out/stats.json"))
    }
}
