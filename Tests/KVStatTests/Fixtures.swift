// Locating the h5py-written fixtures (Tests/Fixtures) and the bundled sample, and reading their truth files.
import Foundation
import Testing

@testable import KVStat

enum Fixtures {
    /// Tests/Fixtures/dumps.
    static let dumps = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dumps")
    /// notebooks-data/minilm-sample.h5: a real dump of sentence-transformers/all-MiniLM-L6-v2.
    static let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "notebooks-data/minilm-sample.h5"
        ).path

    static func path(_ name: String) -> String { dumps.appendingPathComponent(name).path }

    /// Runs the fixture script `Tests/Fixtures/<script>` with python3 into a new temporary folder named after
    /// `prefix` and returns the folder. A failure shows as missing files in the tests that use them, not as a
    /// crash. Callers keep the folder in a `static let`, so each script runs once per test process.
    static func generated(by script: String, prefix: String) -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
            .path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", dumps.deletingLastPathComponent().appendingPathComponent(script).path, folder]
        try? process.run()
        process.waitUntilExit()
        return folder
    }

    /// Runs the fixture script `Tests/Fixtures/<script>` with python3 and `arguments`; true when it exited 0.
    static func runScript(_ script: String, _ arguments: [String]) throws -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            ["python3", dumps.deletingLastPathComponent().appendingPathComponent(script).path]
            + arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// What make_fixtures.py recorded about a good fixture.
    struct Truth: Decodable {
        var layers: Int
        var kvHeads: Int
        var queryHeads: Int?
        var headDim: Int
        var sequences: Int
        var tokens: Int
        var maxTokens: Int
        var kinds: [String]
        var dtype: String
        var layout: String
        var expect: Expect

        struct Expect: Decodable {
            var sequenceLengths: [Int]
            var nonfinite: [String: Int]
        }
    }

    static func truth(_ name: String) throws -> Truth {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(
            Truth.self, from: Data(contentsOf: dumps.appendingPathComponent(name + ".truth.json")))
    }

    /// The truth values: per layer, per kind (in `truth.kinds` order), the rows × channels matrix.
    static func truthValues(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: dumps.appendingPathComponent(name + ".truth.f32"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static let goodDumps = [
        "perlayer_layer_nn", "perlayer_layers_slash", "perlayer_hf_names", "perlayer_hf_groups",
        "perlayer_keys_values", "stacked_5d", "stacked_4d", "axes_attr_bthd", "nan_inf", "large_block_tokens",
    ]

    /// One entry of bad_inputs.json.
    struct BadInput: Decodable, CustomTestStringConvertible {
        var file: String
        var category: String
        var errorContains: [String]
        var testDescription: String { file }
    }

    static func badInputs() throws -> [BadInput] {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(
            [BadInput].self,
            from: Data(contentsOf: dumps.deletingLastPathComponent().appendingPathComponent("bad_inputs.json")))
    }
}

extension StatsReport {
    /// The computed pair (layerA, layerB) of `kind`'s similarity list (layer numbers), if any.
    func pair(_ kind: String, _ layerA: Int, _ layerB: Int) -> Pair? {
        similarity[kind]?.first { $0.layerA == layerA && $0.layerB == layerB }
    }
}
