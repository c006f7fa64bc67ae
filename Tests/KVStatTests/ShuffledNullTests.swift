// The xKV shuffled-token null: its Gram equals numpy's Gram of the group's layers side by side with the same
// row permutations applied (computed by python3 from the h5py-written file, not by kvstat); it keeps each layer's
// own Gram; it matches the grouped fit where layers share no token structure and is worse where it is planted.
import Foundation
import KVNumerics
import Testing

@testable import KVStat

@Suite struct ShuffledNullTests {
    /// Runs `script` (python3 with h5py and numpy) with argv[1] = `folder` (a fresh one when nil); returns it.
    @discardableResult
    func python(_ script: String, in given: String? = nil, _ arguments: [String] = []) throws -> String {
        let folder =
            given
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-null-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, folder] + arguments
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with h5py and numpy is needed")
        return folder
    }

    /// Three layers, two sequences padded by `lengths` (37 and 50 valid of 50 tokens), 2 heads × 4; layer p is
    /// layer 0 rotated plus `noise` (planted cross-layer structure) when `planted`, independent otherwise.
    static let writer = """
        import sys, h5py, numpy as np
        folder, planted = sys.argv[1], sys.argv[2] == "1"
        rng = np.random.default_rng(5)
        base = rng.standard_normal((2, 2, 50, 4)).astype("f4") * np.array([3, 2, 1, 0.5], "f4")
        with h5py.File(folder + "/d.h5", "w") as f:
            for layer in range(3):
                if planted:
                    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
                    x = base.transpose(0, 2, 1, 3).reshape(2, 50, 8) @ q.astype("f4")
                    x = x.reshape(2, 50, 2, 4).transpose(0, 2, 1, 3) + 0.01 * rng.standard_normal((2, 2, 50, 4))
                else:
                    x = rng.standard_normal((2, 2, 50, 4)) * np.array([3, 2, 1, 0.5])
                f[f"layer_{layer:02d}/key"] = x.astype("f4")
                f[f"layer_{layer:02d}/value"] = x.astype("f4")
            f["lengths"] = np.array([37, 50])
        """

    @Test func rowsOfTheStreamAreCutAcrossRuns() {
        let runs = TokenRuns(lengths: [3, 0, 5])
        #expect(runs.rows(0..<3) == [TokenRun(sequence: 0, start: 0, count: 3)])
        #expect(
            runs.rows(2..<6) == [TokenRun(sequence: 0, start: 2, count: 1), TokenRun(sequence: 2, start: 0, count: 3)])
        #expect(runs.rows(7..<20) == [TokenRun(sequence: 2, start: 4, count: 1)])
        #expect(runs.rows(8..<9).isEmpty && runs.rows(2..<2).isEmpty)
    }

    @Test func seededPermutationsAreReproduciblePermutations() {
        let a = SeededShuffle.permutation(count: 1000, seed: 7, stream: [0, 1])
        #expect(a.sorted() == Array(0..<1000))
        #expect(a == SeededShuffle.permutation(count: 1000, seed: 7, stream: [0, 1]))
        #expect(a != SeededShuffle.permutation(count: 1000, seed: 7, stream: [0, 2]))
        #expect(a != SeededShuffle.permutation(count: 1000, seed: 8, stream: [0, 1]))
        #expect(a != Array(0..<1000))
        // Positions are uniform: each index lands in the first half about half the time over many streams.
        let firstHalf = (0..<400).filter {
            SeededShuffle.permutation(count: 10, seed: 1, stream: [$0]).prefix(5).contains(0)
        }
        #expect((160...240).contains(firstHalf.count))
    }

    @Test func nullGramEqualsNumpysGramOfThePermutedRows() throws {
        let folder = try python(Self.writer, in: nil, ["0"])
        let dump = try Dump(path: folder + "/d.h5")
        let rows = dump.tokenRuns.totalTokens
        #expect(rows == 87)
        // Chunks of 16 rows: five full chunks shuffled, the last 7 rows in place.
        let grams = try ShuffledNull.accumulate(
            dump, runs: dump.tokenRuns, kind: .key, groups: [[0, 1, 2], [0]], blockTokens: 16, seed: 3)
        #expect(grams.count == 2 && grams[1] == nil)
        let gram = try #require(grams[0])
        let permutations = (1...2).map {
            ShuffledNull.permutation(rows: rows, blockTokens: 16, seed: 3, group: 0, position: $0)
        }
        for p in permutations { #expect(p.sorted() == Array(0..<rows) && p != Array(0..<rows)) }
        let json = String(decoding: try JSONEncoder().encode(permutations), as: UTF8.self)
        try json.write(toFile: folder + "/perm.json", atomically: true, encoding: .utf8)
        let reference = """
            import sys, json, h5py, numpy as np
            folder = sys.argv[1]
            perms = [list(range(87))] + json.load(open(folder + "/perm.json"))
            with h5py.File(folder + "/d.h5") as f:
                lengths = f["lengths"][()]
                parts = []
                for layer, perm in enumerate(perms):
                    x = f[f"layer_{layer:02d}/key"][()].astype(np.float64)
                    rows = np.concatenate([x[b].transpose(1, 0, 2).reshape(50, 8)[:n] for b, n in enumerate(lengths)])
                    parts.append(rows[perm])
            joined = np.concatenate(parts, axis=1)
            np.savetxt(folder + "/gram.txt", joined.T @ joined)
            def pooled(matrices, rank):
                s2 = [np.linalg.svd(m, compute_uv=False) ** 2 for m in matrices]
                return float(np.sqrt(sum(v[rank:].sum() for v in s2) / sum(v.sum() for v in s2)))
            original = np.concatenate([p[np.argsort(perm)] for p, perm in zip(parts, perms)], axis=1)
            json.dump({"grouped": pooled([original], 8), "null": pooled([joined], 8),
                       "per_layer": pooled(parts, 3)}, open(folder + "/errors.json", "w"))
            """
        try python(reference, in: folder)
        let text = try String(contentsOfFile: folder + "/gram.txt", encoding: .utf8)
        let expected = text.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        let got = gram.gram
        #expect(expected.count == 24 * 24 && gram.count == rows)
        let scale = expected.map(abs).max() ?? 1
        var worst = 0.0
        for i in 0..<24 { for j in 0..<24 { worst = max(worst, abs(got[i, j] - expected[i * 24 + j]) / scale) } }
        #expect(worst < 1e-6, "largest difference \(worst) of the largest entry")
        // The control's three errors at R = 8 (per layer round(8/3) = 3) against numpy's SVDs.
        let real = try LayerGroupGrams.accumulate(
            dump, runs: dump.tokenRuns, kind: .key, groups: [[0, 1, 2]], blockTokens: 16)[0]
        let control = try ShuffledNull.Control(
            kind: .key, layers: [0, 1, 2], rank: 8,
            groupedEigenvalues: try SymmetricEigen(real.denseMatrix(centered: false)).values, real: real, null: gram,
            centered: false, seed: 3)
        let numpy = try JSONDecoder().decode(
            [String: Double].self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/errors.json")))
        #expect(control.perLayerRank == 3)
        for (name, value) in [
            ("grouped", control.groupedError), ("null", control.nullError), ("per_layer", control.perLayerError),
        ] {
            #expect(abs((value ?? -1) - (numpy[name] ?? 1)) < 1e-5, "\(name): \(value ?? -1) vs \(numpy[name] ?? -1)")
        }
        #expect(control.realGain == control.nullError! - control.groupedError!)
        #expect(control.accountingGain == control.perLayerError! - control.nullError!)
    }

    /// √(Σ_{i>r} λ_i / Σ λ_i) of a Gram: the relative error of its best rank-r projection.
    func error(_ gram: GramAccumulator, rank: Int) throws -> Double {
        let values = try SymmetricEigen(gram.gram).values
        let total = values.reduce(0, +)
        return (max(0, total - values.prefix(rank).reduce(0, +)) / total).squareRoot()
    }

    @Test(arguments: [false, true])
    func nullMatchesGroupedFitOnlyWithoutSharedStructure(planted: Bool) throws {
        let folder = try python(Self.writer, in: nil, [planted ? "1" : "0"])
        let dump = try Dump(path: folder + "/d.h5")
        let group = [[0, 1, 2]]
        let real = try LayerGroupGrams.accumulate(
            dump, runs: dump.tokenRuns, kind: .key, groups: group, blockTokens: 16)[0]
        let null = try #require(
            try ShuffledNull.accumulate(
                dump, runs: dump.tokenRuns, kind: .key, groups: group, blockTokens: 16, seed: ShuffledNull.defaultSeed)[
                    0])
        // Each layer's own Gram (a diagonal block) is the same rows in another order.
        for block in 0..<3 {
            for i in 0..<8 {
                for j in 0..<8 {
                    let (a, b) = (real.gram[block * 8 + i, block * 8 + j], null.gram[block * 8 + i, block * 8 + j])
                    #expect(abs(a - b) <= 1e-5 * max(1, abs(a)))
                }
            }
        }
        // Rank 8 of 24: the budget of rank 8/3 per layer, shared.
        let (grouped, shuffled) = (try error(real, rank: 8), try error(null, rank: 8))
        if planted {
            #expect(grouped < 0.05 && shuffled > grouped + 0.3, "grouped \(grouped), null \(shuffled)")
        } else {
            #expect(abs(grouped - shuffled) < 0.06, "grouped \(grouped), null \(shuffled)")
        }
    }
}
