// Queries written before RoPE cannot meet post-RoPE keys: kvstat leaves attention-mass sinks unjudged and skips
// attention-level errors (with a note) for dumps whose `query_rope` attribute says "pre-RoPE", or older
// tools/kvdump.py dumps whose `rope` attribute calls the queries raw q_proj outputs.
import Foundation
import Testing

@testable import KVStat

@Suite struct QueryRopeTests {
    /// A small per-layer dump with queries (2 KV heads, 4 query heads) and the root attributes `attributes`.
    func dump(_ attributes: [String: String]) throws -> Dump {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-qrope-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let script = """
            import sys, json, h5py, numpy as np
            rng = np.random.default_rng(3)
            with h5py.File(sys.argv[1] + "/d.h5", "w") as f:
                for layer in range(2):
                    f[f"layer_{layer:02d}/key"] = rng.standard_normal((1, 2, 24, 4)).astype("f4")
                    f[f"layer_{layer:02d}/value"] = rng.standard_normal((1, 2, 24, 4)).astype("f4")
                    f[f"layer_{layer:02d}/query"] = rng.standard_normal((1, 4, 24, 4)).astype("f4")
                for name, value in json.loads(sys.argv[2]).items():
                    f.attrs[name] = value
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let json = String(decoding: try JSONEncoder().encode(attributes), as: UTF8.self)
        process.arguments = ["python3", "-c", script, folder, json]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with h5py and numpy is needed")
        return try Dump(path: folder + "/d.h5")
    }

    @Test(
        arguments: [
            (["query_rope": "post-RoPE"], true), (["query_rope": "none"], true), ([:], true),
            (["query_rope": "pre-RoPE"], false),
            (["rope": "post-RoPE: key from the cache; query, key_pre_rope: raw q_proj/k_proj outputs"], false),
        ] as [([String: String], Bool)])
    func attentionNeedsQueriesAfterRoPE(attributes: [String: String], attendable: Bool) throws {
        let dump = try dump(attributes)
        #expect(dump.hasAttendableQueries == attendable)
        let mass = try AttentionMass.measure(
            dump, runs: dump.tokenRuns, layers: dump.layerNumbers, queriesPerSequence: 8, causal: true,
            blockTokens: 16)
        if attendable {
            #expect(mass.note == nil && mass.layers.count == 2)
        } else {
            #expect(mass.layers.isEmpty && mass.note?.contains("before RoPE") == true, "\(mass.note ?? "")")
            var options = FitOptions()
            options.attentionQueries = 8
            let fit = try LowRankFit.run(dump, options: options, version: "test", command: [])
            #expect(fit.report.attention == nil)
            #expect(
                fit.report.notes.contains { $0.contains("no attention-level errors") && $0.contains("before RoPE") })
        }
    }
}
