// What report.html's similarity section draws for one kind: each measure of adjacent layer pairs against
// depth, and with --all-pairs (up to `heatmapLayerLimit` layers) each measure as an L × L matrix.
import KVStat

/// A similarity measure of a layer pair.
public enum SimilarityMeasure: CaseIterable, Sendable {
    case cosine, cka, subspaceAlignment

    /// The pair's value; nil where undefined.
    public func value(_ p: StatsReport.Pair) -> Double? {
        switch self {
        case .cosine: return p.cosine
        case .cka: return p.cka
        case .subspaceAlignment: return p.subspaceAlignment
        }
    }

    /// The name on charts ("subspace alignment (rank 32)" names the compared rank).
    public func name(alignRank: Int) -> String {
        switch self {
        case .cosine: return "per-token cosine"
        case .cka: return "linear CKA"
        case .subspaceAlignment: return "subspace alignment (rank \(alignRank))"
        }
    }

    /// The range of the measure (a cosine can be negative).
    public var range: ClosedRange<Double> { self == .cosine ? -1...1 : 0...1 }
}

public struct SimilaritySeries: Sendable {
    /// Largest layer count drawn as L × L heatmaps (with --all-pairs); deeper dumps get line charts only, so
    /// the page grows with the pairs computed, not with L².
    public static let heatmapLayerLimit = 64

    /// One measure as a matrix over the analysed layers (1 on the diagonal, blank where not computed).
    public struct Matrix: Sendable {
        public var measure: SimilarityMeasure
        public var data: HeatmapData
    }

    public var kind: TensorKind
    /// Per measure (in `SimilarityMeasure` order, colour index = that order): (layer l, value) for each pair of
    /// consecutive analysed layers where the measure is defined.
    public var adjacent: [PlotSeries]
    /// The y range drawn: the defined values and 0...1.
    public var yDomain: ClosedRange<Double>
    /// Every measure as an L × L matrix; empty without --all-pairs or beyond `heatmapLayerLimit` layers.
    public var matrices: [Matrix]

    /// The series of `kind` in `r` (which has computed pairs of it).
    public init(_ r: StatsReport, kind: TensorKind) {
        self.kind = kind
        let pairs = r.pairs(of: kind)
        let position = Dictionary(
            r.layerNumbers.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        let adjacentPairs = pairs.filter { p in
            guard let a = position[p.layerA], let b = position[p.layerB] else { return false }
            return b == a + 1
        }
        adjacent = SimilarityMeasure.allCases.enumerated().map { i, measure in
            PlotSeries(
                name: measure.name(alignRank: r.options.alignRank),
                points: adjacentPairs.compactMap { p in measure.value(p).map { (Double(p.layerA), $0) } }, colorIndex: i
            )
        }
        let drawn = adjacentPairs.flatMap { p in SimilarityMeasure.allCases.compactMap { $0.value(p) } }.filter(
            \.isFinite)
        yDomain = min(drawn.min() ?? 0, 0)...max(drawn.max() ?? 1, 1)
        matrices = []
        let n = r.layerNumbers.count
        guard r.options.pairs == .all && n <= Self.heatmapLayerLimit else { return }
        let names = r.layerNumbers.map(String.init)
        for measure in SimilarityMeasure.allCases {
            var matrix = [[Double?]](repeating: [Double?](repeating: nil, count: n), count: n)
            for i in matrix.indices { matrix[i][i] = 1 }
            for p in pairs {
                guard let a = position[p.layerA], let b = position[p.layerB] else { continue }
                (matrix[a][b], matrix[b][a]) = (measure.value(p), measure.value(p))
            }
            matrices.append(
                Matrix(measure: measure, data: HeatmapData(values: matrix, rowNames: names, columnNames: names)))
        }
    }
}
