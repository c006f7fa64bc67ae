// Per-token L2 norms in bounded memory: a log-spaced histogram (for the median) and the largest norms with
// their positions (attention sinks / massive activations).
import Foundation
import KVNumerics

/// A mergeable sketch of the distribution of per-token norms ‖x_t‖₂.
///
/// The histogram has `binsPerOctave` bins per factor of two over norms 2⁻¹⁶⁰ … 2¹⁶⁰ (every norm a float32
/// row can have), so the median is known to within 2^(1/64) ≈ 1.1 %; it is sparse (only occupied bins are
/// stored), so its size grows with the spread of the norms, not with the range. The `capacity` largest norms
/// are kept exactly with their (sequence, token) positions. Norms are formed in float64 from the exact squares
/// of the float32 values (`MomentKernels.rowSumsOfSquares`, row ranges on every core): float32 squares never
/// leave float64's range, so no row needs rescaling. Rows that are all zero — including rows excluded for
/// non-finite values — are not counted.
/// Merge rule: add the histograms and counts, keep the largest `capacity` entries.
public struct TokenNormSketch: LayerStatistic {
    public struct Entry: Sendable, Codable, Equatable {
        public var sequence: Int
        public var token: Int
        public var norm: Double
    }

    static let binsPerOctave = 64.0
    static let minExponent = -160.0
    static let octaves = 320
    static var binCount: Int { octaves * Int(binsPerOctave) }

    /// Occupied histogram bins → tokens in them.
    public internal(set) var histogram: [Int: Int] = [:]
    public internal(set) var count = 0
    /// The largest norms seen, descending.
    public internal(set) var largest: [Entry] = []
    /// The smallest non-zero norms seen, ascending (tokens much smaller than the median: a sink's key or value
    /// may be one).
    public internal(set) var smallest: [Entry] = []
    public let capacity: Int

    public init(capacity: Int = 64) {
        self.capacity = capacity
    }

    static func bin(_ norm: Double) -> Int {
        guard norm > 0, norm.isFinite else { return norm > 0 ? binCount - 1 : 0 }
        let position = (log2(norm) - minExponent) * binsPerOctave
        return Int(min(max(position, 0), Double(binCount - 1)))
    }

    public mutating func fold(_ block: TokenBlock) {
        let sumsOfSquares = MomentKernels.rowSumsOfSquares(block.values, rows: block.rows, columns: block.columns)
        // The block's bins are counted in a dense array over the range they span, then added to the sparse
        // histogram: one dictionary update per occupied bin rather than per token.
        var bins = [Int](repeating: -1, count: block.rows)
        var (low, high) = (Int.max, Int.min)
        var row = 0
        for run in block.runs {
            for i in 0..<run.count where sumsOfSquares[row + i] > 0 {
                let norm = sumsOfSquares[row + i].squareRoot()
                let bin = TokenNormSketch.bin(norm)
                bins[row + i] = bin
                (low, high) = (min(low, bin), max(high, bin))
                count += 1
                keepIfLargest(Entry(sequence: run.sequence, token: run.start + i, norm: norm))
                keepIfSmallest(Entry(sequence: run.sequence, token: run.start + i, norm: norm))
            }
            row += run.count
        }
        guard low <= high else { return }
        var counts = [Int](repeating: 0, count: high - low + 1)
        for bin in bins where bin >= 0 { counts[bin - low] += 1 }
        for (offset, n) in counts.enumerated() where n > 0 { histogram[low + offset, default: 0] += n }
    }

    mutating func add(_ entry: Entry) {
        histogram[TokenNormSketch.bin(entry.norm), default: 0] += 1
        count += 1
        keepIfLargest(entry)
        keepIfSmallest(entry)
    }

    /// Inserts `entry` into `smallest` when it is among the `capacity` smallest norms seen.
    private mutating func keepIfSmallest(_ entry: Entry) {
        if smallest.count < capacity || entry.norm < smallest[smallest.count - 1].norm {
            let index = smallest.firstIndex { $0.norm > entry.norm } ?? smallest.count
            smallest.insert(entry, at: index)
            if smallest.count > capacity { smallest.removeLast() }
        }
    }

    /// Inserts `entry` into `largest` when it is among the `capacity` largest norms seen.
    private mutating func keepIfLargest(_ entry: Entry) {
        if largest.count < capacity || entry.norm > largest[largest.count - 1].norm {
            let index = largest.firstIndex { $0.norm < entry.norm } ?? largest.count
            largest.insert(entry, at: index)
            if largest.count > capacity { largest.removeLast() }
        }
    }

    public mutating func merge(_ other: TokenNormSketch) {
        histogram.merge(other.histogram, uniquingKeysWith: +)
        count += other.count
        largest = Array((largest + other.largest).sorted { $0.norm > $1.norm }.prefix(capacity))
        smallest = Array((smallest + other.smallest).sorted { $0.norm < $1.norm }.prefix(capacity))
    }

    /// The median norm, as the geometric centre of the histogram bin holding it; nil when no token has a
    /// non-zero norm.
    public var median: Double? {
        guard count > 0 else { return nil }
        var seen = 0
        for bin in histogram.keys.sorted() {
            seen += histogram[bin]!
            if 2 * seen >= count {
                return exp2((Double(bin) + 0.5) / TokenNormSketch.binsPerOctave + TokenNormSketch.minExponent)
            }
        }
        return nil
    }

    /// Tokens whose norm exceeds `factor` × the median (at most `capacity` of them), and how many exceed it
    /// in all (from the histogram, exact to the bin). None when there is no median.
    public func sinks(factor: Double) -> (entries: [Entry], count: Int) {
        guard let median else { return ([], 0) }
        let threshold = factor * median
        let entries = largest.filter { $0.norm > threshold }
        let edge = TokenNormSketch.bin(threshold)
        let binned = histogram.reduce(0) { $0 + ($1.key > edge ? $1.value : 0) }
        return (entries, max(entries.count, binned))
    }

    /// Tokens whose non-zero norm is below the median / `factor` (at most `capacity` of them), and how many are
    /// in all (from the histogram, exact to the bin). None when there is no median.
    public func smallNorms(factor: Double) -> (entries: [Entry], count: Int) {
        guard let median else { return ([], 0) }
        let threshold = median / factor
        let entries = smallest.filter { $0.norm < threshold }
        let edge = TokenNormSketch.bin(threshold)
        let binned = histogram.reduce(0) { $0 + ($1.key < edge ? $1.value : 0) }
        return (entries, max(entries.count, binned))
    }
}

// MARK: LayerStatistic: state file `norms_*`; stats.json `token_norms`.

extension TokenNormSketch {
    public static var stateName: String { "norms" }
    public static var timingStage: String { "outliers" }
    public static func isComputed(by options: AnalysisOptions) -> Bool { options.sections.contains(.outliers) }

    public init(shape: LayerShape) { self.init() }

    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch) { fold(block) }

    public func encode(to group: StateGroup) throws {
        try group.write("norms_count", [Int64(count)])
        let bins = histogram.keys.sorted()
        try group.write("norms_bins", bins.map(Int64.init))
        try group.write("norms_bin_counts", bins.map { Int64(histogram[$0]!) })
        try group.write(
            "norms_largest_position", largest.flatMap { [Int64($0.sequence), Int64($0.token)] },
            shape: [largest.count, 2])
        try group.write("norms_largest_norm", largest.map(\.norm))
        try group.write(
            "norms_smallest_position", smallest.flatMap { [Int64($0.sequence), Int64($0.token)] },
            shape: [smallest.count, 2])
        try group.write("norms_smallest_norm", smallest.map(\.norm))
    }

    /// Reads what `encode` wrote, refusing (`.badLayout`, naming the dataset) what kvstat never writes: a bin
    /// outside the sketch or twice, bin counts that do not sum to `norms_count`, more than `capacity` largest or
    /// smallest norms (or more than `norms_count`), a norm that is not finite and > 0, a negative position.
    public init(decoding group: StateGroup, shape: LayerShape) throws {
        self.init()
        count = try group.count("norms_count")
        let refuse = { (name: String, what: String) in
            DumpError(.badLayout, what, file: group.file, dataset: group.group.childPath(name))
        }
        let bins: [Int64] = try group.read("norms_bins")
        let binCounts: [Int64] = try group.read("norms_bin_counts", count: bins.count)
        var total = 0
        for (bin, n) in zip(bins, binCounts) {
            guard (0..<Int64(TokenNormSketch.binCount)).contains(bin), n >= 0 else {
                throw refuse("norms_bins", "holds a histogram bin outside the sketch")
            }
            guard histogram[Int(bin)] == nil else { throw refuse("norms_bins", "holds histogram bin \(bin) twice") }
            let (sum, overflow) = total.addingReportingOverflow(Int(n))
            guard !overflow, sum <= count else {
                throw refuse("norms_bin_counts", "holds bin counts that sum to more than norms_count (\(count))")
            }
            (histogram[Int(bin)], total) = (Int(n), sum)
        }
        guard total == count else {
            throw refuse("norms_bin_counts", "holds bin counts that sum to \(total), not norms_count (\(count))")
        }
        largest = try entries(group, norms: "norms_largest_norm", positions: "norms_largest_position", refuse)
        // State files written before the smallest norms were kept have none (small-norm tokens are then counted
        // from the histogram only).
        if group.group.exists("norms_smallest_norm") {
            smallest = try entries(group, norms: "norms_smallest_norm", positions: "norms_smallest_position", refuse)
        }
    }

    /// The kept norms `norms` with their (sequence, token) `positions`, checked as `init(decoding:shape:)` says.
    private func entries(
        _ group: StateGroup, norms name: String, positions positionsName: String,
        _ refuse: (String, String) -> DumpError
    ) throws -> [Entry] {
        let norms: [Double] = try group.read(name)
        guard norms.count <= min(capacity, count) else {
            throw refuse(name, "holds \(norms.count) norms, more than the \(min(capacity, count)) the sketch can keep")
        }
        if let bad = norms.first(where: { !($0.isFinite && $0 > 0) }) {
            throw refuse(name, "holds a norm \(bad), not finite and > 0")
        }
        let positions: [Int64] = try group.read(positionsName, count: 2 * norms.count)
        guard positions.allSatisfy({ $0 >= 0 }) else { throw refuse(positionsName, "holds a negative position") }
        return norms.indices.map {
            Entry(sequence: Int(positions[2 * $0]), token: Int(positions[2 * $0 + 1]), norm: norms[$0])
        }
    }

    /// The median token norm (null when no token has a non-zero one), the large-norm tokens above F × it
    /// (`sinks`, the name stats.json has always used) and the small-norm tokens below it / F.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        let medianNorm = median
        let (entries, count) = sinks(factor: context.options.outlierFactor)
        let (small, smallCount) = smallNorms(factor: context.options.outlierFactor)
        let row = { (e: Entry) in
            StatsReport.Sink(sequence: e.sequence, token: e.token, norm: e.norm, ratio: e.norm / medianNorm!)
        }
        stats.tokenNorms = StatsReport.Tokens(medianNorm: medianNorm, sinks: entries.map(row), sinkCount: count)
        stats.tokenNorms?.smallNorms = small.map(row)
        stats.tokenNorms?.smallNormCount = smallCount
    }
}
