// `kvstat fit-lowrank --keys pre-rope` through the built binary on the SmolLM2 sample: the summary line, the
// manifest's `rope`, fit.csv's key rows, sweep.csv's pre-RoPE points, and `kvstat eval` of the artifact.
import Foundation
import KVStat
import Testing

@Suite struct PreRopeCLITests {
    static let smollm2 = CLI.repository.appendingPathComponent("notebooks-data/smollm2-sample.h5").path

    @Test func preRopeFitSweepAndEvalOfTheSample() throws {
        let folder = FitCLITests.directory("prerope")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fit = try CLI.run([
            "fit-lowrank", Self.smollm2, "--keys", "pre-rope", "--layers", "0,27", "--sweep", "--ladder", "0.25",
            "--attention-queries", "4", "-o", folder,
        ])
        try #require(fit.status == 0, "\(fit.stderr)")
        #expect(fit.stderr.contains("kvstat: pre-RoPE keys (RoPE θ 100000.0, rotate-half, rotary_dim 64): key error"))
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: folder + "/manifest.json")))
        let root = try #require(manifest as? [String: Any])
        #expect((root["options"] as? [String: Any])?["keys"] as? String == "pre-rope")
        let rope = try #require(root["rope"] as? [String: Any])
        #expect(rope["theta"] as? Double == 100_000 && rope["reference"] as? String == "key")
        #expect((rope["sources"] as? [String: String])?["theta"] == "dump attribute rope_theta")
        let csv = try String(contentsOfFile: folder + "/fit.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        let rows = csv.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.map { $0[1] } == ["key", "key", "value", "value", "key_pre_rope", "key_pre_rope"])
        // The key rows (after RoPE) carry the pre-RoPE projections' ranks.
        #expect(rows[0][2] == rows[4][2] && rows[0][2] == "48")
        let sweep = try String(contentsOfFile: folder + "/sweep.csv", encoding: .utf8)
        #expect(sweep.contains("\npca_pre_rope,0.25,") && sweep.contains("\nxkv_pre_rope,0.25,"))
        let eval = try CLI.run(["eval", "--artifact", folder, Self.smollm2])
        try #require(eval.status == 0, "\(eval.stderr)")
        let errors = try #require(
            try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        let overall = try #require(errors["overall"] as? [String: Any])
        let fitted = try #require((root["fit"] as? [String: Any])?["overall"] as? [String: Any])
        for kind in ["key", "key_pre_rope", "value", "all"] {
            let a = try #require(overall[kind] as? Double, "eval \(kind)")
            let b = try #require(fitted[kind] as? Double, "fit \(kind)")
            #expect(abs(a - b) <= 1e-9, "\(kind): eval \(a), fit \(b)")
        }
    }
}
