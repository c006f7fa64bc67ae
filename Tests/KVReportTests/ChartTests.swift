// The chart code behind report.html: scales and their ticks, colour maps, SVG escaping, heatmap cells and
// line-chart markers with exact values in their hover titles.
import Foundation
import Testing

@testable import KVReport

@Suite struct ChartTests {
    @Test func linearScaleMapsAndReverses() {
        let s = LinearScale(domain: 0...10, range: 100...200)
        #expect(s.position(0) == 100 && s.position(10) == 200 && s.position(2.5) == 125)
        let y = LinearScale(domain: 0...10, range: 100...200, reversed: true)
        #expect(y.position(0) == 200 && y.position(10) == 100)
        #expect(LinearScale(domain: 3...3, range: 0...10).position(3) == 5)
    }

    @Test func niceTicksAreRoundNumbersInsideTheDomain() {
        #expect(LinearScale(domain: 0...1, range: 0...1).ticks(5) == [0, 0.2, 0.4, 0.6, 0.8, 1])
        #expect(LinearScale(domain: 0...97, range: 0...1).ticks(5) == [0, 20, 40, 60, 80])
        #expect(LinearScale(domain: -3...7, range: 0...1).ticks(5) == [-2, 0, 2, 4, 6])
        #expect(LinearScale.niceStep(0.013) == 0.02 && LinearScale.niceStep(3) == 5 && LinearScale.niceStep(1) == 1)
    }

    @Test func logScaleTicksAtPowersOfTen() {
        let s = LogScale(domain: 0.01...1000, range: 0...500)
        #expect(s.ticks(10) == [0.01, 0.1, 1, 10, 100, 1000])
        #expect(abs(s.position(1) - 200) < 1e-9)
        // Short spans add 2 and 5 × 10ᵏ.
        #expect(LogScale(domain: 1...30, range: 0...1).ticks(10) == [1, 2, 5, 10, 20])
    }

    @Test func colorMapEndsAndInterpolates() {
        #expect(ColorMap.viridis.color(0).hex == "#440154")
        #expect(ColorMap.viridis.color(1).hex == "#fde725")
        #expect(ColorMap.viridis.color(-5) == ColorMap.viridis.color(0))
        let grey = ColorMap(anchors: [RGB(0, 0, 0), RGB(1, 1, 1)]).color(0.5)
        #expect(grey.hex == "#808080")
    }

    @Test func textIsEscaped() {
        #expect(escapeXML("a<b & \"c\"") == "a&lt;b &amp; &quot;c&quot;")
        var svg = SVG(width: 10, height: 10)
        svg.text(1, 1, "<script>")
        #expect(!svg.render(label: "x").contains("<script>"))
    }

    @Test func heatmapDrawsEveryCellWithItsValue() {
        var h = Heatmap(
            title: "CKA", values: [[1, 0.5], [nil, 1]], rowLabel: "layer", columnLabel: "layer", valueLabel: "cka")
        h.rowNames = ["3", "4"]
        let svg = h.render()
        #expect(svg.components(separatedBy: "<title>").count - 1 == 3)  // the nil cell is blank
        #expect(svg.contains("<title>layer 3, layer 1: cka 0.5</title>"))
        #expect(svg.contains("fill=\"#fde725\"><title>layer 4, layer 1: cka 1</title>"))  // the top of the colour map
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>"))
    }

    @Test func lineChartMarkersCarryExactValues() {
        let chart = LineChart(
            title: "σ", xLabel: "index", yLabel: "value",
            series: [
                .init(name: "layer 0", points: [(1, 10), (2, 0.25)], color: ColorMap.categorical[0])
            ])
        let svg = chart.render()
        #expect(svg.contains("<title>layer 0: index 2, value 0.25</title>"))
        #expect(svg.contains("<polyline"))
        var log = chart
        log.logY = true
        #expect(log.render().contains(">0.1<") || log.render().contains(">1<"))
        #expect(LineChart(title: "empty", xLabel: "x", yLabel: "y", series: []).render().contains("no data"))
    }

    @Test func numbersAreShort() {
        #expect(ChartFormat.number(0.123456) == "0.1235")
        #expect(ChartFormat.number(123456) == "1.23e+05")
        #expect(ChartFormat.number(0) == "0")
    }
}
