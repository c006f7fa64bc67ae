// summary.md: the findings a researcher wants first, in sentences with numbers, then a small table per kind.
import Foundation
import KVStat

public enum SummaryMarkdown {
    public static func render(_ r: StatsReport) -> String {
        var out: [String] = []
        let d = r.dump
        out.append("# kvstat summary: \(URL(fileURLWithPath: d.path).lastPathComponent)")
        out.append("")
        let model = d.attributes["model"].map { "\($0), " } ?? ""
        out.append("\(model)\(d.layers) layers, \(d.kvHeads) kv heads\(d.queryHeads.map { " (\($0) query heads)" } ?? "") × head_dim \(d.headDim), \(d.tokens) tokens in \(d.sequences) sequence\(d.sequences == 1 ? "" : "s"), \(d.dtype)\(r.sources.count > 1 ? "; merged from \(r.sources.count) states" : "").")
        out.append("")
        out.append("## Findings")
        let kinds = TensorKind.allCases.filter { k in r.layers.contains { $0.kinds[k] != nil } }
        let channels = d.kvHeads * d.headDim
        var findings: [String] = []
        let rankPhrases: [String] = kinds.compactMap { kind in
            let ranks = r.layers.compactMap { $0.kinds[kind]?.effectiveRank?["0.9"] }
            guard !ranks.isEmpty else { return nil }
            let width = kind == .query ? (d.queryHeads ?? d.kvHeads) * d.headDim : channels
            let share = Double(ranks.reduce(0, +)) / Double(ranks.count) / Double(width)
            return "\(kind.plural) with \(percent(share)) of channels (mean rank \(fmt(Double(ranks.reduce(0, +)) / Double(ranks.count), 1)) of \(width))"
        }
        if !rankPhrases.isEmpty { findings.append("Reaching 90 % energy takes " + rankPhrases.joined(separator: ", ") + ".") }
        for kind in r.similarity.keys.sorted() {
            let s = r.similarity[kind]!
            var best: (Int, Int, Double)?
            var ckaValues: [Double] = []
            for a in s.cka.indices {
                for b in s.cka.indices where b > a {
                    if let c = s.cka[a][b] { ckaValues.append(c) }
                    if let v = s.subspaceAlignment[a][b], v > (best?.2 ?? -1) { best = (a, b, v) }
                }
            }
            if let best, !ckaValues.isEmpty {
                findings.append("\(kind.capitalized)s: mean CKA of computed layer pairs \(fmt(ckaValues.reduce(0, +) / Double(ckaValues.count), 2)); the most aligned token subspaces are layers \(r.layerNumbers[best.0]) and \(r.layerNumbers[best.1]) (alignment \(fmt(best.2, 2)) at rank \(r.options.alignRank)).")
            }
        }
        for kind in kinds {
            let outliers = r.layers.map { $0.kinds[kind]?.channels?.outliers.count ?? 0 }
            let layersWith = outliers.filter { $0 > 0 }.count
            if r.layers.contains(where: { $0.kinds[kind]?.channels != nil }) {
                findings.append(layersWith == 0
                    ? "\(kind.plural.capitalized): no outlier channels (max |x| above \(fmt(r.options.outlierFactor, 0))× the median channel)."
                    : "\(kind.plural.capitalized): \(outliers.reduce(0, +)) outlier channels in \(layersWith) of \(r.layers.count) layers (max |x| above \(fmt(r.options.outlierFactor, 0))× the median channel).")
            }
            var positions: [Int: Int] = [:]
            for layer in r.layers { for sink in layer.kinds[kind]?.tokenNorms?.sinks ?? [] { positions[sink.token, default: 0] += 1 } }
            if let top = positions.max(by: { $0.value < $1.value }) {
                findings.append("\(kind.plural.capitalized): attention-sink tokens (norm above \(fmt(r.options.outlierFactor, 0))× the median) most often at position \(top.key) (\(top.value) layer-sequence hits).")
            }
            let low = r.layers.compactMap { $0.kinds[kind]?.frequency?.lowEnergy["0.125"] }
            if !low.isEmpty {
                findings.append("\(kind.plural.capitalized): the lowest 1/8 of DCT frequencies along tokens hold \(percent(low.reduce(0, +) / Double(low.count))) of the energy on average (\(percent(low.min()!))–\(percent(low.max()!)) across layers).")
            }
        }
        out += findings.map { "- " + $0 }
        for kind in kinds {
            out.append("")
            out.append("## \(kind.plural)")
            out.append("")
            out.append("| layer | rank 90 % | rank 99 % | stable rank | outlier channels | sinks | low-freq energy (1/8) |")
            out.append("|---:|---:|---:|---:|---:|---:|---:|")
            for layer in r.layers {
                guard let s = layer.kinds[kind] else { continue }
                let r90: String = s.effectiveRank?["0.9"].map { String($0) } ?? "–"
                let r99: String = s.effectiveRank?["0.99"].map { String($0) } ?? "–"
                let stable: String = s.stableRank.map { fmt($0, 2) } ?? "–"
                let outliers: String = s.channels.map { String($0.outliers.count) } ?? "–"
                let sinks: String = s.tokenNorms.map { String($0.sinkCount) } ?? "–"
                let low: String = s.frequency?.lowEnergy["0.125"].map { percent($0) } ?? "–"
                let cells: [String] = [String(layer.layer), r90, r99, stable, outliers, sinks, low]
                out.append("| " + cells.joined(separator: " | ") + " |")
            }
        }
        // Cross-layer similarity of the computed pairs, keys and values side by side.
        var pairs: [(Int, Int)] = []
        if let sim = r.similarity["key"] ?? r.similarity["value"] {
            for a in sim.cka.indices { for b in (a + 1)..<sim.cka.count where sim.cka[a][b] != nil { pairs.append((a, b)) } }
        }
        if !pairs.isEmpty {
            out.append("")
            out.append("## similarity")
            out.append("")
            out.append("| layers | keys CKA | keys cosine | keys subspace | values CKA | values cosine | values subspace |")
            out.append("|---|---:|---:|---:|---:|---:|---:|")
            for (a, b) in pairs.prefix(64) {
                var cells = ["\(r.layers[a].layer)–\(r.layers[b].layer)"]
                for kind in ["key", "value"] {
                    let sim = r.similarity[kind]
                    for matrix in [sim?.cka, sim?.cosine, sim?.subspaceAlignment] {
                        cells.append((matrix?[a][b]).map { fmt($0, 3) } ?? "–")
                    }
                }
                out.append("| " + cells.joined(separator: " | ") + " |")
            }
        }
        out.append("")
        out.append("Definitions: docs/statistics.md. Numbers: stats.json and the CSV files beside this page.")
        return out.joined(separator: "\n") + "\n"
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f %%", x * 100) }
    static func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
}
