// xKV for corpora through the binary: dumps analysed with `--save-state --xkv-groups G`, merged (by `kvstat merge`
// or a batch corpus) and fitted with `fit-lowrank STATE --method xkv --group-size G`, against fit-lowrank on one dump
// holding all their tokens; and the one-line refusals (another G, a state without group Grams, G < 2).
import Foundation
import Testing

@Suite struct XKVCorpusCLITests {
    static let smollm2 = CLI.repository.appendingPathComponent("notebooks-data/smollm2-sample.h5").path
    static let fitArguments = ["--method", "xkv", "--group-size", "3", "--rank", "8", "--attention-queries", "0"]

    /// The SmolLM2 sample cut by sequence into three h5py-written dumps (200, 150 and 100 tokens).
    static func pieces() throws -> String {
        let folder = FitCLITests.directory("xkv-pieces")
        let split = CLI.repository.appendingPathComponent("Tests/Fixtures/split_sample.py").path
        let result = try BatchCLITests.run(["/usr/bin/env", "python3", split, smollm2, folder], direct: true)
        try #require(result.status == 0, "split_sample.py: \(result.stderr)")
        return folder
    }

    /// Checks with numpy that two fit folders hold the same projections (PPᵀ of each unit within 1e-5) and the
    /// same per-layer errors (1e-5), and that the first, fitted from a state, has no xkv_null and says why.
    static let compare = """
        import json, sys
        import numpy as np
        from safetensors.numpy import load_file
        state, whole = sys.argv[1], sys.argv[2]
        ms, mw = (json.load(open(f"{d}/manifest.json")) for d in (state, whole))
        ts, tw = (load_file(f"{d}/projections.safetensors") for d in (state, whole))
        names = sorted(u["name"] for u in ms["units"])
        assert names == sorted(u["name"] for u in mw["units"]), names
        assert len(names) == 8, names
        for name in names:
            a, b = ts[name + ".proj"].astype(np.float64), tw[name + ".proj"].astype(np.float64)
            gap = np.abs(a @ a.T - b @ b.T).max()
            assert gap < 1e-5, (name, gap)
        for kind in ("key", "value"):
            for x, y in zip(ms["fit"]["per_layer"][kind], mw["fit"]["per_layer"][kind]):
                assert abs(x - y) < 1e-5, (kind, x, y)
        assert ms["layer_groups"] == mw["layer_groups"] == [[0, 3, 6], [9, 12, 15], [18, 21, 24], [27]]
        assert ms["source"]["tokens"] == mw["source"]["tokens"] == 450
        assert ms.get("xkv_null") is None and len(mw["xkv_null"]) > 0
        assert any(n.startswith("xkv_null omitted") for n in ms["notes"]), ms["notes"]
        print("ok")
        """

    static func expectSame(state: String, whole: String) throws {
        let result = try BatchCLITests.run(
            ["/usr/bin/env", "python3", "-c", compare, state, whole], direct: true, limit: 120)
        #expect(result.status == 0 && result.stdout.contains("ok"), "\(result.stdout)\(result.stderr)")
    }

    static func fitWhole(_ output: String) throws {
        let whole = try BatchCLITests.run(["fit-lowrank", smollm2, "-o", output, "--quiet"] + fitArguments)
        try #require(whole.status == 0, "\(whole.stderr)")
    }

    /// Corpus xKV equals xKV on the whole data: three dumps' states, merged, fit what one dump of all their tokens
    /// fits; the refusals are one line each, saying which grouping the state holds and how to make one.
    @Test func mergedStatesFitTheWholeDataAndBadGroupingsAreOneLine() throws {
        let parts = try Self.pieces()
        let work = FitCLITests.directory("xkv-merge")
        defer { for d in [parts, work] { try? FileManager.default.removeItem(atPath: d) } }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        for b in 0..<3 {
            let analyzed = try BatchCLITests.run([
                "analyze", "\(parts)/seq\(b).h5", "-o", "\(work)/a\(b)", "--quiet", "--save-state",
                "\(work)/s\(b).h5", "--xkv-groups", "3",
            ])
            try #require(analyzed.status == 0, "\(analyzed.stderr)")
        }
        let merged = try BatchCLITests.run([
            "merge", "\(work)/s0.h5", "\(work)/s1.h5", "\(work)/s2.h5", "-o", "\(work)/m", "--quiet",
            "--save-state", "\(work)/m.h5",
        ])
        try #require(merged.status == 0 && merged.stderr.isEmpty, "\(merged.stderr)")
        let fitted = try BatchCLITests.run(
            ["fit-lowrank", "\(work)/m.h5", "-o", "\(work)/fs", "--quiet"] + Self.fitArguments)
        try #require(fitted.status == 0, "\(fitted.stderr)")
        try Self.fitWhole("\(work)/fw")
        try Self.expectSame(state: "\(work)/fs", whole: "\(work)/fw")

        // Another G than the state's: exit 65, naming what it holds.
        let other = try BatchCLITests.run([
            "fit-lowrank", "\(work)/m.h5", "-o", "\(work)/f2", "--quiet", "--method", "xkv", "--group-size", "2",
        ])
        #expect(other.status == 65)
        #expect(
            other.stderr.hasPrefix(
                "kvstat: error: \(work)/m.h5: holds xKV group Grams for --xkv-groups 3, not "
                    + "--group-size 2") && other.stderr.contains("--xkv-groups 2")
                && other.stderr.split(separator: "\n").count == 1, "\(other.stderr)")
        // A state without group Grams: a merge with one analysed without --xkv-groups drops them, with a note.
        let plain = try BatchCLITests.run([
            "analyze", Self.smollm2, "--sequences", "0", "-o", "\(work)/p", "--quiet", "--save-state",
            "\(work)/plain.h5",
        ])
        try #require(plain.status == 0, "\(plain.stderr)")
        let mixed = try BatchCLITests.run([
            "merge", "\(work)/s1.h5", "\(work)/plain.h5", "-o", "\(work)/mx", "--quiet", "--save-state",
            "\(work)/mixed.h5",
        ])
        #expect(mixed.status == 0)
        #expect(
            mixed.stderr.hasPrefix("kvstat: note: \(work)/plain.h5: xKV group Grams dropped")
                && mixed.stderr.contains("--xkv-groups 3 and none"), "\(mixed.stderr)")
        for state in ["plain.h5", "mixed.h5"] {
            let none = try BatchCLITests.run(
                ["fit-lowrank", "\(work)/\(state)", "-o", "\(work)/fn", "--quiet"] + Self.fitArguments)
            #expect(none.status == 65)
            #expect(
                none.stderr.hasPrefix(
                    "kvstat: error: \(work)/\(state): xkv --group-size 3 needs the state's xKV "
                        + "group Grams, and it holds none")
                    && none.stderr.contains("--save-state FILE --xkv-groups 3")
                    && none.stderr.split(separator: "\n").count == 1, "\(none.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(work)/f2"))
        #expect(!FileManager.default.fileExists(atPath: "\(work)/fn"))
        // G < 2, and --xkv-groups without a state to save them in: usage errors.
        for arguments in [["--save-state", "\(work)/g1.h5", "--xkv-groups", "1"], ["--xkv-groups", "2"]] {
            let refused = try BatchCLITests.run(
                ["analyze", "\(parts)/seq2.h5", "-o", "\(work)/g", "--quiet"] + arguments)
            #expect(refused.status == 64, "\(arguments): \(refused.stderr)")
            #expect(refused.stderr.hasPrefix("kvstat: error: --xkv-groups"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: "\(work)/g1.h5"))
        }
    }

    /// `kvstat batch --analyze-arg=--xkv-groups=G --fit "--method xkv --group-size G"`: the corpus fit is the
    /// whole data's xKV.
    @Test func batchCorpusFitsXKV() throws {
        let parts = try Self.pieces()
        let out = FitCLITests.directory("xkv-batch")
        let whole = FitCLITests.directory("xkv-whole")
        defer { for d in [parts, out, whole] { try? FileManager.default.removeItem(atPath: d) } }
        let batch = try BatchCLITests.run([
            "batch", parts, "-o", out, "--quiet", "--analyze-arg=--xkv-groups=3", "--fit",
            Self.fitArguments.joined(separator: " "),
        ])
        #expect(batch.status == 0, "\(batch.stderr)")
        #expect(!batch.stderr.contains("corpus fit failed"), "\(batch.stderr)")
        try Self.fitWhole(whole)
        try Self.expectSame(state: out + "/corpus/fit", whole: whole)
    }
}
