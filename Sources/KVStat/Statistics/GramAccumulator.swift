// XᵀX, column sums and the row count of one layer's matrix: everything spectra, per-head spectra, CKA and
// subspace alignment need, in C² float64 numbers however many tokens stream through; finished into the spectra
// (σ, effective/stable/entropy ranks, per-head spectra) and the basis the cross-layer alignments use.
import KVNumerics

/// Uncentred second moments of a `tokens × channels` matrix X.
///
/// `gram = Σ_t x_t x_tᵀ = XᵀX`, `sum = Σ_t x_t`, `count` = rows. Each block's product is formed in float32 by
/// SSYRK and added in float64 (`BLAS.accumulateGram`), so rounding grows with the block, not the dump. A
/// block whose values would overflow or underflow float32 when squared (|x| beyond 2^±20) is rescaled by a
/// power of two first (`PowerOfTwoScale`), and its product scaled back in float64.
/// Centring is applied at the end: `XᵀX − n μμᵀ` with μ = sum / n, exact in exact arithmetic and accurate in
/// float64 unless |μ| dwarfs the spread by ~10⁶, which KV activations do not. Merge rule: add all three.
public struct GramAccumulator: LayerStatistic {
    public internal(set) var count = 0
    public internal(set) var sum: [Double]
    /// XᵀX's lower triangle, packed row by row (what `BLAS.accumulateGram` adds to).
    var packedLower: [Double]

    public init(channels: Int) {
        sum = [Double](repeating: 0, count: channels)
        packedLower = [Double](repeating: 0, count: channels * (channels + 1) / 2)
    }

    /// XᵀX, both triangles.
    public var gram: Matrix<Double> { Matrix.fromPackedLower(packedLower, n: channels) }

    public var channels: Int { sum.count }

    /// `fold` with a throwaway product buffer (tests, one-off use).
    public mutating func fold(_ block: TokenBlock) {
        var scratch: [Float] = []
        fold(block, scratch: &scratch)
    }

    /// `fold`, with the caller's float32 scratch for the block product (channels² floats, kept between calls
    /// so that one buffer serves every layer).
    public mutating func fold(_ block: TokenBlock, scratch: inout [Float]) {
        precondition(block.columns == channels)
        let scale = PowerOfTwoScale(maxMagnitude: BLAS.maxMagnitude(block.values))
        if scale.isIdentity {
            BLAS.accumulateGram(
                block.values, rows: block.rows, columns: channels, into: &packedLower, scratch: &scratch)
        } else {
            // Values whose squares would leave float32's range: the product of a rescaled copy, scaled back.
            let scaled = [Float](unsafeUninitializedCapacity: block.values.count) { buffer, count in
                scale.apply(block.values, into: buffer)
                count = block.values.count
            }
            scaled.withUnsafeBufferPointer {
                BLAS.accumulateGram(
                    $0, rows: block.rows, columns: channels, into: &packedLower, scratch: &scratch,
                    multiplier: scale.undo(power: 2))
            }
        }
        count += block.validRows
        // Column sums in float64 (excluded rows are zero and add nothing), channel ranges on every core.
        let columns = channels
        sum.withUnsafeMutableBufferPointer { s in
            MomentKernels.addColumnSums(
                block.values, columns: columns, segments: [(0..<block.rows, 0)], absolute: false, into: s)
        }
    }

    public mutating func merge(_ other: GramAccumulator) {
        precondition(other.channels == channels)
        count += other.count
        for c in 0..<channels { sum[c] += other.sum[c] }
        for i in packedLower.indices { packedLower[i] += other.packedLower[i] }
    }

    /// Σ of XᵀX's diagonal over `channels`: the squared Frobenius norm of those columns of X.
    public func diagonalSum(_ channels: Range<Int>) -> Double {
        channels.reduce(0.0) { $0 + packedLower[$1 * ($1 + 1) / 2 + $1] }
    }

    /// Column means μ.
    public var mean: [Double] { sum.map { count > 0 ? $0 / Double(count) : 0 } }

    /// XᵀX, or the centred (X − 1μᵀ)ᵀ(X − 1μᵀ) = XᵀX − n μμᵀ.
    public func matrix(centered: Bool) -> Matrix<Double> {
        guard centered, count > 0 else { return gram }
        var m = gram
        let mu = mean
        let n = Double(count)
        for i in 0..<channels { for j in 0..<channels { m.values[i * channels + j] -= n * mu[i] * mu[j] } }
        return m
    }

}

// MARK: LayerStatistic: state file `gram_count`, `gram_sum`, `gram_lower_packed`; stats.json spectra.

extension GramAccumulator {
    public static var stateName: String { "gram" }

    /// The spectra and the cross-layer similarity both need it.
    public static func isComputed(by options: AnalysisOptions) -> Bool {
        options.sections.contains(.spectra) || options.sections.contains(.similarity)
    }

    public init(shape: LayerShape) { self.init(channels: shape.channels) }

    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch) { fold(block, scratch: &scratch.product) }

    /// SSYRK: rows · C² (counted as T·C², the convention of the calibration).
    public func flops(_ block: TokenBlock) -> Double { Double(block.rows * channels * channels) }

    public func encode(to group: StateGroup) throws {
        try group.write("gram_count", [Int64(count)])
        try group.write("gram_sum", sum)
        try group.write("gram_lower_packed", packedLower)
    }

    public init(decoding group: StateGroup, shape: LayerShape) throws {
        self.init(channels: shape.channels)
        count = try group.count("gram_count")
        sum = try group.read("gram_sum", count: shape.channels)
        packedLower = try group.read("gram_lower_packed", count: shape.channels * (shape.channels + 1) / 2)
    }

    /// Whether the columns vary beyond the resolution of the Gram route: centring subtracts nμμᵀ from XᵀX,
    /// whose float32 block products carry a relative rounding of ~1e-7, so a centred energy tr(XᵀX − nμμᵀ)
    /// below 1e-6 of tr(XᵀX) is indistinguishable from constant columns (and is treated as zero).
    public var hasSpread: Bool {
        let total = diagonalSum(0..<channels)
        guard total > 0, count > 0 else { return false }
        let centred = total - sum.reduce(0) { $0 + $1 * $1 } / Double(count)
        return centred > 1e-6 * total
    }

    /// σ, effective/stable/entropy ranks and per-head spectra (with `spectra`), and the top-r basis for the
    /// alignments (when `context.wantsBasis`). A zero Gram gives σ = 0, ranks 0 and null ratios, with a note.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        let o = context.options
        let headDim = context.shape.headDim
        var matrix = self.matrix(centered: o.center)
        if o.center && !hasSpread { matrix = Matrix(rows: channels, columns: channels) }
        guard matrix.values.allSatisfy({ $0.isFinite }) else {
            // Cannot happen for finite rows (each block is rescaled into float32's range); kept as a guard so a
            // bug shows as a note and nulls rather than a LAPACK failure.
            stats.notes.append("the Gram matrix is not finite: spectra undefined (null)")
            return
        }
        let wantsBasis = context.wantsBasis
        let eigen = try context.timings.measure("eigen") {
            try SymmetricEigen(matrix, topVectors: wantsBasis ? min(o.alignRank, channels) : 0)
        }
        let spectrum = Spectrum(gramEigenvalues: eigen.values)
        if stats.tokens > 0 && spectrum.energy == 0 {
            stats.notes.append(
                o.center && diagonalSum(0..<channels) > 0
                    ? "every channel is constant (centred energy below 1e-6 of the total): the centred matrix is zero, "
                        + "its ranks 0 and rank ratios null"
                    : "every value is zero: ranks are 0; stable and entropy ranks, kurtosis, frequency fractions and "
                        + "similarity ratios are undefined (null)")
        }
        if o.sections.contains(.spectra) {
            stats.singularValues = spectrum.singularValues
            stats.effectiveRank = Dictionary(
                uniqueKeysWithValues: Spectrum.energyLevels.map {
                    (EnergyFraction.key($0), spectrum.effectiveRank(energy: $0))
                })
            stats.stableRank = spectrum.stableRank
            stats.entropyRank = spectrum.entropyRank
            var headValues: [[Double]] = []
            for h in 0..<(headDim > 0 ? channels / headDim : 0) {
                var block = Matrix<Double>(rows: headDim, columns: headDim)
                for i in 0..<headDim { for j in 0..<headDim { block[i, j] = matrix[h * headDim + i, h * headDim + j] } }
                let values = try context.timings.measure("eigen") { try SymmetricEigen(block).values }
                headValues.append(Spectrum(gramEigenvalues: values).singularValues)
            }
            stats.headSingularValues = headValues
            stats.headEffectiveRank = Dictionary(
                uniqueKeysWithValues: Spectrum.energyLevels.map { p in
                    (
                        EnergyFraction.key(p),
                        headValues.map { Spectrum(gramEigenvalues: $0.map { $0 * $0 }).effectiveRank(energy: p) }
                    )
                })
        }
        guard let vectors = eigen.vectors else { return }
        let sigma = spectrum.singularValues
        // Only directions above the Gram route's noise floor (σ below ~3e-4 σ₁ is float32 rounding) and within
        // the matrix's rank (at most its rows, one fewer when centred): dividing by a noise σ would make
        // U = XVΣ⁻¹ meaningless and the alignment exceed 1.
        let resolved = sigma.filter { $0 > 1e-3 * (sigma.first ?? 0) }.count
        let r = min(o.alignRank, resolved, max(count - (o.center ? 1 : 0), 0))
        var top = Matrix<Double>(rows: channels, columns: r)
        for i in 0..<channels { for j in 0..<r { top[i, j] = vectors[i, j] } }
        context.basis = (top, Array(sigma.prefix(r)))
    }
}
