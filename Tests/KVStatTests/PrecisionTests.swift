// The same activations stored as float32 and as float16 (h5py's correctly rounded halves) give the same
// statistics within float16 rounding: singular values within Weyl's bound ‖X₁₆ − X₃₂‖_F, everything else
// within tolerances set by the half-precision unit roundoff 2⁻¹¹.
import Foundation
import Testing

@testable import KVStat

@Suite(.serialized) struct PrecisionTests {
    /// Writes DIR/f32.h5 and DIR/f16.h5 from one float32 tensor set (low rank + noise, an outlier channel, a
    /// sink token) and DIR/delta.json with ‖X₁₆ − X₃₂‖_F per "layer/kind".
    static let script = """
        import json, sys, h5py, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(5)
        L, H, T, D = 3, 4, 700, 32
        deltas = {}
        files = {dt: h5py.File(f"{out}/{dt}.h5", "w") for dt in ("f32", "f16")}
        for f in files.values():
            f.attrs["kvstat_format"] = "kvstat.dump/1"
        for l in range(L):
            for kind, rank in (("key", 6), ("value", 20)):
                z = rng.standard_normal((T, rank)) @ rng.standard_normal((rank, H * D)) / np.sqrt(rank)
                x = (z + 0.05 * rng.standard_normal((T, H * D))).astype(np.float32)
                x[:, 5] *= 12.0          # an outlier channel
                x[0] *= 20.0             # a sink token
                bhtd = x.reshape(1, T, H, D).transpose(0, 2, 1, 3)
                x16 = bhtd.astype(np.float16)
                deltas[f"{l}/{kind}"] = float(np.linalg.norm(x16.astype(np.float64) - bhtd.astype(np.float64)))
                for dt, data in (("f32", bhtd), ("f16", x16)):
                    d = files[dt].create_dataset(f"layers/{l}/{kind}", data=data)
                    d.attrs["axes"] = "bhtd"
        for f in files.values():
            f.close()
        json.dump(deltas, open(f"{out}/delta.json", "w"))
        """

    @Test func float16AndFloat32DumpsAgreeWithinHalfRounding() throws {
        let directory = NSTemporaryDirectory() + "kvstat-precision-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, directory]
        try process.run()
        process.waitUntilExit()
        try #require(
            process.terminationStatus == 0, "python3 with h5py and numpy is needed (scripts/setup.sh installs them)")
        let deltas = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/delta.json")))
                as? [String: Double])

        var options = AnalysisOptions()
        options.blockTokens = 256
        let half = try Dump(path: directory + "/f16.h5")
        let single = try Dump(path: directory + "/f32.h5")
        #expect(half.format == .float16 && single.format == .float32)
        let a = try StatsFinisher.finish(try Analyzer.accumulate(half, options: options), version: "test")
        let b = try StatsFinisher.finish(try Analyzer.accumulate(single, options: options), version: "test")
        let u = 1.0 / 2048  // float16 unit roundoff
        for (la, lb) in zip(a.layers, b.layers) {
            for kind in [TensorKind.key, .value] {
                let sa = try #require(la.kinds[kind])
                let sb = try #require(lb.kinds[kind])
                let delta = try #require(deltas["\(la.layer)/\(kind.rawValue)"])
                let va = try #require(sa.singularValues)
                let vb = try #require(sb.singularValues)
                #expect(delta > 0, "the float16 copy must differ from the float32 data")
                // Weyl: |σᵢ(A) − σᵢ(B)| ≤ ‖A − B‖₂ ≤ ‖A − B‖_F, plus float32 accumulation slack.
                for (x, y) in zip(va, vb) {
                    #expect(abs(x - y) <= delta + 1e-5 * vb[0], "layer \(la.layer) \(kind): σ \(x) vs \(y)")
                }
                #expect(abs(sa.stableRank! - sb.stableRank!) <= 4 * u * sb.stableRank!)
                let ma = try #require(sa.channels?.maxAbs)
                let mb = try #require(sb.channels?.maxAbs)
                for (x, y) in zip(ma, mb) { #expect(abs(x - y) <= u * y) }
                #expect(sa.channels?.outliers == sb.channels?.outliers)
                let ka = try #require(sa.channels?.kurtosis)
                let kb = try #require(sb.channels?.kurtosis)
                for (x, y) in zip(ka, kb) { #expect(abs(x! - y!) <= 8 * u * y!) }
                #expect(sa.tokenNorms?.sinks.map(\.token) == [0] && sb.tokenNorms?.sinks.map(\.token) == [0])
                for (key, x) in try #require(sa.frequency?.lowEnergy) {
                    #expect(abs(x - (sb.frequency?.lowEnergy?[key] ?? -1)) <= 4 * u)
                }
            }
        }
        for kind in ["key", "value"] {
            let sa = try #require(a.similarity[kind])
            let sb = try #require(b.similarity[kind])
            #expect(sa.count == sb.count)
            for (pa, pb) in zip(sa, sb) {
                for (x, y) in [(pa.cosine, pb.cosine), (pa.cka, pb.cka), (pa.subspaceAlignment, pb.subspaceAlignment)] {
                    let (x, y) = (try #require(x), try #require(y))
                    #expect(abs(x - y) <= 4 * u, "\(kind): \(x) vs \(y)")
                }
            }
        }
    }
}
