// The report at depth: adjacent-pair similarity against layer (one series per kind, the extremes a reader looks
// for), and chart labels thinned so that none overlap at 80 layers — checked here from the SVG with an upper
// bound of glyph widths (the browser test, ReportDepthTests, checks the same in Chromium's own layout).
import Foundation
import Testing

@testable import KVReport
@testable import KVStat

@Suite struct DepthReportTests {
    /// 5 layers of keys and values with adjacent pairs; keys' CKA 0.9, 0.5, 0.95, 0.8 from pair 0→1 on, values'
    /// 0.99 everywhere but an undefined 2→3.
    static func report() throws -> StatsReport {
        let s = ReportModelTests.stats(
            [2, 1, 0, 0], ranks: [2, 2, 2], stable: 1.25, outliers: [], sinks: [], low: 0.5)
        let layers = (0..<5).map { StatsReport.Layer(layer: $0, kinds: [.key: s, .value: s]) }
        func pair(_ a: Int, _ cka: Double?) -> StatsReport.Pair {
            .init(
                layerA: a, layerB: a + 1, cosine: cka.map { $0 - 0.5 }, cka: cka, subspaceAlignment: 0.5,
                channelAlignment: nil)
        }
        return StatsReport(
            kvstatVersion: "test", options: AnalysisOptions(), dump: try ReportModelTests.dump(layers: 5),
            sources: ["/x/tiny.h5"], layerNumbers: [0, 1, 2, 3, 4], layers: layers,
            similarity: [
                "key": [pair(0, 0.9), pair(1, 0.5), pair(2, 0.95), pair(3, 0.8)],
                "value": [pair(0, 0.99), pair(1, 0.99), pair(2, nil), pair(3, 0.99)],
            ])
    }

    @Test func adjacentSimilarityPerMeasureWithExtremes() throws {
        let model = ReportModel(try Self.report())
        #expect(model.depthSimilarity.map(\.measure) == [.cka, .cosine, .subspaceAlignment])
        let cka = model.depthSimilarity[0]
        #expect(cka.series.map(\.name) == ["keys", "values"] && cka.series.map(\.colorIndex) == [0, 1])
        #expect(
            cka.series[0].points.map(\.x) == [0, 1, 2, 3] && cka.series[0].points.map(\.y) == [0.9, 0.5, 0.95, 0.8])
        #expect(cka.series[1].points.map(\.x) == [0, 1, 3])  // the undefined pair is left out
        let keys = try #require(cka.extremes.first)
        #expect(keys.lowest.pair == "1→2" && keys.lowest.value == 0.5)
        #expect(keys.highest.pair == "2→3" && keys.highest.value == 0.95)
        #expect(abs(keys.median - 0.85) < 1e-12)
        // The values' range 0.5…0.99 widened by 5 % of its span, kept inside CKA's 0…1.
        let domain = try #require(cka.yDomain)
        #expect(abs(domain.lowerBound - (0.5 - 0.0245)) < 1e-12 && domain.upperBound == 1)
        // Cosine (value − 0.5 here) may be negative: its domain follows the data.
        let cosine = try #require(model.depthSimilarity[1].yDomain)
        #expect(abs(cosine.lowerBound - (0.0 - 0.0245)) < 1e-12)
        // A constant measure still gets a drawable range (±0.01).
        #expect(model.depthSimilarity[2].yDomain == 0.49...0.51)
        let html = ReportHTML.render(stats: model.report)
        #expect(html.contains("Adjacent layers: linear CKA") && html.contains("<td>1→2</td><td>0.5</td>"))
        // Adjacent pairs only: no heatmaps in the similarity section.
        let start = try #require(html.range(of: "<section id=\"similarity\">"))
        let section = html[start.lowerBound...]
        let end = try #require(section.range(of: "</section>"))
        #expect(!section[..<end.lowerBound].contains("data-chart=\"heatmap\""))
        #expect(section[..<end.lowerBound].components(separatedBy: "data-chart=\"line\"").count == 4)
    }

    /// Axis-aligned text boxes of an SVG's unrotated `<text>` elements: x, y (baseline), size, anchor, content →
    /// a box from the baseline up one font size, as wide as `LabelFit.width` allows.
    static func textBoxes(_ svg: String) -> [(text: String, x0: Double, x1: Double, y0: Double, y1: Double)] {
        let pattern =
            #/<text x="([-0-9.]+)" y="([-0-9.]+)" font-size="([0-9.]+)" text-anchor="(\w+)"(.*?)>(.*?)</text>/#
        return svg.matches(of: pattern).compactMap { m in
            guard !m.output.5.contains("rotate"), let x = Double(m.output.1), let y = Double(m.output.2),
                let size = Double(m.output.3)
            else { return nil }
            let text = String(m.output.6)
            let w = LabelFit.width(text, size: size)
            let x0 = m.output.4 == "start" ? x : m.output.4 == "end" ? x - w : x - w / 2
            return (text, x0, x0 + w, y - size, y + 0.25 * size)
        }
    }

    static func overlaps(_ svg: String) -> [String] {
        let boxes = textBoxes(svg)
        var found: [String] = []
        for i in boxes.indices {
            for j in boxes.indices where j > i {
                let (a, b) = (boxes[i], boxes[j])
                if min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 && min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5 {
                    found.append("\(a.text) / \(b.text)")
                }
            }
        }
        return found
    }

    @Test func labelsOfEightyLayersDoNotOverlap() {
        // 80 layers on a narrow chart with wide y labels (1e-05 … 1e+05).
        let points = (0..<80).map { (x: Double($0), y: pow(10, Double($0 % 11) - 5)) }
        var chart = LineChart(
            title: "t", xLabel: "layer", yLabel: "y",
            series: [.init(name: "a rather long series name that does not fit", points: points, color: RGB(0, 0, 0))])
        chart.logY = true
        chart.integerX = true
        chart.width = 300
        let svg = chart.render()
        #expect(Self.overlaps(svg).isEmpty, "\(Self.overlaps(svg))")
        #expect(svg.contains("…</text>"))  // the long legend entry is cut
        // 80 × 80 heatmap with 4-digit column names: rows and columns thinned to fit.
        var h = Heatmap(
            title: "m", values: Array(repeating: Array(repeating: 0.5, count: 80), count: 80), rowLabel: "layer",
            columnLabel: "channel", valueLabel: "v")
        h.columnNames = (1000..<1080).map(String.init)
        let map = h.render()
        #expect(Self.overlaps(map).isEmpty, "\(Self.overlaps(map))")
        let rowLabels = Self.textBoxes(map).filter { $0.text.count <= 2 && Int($0.text) != nil }
        #expect(rowLabels.count >= 20 && rowLabels.count <= 40)  // every 3rd row of 5 px
        // Per-layer series coloured by depth get a colour bar, not 80 legend entries.
        var depth = LineChart(
            title: "d", xLabel: "i", yLabel: "σ",
            series: (0..<80).map { .init(name: "layer \($0)", points: [(1, 1), (2, 0.5)], color: RGB(0, 0, 0)) })
        depth.legend = false
        depth.colorBar = (ColorMap.viridis, "layer 0", "layer 79")
        let bar = depth.render()
        #expect(bar.contains(">layer 79</text>") && !bar.contains(">layer 40</text>"))
        #expect(Self.overlaps(bar).isEmpty)
    }

    @Test func integerTicksAndThinning() {
        let scale = LinearScale(domain: 0...2, range: 0...300)
        #expect(LabelFit.horizontalTicks(scale, preferred: 6, size: 10, integers: true) == [0, 1, 2])
        let wide = LinearScale(domain: 0...79, range: 0...120)
        let ticks = LabelFit.horizontalTicks(wide, preferred: 6, size: 10, integers: true)
        #expect(ticks.count >= 2)
        #expect(
            LabelFit.fits(
                positions: ticks.map(wide.position), widths: ticks.map { LabelFit.width("\(Int($0))", size: 10) }))
        #expect(LabelFit.every(count: 80, spacing: 5, extent: 9, gap: 2) == 3)
        #expect(LabelFit.every(count: 1, spacing: 0, extent: 9) == 1)
    }
}
