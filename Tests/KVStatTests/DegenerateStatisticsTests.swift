// Degenerate data has documented results (docs/statistics.md, "Degenerate data"): zeros, constants, NaN
// layers, one token, and values near 1e20 or 1e-25, checked against numpy (float64 SVD, moments, CKA, DCT on
// the stored values) or against hand-derived answers. Also the power-of-two rescaling and the sparse norm
// histogram these results rest on.
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite(.serialized) struct DegenerateStatisticsTests {
    /// Writes the dumps and numpy's answers (reference.json) into argv[1].
    static let script = """
        import json, sys, h5py, numpy as np
        from scipy.fft import dct
        out = sys.argv[1]
        rng = np.random.default_rng(11)
        H, T, D = 2, 48, 8
        g = rng.standard_normal((2, T, H * D)) * np.linspace(0.5, 2.0, H * D)
        g[1] = 0.6 * g[0] + 0.8 * g[1]                      # layer 1 correlated with layer 0

        def write(name, layers, dtype="f4"):
            with h5py.File(f"{out}/{name}.h5", "w") as f:
                for i, x in enumerate(layers):
                    bhtd = np.asarray(x, dtype=np.float64).reshape(1, -1, H, D).transpose(0, 2, 1, 3).astype(dtype)
                    f[f"layers/{i}/key"] = bhtd
                    f[f"layers/{i}/value"] = bhtd

        def stored(x, dtype="f4"):
            return np.asarray(x, dtype=np.float64).astype(dtype).astype(np.float64)

        def cka(a, b):
            a = a - a.mean(0); b = b - b.mean(0)
            return float(np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))

        def facts(layers):
            result = []
            for x in layers:
                m = x.mean(0); d = x - m
                m2 = (d ** 2).sum(0); m4 = (d ** 4).sum(0)
                y = dct(x, type=2, norm="ortho", axis=0)
                e = (y ** 2).sum(1)
                result.append({"sigma": np.linalg.svd(x, compute_uv=False).tolist(),
                               "kurtosis": (len(x) * m4 / m2 ** 2).tolist(),
                               "median_norm": float(np.median(np.linalg.norm(x, axis=1))),
                               "low_eighth": float(e[: len(x) // 8].sum() / e.sum())})
            return {"layers": result, "cka": cka(layers[0], layers[1])}

        reference = {}
        for name, scale in (("base", 1.0), ("huge", 1e20), ("tiny", 1e-25)):
            write(name, g * scale)
            reference[name] = facts([stored(x * scale) for x in g])
        write("zeros", np.zeros_like(g), "f2")
        consts = np.linspace(-3, 3, H * D)
        write("const", [np.tile(consts, (T, 1)), np.tile(consts, (T, 1))])
        reference["const_frobenius"] = float(np.sqrt(T * (stored(consts) ** 2).sum()))
        write("nanlayer", [np.full((T, H * D), np.nan), g[1]])
        write("onetoken", [g[0][:1], g[1][:1]])
        uneven = g.copy()
        uneven[1][::2, 0] = np.nan                            # half the rows of layer 1 only
        write("unevennan", [uneven[0], uneven[1]])
        onechannel = g.copy()
        onechannel[:, :, 3] = np.nan                          # every row holds one NaN: every row is excluded
        write("nanchannel", [onechannel[0], onechannel[1]])
        reference["onetoken_norm"] = float(np.linalg.norm(stored(g[0][:1])))
        json.dump(reference, open(f"{out}/reference.json", "w"))
        """

    struct Reference: Decodable {
        struct Layer: Decodable {
            var sigma: [Double]
            var kurtosis: [Double]
            var median_norm: Double
            var low_eighth: Double
        }
        struct Facts: Decodable {
            var layers: [Layer]
            var cka: Double
        }
        var base: Facts, huge: Facts, tiny: Facts
        var const_frobenius: Double
        var onetoken_norm: Double
    }

    static let directory: String = {
        let directory = NSTemporaryDirectory() + "kvstat-degenerate-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, directory]
        try? python.run()
        python.waitUntilExit()
        return directory
    }()

    static func analyze(_ name: String, center: Bool = false) throws -> StatsReport {
        var options = AnalysisOptions()
        options.center = center
        options.blockTokens = 20  // several blocks
        return try StatsFinisher.finish(
            try Analyzer.accumulate(try Dump(path: "\(directory)/\(name).h5"), options: options), version: "test")
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(
            Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory)/reference.json")))
    }

    @Test func zeroTensorHasZeroRanksAndNullRatios() throws {
        let report = try Self.analyze("zeros")
        for layer in report.layers {
            let s = try #require(layer.kinds[.key])
            #expect(s.singularValues == [Double](repeating: 0, count: 16))
            #expect(s.effectiveRank == ["0.9": 0, "0.95": 0, "0.99": 0])
            #expect(s.stableRank == nil && s.entropyRank == nil)
            let channels = try #require(s.channels)
            #expect(channels.kurtosis.allSatisfy { $0 == nil })
            #expect(channels.outliers == nil && channels.maxAbs.allSatisfy { $0 == 0 })
            #expect(s.tokenNorms?.medianNorm == nil && s.tokenNorms?.sinks.isEmpty == true)
            #expect(s.frequency?.lowEnergy == nil && s.frequency?.spectrum == nil)
            #expect(s.notes.contains { $0.hasPrefix("every value is zero") })
        }
        let pair = try #require(report.similarity["key"]?.first)
        #expect(pair.cka == nil && pair.cosine == nil && pair.subspaceAlignment == nil && pair.channelAlignment == nil)
        // The JSON carries explicit nulls, not 0 and not missing keys.
        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(report)) as! [String: Any]
        let key = ((json["layers"] as! [[String: Any]])[0]["key"] as! [String: Any])
        #expect(key["stable_rank"] is NSNull && key["entropy_rank"] is NSNull)
    }

    /// Per-channel constants c: X = 1cᵀ has σ₁ = ‖X‖_F = √T·‖c‖ and no other; no spread, so kurtosis and CKA
    /// are undefined; centred, it is the zero matrix.
    @Test func constantChannels() throws {
        let reference = try Self.reference()
        let s = try #require(try Self.analyze("const").layers[0].kinds[.key])
        let sigma = try #require(s.singularValues)
        #expect(abs(sigma[0] - reference.const_frobenius) <= 1e-6 * reference.const_frobenius)
        #expect(sigma.dropFirst().allSatisfy { $0 <= 3e-4 * sigma[0] })  // the Gram route's rounding floor
        #expect(s.effectiveRank?["0.99"] == 1)
        #expect(s.channels?.kurtosis.allSatisfy { $0 == nil } == true)
        #expect(try Self.analyze("const").similarity["key"]?.first?.cka == nil)
        let centred = try #require(try Self.analyze("const", center: true).layers[0].kinds[.key])
        #expect(centred.singularValues?.allSatisfy { $0 <= 1e-6 * reference.const_frobenius } == true)
    }

    @Test func allNaNLayerIsAnEmptyMatrixAndLeavesOthersAlone() throws {
        let report = try Self.analyze("nanlayer")
        let bad = try #require(report.layers[0].kinds[.key])
        #expect(bad.tokens == 0 && bad.nonFinite == 48 * 16)
        #expect(bad.singularValues?.allSatisfy { $0 == 0 } == true && bad.stableRank == nil)
        #expect(bad.channels == nil && bad.tokenNorms?.medianNorm == nil && bad.frequency?.lowEnergy == nil)
        let good = try #require(report.layers[1].kinds[.key])
        #expect(good.tokens == 48 && good.stableRank != nil)
        #expect(report.similarity["key"]?.first?.cka == nil)
    }

    /// Values near 1e20 and 1e-25 (float32 squares overflow or underflow) give numpy's float64 answers.
    @Test(arguments: ["base", "huge", "tiny"])
    func hugeAndTinyValuesMatchNumpy(name: String) throws {
        let reference = try Self.reference()
        let facts = name == "huge" ? reference.huge : name == "tiny" ? reference.tiny : reference.base
        let report = try Self.analyze(name)
        for (i, layer) in report.layers.enumerated() {
            let s = try #require(layer.kinds[.key])
            let expected = facts.layers[i]
            let sigma = try #require(s.singularValues)
            for (ours, theirs) in zip(sigma, expected.sigma) where theirs >= 0.05 * expected.sigma[0] {
                #expect(abs(ours - theirs) <= 1e-4 * theirs, "\(name) σ \(ours) vs \(theirs)")
            }
            for (ours, theirs) in zip(try #require(s.channels?.kurtosis), expected.kurtosis) {
                let k = try #require(ours)
                #expect(abs(k - theirs) <= 1e-3 * theirs, "\(name) kurtosis \(k) vs \(theirs)")
            }
            // The sketch's median is the centre of a 2^(1/64) bin: within 1.1 %.
            let median = try #require(s.tokenNorms?.medianNorm)
            #expect(
                abs(median / expected.median_norm - 1) <= 0.011 + 0.05,
                "\(name) median \(median) vs \(expected.median_norm)")
            let low = try #require(s.frequency?.lowEnergy?[EnergyFraction.key(0.125)])
            #expect(abs(low - expected.low_eighth) <= 1e-4)
        }
        let cka = try #require(report.similarity["key"]?.first?.cka)
        #expect(abs(cka - facts.cka) <= 1e-4)
    }

    /// Rows excluded in one layer of a pair but not the other: the pair's CKA and alignments would mix two row
    /// sets, so they are null with a note; a NaN in one channel of every row excludes every row from the DCT too.
    @Test func unevenExclusionsAndWholeRowExclusion() throws {
        let pair = try #require(try Self.analyze("unevennan").similarity["key"]?.first)
        #expect(pair.cka == nil && pair.subspaceAlignment == nil && pair.note?.contains("24 token rows") == true)
        #expect(pair.cosine != nil)
        let s = try #require(try Self.analyze("nanchannel").layers[0].kinds[.key])
        #expect(s.tokens == 0 && s.frequency?.lowEnergy == nil && s.frequency?.spectrum == nil)
    }

    @Test func oneTokenHasRankOne() throws {
        let reference = try Self.reference()
        let s = try #require(try Self.analyze("onetoken").layers[0].kinds[.key])
        #expect(abs((s.singularValues?[0] ?? 0) - reference.onetoken_norm) <= 1e-5 * reference.onetoken_norm)
        #expect(s.effectiveRank?["0.9"] == 1 && s.channels?.kurtosis.allSatisfy { $0 == nil } == true)
    }

    @Test func fitOnZeroEnergyHasNullErrorsWithNotes() throws {
        let dump = try Dump(path: "\(Self.directory)/zeros.h5")
        for method in FitMethod.allCases {
            var options = FitOptions()
            options.method = method
            options.window = 4
            let result = try LowRankFit.run(dump, options: options, version: "test", command: [])
            #expect(result.report.fit.overall["all"]! == nil, "\(method)")
            #expect(result.report.fit.perLayer["key"]!.allSatisfy { $0 == nil })
            #expect(result.report.notes.contains { $0.contains("zero energy") })
            let sweep = try LowRankSweep.run(dump, options: options)
            #expect(sweep.allSatisfy { $0.fitError == nil })
        }
    }

    /// The fit error is scale-free: 1e20·X fits exactly as X does.
    @Test func fitOnHugeValuesEqualsFitOnScaledValues() throws {
        let base = try LowRankFit.run(
            try Dump(path: "\(Self.directory)/base.h5"), options: FitOptions(), version: "test", command: [])
        for name in ["huge", "tiny"] {
            let scaled = try LowRankFit.run(
                try Dump(path: "\(Self.directory)/\(name).h5"), options: FitOptions(), version: "test", command: [])
            let a = try #require(base.report.fit.overall["all"] ?? nil)
            let b = try #require(scaled.report.fit.overall["all"] ?? nil)
            #expect(abs(a - b) <= 1e-4, "\(name): \(b) vs \(a)")
        }
    }

    @Test func powerOfTwoScaleIsExactAndLeavesOrdinaryBlocksAlone() {
        #expect(PowerOfTwoScale(maxMagnitude: 3.5).isIdentity)
        #expect(PowerOfTwoScale(maxMagnitude: 0).isIdentity)
        let huge = PowerOfTwoScale(maxMagnitude: 1e20)
        #expect(!huge.isIdentity && (1e20 * huge.factor) >= 1 && (1e20 * huge.factor) < 2)
        let values: [Float] = [1e20, -3e19, 7.25e18]
        var scaled = [Float](repeating: 0, count: 3)
        values.withUnsafeBufferPointer { v in scaled.withUnsafeMutableBufferPointer { huge.apply(v, into: $0) } }
        for (x, y) in zip(values, scaled) { #expect(Double(y) * huge.undo(power: 1) == Double(x)) }
        let tiny = PowerOfTwoScale(maxMagnitude: 1e-25)
        #expect(
            tiny.exponent > 0
                && tiny.undo(power: 2) == Double(sign: .plus, exponent: -2 * tiny.exponent, significand: 1))
    }

    /// Norms from 1e-30 to 1e30 land in the sparse histogram; merge adds it; the median is within one bin.
    @Test func normSketchCoversEveryFloat32NormAndMerges() {
        var a = TokenNormSketch()
        var b = TokenNormSketch()
        var whole = TokenNormSketch()
        let norms = (0..<200).map { pow(10.0, -30 + 60 * Double($0) / 199) }
        for (i, norm) in norms.enumerated() {
            let entry = TokenNormSketch.Entry(sequence: 0, token: i, norm: norm)
            whole.add(entry)
            if i % 2 == 0 { a.add(entry) } else { b.add(entry) }
        }
        a.merge(b)
        #expect(a.histogram == whole.histogram && a.count == 200 && a.largest == whole.largest)
        let exact = (norms[99] * norms[100]).squareRoot()
        let median = a.median!
        #expect(abs(log2(median / exact)) <= 2 / 64 + abs(log2(norms[100] / norms[99])))
        #expect(whole.histogram.count == 200)  // sparse: one bin per distinct octave sixty-fourth here
        #expect(TokenNormSketch().median == nil)
    }
}
