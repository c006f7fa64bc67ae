// summary.md: the findings a researcher wants first, in sentences with numbers, then a small table per kind
// and one of the computed layer pairs. Everything it prints comes from the report model (ReportModel).
import Foundation
import KVStat

public enum SummaryMarkdown {
    /// Most layer pairs listed (similarity.csv has them all).
    static let pairRowLimit = 64

    public static func render(_ r: StatsReport) -> String { render(ReportModel(r)) }

    public static func render(_ m: ReportModel) -> String {
        let r = m.report
        let d = r.dump
        var out: [String] = []
        out.append("# kvstat summary: \(URL(fileURLWithPath: d.path).lastPathComponent)")
        out.append("")
        let model = d.attributes["model"].map { "\($0), " } ?? ""
        let queries = d.queryHeads.map { " (\($0) query heads)" } ?? ""
        // A merge (a batch corpus) says how many dumps each kind holds: dumps with and without queries merge.
        let perKind = (r.dumpsPerKind ?? [:]).sorted { ($0.key.kindOrder, $0.key) < ($1.key.kindOrder, $1.key) }
            .enumerated().map { i, k in
                let noun = i > 0 ? "" : k.value == 1 ? " dump" : " dumps"
                return "\(TensorKind(rawValue: k.key)?.plural ?? k.key) from \(k.value)\(noun)"
            }
        let counts = perKind.isEmpty ? "" : " (\(perKind.joined(separator: ", ")))"
        let merged = r.sources.count > 1 ? "; merged from \(r.sources.count) states\(counts)" : ""
        out.append(
            "\(model)\(d.layers) layers, \(d.kvHeads) kv heads\(queries) × head_dim \(d.headDim), "
                + "\(d.tokens) tokens in \(d.sequences) sequence\(d.sequences == 1 ? "" : "s"), \(d.dtype)\(merged).")
        out.append("")
        out.append("## Findings")
        out += m.findings.sentences.map { "- " + $0 }
        out += ["", "## Sinks", ""] + SinkFindings(r).sentences.map { "- " + $0 }
        let rankHeads = LayerTable.energyLevels.map { "rank \(LevelLabel.percent($0))" }
        let lowHead = "low-freq energy (\(LevelLabel.fraction(Findings.lowFrequencyFraction)))"
        let header = ["layer"] + rankHeads + ["stable rank", "outlier channels", "large-norm tokens", lowHead]
        for table in m.layerTables {
            out.append("")
            out.append("## \(table.kind.plural)")
            out.append("")
            out.append("| " + header.joined(separator: " | ") + " |")
            out.append("|" + String(repeating: "---:|", count: header.count))
            for row in table.rows {
                let cells: [String] =
                    [String(row.layer)] + row.ranks.map { cell($0.map(String.init)) }
                    + [
                        cell(row.stableRank.map { fixed($0, 2) }), cell(row.outlierChannels.map(String.init)),
                        cell(row.sinks.map(String.init)), cell(row.lowEnergy.map(Findings.percent)),
                    ]
                out.append("| " + cells.joined(separator: " | ") + " |")
            }
        }
        // Cross-layer similarity of the computed pairs, every kind with pairs side by side.
        if let table = m.similarityTable, !table.rows.isEmpty {
            out.append("")
            out.append("## similarity")
            out.append("")
            let columns = table.kinds.flatMap { k in ["\(k.plural) CKA", "\(k.plural) cosine", "\(k.plural) subspace"] }
            out.append("| layers | " + columns.joined(separator: " | ") + " |")
            out.append("|---|" + String(repeating: "---:|", count: columns.count))
            for row in table.rows.prefix(pairRowLimit) {
                let values = row.cells.flatMap { [$0.cka, $0.cosine, $0.subspaceAlignment] }
                let cells = ["\(row.layerA)–\(row.layerB)"] + values.map { cell($0.map { fixed($0, 3) }) }
                out.append("| " + cells.joined(separator: " | ") + " |")
            }
            if table.rows.count > pairRowLimit {
                out += ["", "\(table.rows.count - pairRowLimit) more pairs in similarity.csv."]
            }
        }
        out.append("")
        out.append("Definitions: docs/statistics.md. Numbers: stats.json and the CSV files beside this page.")
        return out.joined(separator: "\n") + "\n"
    }

    /// A table cell: the text, or "—" where the value is undefined or not computed (null in stats.json).
    static func cell(_ text: String?) -> String { text ?? "—" }
    static func fixed(_ x: Double, _ digits: Int) -> String { Findings.fixed(x, digits) }
}

extension String {
    /// A kind name's place in `TensorKind.allCases` (names kvstat does not know last).
    fileprivate var kindOrder: Int {
        TensorKind.allCases.firstIndex { $0.rawValue == self } ?? TensorKind.allCases.count
    }
}
