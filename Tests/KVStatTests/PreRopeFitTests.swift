// Pre-RoPE key fits (`fit-lowrank --keys pre-rope`): RoPE applied by kvstat equals the SmolLM2 dumper's own
// post-RoPE keys; both styles equal an independent complex-multiplication formula (numpy); a full-rank fit
// leaves only float16 rounding after RoPE; errors and attention-level errors with rotated reconstructions equal
// numpy's direct computation (Tests/Fixtures/pre_rope_reference.py); the sweep's pre-RoPE points equal the fit.
import Foundation
import Testing

@testable import KVStat

@Suite(.serialized) struct PreRopeFitTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/pre_rope_reference.py").path

    /// Runs `pre_rope_reference.py styles OUT` (no `dump`) or `fit DUMP OUT ARGS…` and decodes OUT.
    static func reference(_ mode: String, dump: String? = nil, _ arguments: [String] = []) throws -> [String: Any] {
        let out = NSTemporaryDirectory() + "kvstat-prerope-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, mode] + (dump.map { [$0] } ?? []) + [out] + arguments
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with h5py and numpy is needed")
        return try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
    }

    /// ‖a − b‖ / ‖a‖ in float64.
    static func relative(_ a: [Float], _ b: [Float]) -> Double {
        var (e, n) = (0.0, 0.0)
        for (x, y) in zip(a, b) {
            e += (Double(x) - Double(y)) * (Double(x) - Double(y))
            n += Double(x) * Double(x)
        }
        return (e / n).squareRoot()
    }

    /// RoPE(key_pre_rope) with the dump's attributes (θ = 100000, rotate-half, rotary_dim = head_dim), positions
    /// the stored token index, equals the dumper's `key` within float16 rounding in every layer and sequence
    /// (the third sequence is right-padded: 100 of 200). Wrong parameters do not: the test can fail.
    @Test func ropeOfPreRopeKeysIsTheSampleDumpsKeys() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        let (rope, sources) = try RotaryEmbedding.resolve(dump, overrides: RopeOverrides())
        #expect(rope == RotaryEmbedding(theta: 100_000, rotaryDim: 64, style: .rotateHalf))
        #expect(sources["theta"] == "dump attribute rope_theta" && sources["style"]?.hasPrefix("default") == true)
        let (heads, d) = (dump.shape.kvHeads, dump.shape.headDim)
        let wrong = [
            RotaryEmbedding(theta: 100_000, rotaryDim: 64, style: .interleaved),
            RotaryEmbedding(theta: 10_000, rotaryDim: 64, style: .rotateHalf),
        ]
        for layer in dump.layerNumbers {
            let key = try TensorReader(dump: dump, layer: layer, kind: .key)
            let pre = try TensorReader(dump: dump, layer: layer, kind: .keyPreRope)
            for run in dump.tokenRuns.runs {
                var k = [Float](repeating: 0, count: run.count * heads * d)
                var p = k
                try k.withUnsafeMutableBufferPointer {
                    try key.read(sequence: run.sequence, start: run.start, count: run.count, into: $0, row: 0)
                }
                try p.withUnsafeMutableBufferPointer {
                    try pre.read(sequence: run.sequence, start: run.start, count: run.count, into: $0, row: 0)
                }
                let positions = RotaryEmbedding.positions(of: [run])
                let rotated = rope.applied(p, rows: run.count, heads: heads, headDim: d, positions: positions)
                let error = Self.relative(k, rotated)
                #expect(error <= 1e-3, "layer \(layer) sequence \(run.sequence): \(error)")
                for other in wrong {
                    let off = Self.relative(
                        k, other.applied(p, rows: run.count, heads: heads, headDim: d, positions: positions))
                    #expect(off > 0.05, "layer \(layer) \(other): \(off)")
                }
            }
        }
    }

    /// Both styles, with a partial rotary dimension (6 of 8) and positions up to 12345, equal numpy's rotation of
    /// complex pairs; and interleaved is rotate-half conjugated by the channel permutation that pairs 2i, 2i+1.
    @Test func stylesMatchComplexRotationInNumpy() throws {
        let r = try Self.reference("styles")
        let (rows, heads, d) = (r["rows"] as! Int, r["heads"] as! Int, r["head_dim"] as! Int)
        let x = (r["x"] as! [Double]).map(Float.init)
        let positions = r["positions"] as! [Int]
        for style in RotaryEmbedding.Style.allCases {
            let rope = RotaryEmbedding(theta: r["theta"] as! Double, rotaryDim: r["rotary_dim"] as! Int, style: style)
            let got = rope.applied(x, rows: rows, heads: heads, headDim: d, positions: positions)
            let expected = (r[style.rawValue] as! [Double]).map(Float.init)
            #expect(Self.relative(expected, got) <= 1e-6, "\(style)")
            #expect(Array(got[6..<8]) == Array(x[6..<8]), "channels beyond rotary_dim are left alone")
        }
        // interleaved(x) = π⁻¹(rotate-half(π(x))), π gathering channels 0,2,4 then 1,3,5 (then 6, 7).
        let order = [0, 2, 4, 1, 3, 5, 6, 7]
        func gather(_ v: [Float], _ o: [Int]) -> [Float] {
            (0..<(v.count / d)).flatMap { b in o.map { v[b * d + $0] } }
        }
        let inverse = order.indices.map { order.firstIndex(of: $0)! }
        let half = RotaryEmbedding(theta: 500, rotaryDim: 6, style: .rotateHalf)
        let viaHalf = gather(
            half.applied(gather(x, order), rows: rows, heads: heads, headDim: d, positions: positions), inverse)
        let interleaved = RotaryEmbedding(theta: 500, rotaryDim: 6, style: .interleaved)
            .applied(x, rows: rows, heads: heads, headDim: d, positions: positions)
        #expect(Self.relative(interleaved, viaHalf) <= 1e-7)
    }

    /// `--keys pre-rope --rank 192` (every channel of 3 heads × 64): before RoPE the keys come back exactly
    /// (float32), after RoPE only the float16 rounding of the dump's own post-RoPE keys is left.
    @Test func fullRankPreRopeFitLeavesOnlyFloat16RoundingAfterRoPE() throws {
        var options = FitOptions()
        options.keys = .preRope
        options.budget = .rank(192)
        options.attentionQueries = 0
        options.layers = [0, 15, 27]
        let result = try LowRankFit.run(
            try Dump(path: SmolLM2Sample.path), options: options, version: "test", command: ["test"])
        let report = result.report
        #expect(result.projections.allSatisfy { $0.kind != .key })
        #expect(report.rope?.reference == "key" && report.rope?.theta == 100_000 && report.rope?.rotaryDim == 64)
        let before = try #require(report.fit.perLayer["key_pre_rope"])
        let after = try #require(report.fit.perLayer["key"])
        for i in options.layers!.indices {
            let b = try #require(before[i])
            let a = try #require(after[i])
            #expect(b <= 1e-5, "before RoPE \(b)")
            #expect(a <= 1e-3 && a > 1e-6, "after RoPE \(a): float16 rounding of the dump's keys")
        }
    }

    /// Rank-32 pca of pre-RoPE keys and values on layers 0 and 27: the key errors before and after RoPE, the
    /// value errors, and the causal GQA attention errors (64 queries per sequence, the dump's post-RoPE queries
    /// against RoPE of the rebuilt keys) equal numpy's SVD and direct attention within 1e-4.
    @Test func preRopeErrorsAndAttentionMatchNumpy() throws {
        let layers = [0, 27]
        let r = try Self.reference("fit", dump: SmolLM2Sample.path, ["32", "64"] + layers.map(String.init))
        var options = FitOptions()
        options.keys = .preRope
        options.budget = .rank(32)
        options.attentionQueries = 64
        options.blockTokens = 128
        options.layers = layers
        let report = try LowRankFit.run(
            try Dump(path: SmolLM2Sample.path), options: options, version: "test", command: ["test"]
        ).report
        let attention = try #require(report.attention)
        let pairs: [(String, [Double?])] = [
            ("key_before", report.fit.perLayer["key_pre_rope"] ?? []), ("key_after", report.fit.perLayer["key"] ?? []),
            ("value", report.fit.perLayer["value"] ?? []), ("logits", attention.logits), ("outputs", attention.outputs),
        ]
        for (name, got) in pairs {
            let expected = try #require(r[name] as? [Double])
            #expect(got.count == layers.count, "\(name)")
            for (g, e) in zip(got, expected) {
                let value = try #require(g)
                #expect(abs(value - e) <= 1e-4, "\(name): kvstat \(value), numpy \(e)")
            }
        }
        // Not zeros compared: rank 32 of 192 changes attention.
        #expect((r["outputs"] as! [Double]).allSatisfy { $0 > 0.1 })
    }

    /// The sweep's pca_pre_rope point, priced on pre-RoPE Grams, equals the direct fit's overall error (keys after
    /// RoPE against the dump's keys, and values) within float16 rounding; a post-RoPE fit's is larger.
    @Test func sweepPreRopePointEqualsTheFit() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        var options = FitOptions()
        options.keys = .preRope
        options.attentionQueries = 0
        options.layers = [0, 9, 18, 27]
        options.ladder = [0.25]
        let rungs = try PreRopeSweep.run(dump, options: options)
        #expect(rungs.map(\.method) == ["pca_pre_rope", "xkv_pre_rope"])
        let fitted = try LowRankFit.run(dump, options: options, version: "test", command: ["test"]).report
        let swept = try #require(rungs[0].fitError)
        let direct = try #require(fitted.fit.overall["all"] ?? nil)
        #expect(abs(swept - direct) <= 1e-4, "sweep \(swept), fit \(direct)")
        options.keys = nil
        let post = try LowRankFit.run(dump, options: options, version: "test", command: ["test"]).report
        #expect((post.fit.overall["all"] ?? nil).map { $0 > direct + 0.005 } == true)
        #expect(try PreRopeSweep.run(dump, options: options).isEmpty)
    }

    /// Overrides win over attributes and say so; a rotary dimension beyond head_dim is a usage error.
    @Test func overridesAndTheirSources() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        let (rope, sources) = try RotaryEmbedding.resolve(
            dump, overrides: RopeOverrides(theta: 10_000, style: .interleaved, rotaryDim: 32))
        #expect(rope == RotaryEmbedding(theta: 10_000, rotaryDim: 32, style: .interleaved))
        #expect(sources == ["theta": "--rope-theta", "style": "--rope-style", "rotary_dim": "--rotary-dim"])
        #expect(throws: DumpError.self) {
            try RotaryEmbedding.resolve(dump, overrides: RopeOverrides(rotaryDim: 128))
        }
        do {
            _ = try RotaryEmbedding.resolve(dump, overrides: RopeOverrides(rotaryDim: 128))
        } catch {
            #expect(error.category == .usage && error.message.contains("--rotary-dim"))
        }
    }
}
