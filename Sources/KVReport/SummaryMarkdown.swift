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
            // Layers with energy only: a zero layer's rank 0 says nothing about compressibility.
            let ranks = r.layers.compactMap { layer in
                layer.kinds[kind].flatMap { $0.stableRank == nil ? nil : $0.effectiveRank?[EnergyFraction.key(0.9)] }
            }
            guard !ranks.isEmpty else { return nil }
            let width = kind == .query ? (d.queryHeads ?? d.kvHeads) * d.headDim : channels
            let share = Double(ranks.reduce(0, +)) / Double(ranks.count) / Double(width)
            return "\(kind.plural) with \(percent(share)) of channels (mean rank \(fmt(Double(ranks.reduce(0, +)) / Double(ranks.count), 1)) of \(width))"
        }
        if !rankPhrases.isEmpty { findings.append("Reaching 90 % energy takes " + rankPhrases.joined(separator: ", ") + ".") }
        for kind in kinds {
            let empty = r.layers.filter { $0.kinds[kind].map { $0.singularValues != nil && $0.stableRank == nil } ?? false }
            if !empty.isEmpty {
                findings.append("\(kind.plural.capitalized): \(empty.count) of \(r.layers.count) layers have no energy (all zeros, or no "
                                + "finite rows: layers \(IndexList.text(empty.map(\.layer)))); their ratios are undefined (see the notes in stats.json).")
            }
        }
        for kind in TensorKind.allCases {
            guard let pairs = r.similarity[kind.rawValue], !pairs.isEmpty else { continue }
            let ckaValues = pairs.compactMap(\.cka)
            let best = pairs.filter { $0.subspaceAlignment != nil }.max { $0.subspaceAlignment! < $1.subspaceAlignment! }
            if let best, !ckaValues.isEmpty {
                findings.append("\(kind.plural.capitalized): mean CKA of computed layer pairs \(fmt(ckaValues.reduce(0, +) / Double(ckaValues.count), 2)); the most aligned token subspaces are layers \(best.layerA) and \(best.layerB) (alignment \(fmt(best.subspaceAlignment!, 2)) at rank \(r.options.alignRank)).")
            }
            let undefined = pairs.count - ckaValues.count
            if undefined > 0 {
                findings.append("\(kind.plural.capitalized): CKA is undefined for \(undefined) of \(pairs.count) layer pairs (a layer without spread).")
            }
        }
        for kind in kinds {
            let outliers = r.layers.map { $0.kinds[kind]?.channels?.outliers?.count ?? 0 }
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
            let low = r.layers.compactMap { $0.kinds[kind]?.frequency?.lowEnergy?[EnergyFraction.key(0.125)] }
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
                let r90: String = s.effectiveRank?[EnergyFraction.key(0.9)].map { String($0) } ?? "–"
                let r99: String = s.effectiveRank?[EnergyFraction.key(0.99)].map { String($0) } ?? "–"
                let stable: String = s.stableRank.map { fmt($0, 2) } ?? "–"
                let outliers: String = s.channels?.outliers.map { String($0.count) } ?? "–"
                let sinks: String = s.tokenNorms.map { String($0.sinkCount) } ?? "–"
                let low: String = s.frequency?.lowEnergy?[EnergyFraction.key(0.125)].map { percent($0) } ?? "–"
                let cells: [String] = [String(layer.layer), r90, r99, stable, outliers, sinks, low]
                out.append("| " + cells.joined(separator: " | ") + " |")
            }
        }
        // Cross-layer similarity of the computed pairs, keys and values side by side.
        let keyPairs = r.similarity["key"] ?? [], valuePairs = r.similarity["value"] ?? []
        let pairKeys = (keyPairs.isEmpty ? valuePairs : keyPairs).map { [$0.layerA, $0.layerB] }
        if !pairKeys.isEmpty {
            out.append("")
            out.append("## similarity")
            out.append("")
            out.append("| layers | keys CKA | keys cosine | keys subspace | values CKA | values cosine | values subspace |")
            out.append("|---|---:|---:|---:|---:|---:|---:|")
            let byKind = [keyPairs, valuePairs].map { pairs in
                Dictionary(pairs.map { ([$0.layerA, $0.layerB], $0) }, uniquingKeysWith: { a, _ in a })
            }
            for key in pairKeys.prefix(64) {
                var cells = ["\(key[0])–\(key[1])"]
                for pairs in byKind {
                    let p = pairs[key]
                    for value in [p?.cka, p?.cosine, p?.subspaceAlignment] { cells.append(value.map { fmt($0, 3) } ?? "–") }
                }
                out.append("| " + cells.joined(separator: " | ") + " |")
            }
            if pairKeys.count > 64 { out += ["", "\(pairKeys.count - 64) more pairs in similarity.csv."] }
        }
        out.append("")
        out.append("Definitions: docs/statistics.md. Numbers: stats.json and the CSV files beside this page.")
        return out.joined(separator: "\n") + "\n"
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f %%", x * 100) }
    static func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
}
