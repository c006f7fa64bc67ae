// Per-channel max |x|, mean, RMS and kurtosis, streamed with the pairwise central-moment update, which stays
// accurate where raw power sums (Σx⁴ − …) cancel catastrophically; the block loop is a C kernel (MomentKernels).
import KVNumerics

/// Per-channel moments of the rows seen: count, max |x|, mean and central moments M2, M3, M4.
///
/// A block is folded by `MomentKernels.channelMoments` (C, vectorised, channel ranges on every core): its
/// rows in chunks of 256, each chunk's central sums formed in float64 from the exact float64 value of each
/// float32 x (so fourth powers of any float32, 10⁻¹⁸⁰ … 10¹⁵⁴, stay inside float64's range: no rescaling), the
/// chunks, then the block, combined with the running state by the pairwise formulas of Chan et al. /
/// Pébay (2008): δ = μ_B − μ_A, n = n_A + n_B,
/// M2 = M2_A + M2_B + δ² n_A n_B / n,
/// M3 = M3_A + M3_B + δ³ n_A n_B (n_A − n_B) / n² + 3δ (n_A M2_B − n_B M2_A) / n,
/// M4 = M4_A + M4_B + δ⁴ n_A n_B (n_A² − n_A n_B + n_B²) / n³ + 6δ² (n_A² M2_B + n_B² M2_A) / n²
///      + 4δ (n_A M3_B − n_B M3_A) / n.
/// Merge is the same formula. Kurtosis is Pearson's (not excess): n M4 / M2², 3 for a Gaussian; it agrees with
/// a two-pass float64 computation on the same float32 values to within 1e-9 relative (tested; typically ~1e-13).
public struct ChannelMoments: LayerStatistic {
    public internal(set) var count = 0
    public internal(set) var maxAbs: [Float]
    public internal(set) var mean: [Double]
    var m2: [Double], m3: [Double], m4: [Double]

    public init(channels: Int) {
        maxAbs = [Float](repeating: 0, count: channels)
        mean = [Double](repeating: 0, count: channels)
        m2 = mean
        m3 = mean
        m4 = mean
    }

    public var channels: Int { mean.count }

    /// Adds the block's valid rows (rows in `excludedRows` are zero and do not count).
    public mutating func fold(_ block: TokenBlock) {
        precondition(block.columns == channels)
        guard block.validRows > 0 else { return }
        let b = MomentKernels.channelMoments(
            block.values, rows: block.rows, columns: channels, excludedRows: block.excludedRows, maxAbs: &maxAbs)
        combine(count: b.count, mean: b.mean, m2: b.m2, m3: b.m3, m4: b.m4)
    }

    public mutating func merge(_ other: ChannelMoments) {
        for j in 0..<channels { maxAbs[j] = max(maxAbs[j], other.maxAbs[j]) }
        combine(count: other.count, mean: other.mean, m2: other.m2, m3: other.m3, m4: other.m4)
    }

    private mutating func combine(count nb: Int, mean mb: [Double], m2 b2: [Double], m3 b3: [Double], m4 b4: [Double]) {
        guard nb > 0 else { return }
        guard count > 0 else {
            (count, mean, m2, m3, m4) = (nb, mb, b2, b3, b4)
            return
        }
        let na = Double(count)
        let nbD = Double(nb)
        let n = na + nbD
        for j in 0..<channels {
            let delta = mb[j] - mean[j]
            let d2 = delta * delta
            let a2 = m2[j]
            let a3 = m3[j]
            m4[j] +=
                b4[j] + d2 * d2 * na * nbD * (na * na - na * nbD + nbD * nbD) / (n * n * n)
                + 6 * d2 * (na * na * b2[j] + nbD * nbD * a2) / (n * n) + 4 * delta * (na * b3[j] - nbD * a3) / n
            m3[j] += b3[j] + d2 * delta * na * nbD * (na - nbD) / (n * n) + 3 * delta * (na * b2[j] - nbD * a2) / n
            m2[j] += b2[j] + d2 * na * nbD / n
            mean[j] += delta * nbD / n
        }
        count += nb
    }

    /// Root mean square per channel: √(E[x²]) = √(M2/n + μ²).
    public var rms: [Double] {
        (0..<channels).map { count > 0 ? (m2[$0] / Double(count) + mean[$0] * mean[$0]).squareRoot() : 0 }
    }

    /// Pearson kurtosis per channel, n M4 / M2²; nil where it is undefined (0/0): no rows, or a channel that
    /// is constant up to float32 rounding (standard deviation ≤ 2⁻²⁰·|mean|, or exactly 0).
    public var kurtosis: [Double?] {
        (0..<channels).map { j -> Double? in
            guard count > 0, m2[j] > 0 else { return nil }
            let variance = m2[j] / Double(count)
            let floor = 0x1p-20 * abs(mean[j])
            guard variance > floor * floor else { return nil }
            let value = Double(count) * m4[j] / (m2[j] * m2[j])
            return value.isFinite ? value : nil
        }
    }

}

// MARK: LayerStatistic: state file `moments_count`, `moments_max_abs`, `moments_central`; stats.json `channels`.

extension ChannelMoments {
    public static var stateName: String { "moments" }
    public static var timingStage: String { "outliers" }
    public static func isComputed(by options: AnalysisOptions) -> Bool { options.sections.contains(.outliers) }

    public init(shape: LayerShape) { self.init(channels: shape.channels) }

    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch) { fold(block) }

    public func encode(to group: StateGroup) throws {
        try group.write("moments_count", [Int64(count)])
        try group.write("moments_max_abs", maxAbs)
        try group.write("moments_central", mean + m2 + m3 + m4, shape: [4, channels])
    }

    public init(decoding group: StateGroup, shape: LayerShape) throws {
        let c = shape.channels
        self.init(channels: c)
        count = try group.count("moments_count")
        maxAbs = try group.read("moments_max_abs", count: c)
        let central: [Double] = try group.read("moments_central", count: 4 * c)
        (mean, m2, m3, m4) = (
            Array(central[0..<c]), Array(central[c..<(2 * c)]), Array(central[(2 * c)..<(3 * c)]),
            Array(central[(3 * c)...])
        )
        // Central moments of real data: M2, M4 ≥ 0 and n·M4 ≥ M2² (Pearson kurtosis ≥ 1, up to rounding).
        let n = Double(count)
        guard (0..<c).allSatisfy({ m2[$0] >= 0 && m4[$0] >= 0 && n * m4[$0] >= m2[$0] * m2[$0] * (1 - 1e-6) }) else {
            throw DumpError(
                .badLayout, "holds central moments no data can have (negative, or kurtosis below 1)", file: group.file,
                dataset: group.group.childPath("moments_central"))
        }
    }

    /// Per-channel max |x|, mean, RMS, kurtosis and outliers (max |x| > F × the median channel's). No rows:
    /// `channels` null; a zero median: `outliers` null; constant channels: their kurtosis null — with notes.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        guard count > 0 else { return }
        let peaks = maxAbs.map(Double.init)
        let median = Self.median(peaks)
        let kurtosis = self.kurtosis
        let constant = kurtosis.filter { $0 == nil }.count
        if constant > 0 {
            stats.notes.append(
                "\(constant) of \(kurtosis.count) channels are constant: their kurtosis is undefined (null)")
        }
        if median == 0 {
            stats.notes.append("the median channel's max |x| is 0: outlier ratios are undefined (outliers null)")
        }
        let factor = context.options.outlierFactor
        stats.channels = StatsReport.Channels(
            maxAbs: peaks, mean: mean, rms: rms, kurtosis: kurtosis, medianMaxAbs: median,
            outliers: median > 0 ? peaks.indices.filter { peaks[$0] > factor * median } : nil)
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}
