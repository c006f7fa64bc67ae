// `fit-lowrank --keep-sinks K` against independent numpy references (Tests/Fixtures/keep_sinks_reference.py):
// the positions chosen by attention mass on the SmolLM2 sample, the first-tokens rule on a dump without queries,
// the memory ratio by formula (window and sinks overlapping included), reconstruction errors with the projection
// fitted on the non-sink rows, and attention errors with and without the sinks kept.
import Foundation
import Testing

@testable import KVStat

/// Runs Tests/Fixtures/keep_sinks_reference.py.
enum KeepSinksReference {
    static let smol = SmolLM2Sample.path

    /// python3 with `arguments` after the script; true when it exited 0.
    static func python(_ arguments: [String]) throws -> Bool {
        try Fixtures.runScript("keep_sinks_reference.py", arguments)
    }

    /// The JSON object a mode writes to its OUT argument (placed second).
    static func json(_ mode: String, _ dump: String, _ rest: [String]) throws -> [String: Any] {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("keep-sinks-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(try python([mode, dump, out.path] + rest))
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any])
    }

    /// The small dump without queries and its reference errors (`recon`), made once per test process.
    static let recon: String = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keep-sinks-\(UUID().uuidString)")
            .path
        _ = try? python(["recon", folder])
        return folder
    }()
}

@Suite(.serialized) struct KeepSinksTests {
    static func options(_ method: FitMethod = .pca, k: Int, keep: Double = 0.25) -> FitOptions {
        var o = FitOptions()
        o.method = method
        o.budget = .keepRatio(keep)
        o.keepSinks = k
        return o
    }

    /// (a) On SmolLM2 (causal, GQA), the positions chosen with K = 1 are token 0 of every sequence, and with K = 4
    /// the set numpy's pooled attention mass gives, with the same shares within 1e-4.
    @Test(.timeLimit(.minutes(5))) func attentionMassPositionsEqualNumpy() throws {
        let dump = try Dump(path: KeepSinksReference.smol)
        let one = try KeepSinks.choose(
            dump, runs: dump.tokenRuns, layers: dump.layerNumbers, count: 1, options: Self.options(k: 1))
        #expect(one.rule == .attentionMass)
        #expect(one.sequences == [0, 1, 2])
        #expect(one.positions == [[0], [0], [0]])
        let four = try KeepSinks.choose(
            dump, runs: dump.tokenRuns, layers: dump.layerNumbers, count: 4, options: Self.options(k: 4))
        let truth = try KeepSinksReference.json("mass", KeepSinksReference.smol, ["64", "4", "1"])
        let positions = try #require(truth["positions"] as? [[Int]])
        let shares = try #require(truth["shares"] as? [[Double]])
        #expect(four.positions == positions)
        for (mine, theirs) in zip(try #require(four.shares), shares) {
            for (a, b) in zip(mine, theirs) { #expect(abs(a - b) < 1e-4) }
        }
        // Token 0 takes most of the attention (40 % and more pooled over layers).
        #expect(four.shares!.allSatisfy { $0[0] > 0.3 })
    }

    /// (b) A dump without queries keeps the first K selected tokens of each sequence (StreamingLLM's rule), also
    /// of a part (`--tokens`), and the manifest says which rule.
    @Test func firstTokensWithoutQueries() throws {
        let dump = try Dump(path: KeepSinksReference.recon + "/small.h5")
        var o = Self.options(k: 3)
        let whole = try KeepSinks.choose(dump, runs: dump.tokenRuns, layers: dump.layerNumbers, count: 3, options: o)
        #expect(whole.rule == .firstTokens)
        #expect(whole.positions == [[0, 1, 2], [0, 1, 2]])
        #expect(whole.shares == nil)
        o.tokenRange = 5..<30
        let runs = try o.selection.runs(of: dump)
        let part = try KeepSinks.choose(dump, runs: runs, layers: dump.layerNumbers, count: 3, options: o)
        #expect(part.positions == [[5, 6, 7], [5, 6, 7]])
        let report = try LowRankFit.run(dump, options: o, version: "test", command: ["test"]).report
        #expect(report.keepSinks?.positions == [[5, 6, 7], [5, 6, 7]])
        #expect(report.notes.contains { $0.contains("first 3 selected tokens") })
        // The cut runs leave the sinks out, the sink-only runs hold just them.
        let cut = part.cut(from: runs)
        #expect(cut.totalTokens == runs.totalTokens - 6)
        #expect(part.only(in: runs).runs.map(\.start) == [5, 6, 7, 5, 6, 7])
    }

    /// (c) memory_ratio: K rows per sequence in full, the rest at rank/channels; with cskv's window the window
    /// and the sinks are exact, a sink inside the window counted once.
    @Test func memoryRatioFormula() throws {
        let dump = try Dump(path: KeepSinksReference.recon + "/small.h5")
        // pca rank 4 of 16 channels per layer and kind: a latent row costs 1/4; lengths 40 and 25, K = 3.
        var o = Self.options(k: 3)
        o.budget = .rank(4)
        let pca = try LowRankFit.run(dump, options: o, version: "test", command: ["test"]).report
        #expect(abs(pca.memoryRatio - (6 + 59 * 0.25) / 65) < 1e-12)
        #expect(abs(pca.compression - 65 / (6 + 59 * 0.25)) < 1e-9)
        o.method = .cskv
        o.window = 10
        let cskv = try LowRankFit.run(dump, options: o, version: "test", command: ["test"]).report
        #expect(abs(cskv.memoryRatio - (26 + 39 * 0.25) / 65) < 1e-12)
        // Window 24: sequence 0 keeps [16, 40) and 0, 1, 2 (27 rows), sequence 1 [1, 25) and 0 (all 25 rows).
        o.window = 24
        let overlap = try LowRankFit.run(dump, options: o, version: "test", command: ["test"]).report
        #expect(abs(overlap.memoryRatio - (27 + 25 + 13 * 0.25) / 65) < 1e-12)
    }

    /// (d) Reconstruction errors with K sinks: the projection fitted on the non-sink rows, the sink rows exact,
    /// the norm over every row; numpy's float64 eigenvectors, within 1e-5 (pca, and cskv with its window).
    @Test func reconstructionEqualsNumpy() throws {
        let dump = try Dump(path: KeepSinksReference.recon + "/small.h5")
        let data = try Data(contentsOf: URL(fileURLWithPath: KeepSinksReference.recon + "/reference.json"))
        let truth = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for method in [FitMethod.pca, .cskv] {
            var o = Self.options(method, k: 3)
            o.budget = .rank(4)
            o.window = method == .cskv ? 10 : 0
            let report = try LowRankFit.run(dump, options: o, version: "test", command: ["test"]).report
            let expected = try #require(truth[method.rawValue] as? [String: Double])
            for kind in ["key", "value"] {
                for (i, layer) in report.layers.enumerated() {
                    let mine = try #require(report.fit.perLayer[kind]?[i] ?? nil)
                    let theirs = try #require(expected["\(kind)/\(layer)"])
                    #expect(abs(mine - theirs) < 1e-5, "\(method) \(kind) layer \(layer): \(mine) vs \(theirs)")
                }
            }
        }
        // Without sinks the same fit differs (the planted first token is then compressed).
        var plain = Self.options(k: 0)
        plain.keepSinks = nil
        plain.budget = .rank(4)
        let without = try LowRankFit.run(dump, options: plain, version: "test", command: ["test"]).report
        let expected = try #require(truth["pca"] as? [String: Double])
        #expect(abs((without.fit.perLayer["key"]?[0] ?? nil)! - expected["key/0"]!) > 1e-3)
    }

    /// (e) SmolLM2, pca at keep 0.25: attention output errors with the sinks kept are below those without, in
    /// every layer from 12 on and in RMS, for K = 1 and 4; layer 15 equals numpy (float64) within 1e-6.
    @Test(.timeLimit(.minutes(10))) func attentionWithAndWithoutSinks() throws {
        let dump = try Dump(path: KeepSinksReference.smol)
        for k in [1, 4] {
            let report = try LowRankFit.run(dump, options: Self.options(k: k), version: "test", command: ["test"])
                .report
            let with = try #require(report.attention)
            let without = try #require(report.attentionWithoutSinks)
            func rms(_ e: AttentionErrors) -> Double {
                let v = e.outputs.compactMap { $0 }
                return (v.reduce(0) { $0 + $1 * $1 } / Double(v.count)).squareRoot()
            }
            #expect(rms(with) < rms(without))
            for (i, layer) in report.layers.enumerated() where layer >= 12 {
                #expect(with.outputs[i]! < without.outputs[i]!, "K \(k) layer \(layer)")
            }
            let truth = try KeepSinksReference.json("attn", KeepSinksReference.smol, ["64", "\(k)", "0.25", "15"])
            let i = try #require(report.layers.firstIndex(of: 15))
            for (mine, name) in [
                (with.outputs[i], "with"), (without.outputs[i], "without"), (with.logits[i], "logits_with"),
                (without.logits[i], "logits_without"),
            ] {
                let theirs = try #require(truth[name] as? Double)
                #expect(abs(mine! - theirs) < 1e-6 * max(1, theirs), "K \(k) \(name): \(mine!) vs \(theirs)")
            }
        }
    }

    /// The `+sinks` sweep points: fitted on the Grams less the sink rows and priced with them exact, they equal
    /// the direct fit's errors and memory (pca and cskv at keep 0.25), and cskv's streamed attention errors
    /// equal the direct fit's with and without sinks.
    @Test(.timeLimit(.minutes(10))) func sweepPointsEqualDirectFits() throws {
        let dump = try Dump(path: KeepSinksReference.smol)
        var o = Self.options(k: 1)
        o.window = 0
        o.ladder = [0.25]
        let rungs = try LowRankSweep.run(dump, options: o)
        let direct = try LowRankFit.run(dump, options: o, version: "test", command: ["test"]).report
        for name in ["pca+sinks", "cskv+sinks"] {
            let rung = try #require(rungs.first { $0.method == name })
            #expect(abs(rung.fitError! - direct.fit.overall["all"]!!) < 1e-5, "\(name)")
            #expect(abs(rung.memoryRatio - direct.memoryRatio) < 1e-12)
        }
        for name in ["xkv+sinks", "matryoshka+sinks"] { #expect(rungs.contains { $0.method == name }) }
        func rms(_ e: AttentionErrors?) -> Double {
            let v = (e?.outputs ?? []).compactMap { $0 }
            return (v.reduce(0) { $0 + $1 * $1 } / Double(v.count)).squareRoot()
        }
        let withSinks = try #require(rungs.first { $0.method == "cskv+sinks" }?.attentionOutputError)
        #expect(abs(withSinks - rms(direct.attention)) < 1e-4)
        var plain = o
        plain.keepSinks = nil
        let none = try LowRankFit.run(dump, options: plain, version: "test", command: ["test"]).report
        let withoutSinks = try #require(rungs.first { $0.method == "cskv" }?.attentionOutputError)
        #expect(abs(withoutSinks - rms(none.attention)) < 1e-4)
        #expect(withSinks < withoutSinks)
        // The unquantized cskv schemes are merged into those rows, not rows of their own.
        #expect(rungs.filter { $0.method == "cskv" }.count == 1)
    }
}
