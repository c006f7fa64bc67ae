// report.html: one self-contained page (inline CSS and SVG, no scripts, no fetches) drawing stats.json
// and, when given, fit manifests — the dump, spectra, cross-layer similarity, outliers, frequency, fits.
import Foundation
import KVStat

public enum ReportHTML {
    /// The page for an analysis (`stats`) and any fits of the same dump (`fits`); either may be absent.
    public static func render(stats: StatsReport?, fits: [FitReport] = []) -> String {
        var sections: [String] = []
        if let stats {
            sections.append(dumpSection(stats.dump))
            sections.append(spectraSection(stats))
            sections.append(similaritySection(stats))
            sections.append(outliersSection(stats))
            sections.append(frequencySection(stats))
        }
        if !fits.isEmpty { sections.append(fitsSection(fits)) }
        let name = stats.map { URL(fileURLWithPath: $0.dump.path).lastPathComponent } ?? fits.first.map { URL(fileURLWithPath: $0.source.path).lastPathComponent } ?? "kvstat"
        let nav = ["dump", "spectra", "similarity", "outliers", "frequency", "fits"]
            .filter { id in sections.contains { $0.contains("<section id=\"\(id)\"") } }
            .map { "<a href=\"#\($0)\">\($0)</a>" }.joined(separator: " · ")
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>kvstat report — \(escapeXML(name))</title>
        <style>
        body{font-family:sans-serif;margin:0 auto;max-width:1180px;padding:12px 20px;color:#222}
        h1{font-size:22px;margin:6px 0}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
        h3{font-size:14px;margin:14px 0 4px}p.note{color:#555;font-size:13px;margin:4px 0 8px}
        .row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
        table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
        th{background:#f4f4f4}svg{background:#fff}nav{font-size:13px;color:#555}
        </style></head><body>
        <h1>kvstat report — \(escapeXML(name))</h1>
        <nav>\(nav)</nav>
        \(sections.joined(separator: "\n"))
        <p class="note">Hover over any point or cell for its exact value. Definitions: docs/statistics.md and docs/fit-lowrank.md.</p>
        </body></html>
        """
    }

    // MARK: sections

    static func dumpSection(_ d: DumpSummary) -> String {
        var rows: [(String, String)] = [
            ("file", d.path), ("model", d.attributes["model"] ?? d.attributes["model_name"] ?? "—"),
            ("layers × kv heads × head_dim", "\(d.layers) × \(d.kvHeads) × \(d.headDim)" + (d.queryHeads.map { " (query heads \($0))" } ?? "")),
            ("sequences, valid tokens", "\(d.sequences), \(d.tokens)" + (d.selection.map { " (\($0))" } ?? "")),
            ("element type", d.dtype), ("tensors", d.kinds.joined(separator: ", ")),
            ("size on disk", ByteCount.format(d.bytesOnDisk)), ("padding", d.padding),
        ]
        if let sha = d.sha256 { rows.append(("SHA-256", sha)) }
        for key in d.attributes.keys.sorted() where key != "model" { rows.append((key, d.attributes[key]!)) }
        let table = rows.map { "<tr><th>\(escapeXML($0.0))</th><td>\(escapeXML(String($0.1.prefix(300))))</td></tr>" }.joined()
        return "<section id=\"dump\"><h2>1. The dump</h2><table>\(table)</table></section>"
    }

    static func spectraSection(_ s: StatsReport) -> String {
        var charts: [String] = [], cumulative: [String] = [], heatmaps: [String] = []
        let count = s.layers.count
        for kind in kinds(of: s) {
            var series: [LineChart.Series] = [], energy: [LineChart.Series] = []
            // At most `seriesLayerLimit` layers, evenly spaced, so the page stays light at any depth.
            let drawn = Set(sampledEvenly(s.layers.count, limit: seriesLayerLimit))
            for (i, layer) in s.layers.enumerated() where drawn.contains(i) {
                guard let sv = layer.kinds[kind]?.singularValues, !sv.isEmpty else { continue }
                let color = ColorMap.viridis.color(count > 1 ? Double(i) / Double(count - 1) : 0)
                let picks = sampledIndices(sv.count, limit: 96)
                series.append(.init(name: "layer \(layer.layer)", points: picks.map { (Double($0 + 1), sv[$0]) }, color: color))
                let total = sv.reduce(0) { $0 + $1 * $1 }
                guard total > 0 else { continue }  // a zero layer has no cumulative energy to draw
                var running = 0.0
                var points: [(x: Double, y: Double)] = []
                for (r, v) in sv.enumerated() {
                    running += v * v
                    if picks.contains(r) { points.append((Double(r + 1) / Double(sv.count), running / total)) }
                }
                energy.append(.init(name: "layer \(layer.layer)", points: points, color: color))
            }
            var chart = LineChart(title: "\(kind.plural): singular values", xLabel: "index i", yLabel: "σᵢ", series: series)
            chart.logY = true
            chart.legend = count <= 14
            charts.append(chart.render())
            var cum = LineChart(title: "\(kind.plural): cumulative energy", xLabel: "rank ÷ channels", yLabel: "energy fraction", series: energy)
            cum.references = [(0.9, "90 %"), (0.95, "95 %"), (0.99, "99 %")]
            cum.yDomain = 0...1
            cum.legend = count <= 14
            cumulative.append(cum.render())
            let rows = s.layers.map { layer in (layer.kinds[kind]?.headEffectiveRank?[EnergyFraction.key(0.9)] ?? []).map { Optional(Double($0)) } }
            if rows.contains(where: { !$0.isEmpty }) {
                var h = Heatmap(title: "\(kind.plural): effective rank at 90 % per head", values: rows, rowLabel: "layer", columnLabel: "head", valueLabel: "rank")
                h.rowNames = s.layers.map { String($0.layer) }
                heatmaps.append(h.render())
            }
        }
        let findings = kinds(of: s).compactMap { kind -> String? in
            // Layers with energy only: a zero layer's rank 0 is not a finding about compressibility.
            let ranks = s.layers.compactMap { layer in
                layer.kinds[kind].flatMap { $0.stableRank == nil ? nil : $0.effectiveRank?[EnergyFraction.key(0.9)] }
            }
            guard let channels = s.layers.first?.kinds[kind]?.singularValues?.count, !ranks.isEmpty, channels > 0 else { return nil }
            let mean = Double(ranks.reduce(0, +)) / Double(ranks.count)
            return String(format: "%@ reach 90 %% energy with %.1f %% of channels on average (%d of %d).", kind.plural.capitalized, 100 * mean / Double(channels), Int(mean.rounded()), channels)
        }.joined(separator: " ")
        return """
        <section id="spectra"><h2>2. Spectra</h2><p class="note">\(escapeXML(findings)) Colour: layer depth (dark = first layer, yellow = last).</p>
        <div class="row">\(charts.joined())</div><div class="row">\(cumulative.joined())</div><div class="row">\(heatmaps.joined())</div></section>
        """
    }

    /// Largest layer count drawn as L × L heatmaps (with --all-pairs); deeper dumps get line charts only, so
    /// the page grows with the pairs computed, not with L².
    static let heatmapLayerLimit = 64

    static func similaritySection(_ s: StatsReport) -> String {
        var blocks: [String] = []
        let measures: [(name: String, value: (StatsReport.Pair) -> Double?)] = [
            ("per-token cosine", { $0.cosine }), ("linear CKA", { $0.cka }),
            ("subspace alignment (rank \(s.options.alignRank))", { $0.subspaceAlignment }),
        ]
        let position = Dictionary(uniqueKeysWithValues: s.layerNumbers.enumerated().map { ($0.element, $0.offset) })
        for kind in TensorKind.allCases {
            guard let pairs = s.similarity[kind.rawValue], !pairs.isEmpty else { continue }
            // Adjacent pairs (consecutive analysed layers) against depth: how similarity changes with depth.
            let adjacent = pairs.filter { position[$0.layerB] == position[$0.layerA].map { $0 + 1 } }
            let series = measures.enumerated().map { i, measure in
                LineChart.Series(name: measure.name, points: adjacent.compactMap { p in measure.value(p).map { (Double(p.layerA), $0) } },
                                 color: ColorMap.categorical[i])
            }
            var chart = LineChart(title: "\(kind.plural): layer l with the next analysed layer", xLabel: "layer l",
                                  yLabel: "similarity", series: series)
            let drawn = adjacent.flatMap { p in measures.compactMap { $0.value(p) } }.filter(\.isFinite)
            chart.yDomain = min(drawn.min() ?? 0, 0)...max(drawn.max() ?? 1, 1)
            var maps = [chart.render()]
            if s.options.pairs == .all && s.layerNumbers.count <= heatmapLayerLimit {
                for measure in measures {
                    var matrix = [[Double?]](repeating: [Double?](repeating: nil, count: s.layerNumbers.count), count: s.layerNumbers.count)
                    for i in matrix.indices { matrix[i][i] = 1 }
                    for p in pairs {
                        guard let a = position[p.layerA], let b = position[p.layerB] else { continue }
                        (matrix[a][b], matrix[b][a]) = (measure.value(p), measure.value(p))
                    }
                    var h = Heatmap(title: "\(kind.plural): \(measure.name)", values: matrix, rowLabel: "layer", columnLabel: "layer",
                                    valueLabel: measure.name)
                    h.domain = measure.name.hasPrefix("per-token") ? -1...1 : 0...1
                    h.rowNames = s.layerNumbers.map(String.init)
                    h.columnNames = h.rowNames
                    h.maxWidth = 380
                    maps.append(h.render())
                }
            }
            blocks.append("<div class=\"row\">\(maps.joined())</div>")
        }
        let undefined = s.similarity.values.joined().filter { $0.cka == nil || $0.cosine == nil }.count
        var note = s.options.pairs == .adjacent
            ? "Adjacent layer pairs (--all-pairs computes every pair). High values mean neighbouring layers could share a cache (MiniCache) or a subspace (xKV)."
            : "Every layer pair\(s.layerNumbers.count > heatmapLayerLimit ? " (heatmaps are drawn up to \(heatmapLayerLimit) layers; similarity.csv has every pair)" : ""). Bright blocks along the diagonal are groups of layers that could share a cache (MiniCache) or a subspace (xKV)."
        if undefined > 0 { note += " \(undefined) pair(s) have an undefined measure (a layer without spread or without non-zero rows): not drawn." }
        return "<section id=\"similarity\"><h2>3. Cross-layer similarity</h2><p class=\"note\">\(escapeXML(note))</p>\(blocks.joined())</section>"
    }

    static func outliersSection(_ s: StatsReport) -> String {
        var maps: [String] = [], histograms: [LineChart.Series] = [], sinkRows: [String] = []
        for (k, kind) in kinds(of: s).enumerated() {
            let layers = s.layers.filter { $0.kinds[kind]?.channels != nil }
            guard let channels = layers.first?.kinds[kind]?.channels?.maxAbs.count, channels > 0 else { continue }
            // Channels binned to at most 256 columns (max within a bin) so wide layers stay light.
            let bin = max(1, (channels + 255) / 256)
            // A layer whose median channel max |x| is 0 has no ratios (blank row).
            let values: [[Double?]] = layers.map { layer in
                let c = layer.kinds[kind]!.channels!
                return stride(from: 0, to: channels, by: bin).map { start -> Double? in
                    guard c.medianMaxAbs > 0, let peak = c.maxAbs[start..<min(start + bin, channels)].max() else { return nil }
                    return peak / c.medianMaxAbs
                }
            }
            // Layers binned to at most `heatmapRowLimit` rows (max within a bin), like the channels.
            let rowBin = max(1, (values.count + heatmapRowLimit - 1) / heatmapRowLimit)
            let rows: [[Double?]] = stride(from: 0, to: values.count, by: rowBin).map { start in
                (0..<values[start].count).map { c in values[start..<min(start + rowBin, values.count)].compactMap { $0[c] }.max() }
            }
            var h = Heatmap(title: "\(kind.plural): max |x| ÷ median channel's", values: rows,
                            rowLabel: rowBin > 1 ? "layer (bins of \(rowBin))" : "layer",
                            columnLabel: bin > 1 ? "channel (bins of \(bin))" : "channel", valueLabel: "ratio")
            h.rowNames = stride(from: 0, to: layers.count, by: rowBin).map { String(layers[$0].layer) }
            h.columnNames = stride(from: 0, to: channels, by: bin).map(String.init)
            h.cellSize = 10
            maps.append(h.render())
            // Kurtosis distribution over every channel of every layer, log-spaced bins.
            let kurtosis = layers.flatMap { $0.kinds[kind]!.channels!.kurtosis }.compactMap { $0 }.filter { $0 > 0 && $0.isFinite }
            if let lo = kurtosis.min(), let hi = kurtosis.max() {
                let edges = 24, a = log10(lo), b = max(log10(hi), a + 1e-9)
                var counts = [Double](repeating: 0, count: edges)
                for v in kurtosis { counts[min(Int((log10(v) - a) / (b - a) * Double(edges)), edges - 1)] += 1 }
                histograms.append(.init(name: "\(kind.plural)", points: counts.enumerated().map { (pow(10, a + (Double($0.offset) + 0.5) * (b - a) / Double(edges)), $0.element) },
                                        color: ColorMap.categorical[k % 10]))
            }
            for layer in layers {
                for sink in (layer.kinds[kind]?.tokenNorms?.sinks ?? []).prefix(3) {
                    sinkRows.append("<tr><td>\(layer.layer)</td><td>\(kind.rawValue)</td><td>\(sink.sequence)</td><td>\(sink.token)</td><td>\(ChartFormat.number(sink.norm))</td><td>\(ChartFormat.number(sink.ratio))×</td></tr>")
                }
            }
        }
        var chart = LineChart(title: "Channel kurtosis (3 = Gaussian)", xLabel: "Pearson kurtosis", yLabel: "channels", series: histograms)
        chart.logX = true
        let sinks = sinkRows.isEmpty
            ? (s.layers.contains { $0.kinds.values.contains { $0.tokenNorms?.medianNorm != nil } }
                ? "<p class=\"note\">No token's norm exceeds \(ChartFormat.number(s.options.outlierFactor)) × the median.</p>"
                : "<p class=\"note\">No token has a non-zero norm: sinks cannot be judged.</p>")
            : "<h3>Sink tokens (norm > \(ChartFormat.number(s.options.outlierFactor)) × median; up to 3 per layer and kind)</h3><table><tr><th>layer</th><th>kind</th><th>sequence</th><th>token</th><th>norm</th><th>÷ median</th></tr>\(sinkRows.prefix(60).joined())</table>"
        return "<section id=\"outliers\"><h2>4. Outliers</h2><div class=\"row\">\(maps.joined())</div><div class=\"row\">\(chart.render())</div>\(sinks)</section>"
    }

    static func frequencySection(_ s: StatsReport) -> String {
        var charts: [String] = []
        var spectra: [LineChart.Series] = []
        for (k, kind) in kinds(of: s).enumerated() {
            let layers = s.layers.filter { $0.kinds[kind]?.frequency != nil }
            guard !layers.isEmpty else { continue }
            let series = FrequencyEnergy.fractions.enumerated().map { i, f in
                LineChart.Series(name: "lowest \(f == 0.0625 ? "1/16" : f == 0.125 ? "1/8" : f == 0.25 ? "1/4" : "1/2")",
                                 points: layers.compactMap { layer in
                                     layer.kinds[kind]!.frequency!.lowEnergy?[EnergyFraction.key(f)].map { (Double(layer.layer), $0) }
                                 },
                                 color: ColorMap.categorical[i])
            }
            var chart = LineChart(title: "\(kind.plural): energy in the lowest frequencies", xLabel: "layer", yLabel: "energy fraction", series: series)
            chart.yDomain = 0...1
            charts.append(chart.render())
            // The average over layers that have energy (a zero layer's spectrum is undefined).
            let defined = layers.compactMap { $0.kinds[kind]!.frequency!.spectrum }
            if let bins = defined.first?.count {
                let mean = (0..<bins).map { b in defined.reduce(0.0) { $0 + $1[b] } / Double(defined.count) }
                let points = mean.enumerated().map { ((Double($0.offset) + 0.5) / Double(bins), $0.element) }
                spectra.append(.init(name: "\(kind.plural)", points: points, color: ColorMap.categorical[k % 10]))
            }
        }
        var spectrum = LineChart(title: "Average DCT spectrum along tokens", xLabel: "frequency k/T", yLabel: "energy share per bin", series: spectra)
        spectrum.logY = true
        let window = s.options.dctWindow.map { "windows of \($0) tokens" } ?? "whole sequences"
        return "<section id=\"frequency\"><h2>5. Frequency</h2><p class=\"note\">Orthonormal DCT-II along tokens over \(window) (FreqKV).</p><div class=\"row\">\(charts.joined())\(spectrum.render())</div></section>"
    }

    static func fitsSection(_ fits: [FitReport]) -> String {
        var parts: [String] = []
        // The Pareto plot: every sweep point, one series per method.
        let sweep = fits.flatMap { $0.sweep ?? [] }
        if !sweep.isEmpty {
            let methods = Array(Set(sweep.map(\.method))).sorted()
            let series = methods.enumerated().map { i, m in
                LineChart.Series(name: m, points: sweep.filter { $0.method == m }.sorted { $0.memoryRatio < $1.memoryRatio }.compactMap { r in (r.heldOutError ?? r.fitError).map { (r.memoryRatio, $0) } },
                                 color: ColorMap.categorical[i % 10])
            }
            let which = sweep.contains { $0.heldOutError != nil } ? "held-out" : "fit"
            parts.append(LineChart(title: "Error versus memory (\(which) tokens)", xLabel: "memory ÷ original", yLabel: "relative error (RMS over layers)", series: series).render())
        }
        for fit in fits {
            var series: [LineChart.Series] = []
            for (i, kind) in fit.fit.perLayer.keys.sorted().enumerated() {
                // Undefined errors (zero-energy layers) are left out of the lines.
                let fitted = zip(fit.layers, fit.fit.perLayer[kind]!).compactMap { layer, e in e.map { (Double(layer), $0) } }
                series.append(.init(name: "\(kind) fit", points: fitted, color: ColorMap.categorical[2 * i]))
                if let held = fit.heldOut?.perLayer[kind] {
                    let points = zip(fit.layers, held).compactMap { layer, e in e.map { (Double(layer), $0) } }
                    series.append(.init(name: "\(kind) held out", points: points, color: ColorMap.categorical[2 * i + 1]))
                }
            }
            let title = "\(fit.method): error per layer at \(ChartFormat.number(fit.memoryRatio)) of the memory"
            parts.append(LineChart(title: title, xLabel: "layer", yLabel: "‖X − X̂‖ ÷ ‖X‖", series: series).render())
            if fit.units.contains(where: { $0.heads?.count == 1 }) {
                for kind in ["key", "value"] {
                    let units = fit.units.filter { $0.kind == kind && $0.heads?.count == 1 }
                    guard let heads = units.map({ $0.heads![0] }).max() else { continue }
                    var rows = [[Double?]](repeating: [Double?](repeating: nil, count: heads + 1), count: fit.layers.count)
                    for u in units { if let l = fit.layers.firstIndex(of: u.layers[0]) { rows[l][u.heads![0]] = Double(u.rank) } }
                    var h = Heatmap(title: "\(fit.method) \(kind)s: rank per head", values: rows, rowLabel: "layer", columnLabel: "head", valueLabel: "rank")
                    h.rowNames = fit.layers.map(String.init)
                    parts.append(h.render())
                }
            }
        }
        let table = fits.map { f in
            let cells = [escapeXML(f.method), ChartFormat.number(f.memoryRatio), ChartFormat.number(f.compression) + "×",
                         optional(f.fit.overall["all"] ?? nil), optional(f.heldOut?.overall["all"] ?? nil),
                         optional(f.attention.flatMap { rms($0.outputs.compactMap { $0 }) })]
            return "<tr>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }.joined()
        return """
        <section id="fits"><h2>6. Low-rank fits</h2>
        <table><tr><th>method</th><th>memory ÷ original</th><th>compression</th><th>fit error</th><th>held-out error</th><th>attention output error</th></tr>\(table)</table>
        <div class="row">\(parts.joined())</div></section>
        """
    }

    // MARK: helpers

    static func kinds(of s: StatsReport) -> [TensorKind] {
        TensorKind.allCases.filter { kind in s.layers.contains { $0.kinds[kind] != nil } }
    }

    /// Most layers drawn as separate series of one chart.
    static let seriesLayerLimit = 32
    /// Most rows of a layer × channel heatmap.
    static let heatmapRowLimit = 128

    /// Up to `limit` indices of 0..<count, evenly spaced, first and last included.
    static func sampledEvenly(_ count: Int, limit: Int) -> [Int] {
        guard count > limit, limit > 1 else { return Array(0..<count) }
        return Array(Set((0..<limit).map { $0 * (count - 1) / (limit - 1) })).sorted()
    }

    /// Up to `limit` indices of 0..<count, log-spaced so both ends of a spectrum are kept.
    static func sampledIndices(_ count: Int, limit: Int) -> [Int] {
        guard count > limit else { return Array(0..<count) }
        var picks = Set<Int>()
        for i in 0..<limit { picks.insert(min(count - 1, Int(pow(Double(count), Double(i) / Double(limit - 1)).rounded()) - 1)) }
        return picks.sorted()
    }

    /// Root mean square; nil for no values.
    static func rms(_ values: [Double]) -> Double? {
        values.isEmpty ? nil : (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot()
    }

    /// A number, or "—" where it is undefined (null in the JSON).
    static func optional(_ value: Double?) -> String { value.map(ChartFormat.number) ?? "—" }
}
