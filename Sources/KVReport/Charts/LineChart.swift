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
    public var width = 520.0
    public var height = 300.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        (self.title, self.xLabel, self.yLabel, self.series) = (title, xLabel, yLabel, series)
    }

    /// The chart as an `<svg>` element.
    public func render() -> String {
        let legendWidth = legend && !series.isEmpty ? 120.0 : 0
        let left = 62.0
        let right = 14.0 + legendWidth
        let top = 28.0
        let bottom = 44.0
        let plot = (x: left, y: top, w: width - left - right, h: height - top - bottom)
        var svg = SVG(width: width, height: height)
        let points = series.flatMap(\.points).filter {
            $0.x.isFinite && $0.y.isFinite && (!logY || $0.y > 0) && (!logX || $0.x > 0)
        }
        svg.text(width / 2, 16, title, size: 13, anchor: .middle, weight: "bold")
        guard let xs = points.map(\.x).min().flatMap({ lo in points.map(\.x).max().map { lo...$0 } }),
            let ysData = points.map(\.y).min().flatMap({ lo in points.map(\.y).max().map { lo...$0 } })
        else {
            svg.text(width / 2, height / 2, "no data", anchor: .middle)
            return svg.render(label: title)
        }
        let ys = yDomain ?? ysData
        let xRange = plot.x...(plot.x + plot.w)
        let yRange = plot.y...(plot.y + plot.h)
        let xScale: Scale = logX ? LogScale(domain: xs, range: xRange) : LinearScale(domain: xs, range: xRange)
        let yScale: Scale =
            logY
            ? LogScale(domain: ys, range: yRange, reversed: true)
            : LinearScale(domain: ys, range: yRange, reversed: true)
        svg.rect(plot.x, plot.y, plot.w, plot.h, fill: "#fafafa", stroke: "#ccc")
        for t in yScale.ticks(5) {
            let y = yScale.position(t)
            svg.line(plot.x, y, plot.x + plot.w, y, stroke: "#e4e4e4")
            svg.text(plot.x - 5, y + 4, yScale.label(t), size: 10, anchor: .end)
        }
        for t in xScale.ticks(6) {
            let x = xScale.position(t)
            svg.line(x, plot.y + plot.h, x, plot.y + plot.h + 4, stroke: "#888")
            svg.text(x, plot.y + plot.h + 16, xScale.label(t), size: 10, anchor: .middle)
        }
        for reference in references where reference.y >= ys.lowerBound && reference.y <= ys.upperBound {
            let y = yScale.position(reference.y)
            svg.line(plot.x, y, plot.x + plot.w, y, stroke: "#999", dash: "4 3")
            svg.text(plot.x + plot.w - 3, y - 3, reference.label, size: 9, anchor: .end)
        }
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
        svg.text(plot.x + plot.w / 2, height - 8, xLabel, size: 11, anchor: .middle)
        svg.text(14, plot.y + plot.h / 2, yLabel, size: 11, anchor: .middle, rotate: -90)
        if legend {
            for (i, s) in series.prefix(14).enumerated() {
                let y = plot.y + 8 + Double(i) * 16
                svg.rect(width - legendWidth + 4, y - 8, 12, 10, fill: s.color.hex)
                svg.text(width - legendWidth + 20, y + 1, s.name, size: 10)
            }
            if series.count > 14 {
                svg.text(width - legendWidth + 4, plot.y + 8 + 14 * 16, "… \(series.count - 14) more", size: 10)
            }
        }
        return svg.render(label: title)
    }
}
