// Line charts with axes, ticks, labels, a legend, optional reference lines, and hover titles on points.
import Foundation

/// Several series of (x, y) points on shared axes.
public struct LineChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: RGB
        /// Draw a marker with a hover title at every point (the exact values); lines alone otherwise.
        public var markers: Bool

        public init(name: String, points: [(x: Double, y: Double)], color: RGB, markers: Bool = true) {
            (self.name, self.points, self.color, self.markers) = (name, points, color, markers)
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var logY = false
    public var logX = false
    /// Fixed y domain (default: the data's).
    public var yDomain: ClosedRange<Double>?
    /// Horizontal reference lines with labels (e.g. 90 % energy).
    public var references: [(y: Double, label: String)] = []
    /// Show the legend (off when a colour encodes a continuous quantity described elsewhere).
    public var legend = true
    /// Instead of a legend: a colour bar for series coloured by depth, its ends labelled (e.g. "layer 0" at the
    /// top, "layer 79" at the bottom), for per-layer series that would need one legend entry each.
    public var colorBar: (map: ColorMap, first: String, last: String)?
    /// Label x ticks at whole numbers only (layer numbers).
    public var integerX = false
    public var width = 520.0
    public var height = 300.0

    /// Most legend entries drawn (the rest are counted).
    static let legendEntries = 14

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        (self.title, self.xLabel, self.yLabel, self.series) = (title, xLabel, yLabel, series)
    }

    /// The legend's width: its longest entry (up to 200 px and 35 % of the chart; longer names are cut with "…"),
    /// or the colour bar's.
    var legendWidth: Double {
        if let bar = colorBar {
            return 28 + max(LabelFit.width(bar.first, size: 9), LabelFit.width(bar.last, size: 9))
        }
        guard legend && !series.isEmpty else { return 0 }
        let longest = series.prefix(Self.legendEntries).map { LabelFit.width($0.name, size: 10) }.max() ?? 0
        return min(max(longest + 26, 60), 200, width * 0.35)
    }

    /// The chart as an `<svg>` element.
    public func render() -> String {
        let legendWidth = self.legendWidth
        let right = 14.0 + legendWidth
        let top = 28.0
        let bottom = 44.0
        var svg = SVG(width: width, height: height)
        let points = series.flatMap(\.points).filter {
            $0.x.isFinite && $0.y.isFinite && (!logY || $0.y > 0) && (!logX || $0.x > 0)
        }
        svg.text(width / 2, 16, title, size: 13, anchor: .middle, weight: "bold")
        guard let xs = points.map(\.x).min().flatMap({ lo in points.map(\.x).max().map { lo...$0 } }),
            let ysData = points.map(\.y).min().flatMap({ lo in points.map(\.y).max().map { lo...$0 } })
        else {
            svg.text(width / 2, height / 2, "no data", anchor: .middle)
            return svg.render(label: title, chart: "line")
        }
        let ys = yDomain ?? ysData
        let h = height - top - bottom
        let yRange = top...(top + h)
        let yScale: Scale =
            logY
            ? LogScale(domain: ys, range: yRange, reversed: true)
            : LinearScale(domain: ys, range: yRange, reversed: true)
        // Tick labels at 10 px are about 12 px tall: keep 5 ticks only where they are 16 px apart.
        let yTicks = yScale.ticks(max(2, min(5, Int(h / 16))))
        // The left margin holds the widest y tick label and the rotated y title (about 22 px).
        let left = max(62.0, 30 + (yTicks.map { LabelFit.width(yScale.label($0), size: 10) }.max() ?? 0))
        let plot = (x: left, y: top, w: width - left - right, h: h)
        let xRange = plot.x...(plot.x + plot.w)
        let xScale: Scale = logX ? LogScale(domain: xs, range: xRange) : LinearScale(domain: xs, range: xRange)
        svg.rect(plot.x, plot.y, plot.w, plot.h, fill: "#fafafa", stroke: "#ccc", cls: "plot")
        for t in yTicks {
            let y = yScale.position(t)
            svg.line(plot.x, y, plot.x + plot.w, y, stroke: "#e4e4e4")
            svg.text(plot.x - 5, y + 4, yScale.label(t), size: 10, anchor: .end)
        }
        for t in LabelFit.horizontalTicks(xScale, preferred: 6, size: 10, integers: integerX) {
            let x = xScale.position(t)
            svg.line(x, plot.y + plot.h, x, plot.y + plot.h + 4, stroke: "#888")
            // A label that would cross the chart's right edge ends at its tick instead.
            let label = xScale.label(t)
            let overflows = x + LabelFit.width(label, size: 10) / 2 > width - 2
            svg.text(x, plot.y + plot.h + 16, label, size: 10, anchor: overflows ? .end : .middle)
        }
        // Reference labels (9 px) closer than 11 px to one already drawn are left off; their lines stay.
        var labelled: [Double] = []
        for reference in references where reference.y >= ys.lowerBound && reference.y <= ys.upperBound {
            let y = yScale.position(reference.y)
            svg.line(plot.x, y, plot.x + plot.w, y, stroke: "#999", dash: "4 3")
            guard labelled.allSatisfy({ abs($0 - y) >= 11 }) else { continue }
            labelled.append(y)
            svg.text(plot.x + plot.w - 3, y - 3, reference.label, size: 9, anchor: .end)
        }
        svg.beginData()
        for s in series {
            let visible = s.points.filter {
                $0.x.isFinite && $0.y.isFinite && (!logY || $0.y > 0) && (!logX || $0.x > 0)
            }
            let mapped = visible.map { (xScale.position($0.x), yScale.position($0.y)) }
            svg.polyline(mapped, stroke: s.color.hex, title: s.name)
            if s.markers {
                for (p, m) in zip(visible, mapped) {
                    svg.circle(
                        m.0, m.1, r: 2.5, fill: s.color.hex,
                        title: "\(s.name): \(xLabel) \(ChartFormat.number(p.x)), \(yLabel) \(ChartFormat.number(p.y))")
                }
            }
        }
        svg.endData()
        svg.text(plot.x + plot.w / 2, height - 8, xLabel, size: 11, anchor: .middle)
        svg.text(14, plot.y + plot.h / 2, yLabel, size: 11, anchor: .middle, rotate: -90)
        if let bar = colorBar {
            // 20 steps from the first (top) to the last (bottom) colour, the ends labelled.
            let x = width - legendWidth + 4
            let barH = min(plot.h, 160)
            for i in 0..<20 {
                svg.rect(
                    x, plot.y + Double(i) * barH / 20, 12, barH / 20 + 0.5, fill: bar.map.color(Double(i) / 19).hex)
            }
            svg.text(x + 16, plot.y + 9, bar.first, size: 9)
            svg.text(x + 16, plot.y + barH, bar.last, size: 9)
        } else if legend && !series.isEmpty {
            let entries = max(1, min(Self.legendEntries, Int((plot.h - 8) / 16)))
            let shown = series.count > entries ? entries - 1 : entries
            for (i, s) in series.prefix(shown).enumerated() {
                let y = plot.y + 8 + Double(i) * 16
                svg.rect(width - legendWidth + 4, y - 8, 12, 10, fill: s.color.hex)
                svg.text(width - legendWidth + 20, y + 1, Self.cut(s.name, to: legendWidth - 26), size: 10)
            }
            if series.count > shown {
                let y = plot.y + 8 + Double(shown) * 16
                svg.text(width - legendWidth + 4, y + 1, "… \(series.count - shown) more", size: 10)
            }
        }
        return svg.render(label: title, chart: "line")
    }

    /// `text`, cut and ended with "…" so that it is at most `width` px wide at 10 px.
    static func cut(_ text: String, to width: Double) -> String {
        guard LabelFit.width(text, size: 10) > width else { return text }
        var out = ""
        for c in text {
            if LabelFit.width(out + String(c) + "…", size: 10) > width { break }
            out.append(c)
        }
        return out + "…"
    }
}
