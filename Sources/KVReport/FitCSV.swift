// fit.csv (one row per layer and kind: ranks and errors) and sweep.csv (one row per method and budget),
// tidy tables pandas reads as they are.
import KVStat

public enum FitCSV {
    /// `layer,kind,rank,dimension,fit_error,held_out_error,external_error`: rank and dimension summed over
    /// the layer's projections (heads), errors relative Frobenius; empty where not evaluated or undefined.
    public static func perLayer(_ report: FitReport) -> String {
        var lines = ["layer,kind,rank,dimension,fit_error,held_out_error,external_error"]
        // Rank and dimension per (kind, layer), summed over the layer's units in one pass (xKV units span layers:
        // their rank counts once for the group, attributed to each layer).
        var totals: [String: [Int: (rank: Int, dimension: Int)]] = [:]
        for unit in report.units {
            for layer in unit.layers {
                let old = totals[unit.kind, default: [:]][layer] ?? (0, 0)
                totals[unit.kind, default: [:]][layer] = (old.rank + unit.rank, old.dimension + unit.dimension)
            }
        }
        for kind in TensorKind.canonicalOrder(report.fit.perLayer.keys) {
            for (i, layer) in report.layers.enumerated() {
                let (rank, dimension) = totals[kind]?[layer] ?? (0, 0)
                let held = cell(report.heldOut?.perLayer[kind]?[i] ?? nil)
                let external = cell(report.external?.perLayer[kind]?[i] ?? nil)
                let fitted = cell(report.fit.perLayer[kind]?[i] ?? nil)
                lines.append("\(layer),\(kind),\(rank),\(dimension),\(fitted),\(held),\(external)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A number, or empty where it is undefined or not evaluated (pandas reads NaN).
    static func cell(_ value: Double?) -> String { value.map { "\($0)" } ?? "" }

    /// `method,keep_ratio,memory_ratio,fit_error,held_out_error` for every rung.
    public static func sweep(_ rungs: [FitReport.Rung]) -> String {
        var lines = ["method,keep_ratio,memory_ratio,fit_error,held_out_error"]
        for r in rungs {
            lines.append("\(r.method),\(r.keepRatio),\(r.memoryRatio),\(cell(r.fitError)),\(cell(r.heldOutError))")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
