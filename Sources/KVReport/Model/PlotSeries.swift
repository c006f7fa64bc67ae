// The plotted data a report model holds: named point series (coloured by a palette index or by layer depth),
// and the sampling rules that keep charts light at any depth or width.
import Foundation

/// A series of (x, y) points drawn in a categorical colour (`colorIndex` into a palette).
public struct PlotSeries: Sendable {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var colorIndex: Int

    public init(name: String, points: [(x: Double, y: Double)], colorIndex: Int) {
        (self.name, self.points, self.colorIndex) = (name, points, colorIndex)
    }
}

/// One layer's curve, coloured by the layer's depth (0 = first analysed layer, 1 = last).
public struct LayerCurve: Sendable {
    /// The layer's number in the dump.
    public var layer: Int
    public var depth: Double
    public var points: [(x: Double, y: Double)]
}

/// A matrix drawn as a heatmap: rows and columns with their labels; nil cells are blank.
public struct HeatmapData: Sendable {
    public var values: [[Double?]]
    public var rowNames: [String]
    public var columnNames: [String]?
}

/// Sampling of indices, so a chart stays light however many layers or channels there are.
public enum Sampling {
    /// Up to `limit` indices of 0..<count, evenly spaced, first and last included.
    public static func evenly(_ count: Int, limit: Int) -> [Int] {
        guard count > limit, limit > 1 else { return Array(0..<count) }
        return Array(Set((0..<limit).map { $0 * (count - 1) / (limit - 1) })).sorted()
    }

    /// Up to `limit` indices of 0..<count, log-spaced so both ends of a spectrum are kept.
    public static func logSpaced(_ count: Int, limit: Int) -> [Int] {
        guard count > limit, limit > 1 else { return Array(0..<count) }
        var picks = Set<Int>()
        for i in 0..<limit {
            picks.insert(min(count - 1, Int(pow(Double(count), Double(i) / Double(limit - 1)).rounded()) - 1))
        }
        return picks.sorted()
    }
}

public enum EnergyCurve {
    /// Cumulative energy of a spectrum: entry r is Σ_{i≤r} σᵢ² ÷ Σ σᵢ²; nil when Σ σᵢ² is not
    /// positive (undefined). spectra.csv and the cumulative-energy charts both use this one definition.
    public static func cumulative(_ singularValues: [Double]) -> [Double]? {
        let total = singularValues.reduce(0) { $0 + $1 * $1 }
        guard total > 0 else { return nil }
        var running = 0.0
        return singularValues.map { v in
            running += v * v
            return running / total
        }
    }
}
