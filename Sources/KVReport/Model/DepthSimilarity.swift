// What report.html's similarity section draws against depth: for each measure (CKA, per-token cosine, subspace
// alignment), the adjacent-pair values of every kind as one line chart (x = the pair's first layer), and the
// extremes a reader looks for (the least and most similar adjacent pair, the median) per kind.
import KVStat

/// One similarity measure of adjacent layer pairs, every kind with computed pairs as a series.
public struct DepthSimilarity: Sendable {
    /// The lowest, median and highest value of one kind's adjacent pairs (pairs named "a→b" by layer numbers).
    public struct Extremes: Sendable {
        public var kind: TensorKind
        public var lowest: (pair: String, value: Double)
        public var median: Double
        public var highest: (pair: String, value: Double)
    }

    /// The measures drawn, in the order shown.
    public static let measures: [SimilarityMeasure] = [.cka, .cosine, .subspaceAlignment]

    public var measure: SimilarityMeasure
    /// The measure's name on charts (subspace alignment names its rank).
    public var name: String
    /// Per kind (colour index = the kind's position in `TensorKind.allCases`): (layer l, value) of the pair of l
    /// with the next analysed layer, where the measure is defined and finite.
    public var series: [PlotSeries]
    /// The y range drawn: the values' range widened by 5 % of it (at least ±0.01) and kept inside the measure's
    /// range, so how the measure changes with depth fills the chart.
    public var yDomain: ClosedRange<Double>?
    /// Per kind with at least one defined value.
    public var extremes: [Extremes]

    /// Each measure of `r`'s adjacent pairs over its similarity kinds.
    public static func all(_ r: StatsReport) -> [DepthSimilarity] {
        measures.map { DepthSimilarity(r, measure: $0) }
    }

    public init(_ r: StatsReport, measure: SimilarityMeasure) {
        self.measure = measure
        name = measure.name(alignRank: r.options.alignRank)
        let next = Dictionary(
            zip(r.layerNumbers, r.layerNumbers.dropFirst()).map { ($0, $1) }, uniquingKeysWith: { a, _ in a })
        var series: [PlotSeries] = []
        var extremes: [Extremes] = []
        for kind in r.similarityKinds {
            let values = r.pairs(of: kind).compactMap { p -> (a: Int, b: Int, value: Double)? in
                guard next[p.layerA] == p.layerB, let v = measure.value(p), v.isFinite else { return nil }
                return (p.layerA, p.layerB, v)
            }.sorted { $0.a < $1.a }
            let colour = TensorKind.allCases.firstIndex(of: kind) ?? 0
            series.append(
                PlotSeries(name: kind.plural, points: values.map { (Double($0.a), $0.value) }, colorIndex: colour))
            let byValue = values.sorted { $0.value < $1.value }
            guard let low = byValue.first, let high = byValue.last else { continue }
            let middle = byValue.count / 2
            let median =
                byValue.count % 2 == 1
                ? byValue[middle].value : (byValue[middle - 1].value + byValue[middle].value) / 2
            extremes.append(
                Extremes(
                    kind: kind, lowest: ("\(low.a)→\(low.b)", low.value), median: median,
                    highest: ("\(high.a)→\(high.b)", high.value)))
        }
        self.series = series
        self.extremes = extremes
        let all = series.flatMap { $0.points.map(\.y) }
        if let lo = all.min(), let hi = all.max() {
            let pad = max((hi - lo) * 0.05, 0.01)
            let range = measure.range
            // Rounding can put a value just outside the measure's range: the data stay inside the domain.
            yDomain = min(max(lo - pad, range.lowerBound), lo)...max(min(hi + pad, range.upperBound), hi)
        } else {
            yDomain = nil
        }
    }
}
