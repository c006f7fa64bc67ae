// kvstat analyze's statistics against independent computations on the whole matrix: LAPACK sgesdd for
// spectra and subspaces, direct float64 formulas for CKA, cosine, kurtosis and the DCT; merge laws.
import Foundation
import HDF5Kit
import Testing

@testable import KVNumerics
@testable import KVStat

/// The bundled sample's matrices read by h5py (not by kvstat's reader): for every layer and kind of
/// `layers/{l}/{kind}` ([batch, heads, tokens, head_dim], `/lengths` valid tokens per sequence), the valid
/// (sequence, token) rows × heads·head_dim channels as raw float32, written once per test process.
enum SampleReference {
    static let script = """
        import sys, h5py, numpy as np
        out = sys.argv[2]
        with h5py.File(sys.argv[1], "r") as f:
            lengths = f["lengths"][()]
            for name in f["layers"]:
                for kind in f["layers"][name]:
                    x = f["layers"][name][kind][()].astype(np.float32)
                    rows = [x[b, :, :n, :].transpose(1, 0, 2).reshape(int(n), -1) for b, n in enumerate(lengths)]
                    np.concatenate(rows).astype("<f4").tofile(f"{out}/{name}_{kind}.f32")
        """

    static let directory: String = {
        let directory = NSTemporaryDirectory() + "kvstat-sample-reference-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, Fixtures.sample, directory]
        try? python.run()
        python.waitUntilExit()
        return directory
    }()

    /// Layer `layer`'s `kind` of the sample as a tokens × channels matrix.
    static func matrix(layer: Int, kind: TensorKind, channels: Int) throws -> Matrix<Float> {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(layer)_\(kind.rawValue).f32"))
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return Matrix(rows: values.count / channels, columns: channels, values: values)
    }
}

/// The energy effective rank of singular values `sigma` at level p, computed here rather than by `Spectrum`.
func referenceEffectiveRank(_ sigma: [Double], _ p: Double) -> Int {
    let total = sigma.reduce(0) { $0 + $1 * $1 }
    var running = 0.0
    for (i, s) in sigma.enumerated() {
        running += s * s
        if running >= p * total { return i + 1 }
    }
    return sigma.count
}

/// The whole (tokens × channels) matrix of one layer and kind: the bundled sample's from h5py (an independent
/// reader); any other dump's through kvstat's own reader (tests of the reader compare it with truth files).
func wholeMatrix(_ dump: Dump, layer: Int, kind: TensorKind) throws -> Matrix<Float> {
    if dump.path == Fixtures.sample {
        return try SampleReference.matrix(
            layer: layer, kind: kind, channels: dump.shape.heads(of: kind) * dump.shape.headDim)
    }
    let reader = try TokenBlockReader(dump: dump, layer: layer, kind: kind, blockTokens: 1 << 20)
    var values: [Float] = []
    try reader.forEachBlock { values.append(contentsOf: $0.values) }
    return Matrix(rows: values.count / reader.columns, columns: reader.columns, values: values)
}

func columnCentered(_ m: Matrix<Float>) -> Matrix<Double> {
    var d = Matrix<Double>(rows: m.rows, columns: m.columns, values: m.values.map(Double.init))
    for c in 0..<m.columns {
        let mean = (0..<m.rows).reduce(0.0) { $0 + d[$1, c] } / Double(m.rows)
        for r in 0..<m.rows { d[r, c] -= mean }
    }
    return d
}

func frobeniusSquared(_ m: Matrix<Double>) -> Double { m.values.reduce(0) { $0 + $1 * $1 } }

@Suite(.serialized) struct AnalysisTests {
    static let sample = Fixtures.sample
    /// The analysis of layers 0–2 of the sample, made once; a failure fails the tests that use it (as a thrown
    /// error), not the whole test process.
    static let analysis: Result<StatsReport, any Error> = Result {
        let dump = try Dump(path: sample)
        var options = AnalysisOptions()
        options.blockTokens = 100  // several blocks, crossing sequence boundaries
        options.layers = [0, 1, 2]
        return try StatsFinisher.finish(try Analyzer.accumulate(dump, options: options), version: "test")
    }

    static func report() throws -> StatsReport { try analysis.get() }

    /// σ within 1e-3 relative of sgesdd for σ ≥ 0.05 σ₁; effective ranks equal (±1 only at a rounding boundary).
    @Test(arguments: [TensorKind.key, .value, .query])
    func spectraMatchLAPACKOnRealSample(kind: TensorKind) throws {
        let dump = try Dump(path: Self.sample)
        for (li, layer) in [0, 1, 2].enumerated() {
            let x = try wholeMatrix(dump, layer: layer, kind: kind)
            let reference = try SingularValueDecomposition(x, computeVectors: false).values.map(Double.init)
            let stats = try #require(try Self.report().layers[li].kinds[kind])
            let ours = try #require(stats.singularValues)
            for (s, r) in zip(ours, reference) where r >= 0.05 * reference[0] {
                #expect(abs(s - r) <= 1e-3 * r, "layer \(layer) \(kind): σ \(s) vs \(r)")
            }
            for p in Spectrum.energyLevels {
                #expect(abs(stats.effectiveRank![SummaryKey.of(p)]! - referenceEffectiveRank(reference, p)) <= 1)
            }
            let stable = reference.reduce(0) { $0 + $1 * $1 } / (reference[0] * reference[0])
            #expect(abs(stats.stableRank! - stable) <= 1e-3 * stable)
            // Per-head spectra against the SVD of the head's own columns.
            let h = 5
            let d = dump.shape.headDim
            let head = Matrix<Float>(
                rows: x.rows, columns: d, values: (0..<x.rows).flatMap { r in (0..<d).map { x[r, h * d + $0] } })
            let headReference = try SingularValueDecomposition(head, computeVectors: false).values
            #expect(abs(stats.headSingularValues![h][0] - Double(headReference[0])) <= 1e-3 * Double(headReference[0]))
        }
    }

    /// CKA, mean cosine and both alignments within 1e-4 of the direct computation on whole matrices.
    @Test(arguments: [TensorKind.key, .value])
    func similarityMatchesDirectComputation(kind: TensorKind) throws {
        let dump = try Dump(path: Self.sample)
        let a = try wholeMatrix(dump, layer: 1, kind: kind)
        let b = try wholeMatrix(dump, layer: 2, kind: kind)
        let ca = columnCentered(a)
        let cb = columnCentered(b)
        let cross = BLAS.multiply(ca, cb, transposeA: true)
        let cka =
            frobeniusSquared(cross)
            / (frobeniusSquared(BLAS.multiply(ca, ca, transposeA: true)).squareRoot()
                * frobeniusSquared(BLAS.multiply(cb, cb, transposeA: true)).squareRoot())
        let s = try #require(try Self.report().pair(kind.rawValue, 1, 2))
        let ours = try #require(s.cka)
        #expect(abs(ours - cka) < 1e-4, "CKA \(ours) vs \(cka)")
        var cosine = 0.0
        for r in 0..<a.rows {
            var dot = 0.0
            var na = 0.0
            var nb = 0.0
            for c in 0..<a.columns {
                dot += Double(a[r, c]) * Double(b[r, c])
                na += Double(a[r, c] * a[r, c])
                nb += Double(b[r, c] * b[r, c])
            }
            cosine += dot / (na.squareRoot() * nb.squareRoot())
        }
        #expect(abs(try #require(s.cosine) - cosine / Double(a.rows)) < 1e-4)
        // Alignments from sgesdd's factors of the uncentred matrices.
        let r = 32
        let svdA = try SingularValueDecomposition(a, computeVectors: true)
        let svdB = try SingularValueDecomposition(b, computeVectors: true)
        var left = 0.0
        var right = 0.0
        for i in 0..<r {
            for j in 0..<r {
                var u = 0.0
                var v = 0.0
                for t in 0..<a.rows { u += Double(svdA.u![t, i]) * Double(svdB.u![t, j]) }
                for c in 0..<a.columns { v += Double(svdA.vt![i, c]) * Double(svdB.vt![j, c]) }
                left += u * u
                right += v * v
            }
        }
        let subspace = try #require(s.subspaceAlignment)
        let channel = try #require(s.channelAlignment)
        #expect(abs(subspace - left / Double(r)) < 1e-3, "subspace \(subspace) vs \(left / Double(r))")
        #expect(abs(channel - right / Double(r)) < 1e-3, "channel \(channel) vs \(right / Double(r))")
        // Adjacent pairs only by default.
        #expect(try Self.report().similarity[kind.rawValue]?.map { [$0.layerA, $0.layerB] } == [[0, 1], [1, 2]])
    }

    /// Kurtosis within 1e-3 relative and max |x| exact, against a float64 two-pass formula.
    @Test func channelMomentsMatchDirectFormula() throws {
        let dump = try Dump(path: Self.sample)
        let x = try wholeMatrix(dump, layer: 2, kind: .key)
        let channels = try #require(try Self.report().layers[2].kinds[.key]?.channels)
        for c in stride(from: 0, to: x.columns, by: 7) {
            let column = (0..<x.rows).map { Double(x[$0, c]) }
            let mean = column.reduce(0, +) / Double(x.rows)
            let m2 = column.reduce(0) { $0 + pow($1 - mean, 2) }
            let m4 = column.reduce(0) { $0 + pow($1 - mean, 4) }
            let kurtosis = Double(x.rows) * m4 / (m2 * m2)
            #expect(abs(channels.kurtosis[c]! - kurtosis) <= 1e-3 * kurtosis)
            #expect(channels.maxAbs[c] == column.map(abs).max()!)
            #expect(abs(channels.mean[c] - mean) <= 1e-5 * max(1, abs(mean)))
        }
    }

    /// Low-frequency energy fractions within 1e-4 of a direct orthonormal DCT-II of each sequence.
    @Test func frequencyEnergyMatchesDirectDCT() throws {
        let dump = try Dump(path: Self.sample)
        let x = try wholeMatrix(dump, layer: 0, kind: .value)
        var low = [Double](repeating: 0, count: 4)
        var total = 0.0
        var offset = 0
        for length in dump.tokenRuns.lengths {
            for c in 0..<x.columns {
                for k in 0..<length {
                    var y = 0.0
                    for t in 0..<length {
                        y += Double(x[offset + t, c]) * cos(Double.pi * Double(k) * (Double(t) + 0.5) / Double(length))
                    }
                    y *= k == 0 ? (1 / Double(length)).squareRoot() : (2 / Double(length)).squareRoot()
                    for (i, f) in FrequencyEnergy.fractions.enumerated() where k < Int(f * Double(length)) {
                        low[i] += y * y
                    }
                    total += y * y
                }
            }
            offset += length
        }
        let ours = try #require(try Self.report().layers[0].kinds[.value]?.frequency)
        for (i, f) in FrequencyEnergy.fractions.enumerated() {
            #expect(abs(ours.lowEnergy![SummaryKey.of(f)]! - low[i] / total) < 1e-4)
        }
    }

    /// A planted rank-5 matrix comes back with rank 5, and a planted sink and outlier channel are found.
    @Test func plantedStructureIsRecovered() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("planted-\(UUID().uuidString).h5")
        var rng = Xorshift(state: 11)
        let tokens = 300
        let heads = 2
        let headDim = 16
        let channels = heads * headDim
        let rank = 5
        let factors = (0..<(tokens * rank)).map { _ in rng.normal() }
        let basis = (0..<(rank * channels)).map { _ in rng.normal() }
        var x = [Float](repeating: 0, count: tokens * channels)
        for t in 0..<tokens {
            for c in 0..<channels {
                for k in 0..<rank { x[t * channels + c] += factors[t * rank + k] * basis[k * channels + c] }
            }
        }
        for c in 0..<channels { x[7 * channels + c] *= 40 }  // token 7: a sink
        // Stored [batch, heads, tokens, head_dim].
        var stored = [Float](repeating: 0, count: x.count)
        for t in 0..<tokens {
            for h in 0..<heads {
                for d in 0..<headDim { stored[(h * tokens + t) * headDim + d] = x[t * channels + h * headDim + d] }
            }
        }
        var noisy = stored
        for i in noisy.indices { noisy[i] += 0.01 * rng.normal() }
        for t in 0..<tokens { noisy[(1 * tokens + t) * headDim + 3] *= 50 }  // channel 1·16+3 = 19: an outlier
        do {
            let root = try HDF5Kit.HDF5File.create(url.path).root()
            for layer in 0..<2 {
                try root.writeDataset("layer_\(layer)/key", shape: [1, heads, tokens, headDim], values: stored)
                try root.writeDataset("layer_\(layer)/value", shape: [1, heads, tokens, headDim], values: noisy)
            }
        }
        defer { try? FileManager.default.removeItem(at: url) }
        let dump = try Dump(path: url.path)
        let report = try StatsFinisher.finish(
            try Analyzer.accumulate(dump, options: AnalysisOptions()), version: "test")
        let key = try #require(report.layers[0].kinds[.key])
        #expect(key.effectiveRank!["0.99"]! <= rank)
        // The Gram route squares the condition number: a zero σ comes back as about √(ε_float32) σ₁ ≈ 3e-4 σ₁.
        #expect(key.singularValues![rank] < 2e-3 * key.singularValues![0])
        #expect(key.tokenNorms!.sinks.first?.token == 7)
        let value = try #require(report.layers[1].kinds[.value])
        #expect(value.channels!.outliers!.contains(19))
        #expect(report.pair("key", 0, 1)!.subspaceAlignment! > 0.999)  // identical layers
        #expect(abs(report.pair("key", 0, 1)!.cka! - 1) < 1e-6)
    }

    /// merge(fold(A), fold(B)) == fold(A ++ B) for every accumulator, on real blocks.
    @Test func mergingHalvesEqualsTheWhole() throws {
        let dump = try Dump(path: Self.sample)
        let reader = try TokenBlockReader(dump: dump, layer: 3, kind: .key, blockTokens: 64)
        let other = try TokenBlockReader(dump: dump, layer: 4, kind: .key, blockTokens: 64)
        let c = reader.columns
        var whole = (
            GramAccumulator(channels: c), ChannelMoments(channels: c), TokenNormSketch(),
            CrossLayerAccumulator(layerA: 3, layerB: 4, channels: c)
        )
        var halves = [whole, whole]
        var blocksA: [[Float]] = []
        var blocksB: [[Float]] = []
        var runs: [ArraySlice<TokenRun>] = []
        try reader.forEachBlock {
            blocksA.append(Array($0.values))
            runs.append($0.runs)
        }
        try other.forEachBlock { blocksB.append(Array($0.values)) }
        for i in blocksA.indices {
            try blocksA[i].withUnsafeBufferPointer { pa in
                try blocksB[i].withUnsafeBufferPointer { pb in
                    let a = TokenBlock(
                        rows: pa.count / c, columns: c, values: pa, runs: runs[i], excludedRows: [], nonFiniteValues: 0)
                    let b = TokenBlock(
                        rows: pb.count / c, columns: c, values: pb, runs: runs[i], excludedRows: [], nonFiniteValues: 0)
                    let h = i < blocksA.count / 2 ? 0 : 1
                    whole.0.fold(a)
                    whole.1.fold(a)
                    whole.2.fold(a)
                    whole.3.fold(a, b)
                    halves[h].0.fold(a)
                    halves[h].1.fold(a)
                    halves[h].2.fold(a)
                    halves[h].3.fold(a, b)
                    _ = try #require(pa.count == pb.count)
                }
            }
        }
        var merged = halves[0]
        merged.0.merge(halves[1].0)
        merged.1.merge(halves[1].1)
        merged.2.merge(halves[1].2)
        merged.3.merge(halves[1].3)
        #expect(merged.0.count == whole.0.count)
        #expect(zip(merged.0.gram.values, whole.0.gram.values).allSatisfy { abs($0 - $1) <= 1e-9 * max(1, abs($1)) })
        #expect(zip(merged.1.kurtosis, whole.1.kurtosis).allSatisfy { abs($0! - $1!) <= 1e-6 * $1! })
        #expect(merged.1.maxAbs == whole.1.maxAbs)
        #expect(merged.2.histogram == whole.2.histogram && merged.2.largest == whole.2.largest)
        #expect(abs(merged.3.meanCosine! - whole.3.meanCosine!) < 1e-12)
        #expect(zip(merged.3.cross.values, whole.3.cross.values).allSatisfy { abs($0 - $1) <= 1e-9 * max(1, abs($1)) })
    }
}

/// stats.json keys for energy levels and fractions.
enum SummaryKey {
    static func of(_ value: Double) -> String { EnergyFraction.key(value) }
}

/// Deterministic standard-normal samples (xorshift64* + Box–Muller) for synthetic dumps.
struct Xorshift {
    var state: UInt64
    mutating func uniform() -> Float {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return Float((state &* 2_685_821_657_736_338_717) >> 40) / Float(1 << 24) + 1e-7
    }
    mutating func normal() -> Float { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
}
