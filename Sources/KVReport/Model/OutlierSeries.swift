// What report.html's outliers section draws: per kind the layer × channel ratio max |x| ÷ the median channel's
// (binned to stay light), the distribution of channel kurtosis, and the sink tokens.
import Foundation
import KVStat

public struct OutlierSeries: Sendable {
    /// Most rows of a layer × channel heatmap (layers binned beyond it, max within a bin).
    public static let rowLimit = 128
    /// Most columns of a layer × channel heatmap (channels binned beyond it, max within a bin).
    public static let columnLimit = 256
    /// Log-spaced bins of the kurtosis histogram.
    public static let kurtosisBins = 24
    /// Sinks listed per layer and kind.
    public static let sinksPerLayer = 3

    /// One kind's layer × channel map of max |x| ÷ median channel max |x| (blank rows where that median is 0).
    public struct RatioMap: Sendable {
        public var kind: TensorKind
        public var data: HeatmapData
        /// Layers and channels per cell (1 when not binned).
        public var rowBin: Int
        public var columnBin: Int
    }

    /// One listed sink token of one layer and kind.
    public struct SinkRow: Sendable {
        public var layer: Int
        public var kind: TensorKind
        public var sink: StatsReport.Sink
    }

    /// Per kind with channel statistics, in canonical order.
    public var maps: [RatioMap] = []
    /// Channel counts per log-spaced kurtosis bin (x = the bin's geometric centre), per kind with a finite
    /// positive kurtosis; colour index = the kind's place among the analysed kinds.
    public var kurtosis: [PlotSeries] = []
    /// Up to `sinksPerLayer` sinks per layer and kind, kinds in canonical order, layers in analysis order.
    public var sinks: [SinkRow] = []
    /// Some token has a non-zero norm, so sinks can be judged.
    public var sinksJudged: Bool
    /// Sinks and outliers are norms above this factor × the median.
    public var factor: Double

    public init(_ r: StatsReport) {
        factor = r.options.outlierFactor
        sinksJudged = r.layers.contains { $0.kinds.values.contains { $0.tokenNorms?.medianNorm != nil } }
        for (k, kind) in r.analysedKinds.enumerated() {
            let layers = r.layers.compactMap { layer in
                layer.kinds[kind]?.channels.map { (layer: layer.layer, channels: $0) }
            }
            for layer in r.layers {
                for sink in (layer.kinds[kind]?.tokenNorms?.sinks ?? []).prefix(Self.sinksPerLayer) {
                    sinks.append(SinkRow(layer: layer.layer, kind: kind, sink: sink))
                }
            }
            guard let channels = layers.first?.channels.maxAbs.count, channels > 0 else { continue }
            maps.append(Self.ratioMap(kind, layers, channels: channels))
            let values = layers.flatMap { $0.channels.kurtosis }.compactMap { $0 }.filter { $0 > 0 && $0.isFinite }
            if let histogram = Self.logHistogram(values, bins: Self.kurtosisBins) {
                kurtosis.append(PlotSeries(name: kind.plural, points: histogram, colorIndex: k))
            }
        }
    }

    static func ratioMap(
        _ kind: TensorKind, _ layers: [(layer: Int, channels: StatsReport.Channels)],
        channels: Int
    ) -> RatioMap {
        let bin = max(1, (channels + columnLimit - 1) / columnLimit)
        // A layer whose median channel max |x| is 0 has no ratios (blank row); a layer with fewer channels
        // than the first leaves its missing cells blank.
        let values: [[Double?]] = layers.map { layer in
            let c = layer.channels
            return stride(from: 0, to: channels, by: bin).map { start -> Double? in
                let end = min(start + bin, c.maxAbs.count)
                guard c.medianMaxAbs > 0, start < end, let peak = c.maxAbs[start..<end].max() else { return nil }
                return peak / c.medianMaxAbs
            }
        }
        let rowBin = max(1, (values.count + rowLimit - 1) / rowLimit)
        let rows: [[Double?]] = stride(from: 0, to: values.count, by: rowBin).map { start in
            (0..<values[start].count).map { c in
                values[start..<min(start + rowBin, values.count)].compactMap { $0[c] }.max()
            }
        }
        let data = HeatmapData(
            values: rows, rowNames: stride(from: 0, to: layers.count, by: rowBin).map { String(layers[$0].layer) },
            columnNames: stride(from: 0, to: channels, by: bin).map(String.init))
        return RatioMap(kind: kind, data: data, rowBin: rowBin, columnBin: bin)
    }

    /// Counts of positive `values` in `bins` log-spaced bins between their min and max, at each bin's
    /// geometric centre; nil for no values.
    static func logHistogram(_ values: [Double], bins: Int) -> [(x: Double, y: Double)]? {
        guard let lo = values.min(), let hi = values.max() else { return nil }
        let a = log10(lo)
        let b = max(log10(hi), a + 1e-9)
        var counts = [Double](repeating: 0, count: bins)
        for v in values { counts[min(Int((log10(v) - a) / (b - a) * Double(bins)), bins - 1)] += 1 }
        return counts.enumerated().map { (pow(10, a + (Double($0.offset) + 0.5) * (b - a) / Double(bins)), $0.element) }
    }
}
