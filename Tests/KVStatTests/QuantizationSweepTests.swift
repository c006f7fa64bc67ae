// The quantization points of `--sweep` (QuantizationSweep): each scheme's reconstruction error, exact memory
// and attention-output error equal a direct numpy computation on a small h5py-written dump (window, sequence
// and block boundaries, group remainders, constant groups, a non-finite row), and the sweep carries the rows.
import Foundation
import KVNumerics
import Testing

@testable import KVStat

@Suite struct QuantizationSweepTests {
    /// Writes `d.h5` (2 sequences of 23 and 17 valid of 25 tokens, 2 KV heads × 4, 4 query heads, float16) and
    /// `ref.json`: per scheme, numpy's relative errors per kind, memory ratio and attention-output error, and
    /// the default sweep's KIVI memory ratios. Everything is computed here from the file, not by kvstat.
    static let script = """
        import sys, json, h5py, numpy as np
        folder = sys.argv[1]
        rng = np.random.default_rng(11)
        B, H, QH, T, D = 2, 2, 4, 25, 4
        C = H * D
        lengths = [23, 17]
        key = (rng.standard_normal((B, H, T, D)) * np.array([4, 1, 0.5, 2])).astype("f2")
        value = rng.standard_normal((B, H, T, D)).astype("f2")
        query = rng.standard_normal((B, QH, T, D)).astype("f2")
        key[0, 0, 3, 1] = np.nan            # one non-finite key row (sequence 0, token 3)
        key[1, 1, 0:4, 1] = 0.25            # a constant key group (channel 5, tokens 0-3 of sequence 1)
        value[1, :, 2, :] = 0.5             # a constant value row (every channel group of token 2)
        with h5py.File(folder + "/d.h5", "w") as f:
            f["layer_00/key"] = key
            f["layer_00/value"] = value
            f["layer_00/query"] = query
            f["lengths"] = np.array(lengths)

        def rows_of(a, b):                  # [tokens, channels] float32 of sequence b
            return a[b].transpose(1, 0, 2).reshape(T, -1)[:lengths[b]].astype("f4")

        def params(lo, hi, bits):
            levels = np.float32(2 ** bits - 1)
            return np.float32(np.float16((np.float32(hi) - np.float32(lo)) / levels)), np.float32(np.float16(lo))

        def round_trip(v, scale, zero, bits):
            if scale <= 0:
                return np.full_like(v, zero)
            q = np.clip(np.floor((v - zero) / scale + np.float32(0.5)), 0, 2 ** bits - 1).astype("f4")
            return (q * scale + zero).astype("f4")

        def quantize(y, kind, bits, group, segments):
            y = y.copy()
            if kind == "value":
                for r in range(y.shape[0]):
                    for s in range(0, y.shape[1], group):
                        g = y[r, s:s + group]
                        y[r, s:s + group] = round_trip(g, *params(g.min(), g.max(), bits), bits)
            else:
                for a, b in segments:
                    for s in range(a, b, group):
                        e = min(s + group, b)
                        for c in range(y.shape[1]):
                            g = y[s:e, c]
                            y[s:e, c] = round_trip(g, *params(g.min(), g.max(), bits), bits)
            return y

        WINDOW, BLOCK, QUERIES = 5, 12, 4
        def layout(b, x, block):
            n = lengths[b]
            bad = ~np.isfinite(x).all(axis=1)
            latent = (np.arange(n) < n - WINDOW) & ~bad
            segments = []
            for p in range(0, n, block):          # groups never cross a block, a sequence, a left-out row
                r = p
                while r < min(p + block, n):
                    if latent[r]:
                        s = r
                        while r < min(p + block, n) and latent[r]:
                            r += 1
                        segments.append((s, r))
                    else:
                        r += 1
            return bad, latent, segments

        h = np.zeros((8, 8)); h[0, 0] = 1
        for k in (1, 2, 4):
            h[:k, k:2 * k] = h[:k, :k]; h[k:2 * k, :k] = h[:k, :k]; h[k:2 * k, k:2 * k] = -h[:k, :k]
        P = (h[:, :4] / np.sqrt(8)).astype("f4")   # cskv's test basis: 4 Hadamard columns

        schemes = [("kivi", 2, 4), ("kivi", 4, 3), ("kivi", 8, 5), ("cskv", 4, 4), ("gear", 2, 32)]
        data = {"key": key, "value": value}
        xs = {kind: [rows_of(data[kind], b) for b in range(B)] for kind in data}
        lay = {kind: [layout(b, xs[kind][b], BLOCK) for b in range(B)] for kind in data}
        for kind in data:
            for b in range(B):
                xs[kind][b][lay[kind][b][0]] = 0

        def kivi(kind, b, bits, group):
            x = xs[kind][b]; bad, latent, segments = lay[kind][b]
            y = quantize(x, kind, bits, group, segments)
            y[~latent] = x[~latent]
            return y

        # GEAR: residual basis from the residual Gram of the latent rows, rank 2, 1 sparse entry per token.
        basis = {}
        for kind in data:
            E = np.concatenate([(xs[kind][b] - kivi(kind, b, 2, 32))[lay[kind][b][1]] for b in range(B)])
            w, v = np.linalg.eigh(E.astype("f8").T @ E.astype("f8"))
            basis[kind] = v[:, ::-1][:, :2]

        def rebuild(scheme, kind, b):
            name, bits, group = scheme
            x = xs[kind][b]; bad, latent, segments = lay[kind][b]
            if name == "kivi":
                return kivi(kind, b, bits, group)
            if name == "cskv":
                y = quantize(x @ P, kind, bits, group, segments)
                out = x.copy(); out[latent] = (y @ P.T)[latent]
                return out
            y = kivi(kind, b, bits, group).astype("f8")
            e = x - y
            y[latent] += (e @ basis[kind] @ basis[kind].T)[latent]
            e = x - y
            for r in np.nonzero(latent)[0]:
                j = np.argmax(np.abs(e[r]))
                y[r, j] = x[r, j]
            return y

        def units(scheme, kind, b):
            name, bits, group = scheme
            bad, latent, segments = lay[kind][b]
            n, m = lengths[b], int(latent.sum())
            width = 4 if name == "cskv" else C
            stored = (n - m) * C + m * width * bits / 16
            if kind == "key":
                stored += 2 * width * sum(-(-(e - s) // group) for s, e in segments)
            else:
                stored += 2 * m * -(-width // group)
            if name == "gear":
                stored += m * (2 + 2 * 1)
            return stored

        def attention(keys, values, b):
            n = lengths[b]; k = min(QUERIES, n)
            sampled = [(i * (n - 1)) // (k - 1) for i in range(k)]
            q = rows_of(query, b).astype("f8")
            mask = ~(np.isfinite(rows_of(key, b)).all(axis=1) & np.isfinite(rows_of(value, b)).all(axis=1))
            out = []
            for i, pos in enumerate(sampled):
                for hq in range(QH):
                    g = hq // (QH // H)
                    kk = keys[:pos + 1, g * D:(g + 1) * D].astype("f8")
                    logits = kk @ q[pos, hq * D:(hq + 1) * D] / np.sqrt(D)
                    logits[mask[:pos + 1]] = -np.inf
                    w = np.exp(logits - logits.max()); w /= w.sum()
                    out.append(w @ values[:pos + 1, g * D:(g + 1) * D].astype("f8"))
            return np.array(out)

        result = {}
        for scheme in schemes:
            entry = {}
            for kind in data:
                err = sum(((xs[kind][b].astype("f8") - rebuild(scheme, kind, b)) ** 2)[~lay[kind][b][0]].sum()
                          for b in range(B))
                norm = sum((xs[kind][b].astype("f8") ** 2)[~lay[kind][b][0]].sum() for b in range(B))
                entry[kind] = float(np.sqrt(err / norm))
            entry["memory"] = float(sum(units(scheme, k, b) for k in data for b in range(B))
                                    / sum(lengths[b] * C for k in data for b in range(B)))
            e2 = n2 = 0.0
            for b in range(B):
                o = attention(xs["key"][b], xs["value"][b], b)
                oh = attention(rebuild(scheme, "key", b), rebuild(scheme, "value", b), b)
                e2 += ((o - oh) ** 2).sum(); n2 += (o ** 2).sum()
            entry["attention"] = float(np.sqrt(e2 / n2))
            result["%s-%d-%d" % scheme] = entry
        # The default sweep (window 5, one block per sequence): KIVI 4 bits, group 32.
        lay = {kind: [layout(b, rows_of(data[kind], b), 4096) for b in range(B)] for kind in data}
        result["sweep-kivi-4-32"] = float(sum(units(("kivi", 4, 32), k, b) for k in data for b in range(B))
                                          / sum(lengths[b] * C for k in data for b in range(B)))
        json.dump(result, open(folder + "/ref.json", "w"))
        """

    /// The test's cskv basis: the first 4 columns of the 8 × 8 Sylvester Hadamard matrix ÷ √8 (as numpy builds it).
    static func hadamardBasis() -> Matrix<Float> {
        var h = [[Float]](repeating: [Float](repeating: 0, count: 8), count: 8)
        h[0][0] = 1
        for k in [1, 2, 4] {
            for i in 0..<k {
                for j in 0..<k {
                    h[i][k + j] = h[i][j]
                    h[k + i][j] = h[i][j]
                    h[k + i][k + j] = -h[i][j]
                }
            }
        }
        let scale = 1 / Float(8).squareRoot()
        return Matrix(rows: 8, columns: 4, values: (0..<8).flatMap { i in (0..<4).map { h[i][$0] * scale } })
    }

    func prepare() throws -> (folder: String, reference: [String: Any]) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-quant-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, folder]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with h5py and numpy is needed")
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/ref.json"))
        return (folder, try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any]))
    }

    @Test func errorsMemoryAndAttentionMatchNumpy() throws {
        let (folder, reference) = try prepare()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dump = try Dump(path: folder + "/d.h5")
        let schemes: [QuantizationSweep.Scheme] = [
            .kivi(bits: 2, group: 4), .kivi(bits: 4, group: 3), .kivi(bits: 8, group: 5),
            .cskv(bits: 4, group: 4, keepRatio: 0.5), .gear(bits: 2, rankFraction: 0.25, sparse: 0.125),
        ]
        let names = ["kivi-2-4", "kivi-4-3", "kivi-8-5", "cskv-4-4", "gear-2-32"]
        var options = FitOptions()
        options.window = 5
        options.blockTokens = 12
        options.attentionQueries = 4
        let projections = [TensorKind.key, .value].map {
            Projection(
                kind: $0, layers: [0], channels: 0..<8, heads: nil, basis: Self.hadamardBasis(), mean: nil,
                eigenvalues: [Double](repeating: 1, count: 8))
        }
        var totals = QuantizationSweep.Totals(schemes: schemes)
        let split = try FitSplit(dump.tokenRuns, holdout: 0)
        try totals.addLayer(
            dump, layer: 0, split: split, heldOut: false, options: options, cskv: projections, cskvRanks: [[4, 4]],
            ladder: [0.5])
        for (s, name) in names.enumerated() {
            let expected = try #require(reference[name] as? [String: Double])
            for kind in ["key", "value"] {
                let error = ((totals.squared[s]["\(kind)/0"] ?? .nan) / totals.norms["\(kind)/0"]!).squareRoot()
                let tolerance = name.hasPrefix("kivi") ? 1e-6 : 1e-4
                #expect(abs(error - expected[kind]!) <= tolerance * max(expected[kind]!, 1e-3), "\(name) \(kind)")
                #expect(error > 0, "\(name) \(kind) is not lossless")
            }
            #expect(abs(totals.stored[s] / totals.original - expected["memory"]!) < 1e-12, "\(name) memory")
            #expect(totals.attention[s].count == 1)
            #expect(
                abs(totals.attention[s][0] - expected["attention"]!) < 1e-4 * max(expected["attention"]!, 1e-2),
                "\(name) attention")
        }
        // The rows: names, exact memory ratios.
        let rungs = totals.rungs(heldOut: false)
        #expect(
            rungs.map(\.method) == [
                "kivi-int2-g4", "kivi-int4-g3", "kivi-int8-g5", "cskv-int4", "gear-int2-r0.25-s0.125",
            ])
        #expect(rungs[0].heldOutError == nil && rungs[0].attentionOutputError != nil)
    }

    /// A constant group (scale 0) is rebuilt exactly; wider groups cost fewer parameters.
    @Test func constantGroupsAreExactAndMemoryCountsGroups() {
        let quantizer = LatentQuantizer(bits: 2, group: 4)
        var values: [Float] = [0.5, 0.5, 0.5, 0.5, 1, 2, 3, 4]
        values.withUnsafeMutableBufferPointer { quantizer.quantizeRows($0, rows: 2, columns: 4) }
        #expect(Array(values[0..<4]) == [0.5, 0.5, 0.5, 0.5])
        // Keys: one segment of 10 latent rows, groups of 4 → 3 groups per channel; 2 window rows at full cost.
        let latent = [Bool](repeating: true, count: 10) + [false, false]
        let units = QuantizationSweep.storedUnits(
            .kivi(bits: 4, group: 4), kind: .key, channels: 8, rows: 12, latent: latent, segments: [0..<10], rank: 0)
        #expect(units == Double(2 * 8) + Double(10 * 8 * 4) / 16 + 2 * 8 * 3)
        let values2 = QuantizationSweep.storedUnits(
            .kivi(bits: 4, group: 3), kind: .value, channels: 8, rows: 12, latent: latent, segments: [0..<10], rank: 0)
        #expect(values2 == Double(2 * 8) + Double(10 * 8 * 4) / 16 + 2 * 10 * 3)
    }

    /// Values beyond float16's range (float32 dumps): the float16 scales overflow, so KIVI's errors are
    /// undefined (null), never a failure; GEAR's residual Gram is rescaled, and the sweep finishes.
    @Test func hugeValuesGiveUndefinedErrorsNotFailures() throws {
        let (folder, _) = try prepare()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let write = """
            import sys, h5py, numpy as np
            rng = np.random.default_rng(2)
            with h5py.File(sys.argv[1] + "/huge.h5", "w") as f:
                f["layer_00/key"] = (rng.standard_normal((1, 2, 40, 4)) * 1e20).astype("f4")
                f["layer_00/value"] = (rng.standard_normal((1, 2, 40, 4)) * 1e20).astype("f4")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", write, folder]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        var options = FitOptions()
        options.ladder = [0.5]
        let rungs = try LowRankSweep.run(try Dump(path: folder + "/huge.h5"), options: options)
        #expect(rungs.first { $0.method == "pca" }?.fitError != nil)
        #expect(rungs.first { $0.method == "kivi-int4-g32" }.map { $0.fitError == nil && $0.memoryRatio > 0 } == true)
    }

    /// `--sweep` carries every quantization row, at exact memory.
    @Test func sweepHasTheQuantizationRows() throws {
        let (folder, reference) = try prepare()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dump = try Dump(path: folder + "/d.h5")
        var options = FitOptions()
        options.window = 5
        options.ladder = [0.25, 0.5]
        let rungs = try LowRankSweep.run(dump, options: options)
        let names = rungs.map(\.method)
        for name in ["kivi-int2-g32", "kivi-int8-g128", "gear-int4-r0.0625-s0.01"] {
            #expect(names.filter { $0 == name }.count == 1, "\(name)")
        }
        #expect(names.filter { $0 == "cskv-int8" }.count == 2)
        let kivi = try #require(rungs.first { $0.method == "kivi-int4-g32" })
        #expect(abs(kivi.memoryRatio - (reference["sweep-kivi-4-32"] as! Double)) < 1e-12)
        #expect(kivi.keepRatio == 0.25 && kivi.fitError != nil && kivi.attentionOutputError != nil)
        // Low-rank points carry no attention error; quantized ones cost more as bits grow.
        #expect(rungs.first { $0.method == "pca" }?.attentionOutputError == nil)
        let memory = ["kivi-int2-g32", "kivi-int4-g32", "kivi-int8-g32"].map { n in
            rungs.first { $0.method == n }!.memoryRatio
        }
        #expect(memory == memory.sorted() && memory[0] < memory[2])
        // Held out: fit errors on sequence 0, held-out errors, memory and attention on sequence 1.
        options.holdout = 0.5
        let held = try LowRankSweep.run(dump, options: options).filter { $0.method.hasPrefix("gear-") }
        #expect(held.count == 3 && held.allSatisfy { $0.heldOutError != nil && $0.fitError != $0.heldOutError })
    }

    /// GEAR's selection of a row's k largest errors: the k-th largest by quickselect equals the sorted answer,
    /// with ties, duplicates and every k.
    @Test func kthLargestIsTheSortedOne() {
        for count in [1, 2, 3, 7, 64, 257] {
            for pool in [3, 1000] {
                // A fixed scramble of 0 ..< pool (many ties when pool is 3).
                let values = (0..<count).map { Float(($0 * 7919 + count * 31) % pool) / 7 }
                let sorted = values.sorted(by: >)
                for k in Set([1, 2, count / 2 + 1, count]) where k <= count {
                    var scratch = values
                    #expect(QuantizationSweep.kthLargest(&scratch, k) == sorted[k - 1], "\(count) values, k \(k)")
                }
            }
        }
    }
}
