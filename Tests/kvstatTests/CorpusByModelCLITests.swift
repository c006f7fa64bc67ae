// Corpora by model (issue 12), through the built binary: dumps of one model with and without queries merge on the
// kinds they share and say how many dumps each kind holds; dumps of two models make two corpora in folders named
// after the model (the first corpus moved there whole, also after a crash mid-move); shard corpora merged with
// `kvstat merge OUT0/corpus OUT1/corpus` equal one unsharded batch; merge takes folders holding a state.h5.
import Foundation
import KVStat
import Testing

@Suite(.serialized) struct CorpusByModelCLITests {
    /// The corpus folder of the bundled MiniLM sample: its `model` attribute's slug, then its shape.
    static let minilm = "sentence-transformers_all-MiniLM-L6-v2__6L-12kv-32d"

    /// The sample split into 3 single-sequence dumps (seq0, seq1, seq2), queries removed from seq1 and seq2.
    static func mixedInputs() throws -> String {
        let folder = try BatchCLITests.inputs()
        let strip = """
            import sys, h5py
            for path in sys.argv[1:]:
                with h5py.File(path, "a") as f:
                    for layer in f["layers"]:
                        del f["layers"][layer]["query"]
            """
        let result = try BatchCLITests.run(
            ["/usr/bin/env", "python3", "-c", strip, folder + "/seq1.h5", folder + "/seq2.h5"], direct: true,
            limit: 120)
        try #require(result.status == 0, "\(result.stderr)")
        return folder
    }

    /// A dump of another model (2 layers, 2 kv heads, head_dim 8; 2 sequences of 40 tokens, seeded), at `path`.
    static func writeOtherModel(_ path: String) throws {
        let script = """
            import sys, h5py, numpy as np
            rng = np.random.default_rng(12)
            with h5py.File(sys.argv[1], "w") as f:
                f.attrs["kvstat_format"] = "kvstat.dump/1"
                for layer in range(2):
                    for kind in ("key", "value"):
                        f[f"layers/{layer}/{kind}"] = rng.standard_normal((2, 2, 40, 8)).astype(np.float32)
            """
        let result = try BatchCLITests.run(
            ["/usr/bin/env", "python3", "-c", script, path], direct: true, limit: 120)
        try #require(result.status == 0, "\(result.stderr)")
    }

    /// Every layer's `kind` singular values (σ ≥ 0.05 σ₁) and token counts agree within `tolerance` relative.
    static func expectSameKind(
        _ a: StatsReport, _ b: StatsReport, _ kind: TensorKind, tolerance: Double, _ context: String
    ) throws {
        try #require(a.layers.count == b.layers.count && !a.layers.isEmpty, "\(context)")
        for (x, y) in zip(a.layers, b.layers) {
            let sx = try #require(x.kinds[kind], "layer \(x.layer) \(kind) \(context)")
            let sy = try #require(y.kinds[kind], "layer \(y.layer) \(kind) \(context)")
            #expect(sx.tokens == sy.tokens, "layer \(x.layer) \(kind) \(context)")
            let vx = try #require(sx.singularValues)
            let vy = try #require(sy.singularValues)
            try #require(vx.count == vy.count && !vy.isEmpty)
            for (p, q) in zip(vx, vy) where q >= 0.05 * vy[0] {
                #expect(abs(p - q) <= tolerance * q, "layer \(x.layer) \(kind): \(p) vs \(q) \(context)")
            }
        }
    }

    /// Three dumps of one model, one with queries: one corpus whose keys and values equal an analysis of the whole
    /// sample (the dump the three were cut from) and whose queries equal an analysis of the one dump with queries;
    /// stats.json, summary.md, the state and the batch summary say keys 3, values 3, queries 1. Its two shards'
    /// corpora, merged as folders, equal it; a folder without a state.h5 is one line, exit 66.
    @Test func dumpsWithAndWithoutQueriesMakeOneCorpusAndShardsMergeToIt() throws {
        let input = try Self.mixedInputs()
        let work = FitCLITests.directory("corpus-queries")
        defer { for d in [input, work] { try? FileManager.default.removeItem(atPath: d) } }
        let out = work + "/out"
        let batch = try BatchCLITests.run(["batch", input, "-o", out, "--jobs", "2"])
        #expect(batch.status == 0, "\(batch.stderr)")
        #expect(batch.stderr.contains("; corpus of 3 dumps (queries of 1)\n"), "\(batch.stderr)")
        let corpus = try BatchCLITests.report(out + "/corpus/stats.json")
        #expect(
            corpus.dumpsPerKind == ["key": 3, "value": 3, "query": 1], "\(String(describing: corpus.dumpsPerKind))")
        #expect(corpus.dump.kinds == ["key", "value", "query"], "\(corpus.dump.kinds)")
        let state = try AnalysisStateFile.load(out + "/corpus/state.h5")
        #expect(state.dumps(of: .key) == 3 && state.dumps(of: .value) == 3 && state.dumps(of: .query) == 1)
        let summary = try String(contentsOfFile: out + "/corpus/summary.md", encoding: .utf8)
        #expect(
            summary.contains("merged from 3 states (keys from 3 dumps, values from 3, queries from 1)"), "\(summary)")

        // Independent references: keys and values of all three are the whole sample; queries are seq0's alone.
        for (dump, folder) in [(CLI.sample, "whole"), (input + "/seq0.h5", "seq0")] {
            let run = try BatchCLITests.run(["analyze", dump, "-o", work + "/" + folder, "--quiet"])
            try #require(run.status == 0, "\(run.stderr)")
        }
        let whole = try BatchCLITests.report(work + "/whole/stats.json")
        let seq0 = try BatchCLITests.report(work + "/seq0/stats.json")
        try BatchCLITests.expectSameStatistics(corpus, whole, tolerance: 1e-5, "corpus vs the whole sample")
        // (Within 1e-6: the batch's children ran BLAS on 1 thread, this analyze on every core.)
        try Self.expectSameKind(corpus, seq0, .query, tolerance: 1e-6, "corpus queries vs seq0 alone")
        #expect(corpus.layers[0].kinds[.query]?.tokens == 192 && corpus.layers[0].kinds[.key]?.tokens == 452)

        // Two shards (seq0 + seq2, seq1), each its own corpus, merged by folder.
        for shard in 0..<2 {
            // --jobs 2 as above: the same BLAS threads per child, so only the order of the merges differs.
            let run = try BatchCLITests.run([
                "batch", input, "-o", "\(work)/s\(shard)", "--shard", "\(shard)/2", "--jobs", "2",
            ])
            #expect(run.status == 0, "\(run.stderr)")
        }
        let merged = try BatchCLITests.run([
            "merge", work + "/s0/corpus", work + "/s1/corpus", "-o", work + "/merged", "--quiet",
        ])
        try #require(merged.status == 0, "\(merged.stderr)")
        let shards = try BatchCLITests.report(work + "/merged/stats.json")
        #expect(shards.dumpsPerKind == corpus.dumpsPerKind)
        #expect(Set(shards.sources) == Set(corpus.sources))
        try BatchCLITests.expectSameStatistics(shards, corpus, tolerance: 1e-9, "merged shards vs unsharded")
        try Self.expectSameKind(shards, corpus, .query, tolerance: 1e-9, "merged shards vs unsharded")

        try FileManager.default.createDirectory(atPath: work + "/empty", withIntermediateDirectories: true)
        let empty = try CLI.run(["merge", work + "/empty", "-o", work + "/never"])
        #expect(empty.status == 66, "\(empty.stderr)")
        #expect(
            empty.stderr.split(separator: "\n").count == 1
                && empty.stderr.hasPrefix("kvstat: error: \(work)/empty: is a folder without a state.h5"),
            "\(empty.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work + "/never"))
    }

    /// A dump of a second model joins a batch whose corpus holds the first: the first corpus moves whole into
    /// OUT/corpus/sentence-transformers_all-MiniLM-L6-v2__6L-12kv-32d/ (not recomputed), the new one is
    /// OUT/corpus/2L-2kv-8d/; a rerun changes nothing; a
    /// crash between the move's renames is completed by the next run; merging the two models is one line (65),
    /// and merging OUT/corpus names the folders to give (66).
    @Test func twoModelsMakeTwoNamedCorpora() throws {
        let input = try BatchCLITests.inputs()
        let work = FitCLITests.directory("corpus-models")
        defer { for d in [input, work] { try? FileManager.default.removeItem(atPath: d) } }
        let out = work + "/out"
        let first = try BatchCLITests.run(["batch", input, "-o", out, "--quiet"])
        try #require(first.status == 0, "\(first.stderr)")
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/corpus/stats.json"))
        try #require(FileManager.default.fileExists(atPath: out + "/corpus/state.h5"))

        try Self.writeOtherModel(input + "/other.h5")
        let second = try BatchCLITests.run(["batch", input, "-o", out, "--log-json"])
        #expect(second.status == 0, "\(second.stderr)")
        try BatchCLITests.expectCounts(second.stderr, ["done": 1, "skipped": 3, "corpus_dumps": 4, "failed": 0])
        let entries = Set(try FileManager.default.contentsOfDirectory(atPath: out + "/corpus"))
        #expect(entries == [".kvstat", Self.minilm, "2L-2kv-8d"], "\(entries)")
        #expect(try BatchCLITests.json(out + "/corpus/.kvstat")["command"] as? String == "batch corpora")
        let moved = try Data(contentsOf: URL(fileURLWithPath: out + "/corpus/\(Self.minilm)/stats.json"))
        #expect(moved == before, "the first corpus was rewritten, not moved")
        let other = try BatchCLITests.report(out + "/corpus/2L-2kv-8d/stats.json")
        #expect(other.dump.tokens == 80 && other.dump.kvHeads == 2 && other.dump.headDim == 8)
        #expect(other.dumpsPerKind == ["key": 1, "value": 1])
        let corpora = try #require(try BatchCLITests.summary(second.stderr)["corpora"] as? [[String: Any]])
        #expect(corpora.map { $0["folder"] as? String } == [out + "/corpus/2L-2kv-8d", out + "/corpus/\(Self.minilm)"])
        #expect(corpora.map { $0["dumps"] as? Int } == [1, 3])

        let rerun = try BatchCLITests.run(["batch", input, "-o", out])
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(
            rerun.stderr.contains(
                "corpora of 1 dump (\(out)/corpus/2L-2kv-8d), 3 dumps (\(out)/corpus/\(Self.minilm))"),
            "\(rerun.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/corpus/\(Self.minilm)/stats.json")) == before)

        // Killed between the move's first rename and the last: the next run completes it.
        let crashed = work + "/crashed"
        try #require(try BatchCLITests.run(["batch", input + "/seq0.h5", "-o", crashed, "--quiet"]).status == 0)
        try FileManager.default.moveItem(atPath: crashed + "/corpus", toPath: crashed + "/corpus-\(Self.minilm).moving")
        let resumed = try BatchCLITests.run(["batch", input, "-o", crashed, "--log-json"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        try BatchCLITests.expectCounts(resumed.stderr, ["done": 3, "skipped": 1, "corpus_dumps": 4])
        #expect(
            Set(try FileManager.default.contentsOfDirectory(atPath: crashed + "/corpus"))
                == [".kvstat", Self.minilm, "2L-2kv-8d"])
        #expect(!FileManager.default.fileExists(atPath: crashed + "/corpus-\(Self.minilm).moving"))
        try BatchCLITests.expectSameStatistics(
            try BatchCLITests.report(crashed + "/corpus/\(Self.minilm)/stats.json"),
            try BatchCLITests.report(out + "/corpus/\(Self.minilm)/stats.json"), tolerance: 1e-9, "after the crash")

        let models = try CLI.run([
            "merge", out + "/corpus/\(Self.minilm)", out + "/corpus/2L-2kv-8d", "-o", work + "/never",
        ])
        #expect(models.status == 65, "\(models.stderr)")
        #expect(
            models.stderr.split(separator: "\n").count == 1 && models.stderr.contains("another model"),
            "\(models.stderr)")
        let folder = try CLI.run(["merge", out + "/corpus", "-o", work + "/never"])
        #expect(folder.status == 66, "\(folder.stderr)")
        #expect(
            folder.stderr.split(separator: "\n").count == 1 && folder.stderr.contains("2L-2kv-8d, \(Self.minilm)"),
            "\(folder.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work + "/never"))
    }
}
