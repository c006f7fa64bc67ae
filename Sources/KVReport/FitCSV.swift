// fit.csv (one row per layer and kind: ranks and errors) and sweep.csv (one row per method and budget),
// tidy tables pandas reads as they are.
import KVStat

public enum FitCSV {
    /// `layer,kind,rank,dimension,fit_error,held_out_error,external_error`: rank and dimension summed over
    /// the layer's projections (heads), errors relative Frobenius; empty where not evaluated.
    public static func perLayer(_ report: FitReport) -> String {
        var lines = ["layer,kind,rank,dimension,fit_error,held_out_error,external_error"]
        for kind in report.fit.perLayer.keys.sorted() {
            for (i, layer) in report.layers.enumerated() {
                // xKV units span layers: their rank counts once for the group, attributed to each layer.
                let units = report.units.filter { $0.kind == kind && $0.layers.contains(layer) }
                let rank = units.reduce(0) { $0 + $1.rank }, dimension = units.reduce(0) { $0 + $1.dimension }
                let held = (report.heldOut?.perLayer[kind]?[i]).map { "\($0)" } ?? ""
                let external = (report.external?.perLayer[kind]?[i]).map { "\($0)" } ?? ""
                lines.append("\(layer),\(kind),\(rank),\(dimension),\(report.fit.perLayer[kind]![i]),\(held),\(external)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `method,keep_ratio,memory_ratio,fit_error,held_out_error` for every rung.
    public static func sweep(_ rungs: [FitReport.Rung]) -> String {
        var lines = ["method,keep_ratio,memory_ratio,fit_error,held_out_error"]
        for r in rungs {
            lines.append("\(r.method),\(r.keepRatio),\(r.memoryRatio),\(r.fitError),\(r.heldOutError.map { "\($0)" } ?? "")")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
