// The bundled decoder sample, notebooks-data/smollm2-sample.h5 (SmolLM2-135M-Instruct: RoPE, GQA with 9 query
// heads on 3 KV heads, layers 0, 3, …, 27 of 30, keys before and after RoPE), against numpy: the pre-RoPE path
// (analyze's effective ranks of key and key_pre_rope equal numpy's SVD; the reader's two key tensors are one
// rotation apart) and the GQA path (fit-lowrank's attention-level errors with the real queries equal a direct
// numpy computation). The numpy results are smollm2-sample.truth.json, written by tools/kvdump_numpy_smollm2.py
// (`truth_from_dump`) from the same file and checked against it by tools/test_smollm2_forward.py.
import Foundation
import Testing

@testable import KVStat

/// The sample and its truth file.
enum SmolLM2Sample {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "notebooks-data/smollm2-sample.h5"
        ).path

    /// What numpy computed on the stored float16 values (valid tokens only, sequences in order).
    struct Truth: Decodable {
        /// The dumped layer numbers.
        var layers: [Int]
        var lengths: [Int]
        var energyLevels: [Double]
        /// PCA rank (per layer, keys and values) and query positions per sequence of the attention errors.
        var rank: Int
        var attentionQueries: Int
        var causal: Bool
        /// Per kind ("key", "key_pre_rope"), per layer, the effective rank at each of `energyLevels`.
        var effectiveRank: [String: [[Int]]]
        /// Per kind, per layer, the 8 largest singular values.
        var topSingularValues: [String: [[Double]]]
        /// Per layer: ‖L − L̂‖/‖L‖, ‖O − Ô‖/‖O‖, ‖K − K̂‖/‖K‖, ‖V − V̂‖/‖V‖.
        var attentionLogits: [Double]
        var attentionOutputs: [Double]
        var keyError: [Double]
        var valueError: [Double]
    }

    static func truth() throws -> Truth {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let url = URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("truth.json")
        return try decoder.decode(Truth.self, from: Data(contentsOf: url))
    }
}

@Suite(.serialized) struct SmolLM2SampleTests {
    /// The spectra of every layer and kind, made once; a failure fails the tests that use it.
    static let spectra: Result<StatsReport, any Error> = Result {
        var options = AnalysisOptions()
        options.sections = [.spectra]
        options.blockTokens = 128  // several blocks, crossing sequence boundaries
        return try StatsFinisher.finish(
            try Analyzer.accumulate(try Dump(path: SmolLM2Sample.path), options: options), version: "test")
    }

    @Test func layoutIsGQAWithPreRoPEKeysAndRealLayerNumbers() throws {
        let truth = try SmolLM2Sample.truth()
        let dump = try Dump(path: SmolLM2Sample.path)
        #expect(dump.layerNumbers == truth.layers && truth.layers == Array(stride(from: 0, to: 30, by: 3)))
        #expect(dump.shape.kvHeads == 3 && dump.shape.queryHeads == 9 && dump.shape.headDim == 64)
        #expect(Set(dump.kinds) == [.key, .value, .query, .keyPreRope])
        #expect(dump.tokenRuns.lengths == truth.lengths)
    }

    /// analyze's effective ranks of post-RoPE and pre-RoPE keys equal numpy's SVD of the same matrices (the
    /// truth file's margins keep every rank at least 1e-6 of energy from a rounding boundary), and σ agree.
    @Test func preAndPostRoPEKeyRanksMatchNumpySVD() throws {
        let truth = try SmolLM2Sample.truth()
        let report = try Self.spectra.get()
        #expect(report.layerNumbers == truth.layers)
        for (i, layer) in report.layers.enumerated() {
            #expect(layer.layer == truth.layers[i])
            for kind in [TensorKind.key, .keyPreRope] {
                let stats = try #require(layer.kinds[kind])
                let expected = try #require(truth.effectiveRank[kind.rawValue]?[i])
                let ranks = try #require(stats.effectiveRank)
                #expect(
                    ranks == Dictionary(uniqueKeysWithValues: zip(truth.energyLevels.map { "\($0)" }, expected)),
                    "layer \(layer.layer) \(kind): \(ranks) vs numpy \(expected)")
                let sigma = try #require(stats.singularValues)
                for (s, reference) in zip(sigma, try #require(truth.topSingularValues[kind.rawValue]?[i])) {
                    #expect(abs(s - reference) <= 1e-4 * reference, "layer \(layer.layer) \(kind) σ")
                }
            }
            // RoPE spreads key energy over more channels in every dumped layer (numpy says so too).
            let post = try #require(layer.kinds[.key]?.effectiveRank?["0.9"] ?? nil)
            let pre = try #require(layer.kinds[.keyPreRope]?.effectiveRank?["0.9"] ?? nil)
            #expect(post > pre, "layer \(layer.layer): post-RoPE \(post), pre-RoPE \(pre)")
        }
    }

    /// notebooks-data/smollm2-sample.kvstat is what this kvstat computes: its spectra and effective ranks equal a
    /// fresh analysis (regenerate with `kvstat analyze notebooks-data/smollm2-sample.h5
    /// -o notebooks-data/smollm2-sample.kvstat --quiet` after a change).
    @Test func committedAnalysisIsCurrent() throws {
        let directory = URL(fileURLWithPath: SmolLM2Sample.path).deletingPathExtension().appendingPathExtension(
            "kvstat")
        for name in [".kvstat", "stats.json", "layers.csv", "similarity.csv", "summary.md", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path), "\(name)")
        }
        let committed = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("stats.json")))
                as? [String: Any])
        let layers = try #require(committed["layers"] as? [[String: Any]])
        // The committed run's settings (default blocks: other block sizes round the small σ differently).
        var options = AnalysisOptions()
        options.sections = [.spectra]
        let report = try StatsFinisher.finish(
            try Analyzer.accumulate(try Dump(path: SmolLM2Sample.path), options: options), version: "test")
        #expect(layers.count == report.layers.count)
        for (stored, fresh) in zip(layers, report.layers) {
            #expect(stored["layer"] as? Int == fresh.layer)
            for kind in TensorKind.allCases {
                let entry = try #require(stored[kind.rawValue] as? [String: Any], "layer \(fresh.layer) \(kind)")
                let sigma = try #require(entry["singular_values"] as? [Double])
                let freshSigma = try #require(fresh.kinds[kind]?.singularValues)
                for (a, b) in zip(sigma, freshSigma) where a > 1e-3 * sigma[0] {
                    #expect(abs(a - b) <= 1e-6 * a, "regenerate notebooks-data/smollm2-sample.kvstat")
                }
                #expect(entry["effective_rank"] as? [String: Int] == fresh.kinds[kind]?.effectiveRank)
            }
        }
    }

    /// Through kvstat's reader, each (token, head) of `key` is a rotation of `key_pre_rope`: equal at position 0,
    /// the same norm everywhere (within float16 rounding), different vectors later on.
    @Test func readerGivesKeysOneRotationFromPreRoPEKeys() throws {
        let truth = try SmolLM2Sample.truth()
        let dump = try Dump(path: SmolLM2Sample.path)
        let d = dump.shape.headDim
        let heads = dump.shape.kvHeads
        for layer in [try #require(truth.layers.first), try #require(truth.layers.last)] {
            let key = try TensorReader(dump: dump, layer: layer, kind: .key)
            let pre = try TensorReader(dump: dump, layer: layer, kind: .keyPreRope)
            for (sequence, n) in truth.lengths.enumerated() {
                var k = [Float](repeating: 0, count: n * heads * d)
                var p = k
                try k.withUnsafeMutableBufferPointer {
                    try key.read(sequence: sequence, start: 0, count: n, into: $0, row: 0)
                }
                try p.withUnsafeMutableBufferPointer {
                    try pre.read(sequence: sequence, start: 0, count: n, into: $0, row: 0)
                }
                #expect(Array(k[0..<(heads * d)]) == Array(p[0..<(heads * d)]), "layer \(layer): position 0")
                var moved = 0
                for row in 0..<(n * heads) {
                    let a = k[(row * d)..<((row + 1) * d)]
                    let b = p[(row * d)..<((row + 1) * d)]
                    let na = a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                    let nb = b.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                    #expect(abs(na - nb) <= 2e-3 * nb, "layer \(layer) sequence \(sequence) row \(row)")
                    if zip(a, b).contains(where: { abs($0 - $1) > 0.01 * Float(nb) }) { moved += 1 }
                }
                #expect(moved >= (n - 1) * heads * 9 / 10, "layer \(layer): RoPE moved \(moved) of \(n * heads)")
            }
        }
    }

    /// fit-lowrank's attention-level errors of rank-32 PCA keys and values, with the sample's 9 real query heads
    /// sharing 3 KV heads, 64 causal query positions per sequence, equal numpy's direct float64 computation
    /// (measured within 1.1e-6; pairing query head h with KV head h mod 3 instead moves them by 1e-2 or more);
    /// and the per-layer reconstruction errors equal numpy's Eckart–Young errors. Three of the ten layers, to
    /// keep the debug-build run short.
    @Test func attentionErrorsWithRealGQAQueriesMatchNumpy() throws {
        let truth = try SmolLM2Sample.truth()
        let layers = [0, 12, 27]
        var options = FitOptions()
        options.budget = .rank(truth.rank)
        options.attentionQueries = truth.attentionQueries
        options.causal = truth.causal
        options.blockTokens = 128
        options.layers = layers
        let result = try LowRankFit.run(
            try Dump(path: SmolLM2Sample.path), options: options, version: "test", command: ["test"])
        let attention = try #require(result.report.attention)
        #expect(attention.logits.count == layers.count)
        for (i, layer) in layers.enumerated() {
            let t = try #require(truth.layers.firstIndex(of: layer))
            let logits = try #require(attention.logits[i])
            let outputs = try #require(attention.outputs[i])
            #expect(abs(logits - truth.attentionLogits[t]) <= 1e-5, "layer \(layer) logits")
            #expect(abs(outputs - truth.attentionOutputs[t]) <= 1e-5, "layer \(layer) outputs")
            let keyError = try #require(result.report.fit.perLayer["key"]?[i] ?? nil)
            let valueError = try #require(result.report.fit.perLayer["value"]?[i] ?? nil)
            #expect(abs(keyError - truth.keyError[t]) <= 1e-5, "layer \(layer) key error")
            #expect(abs(valueError - truth.valueError[t]) <= 1e-5, "layer \(layer) value error")
        }
        // Not a comparison of zeros: rank 32 of 192 channels changes what the model attends to.
        #expect(truth.attentionOutputs.allSatisfy { $0 > 0.1 })
    }
}
