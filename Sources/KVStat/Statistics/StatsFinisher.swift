// Turns filled accumulators into statistics: eigendecompositions of the Gram matrices, effective ranks,
// outliers, sinks, frequency fractions, and the cross-layer pairs (CKA, cosine, subspace alignments).
// Degenerate data has documented results (docs/statistics.md, "Degenerate data"): undefined ratios are nil
// (JSON null), never 0 or NaN, and each layer's `notes` say which condition was met.
import KVNumerics

public enum StatsFinisher {
    /// Finishes `state` into the report written as stats.json: every layer's statistics in registration order
    /// (`LayerStatistics.finish`), then the cross-layer pairs; the eigendecompositions' time goes to `timings`.
    public static func finish(
        _ state: AnalysisState, version: String, timings: StageTimings = StageTimings()
    ) throws -> StatsReport {
        let o = state.options
        var layers = state.layers.map { StatsReport.Layer(layer: $0, kinds: [:]) }
        var similarity: [String: [StatsReport.Pair]] = [:]
        let dump = state.combinedSummary
        for kind in state.kinds.keys.sorted() {
            let ks = state.kinds[kind]!
            let wantsBasis = o.sections.contains(.similarity) && !ks.cross.isEmpty
            // Top-r right singular vectors (columns) and σ, per layer, for the alignments.
            var bases: [(vectors: Matrix<Double>, sigma: [Double])?] = []
            for li in state.layers.indices {
                var stats = StatsReport.KindStats(tokens: 0, nonFinite: 0)
                var context = FinishContext(
                    options: o, shape: ks.shape, timings: timings, wantsBasis: wantsBasis, basis: nil)
                try ks.layers[li].finish(into: &stats, context: &context)
                bases.append(context.basis)
                layers[li].kinds[kind] = stats
            }
            if wantsBasis {
                similarity[kind.rawValue] = timings.measure("pairs") {
                    pairs(
                        ks, bases: bases, pairs: state.pairs, layerNumbers: state.layers, centered: o.center,
                        alignRank: o.alignRank)
                }
            }
        }
        var report = StatsReport(
            kvstatVersion: version, options: o, dump: dump, sources: state.sources.map(\.path),
            layerNumbers: state.layers, layers: layers, similarity: similarity)
        report.dumpsPerKind = state.dumpsPerKind
        report.attentionSinks = attentionSinks(state, layers: layers)
        return report
    }

    /// CKA, cosine and alignments of every computed pair (positions into the analysed layers); a measure is
    /// nil where it is undefined (see `StatsReport.Pair`).
    static func pairs(
        _ ks: AnalysisState.KindState, bases: [(vectors: Matrix<Double>, sigma: [Double])?],
        pairs: [(Int, Int)], layerNumbers: [Int], centered: Bool, alignRank contextAlignRank: Int
    ) -> [StatsReport.Pair] {
        let grams = ks.gram
        // ‖XᵀX‖_F of each column-centred layer, once (a layer is in up to L − 1 pairs).
        var centeredNorms: [Int: Double] = [:]
        for (a, b) in pairs {
            for layer in [a, b] where centeredNorms[layer] == nil {
                centeredNorms[layer] = grams[layer].hasSpread ? frobenius(grams[layer].matrix(centered: true)) : 0
            }
        }
        return pairs.enumerated().map { index, positions in
            let (a, b) = positions
            let pair = ks.cross[index]
            guard pair.unevenRows == 0 else {
                // Each layer's statistics exclude its own non-finite rows; these two exclude different ones, so the
                // pair's measures would mix two row sets.
                var undefined = StatsReport.Pair(
                    layerA: layerNumbers[a], layerB: layerNumbers[b], cosine: pair.meanCosine, cka: nil,
                    subspaceAlignment: nil, channelAlignment: nil)
                undefined.note =
                    "\(pair.unevenRows) token rows are excluded (NaN/Inf) in one layer but not the other: "
                    + "CKA and alignments undefined (null); the cosine is over rows valid in both"
                return undefined
            }
            // Linear CKA of column-centred matrices: ‖AᵀB‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F).
            let ga = grams[a]
            let gb = grams[b]
            let n = Double(ga.count)
            let mua = ga.mean
            let mub = gb.mean
            let c = ga.channels
            var crossNorm = 0.0
            var centeredCross = pair.cross
            for i in 0..<c {
                for j in 0..<c {
                    let v = pair.cross[i, j] - n * mua[i] * mub[j]
                    crossNorm += v * v
                    if centered { centeredCross[i, j] = v }
                }
            }
            let na = centeredNorms[a]!
            let nb = centeredNorms[b]!
            let cka = na > 0 && nb > 0 ? finite(crossNorm / (na * nb)) : nil
            var subspace: Double?
            var channel: Double?
            var notes: [String] = []
            if a < bases.count, b < bases.count, let (va, sa) = bases[a], let (vb, sb) = bases[b] {
                let r = min(sa.count, sb.count)
                if r > 0 {
                    // Token-side: U = X V Σ⁻¹, so UₐᵀU_b = Σₐ⁻¹ Vₐᵀ (AᵀB) V_b Σ_b⁻¹.
                    let middle = BLAS.multiply(BLAS.multiply(va, centeredCross, transposeA: true), vb)
                    var s = 0.0
                    var t = 0.0
                    for i in 0..<r {
                        for j in 0..<r {
                            let u = middle[i, j] / (sa[i] * sb[j])
                            s += u * u
                        }
                    }
                    subspace = unitInterval(s / Double(r))
                    let overlap = BLAS.multiply(va, vb, transposeA: true)
                    for i in 0..<r { for j in 0..<r { t += overlap[i, j] * overlap[i, j] } }
                    channel = unitInterval(t / Double(r))
                    // Rank r spanning every token (or every channel) makes an alignment 1 by construction: a
                    // measure of nothing, reported as undefined rather than as perfect agreement.
                    let tokenRank = min(ga.count, gb.count) - (centered ? 1 : 0)
                    if r >= tokenRank {
                        subspace = nil
                        notes.append(
                            "alignment rank \(r) reaches the token count: subspace alignment is 1 by "
                                + "construction, reported null")
                    }
                    if r >= c {
                        channel = nil
                        notes.append(
                            "alignment rank \(r) reaches the channel count: channel alignment is 1 by "
                                + "construction, reported null")
                    }
                    if r < contextAlignRank, notes.isEmpty {
                        notes.append(
                            "alignments at rank \(r), not \(contextAlignRank): only \(r) singular values are resolved")
                    }
                }
            }
            var result = StatsReport.Pair(
                layerA: layerNumbers[a], layerB: layerNumbers[b], cosine: pair.meanCosine, cka: cka,
                subspaceAlignment: subspace, channelAlignment: channel)
            result.note = notes.isEmpty ? nil : notes.joined(separator: "; ")
            return result
        }
    }

    static func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }

    /// The attention-mass sinks of `state` (`AttentionMass.finish`, norm ratios against the finished layers' median
    /// token norms), or why they were not judged.
    static func attentionSinks(_ state: AnalysisState, layers: [StatsReport.Layer]) -> StatsReport.AttentionSinks {
        let o = state.options
        guard AttentionMass.isComputed(by: o) else {
            return AttentionMass.unjudged(
                o.sections.contains(.outliers)
                    ? "Attention-mass sinks not computed (--sink-queries 0)."
                    : "Attention-mass sinks not computed: the outliers section was left out.", options: o)
        }
        guard let mass = state.attentionMass else {
            return AttentionMass.unjudged(
                "Attention-mass sinks cannot be judged from state files, which do not keep them: analyze the dump.",
                options: o)
        }
        var medians: [TensorKind: [Int: Double]] = [:]
        for layer in layers {
            for kind in [TensorKind.key, .value] {
                if let m = layer.kinds[kind]?.tokenNorms?.medianNorm { medians[kind, default: [:]][layer.layer] = m }
            }
        }
        return mass.finish(keyMedians: medians[.key] ?? [:], valueMedians: medians[.value] ?? [:])
    }

    /// An alignment ‖AᵀB‖²_F / r of orthonormal r-column bases lies in [0, 1]; rounding may overshoot by a few
    /// ulps (clamped). A value further out would be a bug, not a number to report: nil.
    static func unitInterval(_ x: Double) -> Double? {
        guard x.isFinite, x >= -1e-9, x <= 1 + 1e-6 else { return nil }
        return min(max(x, 0), 1)
    }

    static func frobenius(_ m: Matrix<Double>) -> Double { m.values.reduce(0) { $0 + $1 * $1 }.squareRoot() }

}
