// fit-lowrank against independent computations: Eckart–Young errors from sgesdd on the whole matrix, xKV's
// group against an SVD of the concatenated layers, exact recovery of planted ranks, orthonormal bases,
// matryoshka allocation against uniform ranks, CSKV's window and quantization, and the Gram-priced sweep
// against the direct evaluation.
import Foundation
import HDF5Kit
import Testing

@testable import KVNumerics
@testable import KVStat

/// A dump with planted structure: 4 layers, 2 heads × 16 dims, 2 sequences of 200 tokens. Keys of every layer
/// share one rank-4 token-side latent (K_l = Z B_l, so the 4 layers side by side have rank 4 too); values
/// have rank 6 per layer with independent latents.
struct PlantedDump {
    static let layers = 4, heads = 2, headDim = 16, sequences = 2, tokens = 200
    static let keyRank = 4, valueRank = 6
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("planted-fit-\(UUID().uuidString).h5").path
        var rng = Xorshift(state: 29)
        let channels = Self.heads * Self.headDim
        let rows = Self.sequences * Self.tokens
        func lowRank(_ latent: [Float], rank: Int) -> [Float] {
            let basis = (0..<(rank * channels)).map { _ in rng.normal() }
            var x = [Float](repeating: 0, count: rows * channels)
            for t in 0..<rows {
                for c in 0..<channels {
                    for k in 0..<rank { x[t * channels + c] += latent[t * rank + k] * basis[k * channels + c] }
                }
            }
            return x
        }
        // [batch, heads, tokens, head_dim] from rows (sequence-major) × channels.
        func stored(_ x: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: x.count)
            for b in 0..<Self.sequences {
                for t in 0..<Self.tokens {
                    for h in 0..<Self.heads {
                        for d in 0..<Self.headDim {
                            out[((b * Self.heads + h) * Self.tokens + t) * Self.headDim + d] =
                                x[(b * Self.tokens + t) * channels + h * Self.headDim + d]
                        }
                    }
                }
            }
            return out
        }
        let shared = (0..<(rows * Self.keyRank)).map { _ in rng.normal() }
        let root = try HDF5File.create(path).root()
        for layer in 0..<Self.layers {
            let shape = [Self.sequences, Self.heads, Self.tokens, Self.headDim]
            try root.writeDataset(
                "layer_\(layer)/key", shape: shape, values: stored(lowRank(shared, rank: Self.keyRank)))
            let own = (0..<(rows * Self.valueRank)).map { _ in rng.normal() }
            try root.writeDataset(
                "layer_\(layer)/value", shape: shape, values: stored(lowRank(own, rank: Self.valueRank)))
        }
    }
}

@Suite(.serialized) struct LowRankFitTests {
    static let sample = Fixtures.sample

    static func fit(_ path: String, _ configure: (inout FitOptions) -> Void) throws -> LowRankFitResult {
        var options = FitOptions()
        options.blockTokens = 128
        configure(&options)
        return try LowRankFit.run(try Dump(path: path), options: options, version: "test", command: ["test"])
    }

    /// With --holdout 0, pca's error is the truncated-SVD (Eckart–Young) error of the dump, within 1e-4.
    @Test(arguments: [TensorKind.key, .value])
    func pcaErrorIsTheEckartYoungOptimum(kind: TensorKind) throws {
        let rank = 24
        let result = try Self.fit(Self.sample) {
            $0.budget = .rank(rank)
            $0.layers = [0, 1, 2]
        }
        let dump = try Dump(path: Self.sample)
        for (i, layer) in [0, 1, 2].enumerated() {
            let sigma = try SingularValueDecomposition(
                try wholeMatrix(dump, layer: layer, kind: kind), computeVectors: false
            ).values.map(Double.init)
            let total = sigma.reduce(0) { $0 + $1 * $1 }
            let optimum = (sigma.dropFirst(rank).reduce(0) { $0 + $1 * $1 } / total).squareRoot()
            let ours = try #require(result.report.fit.perLayer[kind.rawValue]?[i] ?? nil)
            #expect(abs(ours - optimum) <= 1e-4, "layer \(layer) \(kind): \(ours) vs Eckart–Young \(optimum)")
        }
        #expect(result.report.memoryRatio == Double(rank) / 384)
    }

    /// Every method's bases are orthonormal: PᵀP = I within 1e-5.
    @Test(arguments: FitMethod.allCases)
    func projectionsAreOrthonormal(method: FitMethod) throws {
        let result = try Self.fit(Self.sample) {
            $0.method = method
            $0.layers = [0, 1, 2, 3]
            $0.center = method == .pca
        }
        #expect(!result.projections.isEmpty)
        for p in result.projections {
            let b = Matrix<Double>(rows: p.dimension, columns: p.rank, values: p.basis.values.map(Double.init))
            let gram = BLAS.multiply(b, b, transposeA: true)
            for i in 0..<p.rank { for j in 0..<p.rank { #expect(abs(gram[i, j] - (i == j ? 1 : 0)) <= 1e-5) } }
        }
    }

    /// At the planted rank, pca (per layer and per head) and xKV (one projection for all four layers)
    /// reconstruct exactly; one rank below, they do not.
    @Test func plantedRanksAreRecoveredExactly() throws {
        let planted = try PlantedDump()
        defer { try? FileManager.default.removeItem(atPath: planted.path) }
        let pca = try Self.fit(planted.path) { $0.budget = .rank(PlantedDump.valueRank) }
        #expect(pca.report.fit.overall["all"]!! < 1e-3)
        let xkv = try Self.fit(planted.path) {
            $0.method = .xkv
            $0.budget = .rank(PlantedDump.keyRank)
            $0.groupSize = 4
        }
        #expect(xkv.report.fit.overall["key"]!! < 1e-3)
        #expect(xkv.report.layerGroups == [[0, 1, 2, 3]])
        let short = try Self.fit(planted.path) {
            $0.method = .xkv
            $0.budget = .rank(PlantedDump.keyRank - 1)
        }
        #expect(short.report.fit.overall["key"]!! > 0.05)
        // Energy budget: 99.99 % of the energy needs exactly the planted rank.
        let energy = try Self.fit(planted.path) { $0.budget = .energy(0.9999) }
        for unit in energy.report.units {
            #expect(unit.rank == (unit.kind == "key" ? PlantedDump.keyRank : PlantedDump.valueRank))
        }
    }

    /// xKV's group: the fixed error equals the truncated SVD of the group's layers side by side (sgesdd).
    @Test func xkvGroupMatchesSVDOfConcatenatedLayers() throws {
        let rank = 40
        let result = try Self.fit(Self.sample) {
            $0.method = .xkv
            $0.budget = .rank(rank)
            $0.groupSize = 2
            $0.layers = [2, 3]
        }
        let dump = try Dump(path: Self.sample)
        let a = try wholeMatrix(dump, layer: 2, kind: .value)
        let b = try wholeMatrix(dump, layer: 3, kind: .value)
        var joined = Matrix<Float>(rows: a.rows, columns: a.columns + b.columns)
        for r in 0..<a.rows {
            for c in 0..<a.columns {
                joined[r, c] = a[r, c]
                joined[r, a.columns + c] = b[r, c]
            }
        }
        let sigma = try SingularValueDecomposition(joined, computeVectors: false).values.map(Double.init)
        let optimum = (sigma.dropFirst(rank).reduce(0) { $0 + $1 * $1 } / sigma.reduce(0) { $0 + $1 * $1 }).squareRoot()
        let online = try #require(result.report.online?.first { $0.kind == "value" })
        #expect(abs(online.fixedError! - optimum) <= 1e-4)
        // The online optimum stores both factors: r' = ⌊T·r / (T + G·C)⌋.
        #expect(online.onlineRank == (452 * rank) / (452 + 768))
        #expect(result.projections.first { $0.kind == .value }?.dimension == 768)
    }

    /// The matryoshka allocation is never worse than the same budget spread uniformly over heads.
    @Test(arguments: [0.125, 0.25, 0.5])
    func matryoshkaIsNoWorseThanUniform(keepRatio: Double) throws {
        let nested = try Self.fit(Self.sample) {
            $0.method = .matryoshka
            $0.budget = .keepRatio(keepRatio)
            $0.layers = [0, 1, 2]
        }
        let uniform = try Self.fit(Self.sample) {
            $0.granularity = .head
            $0.budget = .keepRatio(keepRatio)
            $0.layers = [0, 1, 2]
        }
        #expect(abs(nested.report.memoryRatio - uniform.report.memoryRatio) < 1e-9)
        #expect(nested.report.fit.overall["all"]!! <= uniform.report.fit.overall["all"]!! + 1e-9)
        // Every rung is a prefix of the stored columns, and the ladder's errors fall as the budget grows.
        let ladder = try #require(nested.report.ladder)
        for (lower, higher) in zip(ladder, ladder.dropFirst()) { #expect(higher.fitError! < lower.fitError!) }
        for (unit, p) in zip(nested.report.units, nested.projections) {
            #expect(unit.rank <= p.rank && unit.storedRank == p.rank)
        }
    }

    /// CSKV: a window covering every sequence costs full memory and loses nothing; quantized latents cost
    /// less memory and add error; the memory accounting follows the documented formula.
    @Test func cskvWindowAndQuantization() throws {
        let all = try Self.fit(Self.sample) {
            $0.method = .cskv
            $0.window = 200
            $0.layers = [0]
        }
        #expect(all.report.fit.overall["all"]!! == 0)
        #expect(abs(all.report.memoryRatio - 1) < 1e-12)
        let plain = try Self.fit(Self.sample) {
            $0.method = .cskv
            $0.window = 16
            $0.budget = .rank(96)
            $0.layers = [0]
        }
        let int8 = try Self.fit(Self.sample) {
            $0.method = .cskv
            $0.window = 16
            $0.budget = .rank(96)
            $0.quantization = .int8
            $0.layers = [0]
        }
        let int4 = try Self.fit(Self.sample) {
            $0.method = .cskv
            $0.window = 16
            $0.budget = .rank(96)
            $0.quantization = .int4
            $0.layers = [0]
        }
        #expect(plain.report.fit.overall["all"]!! < int8.report.fit.overall["all"]!!)
        #expect(int8.report.fit.overall["all"]!! < int4.report.fit.overall["all"]!!)
        #expect(int4.report.memoryRatio < int8.report.memoryRatio && int8.report.memoryRatio < plain.report.memoryRatio)
        // 3 sequences (192, 150, 110 tokens), 16 window tokens each at 768 units (keys + values), the rest
        // at 96 latent dims per kind: keys int8 = 96/2 + 2·96/32, values = 96/2 + 2·⌈96/32⌉.
        let latent = (48.0 + 6) + (48.0 + 6)
        let expected = (3 * 16 * 768.0 + (452 - 48) * latent) / (452 * 768)
        #expect(abs(int8.report.memoryRatio - expected) < 1e-12)
    }

    /// The sweep prices every rung from Grams (a prefix of one fit at the widest rung); its points equal
    /// direct fits and evaluations at that budget.
    @Test func sweepMatchesDirectEvaluation() throws {
        var options = FitOptions()
        options.layers = [0, 1, 2, 3]
        options.ladder = [0.125, 0.25]
        options.window = 32
        options.blockTokens = 128
        let rungs = try LowRankSweep.run(try Dump(path: Self.sample), options: options)
        let quantized = QuantizationSweep.schemes(ladder: options.ladder, quantGroup: options.quantGroup).map(\.name)
        #expect(
            Set(rungs.map(\.method))
                == Set(FitMethod.allCases.map(\.rawValue) + [LowRankSweep.nullMethod] + quantized))
        // The sweep's quantized cskv points rebuild as `--method cskv --quant int4` does (the same basis up to the
        // eigensolver's rounding, quantizer and groups; the sweep's memory counts the groups exactly, the fit's
        // per token).
        let int4 = try Self.fit(Self.sample) {
            $0.method = .cskv
            $0.layers = [0, 1, 2, 3]
            $0.budget = .keepRatio(0.125)
            $0.window = 32
            $0.quantization = .int4
            $0.blockTokens = 128
        }
        let sweptInt4 = try #require(rungs.first { $0.method == "cskv-int4" && $0.keepRatio == 0.125 })
        #expect(abs(sweptInt4.fitError! - int4.report.fit.overall["all"]!!) <= 1e-5)
        #expect(abs(sweptInt4.memoryRatio - int4.report.memoryRatio) <= 0.01)
        for method in FitMethod.allCases {
            let direct = try Self.fit(Self.sample) {
                $0.method = method
                $0.layers = [0, 1, 2, 3]
                $0.budget = .keepRatio(0.125)
                $0.window = 32
            }
            let rung = try #require(rungs.first { $0.method == method.rawValue && $0.keepRatio == 0.125 })
            #expect(
                abs(rung.fitError! - direct.report.fit.overall["all"]!!) <= 1e-5,
                "\(method): \(rung.fitError!) vs \(direct.report.fit.overall["all"]!!)")
            #expect(abs(rung.memoryRatio - direct.report.memoryRatio) <= 1e-12)
        }
    }

    /// Attention-level errors against a direct computation: the last token of each sequence attends to all
    /// of its keys (no mask), logits and softmax outputs from the whole matrices and K̂ = KPPᵀ, V̂ = VPPᵀ.
    @Test func attentionErrorsMatchDirectComputation() throws {
        let result = try Self.fit(Self.sample) {
            $0.budget = .rank(64)
            $0.layers = [1]
            $0.attentionQueries = 1
            $0.causal = false
        }
        let attention = try #require(result.report.attention)
        let dump = try Dump(path: Self.sample)
        let q = try wholeMatrix(dump, layer: 1, kind: .query)
        let k = try wholeMatrix(dump, layer: 1, kind: .key)
        let v = try wholeMatrix(dump, layer: 1, kind: .value)
        func rebuilt(_ x: Matrix<Float>, _ kind: TensorKind) -> Matrix<Double> {
            let p = result.projections.first { $0.kind == kind }!
            let b = Matrix<Double>(rows: p.dimension, columns: p.rank, values: p.basis.values.map(Double.init))
            let xd = Matrix<Double>(rows: x.rows, columns: x.columns, values: x.values.map(Double.init))
            return BLAS.multiply(BLAS.multiply(xd, b), b, transposeB: true)
        }
        let kHat = rebuilt(k, .key)
        let vHat = rebuilt(v, .value)
        let d = 32
        let heads = 12
        let scale = 1 / Double(d).squareRoot()
        var logit = (0.0, 0.0)
        var output = (0.0, 0.0)
        var start = 0
        for length in [192, 150, 110] {
            let last = start + length - 1
            for h in 0..<heads {
                var exact = [Double]()
                var approx = [Double]()
                for t in start..<(start + length) {
                    exact.append(
                        scale * (0..<d).reduce(0.0) { $0 + Double(q[last, h * d + $1]) * Double(k[t, h * d + $1]) })
                    approx.append(
                        scale * (0..<d).reduce(0.0) { $0 + Double(q[last, h * d + $1]) * kHat[t, h * d + $1] })
                }
                for (a, b) in zip(exact, approx) {
                    logit.0 += (a - b) * (a - b)
                    logit.1 += a * a
                }
                func softmax(_ s: [Double]) -> [Double] {
                    let m = s.max()!
                    let e = s.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    return e.map { $0 / z }
                }
                let w = softmax(exact)
                let wh = softmax(approx)
                for j in 0..<d {
                    let o = (0..<length).reduce(0.0) { $0 + w[$1] * Double(v[start + $1, h * d + j]) }
                    let oh = (0..<length).reduce(0.0) { $0 + wh[$1] * vHat[start + $1, h * d + j] }
                    output.0 += (o - oh) * (o - oh)
                    output.1 += o * o
                }
            }
            start += length
        }
        #expect(abs(attention.logits[0]! - (logit.0 / logit.1).squareRoot()) <= 1e-4)
        #expect(abs(attention.outputs[0]! - (output.0 / output.1).squareRoot()) <= 1e-4)
        #expect(attention.logits[0]! > 0.01)  // rank 64 of 384 is lossy: the comparison is not of zeros
        // Full rank loses nothing.
        let full = try Self.fit(Self.sample) {
            $0.budget = .rank(384)
            $0.layers = [1]
            $0.attentionQueries = 8
        }
        #expect(full.report.attention!.logits[0]! < 1e-4 && full.report.attention!.outputs[0]! < 1e-4)
    }

    /// Held-out evaluation fits on the first sequences and evaluates on the last.
    @Test func holdoutSplitsSequences() throws {
        let result = try Self.fit(Self.sample) {
            $0.holdout = 0.34
            $0.layers = [0]
        }
        #expect(result.report.fit.tokens == 192 && result.report.heldOut?.tokens == 260)
        #expect(result.report.heldOut!.overall["all"]!! > result.report.fit.overall["all"]!!)
        #expect(throws: DumpError.self) { try FitSplit(TokenRuns(lengths: [10]), holdout: 1.5) }
        let single = try FitSplit(TokenRuns(lengths: [100]), holdout: 0.25)
        #expect(single.fit.totalTokens == 75 && single.eval.runs.first?.start == 75)
    }
}
