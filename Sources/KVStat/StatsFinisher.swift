// Turns filled accumulators into statistics: eigendecompositions of the Gram matrices, effective ranks,
// outliers, sinks, frequency fractions, and the cross-layer pairs (CKA, cosine, subspace alignments).
// Degenerate data has documented results (docs/statistics.md, "Degenerate data"): undefined ratios are nil
// (JSON null), never 0 or NaN, and each layer's `notes` say which condition was met.
import KVNumerics

public enum StatsFinisher {
    /// Finishes `state` into the report written as stats.json; the eigendecompositions' time goes to `timings`.
    public static func finish(_ state: AnalysisState, version: String, timings: StageTimings = StageTimings()) throws -> StatsReport {
        let o = state.options
        var layers = state.layers.map { StatsReport.Layer(layer: $0, kinds: [:]) }
        var similarity: [String: [StatsReport.Pair]] = [:]
        let dump = DumpSummary.combining(state.sources)
        for kind in state.kinds.keys.sorted() {
            let ks = state.kinds[kind]!
            // Top-r right singular vectors (columns) and σ, per layer, for the alignments.
            var bases: [(vectors: Matrix<Double>, sigma: [Double])?] = []
            for li in state.layers.indices {
                var stats = StatsReport.KindStats(tokens: max(ks.gram[li].count, ks.moments[li].count), nonFinite: ks.nonFinite[li])
                if ks.nonFinite[li] > 0 {
                    stats.notes.append("\(ks.nonFinite[li]) NaN/Inf values; the token rows holding them are excluded")
                }
                if stats.tokens == 0 {
                    stats.notes.append("no valid token rows (every row was excluded): the statistics are those of an empty "
                                       + "matrix — singular values 0, effective ranks 0, every ratio null")
                }
                if o.sections.contains(.spectra) || o.sections.contains(.similarity) {
                    let basis = try spectra(ks.gram[li], options: o, headDim: dump.headDim,
                                            wantVectors: o.sections.contains(.similarity) && !ks.cross.isEmpty,
                                            into: &stats, timings: timings)
                    bases.append(basis)
                }
                if o.sections.contains(.outliers) {
                    outliers(ks.moments[li], ks.norms[li], factor: o.outlierFactor, into: &stats)
                }
                if o.sections.contains(.frequency) {
                    frequency(ks.frequency[li], into: &stats)
                }
                layers[li].kinds[kind] = stats
            }
            if o.sections.contains(.similarity) && !ks.cross.isEmpty {
                similarity[kind.rawValue] = timings.measure("pairs") {
                    pairs(ks, bases: bases, pairs: state.pairs, layerNumbers: state.layers, centered: o.center)
                }
            }
        }
        return StatsReport(kvstatVersion: version, options: o, dump: dump, sources: state.sources.map(\.path),
                           layerNumbers: state.layers, layers: layers, similarity: similarity)
    }

    /// σ, effective/stable/entropy ranks and per-head spectra of one layer's Gram; returns its top-r basis
    /// when `wantVectors`. A zero Gram gives σ = 0, ranks 0 and nil ratios (with a note).
    static func spectra(_ gram: GramAccumulator, options o: AnalysisOptions, headDim: Int, wantVectors: Bool,
                        into stats: inout StatsReport.KindStats,
                        timings: StageTimings) throws -> (vectors: Matrix<Double>, sigma: [Double])? {
        var matrix = gram.matrix(centered: o.center)
        if o.center && !hasSpread(gram) { matrix = Matrix(rows: gram.channels, columns: gram.channels) }
        guard matrix.values.allSatisfy(\.isFinite) else {
            // Cannot happen for finite rows (each block is rescaled into float32's range); kept as a guard so a
            // bug shows as a note and nulls rather than a LAPACK failure.
            stats.notes.append("the Gram matrix is not finite: spectra undefined (null)")
            return nil
        }
        let eigen = try timings.measure("eigen") {
            try SymmetricEigen(matrix, topVectors: wantVectors ? min(o.alignRank, gram.channels) : 0)
        }
        let spectrum = Spectrum(gramEigenvalues: eigen.values)
        if stats.tokens > 0 && spectrum.energy == 0 {
            stats.notes.append(o.center && gram.diagonalSum(0..<gram.channels) > 0
                ? "every channel is constant (centred energy below 1e-6 of the total): the centred matrix is zero, "
                    + "its ranks 0 and rank ratios null"
                : "every value is zero: ranks are 0; stable and entropy ranks, kurtosis, frequency fractions and "
                    + "similarity ratios are undefined (null)")
        }
        if o.sections.contains(.spectra) {
            stats.singularValues = spectrum.singularValues
            stats.effectiveRank = Dictionary(uniqueKeysWithValues: Spectrum.energyLevels.map {
                (EnergyFraction.key($0), spectrum.effectiveRank(energy: $0))
            })
            stats.stableRank = spectrum.stableRank
            stats.entropyRank = spectrum.entropyRank
            var headValues: [[Double]] = []
            for h in 0..<(headDim > 0 ? gram.channels / headDim : 0) {
                var block = Matrix<Double>(rows: headDim, columns: headDim)
                for i in 0..<headDim { for j in 0..<headDim { block[i, j] = matrix[h * headDim + i, h * headDim + j] } }
                let values = try timings.measure("eigen") { try SymmetricEigen(block).values }
                headValues.append(Spectrum(gramEigenvalues: values).singularValues)
            }
            stats.headSingularValues = headValues
            stats.headEffectiveRank = Dictionary(uniqueKeysWithValues: Spectrum.energyLevels.map { p in
                (EnergyFraction.key(p), headValues.map { Spectrum(gramEigenvalues: $0.map { $0 * $0 }).effectiveRank(energy: p) })
            })
        }
        guard let vectors = eigen.vectors else { return nil }
        let sigma = spectrum.singularValues
        // Only directions above the Gram route's noise floor (σ below ~3e-4 σ₁ is float32 rounding) and within
        // the matrix's rank (at most its rows, one fewer when centred): dividing by a noise σ would make
        // U = XVΣ⁻¹ meaningless and the alignment exceed 1.
        let resolved = sigma.filter { $0 > 1e-3 * (sigma.first ?? 0) }.count
        let r = min(o.alignRank, resolved, max(gram.count - (o.center ? 1 : 0), 0))
        var top = Matrix<Double>(rows: gram.channels, columns: r)
        for i in 0..<gram.channels { for j in 0..<r { top[i, j] = vectors[i, j] } }
        return (top, Array(sigma.prefix(r)))
    }

    /// Per-channel moments and outliers, token norms and sinks. No rows: channels null; a zero median channel
    /// max |x|: outliers null; constant channels: their kurtosis null; no non-zero token: median norm null.
    static func outliers(_ m: ChannelMoments, _ sketch: TokenNormSketch, factor: Double, into stats: inout StatsReport.KindStats) {
        if m.count > 0 {
            let maxAbs = m.maxAbs.map(Double.init)
            let median = medianOf(maxAbs)
            let kurtosis = m.kurtosis
            let constant = kurtosis.filter { $0 == nil }.count
            if constant > 0 {
                stats.notes.append("\(constant) of \(kurtosis.count) channels are constant: their kurtosis is undefined (null)")
            }
            if median == 0 {
                stats.notes.append("the median channel's max |x| is 0: outlier ratios are undefined (outliers null)")
            }
            stats.channels = StatsReport.Channels(
                maxAbs: maxAbs, mean: m.mean, rms: m.rms, kurtosis: kurtosis, medianMaxAbs: median,
                outliers: median > 0 ? maxAbs.indices.filter { maxAbs[$0] > factor * median } : nil)
        }
        let medianNorm = sketch.median
        let (entries, count) = sketch.sinks(factor: factor)
        stats.tokenNorms = StatsReport.Tokens(
            medianNorm: medianNorm,
            sinks: entries.map { entry in
                StatsReport.Sink(sequence: entry.sequence, token: entry.token, norm: entry.norm, ratio: entry.norm / medianNorm!)
            },
            sinkCount: count)
    }

    /// Low-frequency fractions and the binned spectrum; null with a note when there is no energy.
    static func frequency(_ f: FrequencyEnergy, into stats: inout StatsReport.KindStats) {
        let low = f.lowFractions
        if low == nil && stats.tokens > 0 && !stats.notes.contains(where: { $0.hasPrefix("every value is zero") }) {
            stats.notes.append("no energy along tokens: frequency fractions are undefined (null)")
        }
        stats.frequency = StatsReport.Frequency(
            lowEnergy: low.map { Dictionary(uniqueKeysWithValues: zip(FrequencyEnergy.fractions.map(EnergyFraction.key), $0).map { ($0, $1) }) },
            spectrum: f.spectrum)
    }

    /// CKA, cosine and alignments of every computed pair (positions into the analysed layers); a measure is
    /// nil where it is undefined (see `StatsReport.Pair`).
    static func pairs(_ ks: AnalysisState.KindState, bases: [(vectors: Matrix<Double>, sigma: [Double])?],
                      pairs: [(Int, Int)], layerNumbers: [Int], centered: Bool) -> [StatsReport.Pair] {
        // ‖XᵀX‖_F of each column-centred layer, once (a layer is in up to L − 1 pairs).
        var centeredNorms: [Int: Double] = [:]
        for (a, b) in pairs {
            for layer in [a, b] where centeredNorms[layer] == nil {
                centeredNorms[layer] = hasSpread(ks.gram[layer]) ? frobenius(ks.gram[layer].matrix(centered: true)) : 0
            }
        }
        return pairs.enumerated().map { index, positions in
            let (a, b) = positions
            let pair = ks.cross[index]
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
            let cka = na > 0 && nb > 0 ? finite(crossNorm / (na * nb)) : nil
            var subspace: Double?, channel: Double?
            if a < bases.count, b < bases.count, let (va, sa) = bases[a], let (vb, sb) = bases[b] {
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
                    subspace = unitInterval(s / Double(r))
                    let overlap = BLAS.multiply(va, vb, transposeA: true)
                    for i in 0..<r { for j in 0..<r { t += overlap[i, j] * overlap[i, j] } }
                    channel = unitInterval(t / Double(r))
                }
            }
            return StatsReport.Pair(layerA: layerNumbers[a], layerB: layerNumbers[b], cosine: pair.meanCosine, cka: cka,
                                    subspaceAlignment: subspace, channelAlignment: channel)
        }
    }

    static func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }

    /// An alignment ‖AᵀB‖²_F / r of orthonormal r-column bases lies in [0, 1]; rounding may overshoot by a few
    /// ulps (clamped). A value further out would be a bug, not a number to report: nil.
    static func unitInterval(_ x: Double) -> Double? {
        guard x.isFinite, x >= -1e-9, x <= 1 + 1e-6 else { return nil }
        return min(max(x, 0), 1)
    }

    /// Whether the columns vary beyond the resolution of the Gram route: centring subtracts nμμᵀ from XᵀX,
    /// whose float32 block products carry a relative rounding of ~1e-7, so a centred energy tr(XᵀX − nμμᵀ)
    /// below 1e-6 of tr(XᵀX) is indistinguishable from constant columns (and is treated as zero).
    static func hasSpread(_ gram: GramAccumulator) -> Bool {
        let total = gram.diagonalSum(0..<gram.channels)
        guard total > 0, gram.count > 0 else { return false }
        let n = Double(gram.count)
        let centred = total - gram.sum.reduce(0) { $0 + $1 * $1 } / n
        return centred > 1e-6 * total
    }

    static func frobenius(_ m: Matrix<Double>) -> Double { m.values.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    static func medianOf(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}
