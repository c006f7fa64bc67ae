// report.html: one self-contained page (inline CSS and SVG, no scripts, no fetches) drawing stats.json
// and, when given, fit manifests — the dump, spectra, cross-layer similarity, outliers, frequency, fits.
// What it says and draws comes from the report model (ReportModel, FitSeries); this file only formats it.
import Foundation
import KVStat

public enum ReportHTML {
    /// The page for an analysis (`stats`) and any fits of the same dump (`fits`); either may be absent.
    public static func render(stats: StatsReport?, fits: [FitReport] = []) -> String {
        render(model: stats.map(ReportModel.init), fits: fits)
    }

    /// The page for an analysis's model and any fits of the same dump; either may be absent.
    public static func render(model: ReportModel?, fits: [FitReport] = []) -> String {
        var sections: [String] = []
        if let model {
            sections.append(dumpSection(model.report.dump))
            sections.append(spectraSection(model))
            sections.append(similaritySection(model))
            sections.append(outliersSection(model))
            sections.append(frequencySection(model))
        }
        if !fits.isEmpty { sections.append(fitsSection(fits)) }
        let path = model?.report.dump.path ?? fits.first?.source.path
        let name = path.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "kvstat"
        let nav = ["dump", "spectra", "similarity", "outliers", "frequency", "fits"]
            .filter { id in sections.contains { $0.contains("<section id=\"\(id)\"") } }
            .map { "<a href=\"#\($0)\">\($0)</a>" }.joined(separator: " · ")
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>kvstat report — \(escapeXML(name))</title>
            <style>
            body{font-family:sans-serif;margin:0 auto;max-width:1180px;padding:12px 20px;color:#222}
            h1{font-size:22px;margin:6px 0}\
            h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
            h3{font-size:14px;margin:14px 0 4px}p.note{color:#555;font-size:13px;margin:4px 0 8px}
            .row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
            table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
            th{background:#f4f4f4}svg{background:#fff}nav{font-size:13px;color:#555}
            </style></head><body>
            <h1>kvstat report — \(escapeXML(name))</h1>
            <nav>\(nav)</nav>
            \(sections.joined(separator: "\n"))
            <p class="note">Hover over any point or cell for its exact value. \
            Definitions: docs/statistics.md and docs/fit-lowrank.md.</p>
            </body></html>
            """
    }

    // MARK: sections

    static func dumpSection(_ d: DumpSummary) -> String {
        let shape = "\(d.layers) × \(d.kvHeads) × \(d.headDim)" + (d.queryHeads.map { " (query heads \($0))" } ?? "")
        var rows: [(String, String)] = [
            ("file", d.path), ("model", d.attributes["model"] ?? d.attributes["model_name"] ?? "—"),
            ("layers × kv heads × head_dim", shape),
            ("sequences, valid tokens", "\(d.sequences), \(d.tokens)" + (d.selection.map { " (\($0))" } ?? "")),
            ("element type", d.dtype), ("tensors", d.kinds.joined(separator: ", ")),
            ("size on disk", ByteCount.format(d.bytesOnDisk)), ("padding", d.padding),
        ]
        if let sha = d.sha256 { rows.append(("SHA-256", sha)) }
        for key in d.attributes.keys.sorted() where key != "model" { rows.append((key, d.attributes[key]!)) }
        let table = rows.map { "<tr><th>\(escapeXML($0.0))</th><td>\(escapeXML(String($0.1.prefix(300))))</td></tr>" }
        return section("dump", "1. The dump", "<table>\(table.joined())</table>")
    }

    static func spectraSection(_ m: ReportModel) -> String {
        var charts: [String] = []
        var cumulative: [String] = []
        var heatmaps: [String] = []
        let legend = m.report.layers.count <= 14
        // Deeper dumps: a colour bar from the first to the last analysed layer instead of one entry per layer.
        let numbers = m.report.layerNumbers
        let bar = legend ? nil : numbers.first.map { (ColorMap.viridis, "layer \($0)", "layer \(numbers.last ?? $0)") }
        for spectra in m.spectra {
            let kind = spectra.kind
            var chart = LineChart(
                title: "\(kind.plural): singular values", xLabel: "index i", yLabel: "σᵢ",
                series: spectra.singularValues.map(layerSeries))
            chart.logY = true
            chart.legend = legend
            chart.colorBar = bar
            charts.append(chart.render())
            var cum = LineChart(
                title: "\(kind.plural): cumulative energy", xLabel: "rank ÷ channels",
                yLabel: "energy fraction", series: spectra.cumulativeEnergy.map(layerSeries))
            cum.references = Spectrum.energyLevels.map { ($0, LevelLabel.percent($0)) }
            // From the lowest drawn fraction (rounded down to a tenth) to 1: spectra whose first component holds
            // most of the energy would otherwise leave the chart mostly empty.
            let lowest = spectra.cumulativeEnergy.flatMap { $0.points.map(\.y) }.filter(\.isFinite).min() ?? 0
            cum.yDomain = min(max((lowest * 10).rounded(.down) / 10, 0), 0.9)...1
            cum.legend = legend
            cum.colorBar = bar
            cumulative.append(cum.render())
            if let ranks = spectra.headRanks {
                let title = "\(kind.plural): effective rank at \(LevelLabel.percent(Findings.energyLevel)) per head"
                var h = Heatmap(
                    title: title, values: ranks.values, rowLabel: "layer", columnLabel: "head",
                    valueLabel: "rank")
                h.rowNames = ranks.rowNames
                heatmaps.append(h.render())
            }
        }
        let findings = m.findings.energyRanks.map(\.sentence).joined(separator: " ")
        let note = note(findings + " Colour: layer depth (dark = first layer, yellow = last).")
        return section("spectra", "2. Spectra", note + "\n" + [charts, cumulative, heatmaps].map(row).joined())
    }

    static func similaritySection(_ m: ReportModel) -> String {
        // Against depth: one chart per measure, a series per kind; then each kind's --all-pairs heatmaps.
        let charts = m.depthSimilarity.map { d -> String in
            var chart = LineChart(
                title: "Adjacent layers: \(d.name)", xLabel: "layer l (pair l → next analysed layer)",
                yLabel: d.measure == .cka ? "CKA" : d.measure == .cosine ? "cosine" : "alignment",
                series: d.series.map(categorical))
            chart.yDomain = d.yDomain
            chart.integerX = true
            chart.width = 380
            chart.height = 260
            return chart.render()
        }
        let maps = m.similarity.flatMap { series in
            series.matrices.map { matrix -> String in
                let name = matrix.measure.name(alignRank: m.report.options.alignRank)
                var h = Heatmap(
                    title: "\(series.kind.plural): \(name)", values: matrix.data.values, rowLabel: "layer",
                    columnLabel: "layer", valueLabel: name)
                h.domain = matrix.measure.range
                h.rowNames = matrix.data.rowNames
                h.columnNames = matrix.data.columnNames
                h.maxWidth = 380
                return h.render()
            }
        }
        let blocks = row(charts) + extremesTable(m.depthSimilarity) + (maps.isEmpty ? "" : row(maps))
        let limit = SimilaritySeries.heatmapLayerLimit
        let share = "could share a cache (MiniCache) or a subspace (xKV)."
        var text =
            !m.allPairs
            ? "Adjacent layer pairs against depth (--all-pairs computes every pair and adds heatmaps). High values "
                + "mean neighbouring layers \(share)"
            : "Every layer pair: the charts show adjacent pairs against depth, the heatmaps every pair"
                + (m.similarityHeatmaps
                    ? ""
                    : " (heatmaps are drawn up to \(limit) layers; similarity.csv has every pair)")
                + ". Bright blocks along the diagonal are groups of layers that \(share)"
        let undefined = m.findings.undefinedPairs
        if undefined > 0 {
            text +=
                " \(undefined) pair(s) have an undefined measure (a layer without spread or without non-zero rows):"
                + " not drawn."
        }
        return section("similarity", "3. Cross-layer similarity", note(text) + blocks)
    }

    /// Per measure and kind: the least and most similar adjacent pair and the median (empty without pairs).
    static func extremesTable(_ measures: [DepthSimilarity]) -> String {
        let rows = measures.flatMap { d in
            d.extremes.map { e in
                let cells = [
                    escapeXML(d.name), e.kind.plural, e.lowest.pair, ChartFormat.number(e.lowest.value),
                    ChartFormat.number(e.median), e.highest.pair, ChartFormat.number(e.highest.value),
                ]
                return "<tr>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
            }
        }
        guard !rows.isEmpty else { return "" }
        let header = ["measure", "kind", "least similar pair", "value", "median", "most similar pair", "value"]
            .map { "<th>\($0)</th>" }.joined()
        return "<h3>Adjacent pairs: extremes</h3><table><tr>\(header)</tr>\(rows.joined())</table>"
    }

    static func outliersSection(_ m: ReportModel) -> String {
        let o = m.outliers
        let maps = o.maps.map { map -> String in
            var h = Heatmap(
                title: "\(map.kind.plural): max |x| ÷ median channel's", values: map.data.values,
                rowLabel: map.rowBin > 1 ? "layer (bins of \(map.rowBin))" : "layer",
                columnLabel: map.columnBin > 1 ? "channel (bins of \(map.columnBin))" : "channel",
                valueLabel: "ratio")
            h.rowNames = map.data.rowNames
            h.columnNames = map.data.columnNames
            h.cellSize = 10
            return h.render()
        }
        var chart = LineChart(
            title: "Channel kurtosis (3 = Gaussian)", xLabel: "Pearson kurtosis", yLabel: "channels",
            series: o.kurtosis.map(categorical))
        chart.logX = true
        let factor = ChartFormat.number(o.factor)
        let sinkRows = o.sinks.prefix(sinkRowLimit).map { row in
            let s = row.sink
            let cells = [
                "\(row.layer)", row.kind.rawValue, "\(s.sequence)", "\(s.token)", ChartFormat.number(s.norm),
                ChartFormat.number(s.ratio) + "×",
            ]
            return "<tr>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }
        let header = ["layer", "kind", "sequence", "token", "norm", "÷ median"].map { "<th>\($0)</th>" }.joined()
        let sinks =
            sinkRows.isEmpty
            ? "<p class=\"note\">"
                + (o.sinksJudged
                    ? "No token's norm exceeds \(factor) × the median (large-norm tokens; attention-mass sinks "
                        + "below)."
                    : "No token has a non-zero norm: large-norm tokens cannot be judged.") + "</p>"
            : "<h3>Large-norm tokens (norm > \(factor) × median; "
                + "up to \(OutlierSeries.sinksPerLayer) per layer and kind)</h3>"
                + "<table><tr>\(header)</tr>\(sinkRows.joined())</table>"
        let attention = SinkFindings(m.report).html  // the sinks subsection: which criterion finds what
        return section("outliers", "4. Outliers", row(maps) + row([chart.render()]) + sinks + attention)
    }

    static func frequencySection(_ m: ReportModel) -> String {
        let charts = m.frequency.kinds.map { k -> String in
            var chart = LineChart(
                title: "\(k.kind.plural): energy in the lowest frequencies", xLabel: "layer",
                yLabel: "energy fraction", series: k.lowEnergy.map(categorical))
            chart.yDomain = 0...1
            chart.integerX = true
            return chart.render()
        }
        var spectrum = LineChart(
            title: "Average DCT spectrum along tokens", xLabel: "frequency k/T",
            yLabel: "energy share per bin", series: m.frequency.averageSpectra.map(categorical))
        spectrum.logY = true
        let window = m.frequency.window.map { "windows of \($0) tokens" } ?? "whole sequences"
        let text = note("Orthonormal DCT-II along tokens over \(window) (FreqKV).")
        return section("frequency", "5. Frequency", text + row(charts + [spectrum.render()]))
    }

    static func fitsSection(_ fits: [FitReport]) -> String {
        let model = FitSeries(fits)
        var parts: [String] = []
        // The Pareto plot: every sweep point, one series per method.
        if !model.pareto.isEmpty {
            let which = model.paretoHeldOut ? "held-out" : "fit"
            parts.append(
                LineChart(
                    title: "Error versus memory (\(which) tokens)", xLabel: "memory ÷ original",
                    yLabel: "relative error (RMS over layers)", series: model.pareto.map(categorical)
                )
                .render())
        }
        for fit in model.fits {
            let title = "\(fit.method): error per layer at \(ChartFormat.number(fit.memoryRatio)) of the memory"
            parts.append(
                LineChart(
                    title: title, xLabel: "layer", yLabel: "‖X − X̂‖ ÷ ‖X‖",
                    series: fit.errors.map(categorical)
                ).render())
            for ranks in fit.headRanks {
                let plural = TensorKind(rawValue: ranks.kind)?.plural ?? ranks.kind + "s"
                var h = Heatmap(
                    title: "\(fit.method) \(plural): rank per head", values: ranks.data.values,
                    rowLabel: "layer", columnLabel: "head", valueLabel: "rank")
                h.rowNames = ranks.data.rowNames
                parts.append(h.render())
            }
        }
        let table = model.rows.map { f in
            let cells = [
                escapeXML(f.method), ChartFormat.number(f.memoryRatio),
                ChartFormat.number(f.compression) + "×", optional(f.fitError), optional(f.heldOutError),
                optional(f.attentionError), f.sinks.map(escapeXML) ?? "—", optional(f.attentionErrorWithoutSinks),
            ]
            return "<tr>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }.joined()
        let header = [
            "method", "memory ÷ original", "compression", "fit error", "held-out error",
            "attention output error", "sinks kept exact", "attention output error without sinks",
        ].map { "<th>\($0)</th>" }.joined()
        return section(
            "fits", "6. Low-rank fits",
            "\n<table><tr>\(header)</tr>\(table)</table>\n" + nullTable(fits) + row(parts))
    }

    /// xKV's shuffled-token control: per group and kind, the grouped, null and per-layer errors at equal memory
    /// and the two gains (empty without xKV fits).
    static func nullTable(_ fits: [FitReport]) -> String {
        let controls = fits.flatMap { $0.xkvNull ?? [] }
        guard !controls.isEmpty else { return "" }
        let header = [
            "kind", "layers", "rank (per layer)", "grouped error", "null error", "per-layer error", "real gain",
            "accounting gain",
        ].map { "<th>\($0)</th>" }.joined()
        let rows = controls.map { c in
            let cells = [
                escapeXML(c.kind), IndexList.text(c.layers), "\(c.rank) (\(c.perLayerRank))", optional(c.groupedError),
                optional(c.nullError), optional(c.perLayerError), optional(c.realGain), optional(c.accountingGain),
            ]
            return "<tr>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }.joined()
        let text = note(
            "Is xKV's cross-layer gain real? The null refits each group after shuffling the token rows of every "
                + "layer but the first (seeded; each layer keeps its own spectrum, only the alignment of tokens "
                + "across layers is lost). Real gain = null − grouped error; accounting gain = per-layer − null "
                + "error, what sharing the same memory among the group's layers buys with no alignment at all. "
                + "Errors pooled over each group's layers, on the fit tokens.")
        return text + "\n<table><tr>\(header)</tr>\(rows)</table>\n"
    }

    // MARK: helpers

    /// Most sink rows listed.
    static let sinkRowLimit = 60

    /// `<section id="id"><h2>title</h2>body</section>`.
    static func section(_ id: String, _ title: String, _ body: String) -> String {
        "<section id=\"\(id)\"><h2>\(title)</h2>\(body)</section>"
    }

    /// A note paragraph of plain `text` (escaped).
    static func note(_ text: String) -> String { "<p class=\"note\">\(escapeXML(text))</p>" }

    /// A wrapping row of charts.
    static func row(_ items: [String]) -> String { "<div class=\"row\">\(items.joined())</div>" }

    /// A layer's curve, coloured by depth (dark = first layer, yellow = last).
    static func layerSeries(_ curve: LayerCurve) -> LineChart.Series {
        .init(name: "layer \(curve.layer)", points: curve.points, color: ColorMap.viridis.color(curve.depth))
    }

    /// A series in the categorical palette.
    static func categorical(_ series: PlotSeries) -> LineChart.Series {
        let palette = ColorMap.categorical
        return .init(name: series.name, points: series.points, color: palette[series.colorIndex % palette.count])
    }

    /// A number, or "—" where it is undefined (null in the JSON).
    static func optional(_ value: Double?) -> String { value.map(ChartFormat.number) ?? "—" }
}
