// The one shape every streamed statistic of a layer takes — the aggregate-state pattern of DuckDB's aggregate
// functions and Apache DataSketches: a state, `fold` (a token block), `merge` (another state of other tokens),
// `encode`/`decode` (a state file's layer group) and `finish` (its numbers in stats.json). The analysis, the
// state file and the finisher are loops over `LayerStatistics.registered`, so adding a statistic is its own
// file, one line in that list, its output field in `StatsReport.KindStats`, its test and its schema docs.
import KVNumerics

/// The sizes a layer's statistics are made for.
public struct LayerShape: Sendable, Equatable {
    /// heads × head_dim.
    public var channels: Int
    public var headDim: Int

    public init(channels: Int, headDim: Int) {
        self.channels = channels
        self.headDim = headDim
    }
}

/// Buffers reused across blocks and layers by `fold` (one block product, channels² float32): one per pass,
/// used by one thread.
public final class FoldScratch {
    var product: [Float] = []

    public init() {}
}

/// What `finish` needs besides the state: the options, timings, and what one statistic hands the next (the
/// Gram's top singular vectors, for the cross-layer alignments).
public struct FinishContext {
    public var options: AnalysisOptions
    public var shape: LayerShape
    public var timings: StageTimings
    /// Whether the cross-layer pairs need this layer's top-r right singular vectors.
    public var wantsBasis: Bool
    /// Set by the Gram's `finish` when `wantsBasis`: the vectors (columns) and their σ.
    public var basis: (vectors: Matrix<Double>, sigma: [Double])?
}

/// A mergeable, saveable summary of one layer's token rows. For any split of the rows into A and B,
/// `merge(fold(A), fold(B))` equals `fold(A ++ B)` up to floating-point rounding (a test per statistic), and
/// decoding what `encode` wrote gives the same state.
public protocol LayerStatistic: Sendable, Equatable {
    /// Stable name: the prefix of its datasets in a state file (`{stateName}_…`) and of its timing stage.
    static var stateName: String { get }
    /// The `--timings` stage its folding counts towards.
    static var timingStage: String { get }
    /// Whether an analysis with these options computes it.
    static func isComputed(by options: AnalysisOptions) -> Bool
    /// An empty state.
    init(shape: LayerShape)
    /// Adds the valid rows of `block` (a statistic fed by another pass — the DCT's windows — ignores blocks).
    mutating func fold(_ block: TokenBlock, scratch: FoldScratch)
    /// Floating-point work of folding `block`, for `--timings` (0 where not counted).
    func flops(_ block: TokenBlock) -> Double
    /// Adds everything `other` (the same shape, other tokens) has seen.
    mutating func merge(_ other: Self)
    /// Writes the state into a state file's layer group.
    func encode(to group: StateGroup) throws
    /// Reads a state written by `encode`, checking every size against `shape`.
    init(decoding group: StateGroup, shape: LayerShape) throws
    /// Writes the finished numbers (and notes on degenerate data) into the layer's stats.
    func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws
}

extension LayerStatistic {
    public static var timingStage: String { stateName }
    public func flops(_ block: TokenBlock) -> Double { 0 }
}

extension LayerStatistics: Equatable {
    /// The same statistics, in the same order, with equal states.
    public static func == (a: LayerStatistics, b: LayerStatistics) -> Bool {
        guard a.statistics.count == b.statistics.count else { return false }
        for index in a.statistics.indices where !equal(a.statistics[index], b.statistics[index]) { return false }
        return true
    }

    private static func equal<T: LayerStatistic>(_ a: T, _ b: any LayerStatistic) -> Bool { (b as? T) == a }
}

/// Every computed statistic of one (layer, kind), in `registered` order (the order they finish in: the row
/// count's notes come first, the Gram's spectra before the frequency fractions that read their notes).
public struct LayerStatistics: Sendable {
    /// The statistics an analysis can compute. A new statistic is added here.
    public static let registered: [any LayerStatistic.Type] = [
        RowCount.self, GramAccumulator.self, ChannelMoments.self, TokenNormSketch.self, PositionProfile.self,
        FrequencyEnergy.self,
    ]

    public private(set) var statistics: [any LayerStatistic]

    /// Empty states of every statistic `options` computes.
    public init(shape: LayerShape, options: AnalysisOptions) {
        statistics = Self.registered.filter { $0.isComputed(by: options) }.map { $0.init(shape: shape) }
    }

    init(statistics: [any LayerStatistic]) { self.statistics = statistics }

    /// The statistic of type `T`, when it is computed.
    public subscript<T: LayerStatistic>(_ type: T.Type) -> T? {
        statistics.lazy.compactMap { $0 as? T }.first
    }

    /// Changes the statistic of type `T` in place (nothing when it is not computed).
    public mutating func modify<T: LayerStatistic>(_ type: T.Type, _ body: (inout T) -> Void) {
        guard let index = statistics.firstIndex(where: { $0 is T }), var value = statistics[index] as? T else { return }
        body(&value)
        statistics[index] = value
    }

    /// Folds `block` into every statistic, timing each under its stage. Each statistic is mutated in place
    /// (the existential is opened `inout`), so a Gram's C² buffer is never copied.
    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch, timings: StageTimings) {
        for index in statistics.indices { Self.fold(&statistics[index], block, scratch, timings) }
    }

    private static func fold<T: LayerStatistic>(
        _ value: inout T, _ block: TokenBlock, _ scratch: FoldScratch,
        _ timings: StageTimings
    ) {
        let flops = value.flops(block)
        timings.measure(T.timingStage, flops: flops) { value.fold(block, scratch: scratch) }
    }

    /// Merges `other`'s statistics (the same registered types, in the same order) into these.
    public mutating func merge(_ other: LayerStatistics) throws(DumpError) {
        guard statistics.map({ type(of: $0).stateName }) == other.statistics.map({ type(of: $0).stateName }) else {
            throw DumpError(.badData, "the states hold different statistics and cannot be merged")
        }
        for index in statistics.indices { Self.merge(&statistics[index], other.statistics[index]) }
    }

    private static func merge<T: LayerStatistic>(_ value: inout T, _ other: any LayerStatistic) {
        if let other = other as? T { value.merge(other) }
    }

    /// Writes every statistic into `group`.
    public func encode(to group: StateGroup) throws {
        for statistic in statistics { try statistic.encode(to: group) }
    }

    /// Reads the statistics `options` computes from `group`.
    public static func decode(
        from group: StateGroup, shape: LayerShape, options: AnalysisOptions
    ) throws -> LayerStatistics {
        LayerStatistics(
            statistics: try registered.filter { $0.isComputed(by: options) }.map {
                try $0.init(decoding: group, shape: shape)
            })
    }

    /// Finishes every statistic into `stats`.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        for statistic in statistics { try statistic.finish(into: &stats, context: &context) }
    }
}
