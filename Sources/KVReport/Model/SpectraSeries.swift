// What report.html's spectra section draws for one kind: the singular values and cumulative energy of the
// drawn layers, and the per-head effective ranks as a layer × head matrix.
import KVStat

public struct SpectraSeries: Sendable {
    /// Most layers drawn as separate series of one chart (evenly spaced, first and last included).
    public static let layerLimit = 32
    /// Most points of one spectrum (log-spaced so both ends are kept).
    public static let pointLimit = 96

    public var kind: TensorKind
    /// σᵢ against index i (from 1) for every drawn layer with a spectrum, zero layers included.
    public var singularValues: [LayerCurve]
    /// Σ_{j≤i} σⱼ² ÷ Σσ² against i ÷ channels for every drawn layer with energy.
    public var cumulativeEnergy: [LayerCurve]
    /// Each layer's per-head effective rank at `Findings.energyLevel` (a row per analysed layer, empty where not
    /// computed); nil when no layer has them.
    public var headRanks: HeatmapData?

    /// The series of `kind` in `r`.
    public init(_ r: StatsReport, kind: TensorKind) {
        self.kind = kind
        let count = r.layers.count
        let drawn = Set(Sampling.evenly(count, limit: Self.layerLimit))
        (singularValues, cumulativeEnergy) = ([], [])
        for (i, layer) in r.layers.enumerated() where drawn.contains(i) {
            guard let sv = layer.kinds[kind]?.singularValues, !sv.isEmpty else { continue }
            let depth = count > 1 ? Double(i) / Double(count - 1) : 0
            let picks = Sampling.logSpaced(sv.count, limit: Self.pointLimit)
            singularValues.append(
                LayerCurve(layer: layer.layer, depth: depth, points: picks.map { (Double($0 + 1), sv[$0]) }))
            // A zero layer has no cumulative energy to draw.
            guard let energy = EnergyCurve.cumulative(sv) else { continue }
            cumulativeEnergy.append(
                LayerCurve(
                    layer: layer.layer, depth: depth,
                    points: picks.map { (Double($0 + 1) / Double(sv.count), energy[$0]) }))
        }
        let rows = r.layers.map { layer in
            (layer.kinds[kind]?.headEffectiveRanks(at: Findings.energyLevel) ?? []).map { Optional(Double($0)) }
        }
        headRanks =
            rows.contains { !$0.isEmpty }
            ? HeatmapData(values: rows, rowNames: r.layers.map { String($0.layer) }, columnNames: nil) : nil
    }
}
