// fit.csv (one row per layer and kind: ranks and errors) and sweep.csv (one row per method and budget),
// tidy tables pandas reads as they are.
import KVStat

public enum FitCSV {
    /// `layer,kind,rank,dimension,fit_error,held_out_error,external_error,xkv_grouped_error,xkv_null_error,
    /// xkv_per_layer_error`: rank and dimension summed over the layer's projections (heads), errors relative
    /// Frobenius; the `xkv_` columns are the layer's xKV group's shuffled-token control (`ShuffledNull.Control`,
    /// pooled over the group, fit tokens); empty where not evaluated, undefined or not an xKV group. Then the
    /// layer's attention-level errors (`attention_logit_error`, `attention_output_error`, repeated on each kind's
    /// row: attention uses both) and, with `--keep-sinks`, `attention_output_error_without_sinks` (the same
    /// projections rebuilding the sink rows too); empty without queries or sinks.
    public static func perLayer(_ report: FitReport) -> String {
        var lines = [
            "layer,kind,rank,dimension,fit_error,held_out_error,external_error,xkv_grouped_error,xkv_null_error,"
                + "xkv_per_layer_error,attention_logit_error,attention_output_error,"
                + "attention_output_error_without_sinks"
        ]
        var controls: [String: ShuffledNull.Control] = [:]
        for control in report.xkvNull ?? [] {
            for layer in control.layers { controls["\(control.kind)/\(layer)"] = control }
        }
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
                // A pre-RoPE key fit's `key` rows (its keys after RoPE) have the key_pre_rope projections' ranks.
                let (rank, dimension) =
                    totals[kind]?[layer] ?? (report.rope != nil && kind == "key" ? totals["key_pre_rope"]?[layer] : nil)
                    ?? (0, 0)
                let held = cell(report.heldOut?.perLayer[kind]?[i] ?? nil)
                let external = cell(report.external?.perLayer[kind]?[i] ?? nil)
                let fitted = cell(report.fit.perLayer[kind]?[i] ?? nil)
                let control = controls["\(kind)/\(layer)"]
                let null = [control?.groupedError, control?.nullError, control?.perLayerError].map(cell)
                let attention = [
                    report.attention?.logits, report.attention?.outputs, report.attentionWithoutSinks?.outputs,
                ].map { cell($0.flatMap { $0.indices.contains(i) ? $0[i] : nil }) }
                lines.append(
                    "\(layer),\(kind),\(rank),\(dimension),\(fitted),\(held),\(external),"
                        + (null + attention).joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A number, or empty where it is undefined or not evaluated (pandas reads NaN).
    static func cell(_ value: Double?) -> String { value.map { "\($0)" } ?? "" }

    /// `method,keep_ratio,memory_ratio,fit_error,held_out_error,attention_output_error` for every rung; the last
    /// is empty where not computed (the Gram-priced low-rank points, dumps without queries).
    public static func sweep(_ rungs: [FitReport.Rung]) -> String {
        var lines = ["method,keep_ratio,memory_ratio,fit_error,held_out_error,attention_output_error"]
        for r in rungs {
            lines.append(
                "\(r.method),\(r.keepRatio),\(r.memoryRatio),\(cell(r.fitError)),\(cell(r.heldOutError)),"
                    + cell(r.attentionOutputError))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
