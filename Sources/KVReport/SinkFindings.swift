// The sinks section of every analysis output: which criterion found what — attention mass (the share of
// attention a key position takes, dumps with queries), large-norm and small-norm tokens — as summary.md's
// sentences, report.html's subsection and sinks.csv.
import Foundation
import KVStat

/// The sink findings of a report (docs/statistics.md, "Sinks").
public struct SinkFindings: Sendable {
    public let report: StatsReport
    /// Positions named in the sentences, at most.
    static let positionsNamed = 3

    public init(_ report: StatsReport) { self.report = report }

    var factor: Double { report.options.outlierFactor }

    /// summary.md's "Sinks" list, attention mass first, then the norms of each kind.
    public var sentences: [String] {
        var out: [String] = []
        let a = report.attentionSinks
        if let a, a.judged {
            let judgedLayers = a.layers.filter { !$0.top.isEmpty }
            for top in a.topPositions.prefix(Self.positionsNamed) {
                let rows = judgedLayers.filter { $0.top.first?.position == top.position }
                let uniform = rows.compactMap { $0.top.first?.uniformShare }.max() ?? 0
                let heads = judgedLayers.filter { top.layers.contains($0.layer) }.flatMap(\.heads)
                    .filter { $0.position == top.position }.map(\.share).max()
                out.append(
                    "Attention mass: position \(top.position) takes the largest share of attention in "
                        + "\(top.layers.count) of \(judgedLayers.count) layers (\(range(top.minShare, top.maxShare)) "
                        + "in layer\(top.layers.count == 1 ? "" : "s") \(layerList(top.layers)); "
                        + "even attention would give it "
                        + "\(Findings.percent(uniform)))"
                        + (heads.map { "; one head up to \(Findings.percent($0))" } ?? "")
                        + ".")
                for (name, ratios) in [
                    ("key", rows.compactMap { $0.top.first?.keyNormRatio }),
                    ("value", rows.compactMap { $0.top.first?.valueNormRatio }),
                ] where !ratios.isEmpty {
                    out.append(
                        "\(name.capitalized) norm at position \(top.position) (where it tops attention): "
                            + "\(ratioRange(ratios.min()!, ratios.max()!)) the median token norm — "
                            + normVerdict(ratios) + ".")
                }
            }
            if a.topPositions.isEmpty { out.append("Attention mass: no layer had a sampled query to judge.") }
        } else {
            out.append(a?.note ?? "Attention-mass sinks were not recorded in this report (written before they were).")
        }
        let f = ChartFormat.number(factor)
        for kind in report.analysedKinds {
            let norms = report.layers.compactMap { $0.kinds[kind]?.tokenNorms }
            guard !norms.isEmpty, norms.contains(where: { $0.medianNorm != nil }) else { continue }
            let large = positions(norms.flatMap(\.sinks)) ?? "none"
            let small = positions(norms.flatMap { $0.smallNorms ?? [] }) ?? "none"
            let hasSmall = norms.contains { $0.smallNorms != nil }
            out.append(
                "\(kind.sentencePlural) by norm: above \(f)× the median \(large)"
                    + (hasSmall ? "; below the median / \(f) \(small)" : "") + ".")
        }
        return out
    }

    /// "position 0 (9 layer-sequence hits), position 5 (2)", the most frequent positions first; nil when empty.
    func positions(_ rows: [StatsReport.Sink]) -> String? {
        var hits: [Int: Int] = [:]
        for row in rows { hits[row.token, default: 0] += 1 }
        let sorted = hits.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(Self.positionsNamed)
        guard !sorted.isEmpty else { return nil }
        return sorted.enumerated().map { i, e in
            "position \(e.key) (\(e.value)\(i == 0 ? " layer-sequence hit\(e.value == 1 ? "" : "s")" : ""))"
        }.joined(separator: ", ")
    }

    func normVerdict(_ ratios: [Double]) -> String {
        let f = ChartFormat.number(factor)
        let side =
            ratios.allSatisfy { $0 < 1 } ? "smaller than" : ratios.allSatisfy { $0 > 1 } ? "larger than" : "around"
        let flagged = ratios.contains { $0 > factor || $0 < 1 / factor }
        return "\(side) the median; "
            + (flagged ? "a norm threshold of \(f)× flags it in some layers" : "a norm threshold of \(f)× misses it")
    }

    func range(_ lo: Double, _ hi: Double) -> String {
        lo == hi ? Findings.percent(lo) : "\(Findings.percent(lo))–\(Findings.percent(hi))"
    }

    func ratioRange(_ lo: Double, _ hi: Double) -> String {
        lo == hi ? "\(Findings.fixed(lo, 2))×" : "\(Findings.fixed(lo, 2))–\(Findings.fixed(hi, 2))×"
    }

    func layerList(_ layers: [Int]) -> String {
        layers.count > 6
            ? layers.prefix(3).map(String.init).joined(separator: ", ") + ", …, " + String(layers.last!)
            : layers.map(String.init).joined(separator: ", ")
    }

    // MARK: report.html

    /// report.html's "Attention sinks" subsection: the sentences and, per layer, its top position.
    public var html: String {
        var out = "<h3>Attention sinks: which criterion finds what</h3><ul>"
        out += sentences.map { "<li>\(escapeXML($0))</li>" }.joined() + "</ul>"
        guard let a = report.attentionSinks, a.judged else { return out }
        let header = [
            "layer", "top position", "share", "even share", "key norm ÷ median", "value norm ÷ median",
            "top head (position, share)",
        ].map { "<th>\($0)</th>" }.joined()
        let rows = a.layers.map { l -> String in
            guard let t = l.top.first else { return "<tr><td>\(l.layer)</td><td colspan=\"6\">no query</td></tr>" }
            let head = l.heads.max { $0.share < $1.share }
            let cells = [
                "\(l.layer)", "\(t.position)", Findings.percent(t.share), Findings.percent(t.uniformShare),
                t.keyNormRatio.map { Findings.fixed($0, 2) + "×" } ?? "—",
                t.valueNormRatio.map { Findings.fixed($0, 2) + "×" } ?? "—",
                head.map { "head \($0.head): \($0.position), \(Findings.percent($0.share))" } ?? "—",
            ]
            return "<tr>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }
        let mask = a.causal ? "causal" : "bidirectional"
        out +=
            "<p class=\"note\">Attention mass: \(a.queriesPerSequence) query positions per sequence "
            + "(≥ \(a.minQueryPosition) where the sequence has them), \(mask) softmax, every query head; "
            + "sinks.csv has the top \(AttentionMass.topCount) positions per layer and every head's.</p>"
        out += "<table><tr>\(header)</tr>\(rows.joined())</table>"
        return out
    }

    // MARK: sinks.csv

    /// sinks.csv: one row per finding. criterion `attention_mass` (the top positions of a layer: share,
    /// uniform_share, key_norm_ratio, value_norm_ratio), `attention_mass_head` (each query head's top position:
    /// head, share), `large_norm` and `small_norm` (tokens above outlier_factor × the median norm of their layer and
    /// kind, or below it / outlier_factor: kind, sequence, position, norm_ratio). Empty cells where not applicable.
    public var csv: String {
        var lines = [
            "layer,criterion,kind,head,sequence,position,share,uniform_share,norm_ratio,key_norm_ratio,value_norm_ratio"
        ]
        let num = { (x: Double?) in x.map { $0.isFinite ? "\($0)" : "" } ?? "" }
        for l in report.attentionSinks?.layers ?? [] {
            for t in l.top {
                lines.append(
                    "\(l.layer),attention_mass,,,,\(t.position),\(num(t.share)),\(num(t.uniformShare)),,"
                        + "\(num(t.keyNormRatio)),\(num(t.valueNormRatio))")
            }
            for h in l.heads {
                lines.append("\(l.layer),attention_mass_head,,\(h.head),,\(h.position),\(num(h.share)),,,,")
            }
        }
        for layer in report.layers {
            for kind in layer.kinds.keys.sorted() {
                guard let norms = layer.kinds[kind]?.tokenNorms else { continue }
                for (criterion, rows) in [("large_norm", norms.sinks), ("small_norm", norms.smallNorms ?? [])] {
                    for s in rows {
                        lines.append(
                            "\(layer.layer),\(criterion),\(kind.rawValue),,\(s.sequence),\(s.token),,,\(num(s.ratio)),,"
                        )
                    }
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
