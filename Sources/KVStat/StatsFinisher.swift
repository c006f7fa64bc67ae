// Turns filled accumulators into statistics: eigendecompositions of the Gram matrices, effective ranks,
// outliers, sinks, frequency fractions, and the cross-layer matrices (CKA, cosine, subspace alignments).
import KVNumerics

public enum StatsFinisher {
    /// Finishes `state` into the report written as stats.json; the eigendecompositions' time goes to `timings`.
    public static func finish(_ state: AnalysisState, version: String, timings: StageTimings = StageTimings()) throws -> StatsReport {
        let o = state.options
        let sections = o.sections
        var layers = state.layers.map { StatsReport.Layer(layer: $0, kinds: [:]) }
        var similarity: [String: StatsReport.Similarity] = [:]
        let dump = DumpSummary.combining(state.sources)
        for kind in state.kinds.keys.sorted() {
            let ks = state.kinds[kind]!
            let headDim = dump.headDim
            // Top-r right singular vectors (columns) and σ, per layer, for the alignments.
            var bases: [(vectors: Matrix<Double>, sigma: [Double])] = []
            for (li, _) in state.layers.enumerated() {
                let gram = ks.gram[li]
                var stats = StatsReport.KindStats(tokens: max(gram.count, ks.moments[li].count), nonFinite: ks.nonFinite[li])
                if sections.contains(.spectra) || sections.contains(.similarity) {
                    let matrix = gram.matrix(centered: o.center)
                    let needVectors = sections.contains(.similarity) && !ks.cross.isEmpty
                    let eigen = try timings.measure("eigen") {
                        try SymmetricEigen(matrix, topVectors: needVectors ? min(o.alignRank, gram.channels) : 0)
                    }
                    let spectrum = Spectrum(gramEigenvalues: eigen.values)
                    if sections.contains(.spectra) {
                        stats.singularValues = spectrum.singularValues
                        stats.effectiveRank = Dictionary(uniqueKeysWithValues: Spectrum.energyLevels.map { (key($0), spectrum.effectiveRank(energy: $0)) })
                        stats.stableRank = spectrum.stableRank
                        stats.entropyRank = spectrum.entropyRank
                        var headValues: [[Double]] = []
                        for h in 0..<(gram.channels / headDim) {
                            var block = Matrix<Double>(rows: headDim, columns: headDim)
                            for i in 0..<headDim { for j in 0..<headDim { block[i, j] = matrix[h * headDim + i, h * headDim + j] } }
                            let values = try timings.measure("eigen") { try SymmetricEigen(block).values }
                            headValues.append(Spectrum(gramEigenvalues: values).singularValues)
                        }
                        stats.headSingularValues = headValues
                        stats.headEffectiveRank = Dictionary(uniqueKeysWithValues: Spectrum.energyLevels.map { p in
                            (key(p), headValues.map { Spectrum(gramEigenvalues: $0.map { $0 * $0 }).effectiveRank(energy: p) })
                        })
                    }
                    if let vectors = eigen.vectors {
                        let positive = spectrum.singularValues.filter { $0 > 1e-6 * (spectrum.singularValues.first ?? 0) }.count
                        let r = min(o.alignRank, positive)
                        var top = Matrix<Double>(rows: gram.channels, columns: r)
                        for i in 0..<gram.channels { for j in 0..<r { top[i, j] = vectors[i, j] } }
                        bases.append((top, Array(spectrum.singularValues.prefix(r))))
                    }
                }
                if sections.contains(.outliers) {
                    let m = ks.moments[li]
                    let maxAbs = m.maxAbs.map(Double.init)
                    let median = medianOf(maxAbs)
                    stats.channels = StatsReport.Channels(
                        maxAbs: maxAbs, mean: m.mean, rms: m.rms, kurtosis: m.kurtosis, medianMaxAbs: median,
                        outliers: maxAbs.indices.filter { maxAbs[$0] > o.outlierFactor * median })
                    let sketch = ks.norms[li]
                    let medianNorm = sketch.median
                    let (entries, count) = sketch.sinks(factor: o.outlierFactor)
                    stats.tokenNorms = StatsReport.Tokens(
                        medianNorm: medianNorm,
                        sinks: entries.map { StatsReport.Sink(sequence: $0.sequence, token: $0.token, norm: $0.norm, ratio: medianNorm > 0 ? $0.norm / medianNorm : 0) },
                        sinkCount: count)
                }
                if sections.contains(.frequency) {
                    let f = ks.frequency[li]
                    stats.frequency = StatsReport.Frequency(
                        lowEnergy: Dictionary(uniqueKeysWithValues: zip(FrequencyEnergy.fractions.map(key), f.lowFractions).map { ($0, $1) }),
                        spectrum: f.spectrum)
                }
                layers[li].kinds[kind] = stats
            }
            if sections.contains(.similarity) && !ks.cross.isEmpty {
                similarity[kind.rawValue] = timings.measure("pairs") {
                    pairMatrices(ks, bases: bases, pairs: state.pairs, layers: state.layers.count, centered: o.center)
                }
            }
        }
        return StatsReport(kvstatVersion: version, options: o, dump: dump, sources: state.sources.map(\.path),
                           layerNumbers: state.layers, layers: layers, similarity: similarity)
    }

    /// CKA, cosine and alignments for every computed pair; 1 on the diagonal, nil elsewhere.
    static func pairMatrices(_ ks: AnalysisState.KindState, bases: [(vectors: Matrix<Double>, sigma: [Double])],
                             pairs: [(Int, Int)], layers: Int, centered: Bool) -> StatsReport.Similarity {
        var cosine = [[Double?]](repeating: [Double?](repeating: nil, count: layers), count: layers)
        for i in 0..<layers { cosine[i][i] = 1 }
        var cka = cosine, subspace = cosine, channel = cosine
        // ‖XᵀX‖_F of each column-centred layer, once (a layer is in up to L − 1 pairs).
        var centeredNorms: [Int: Double] = [:]
        for (a, b) in pairs {
            for layer in [a, b] where centeredNorms[layer] == nil {
                centeredNorms[layer] = frobenius(ks.gram[layer].matrix(centered: true))
            }
        }
        for (index, (a, b)) in pairs.enumerated() {
            let pair = ks.cross[index]
            cosine[a][b] = pair.meanCosine
            // Linear CKA of column-centred matrices: ‖AᵀB‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F).
            let ga = ks.gram[a], gb = ks.gram[b]
            let n = Double(ga.count)
            let mua = ga.mean, mub = gb.mean
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
            let na = centeredNorms[a]!, nb = centeredNorms[b]!
            cka[a][b] = na > 0 && nb > 0 ? crossNorm / (na * nb) : 0
            if a < bases.count, b < bases.count {
                let (va, sa) = bases[a], (vb, sb) = bases[b]
                let r = min(sa.count, sb.count)
                if r > 0 {
                    // Token-side: U = X V Σ⁻¹, so UₐᵀU_b = Σₐ⁻¹ Vₐᵀ (AᵀB) V_b Σ_b⁻¹.
                    let middle = BLAS.multiply(BLAS.multiply(va, centeredCross, transposeA: true), vb)
                    var s = 0.0, t = 0.0
                    for i in 0..<r {
                        for j in 0..<r {
                            let u = middle[i, j] / (sa[i] * sb[j])
                            s += u * u
                        }
                    }
                    subspace[a][b] = s / Double(r)
                    let overlap = BLAS.multiply(va, vb, transposeA: true)
                    for i in 0..<r { for j in 0..<r { t += overlap[i, j] * overlap[i, j] } }
                    channel[a][b] = t / Double(r)
                }
            }
            (cosine[b][a], cka[b][a], subspace[b][a], channel[b][a]) = (cosine[a][b], cka[a][b], subspace[a][b], channel[a][b])
        }
        return StatsReport.Similarity(cosine: cosine, cka: cka, subspaceAlignment: subspace, channelAlignment: channel)
    }

    static func frobenius(_ m: Matrix<Double>) -> Double { m.values.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    static func medianOf(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// JSON keys for fractions: 0.9 → "0.9", 0.0625 → "0.0625".
    static func key(_ value: Double) -> String { "\(value)" }
}
