// Every layout, element type and filter, read through TokenBlockReader and compared value for value with the
// numbers h5py wrote (Tests/Fixtures/make_fixtures.py).
import Foundation
import Testing

@testable import KVStat

@Suite struct DumpReadingTests {
    /// Reads every (layer, kind) through the block reader and returns the concatenated rows, in the truth
    /// file's order.
    func readAll(_ dump: Dump, kinds: [String], blockTokens: Int) throws -> (values: [Float], excluded: [String: Int]) {
        var values: [Float] = []
        var excluded: [String: Int] = [:]
        var oversized = 0
        var runMismatches = 0
        for layer in dump.layerNumbers {
            for name in kinds {
                let kind = try #require(TensorKind(rawValue: name))
                let reader = try TokenBlockReader(dump: dump, layer: layer, kind: kind, blockTokens: blockTokens)
                var bad = 0
                try reader.forEachBlock { block in
                    if block.rows > blockTokens { oversized += 1 }
                    if block.runs.reduce(0, { $0 + $1.count }) != block.rows { runMismatches += 1 }
                    values.append(contentsOf: block.values)
                    bad += block.nonFiniteValues
                }
                if bad > 0 { excluded["layer\(layer).\(name)"] = bad }
            }
        }
        #expect(oversized == 0, "blocks larger than \(blockTokens) rows")
        #expect(runMismatches == 0, "block runs do not add up to its rows")
        return (values, excluded)
    }

    @Test(arguments: Fixtures.goodDumps, [1, 4, 4096])
    func valuesMatchWhatH5pyWrote(name: String, blockTokens: Int) throws {
        let truth = try Fixtures.truth(name)
        let dump = try Dump(path: Fixtures.path(name + ".h5"))
        #expect(dump.shape.layers == truth.layers)
        #expect(dump.shape.kvHeads == truth.kvHeads)
        #expect(dump.shape.headDim == truth.headDim)
        #expect(dump.shape.sequences == truth.sequences)
        #expect(dump.shape.maxTokens == truth.maxTokens)
        #expect(dump.shape.tokens == truth.tokens)
        #expect(dump.tokenRuns.lengths == truth.expect.sequenceLengths)
        #expect(dump.format.rawValue == truth.dtype)
        #expect(dump.layout.style.rawValue == truth.layout)
        if truth.kinds.contains("query") { #expect(dump.shape.queryHeads == truth.queryHeads) }
        #expect(Set(dump.kinds.map(\.rawValue)) == Set(truth.kinds))

        let expected = try Fixtures.truthValues(name)
        let (values, nonFinite) = try readAll(dump, kinds: truth.kinds, blockTokens: blockTokens)
        try #require(values.count == expected.count)
        #expect(nonFinite == truth.expect.nonfinite)
        // Exact equality: float16/bfloat16 widen exactly and float64 → float32 rounds the same way as numpy.
        // Rows with a non-finite value are zeroed by the reader, so compare those rows with zero.
        // One tokens × columns matrix per (layer, kind) in truth order; queries have query_heads × head_dim
        // columns (GQA: more than keys), every other kind kv_heads × head_dim.
        var mismatches = 0
        var compared = 0
        var offset = 0
        for _ in 0..<truth.layers {
            for kind in truth.kinds {
                let columns = (kind == "query" ? (truth.queryHeads ?? truth.kvHeads) : truth.kvHeads) * truth.headDim
                for row in 0..<truth.tokens {
                    let start = offset + row * columns
                    let slice = expected[start..<(start + columns)]
                    let rowIsFinite = slice.allSatisfy(\.isFinite)
                    for c in 0..<columns {
                        compared += 1
                        if values[start + c] != (rowIsFinite ? slice[start + c] : 0) { mismatches += 1 }
                    }
                }
                offset += truth.tokens * columns
            }
        }
        #expect(compared == expected.count, "compared \(compared) of \(expected.count) values")
        #expect(mismatches == 0, "\(mismatches) values differ from truth")
    }

    @Test(arguments: ["custom_thd.layout.json", "custom_thd.layout.yaml"])
    func customLayoutFile(layoutFile: String) throws {
        let truth = try Fixtures.truth("custom_thd")
        let spec = try LayoutSpec.load(Fixtures.path(layoutFile))
        let dump = try Dump(path: Fixtures.path("custom_thd.h5"), layout: spec)
        #expect(dump.layout.style == .custom)
        #expect(dump.shape.layers == truth.layers)
        #expect(dump.shape.queryHeads == truth.queryHeads)
        let (values, _) = try readAll(dump, kinds: truth.kinds, blockTokens: 3)
        #expect(values == (try Fixtures.truthValues("custom_thd")))
    }

    @Test func layerNamesAreParsedFromPaths() {
        let cases: [(String, TensorKind, Int)] = [
            ("/layer_00/key", .key, 0), ("/layers/11/v", .value, 11),
            ("/model.layers.3.self_attn.k_proj", .key, 3), ("/model/layers/2/self_attn/q_proj", .query, 2),
            ("/layer_4/keys_pre_rope", .keyPreRope, 4), ("/cache/L7/V", .value, 7),
        ]
        for (path, kind, layer) in cases {
            let candidate = LayoutDetector.candidate(path: path)
            #expect(candidate?.kind == kind, "\(path)")
            #expect(candidate?.layer == layer, "\(path)")
        }
        #expect(LayoutDetector.candidate(path: "/lengths") == nil)
        #expect(LayoutDetector.candidate(path: "/key") == nil)
    }

    @Test func layoutTemplatesExpand() {
        #expect(LayoutSpec.expand("/cache/L{layer}/K", layer: 7) == "/cache/L7/K")
        #expect(LayoutSpec.expand("/layer_{layer:02}/key", layer: 3) == "/layer_03/key")
    }

    @Test func axisOrdersAreValidated() {
        #expect(throws: DumpError.self) { try AxisOrder("bhd") }  // no token axis
        #expect(throws: DumpError.self) { try AxisOrder("bbtd") }  // repeated letter
        #expect(throws: DumpError.self) { try AxisOrder("xhtd") }
        #expect((try? AxisOrder("LBHTD"))?.index(of: "t") == 3)
    }

    @Test(arguments: try Fixtures.badInputs())
    func badInputsGiveOneClearLine(bad: Fixtures.BadInput) throws {
        let path = Fixtures.path(bad.file)
        let error = #expect(throws: DumpError.self) {
            let dump = try Dump(path: path)
            _ = try DumpScan(dump: dump)
        }
        let line = try #require(error).description
        #expect(!line.contains("\n"))
        for fragment in bad.errorContains {
            #expect(line.lowercased().contains(fragment.lowercased()), "'\(line)' lacks '\(fragment)'")
        }
    }

    @Test func missingAndUnreadablePaths() throws {
        let missing = #expect(throws: DumpError.self) { try Dump(path: "/nonexistent/dump.h5") }
        #expect(missing?.category == .cannotOpen)
        #expect(missing?.description.contains("/nonexistent/dump.h5: no such file") == true)
        let directory = #expect(throws: DumpError.self) { try Dump(path: Fixtures.dumps.path) }
        #expect(directory?.category == .cannotOpen)
    }

    @Test func bundledRealSample() throws {
        let dump = try Dump(path: Fixtures.sample)
        #expect(
            dump.shape
                == DumpShape(
                    layers: 6, sequences: 3, kvHeads: 12, queryHeads: 12, headDim: 32, maxTokens: 192, tokens: 452))
        #expect(dump.kinds == [.key, .value, .query])
        #expect(dump.format == .float16)
        #expect(dump.attributes["model"] == "sentence-transformers/all-MiniLM-L6-v2")
        let scan = try DumpScan(dump: dump, blockTokens: 100)
        #expect(scan.values == 6 * 3 * 452 * 384)
        #expect(scan.nonFinite.isEmpty)
    }
}
