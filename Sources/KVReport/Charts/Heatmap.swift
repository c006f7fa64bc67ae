// Heatmaps of matrices (layer × layer similarity, layer × head ranks, layer × channel outliers) with row and
// column labels, a colour bar, and a hover title carrying every cell's exact value.

/// A matrix drawn as coloured cells; nil cells are drawn blank.
public struct Heatmap {
    public var title: String
    public var values: [[Double?]]
    public var rowLabel: String
    public var columnLabel: String
    /// Labels of rows and columns (default: their indices).
    public var rowNames: [String]?
    public var columnNames: [String]?
    /// Colour domain (default: the data's range).
    public var domain: ClosedRange<Double>?
    public var colorMap = ColorMap.viridis
    /// What the colour means, for the colour bar and the titles.
    public var valueLabel: String
    public var cellSize = 16.0
    /// Largest drawing width; cells shrink to fit.
    public var maxWidth = 560.0

    public init(title: String, values: [[Double?]], rowLabel: String, columnLabel: String, valueLabel: String) {
        (self.title, self.values, self.rowLabel, self.columnLabel, self.valueLabel) = (
            title, values, rowLabel, columnLabel, valueLabel
        )
    }

    public func render() -> String {
        let rows = values.count
        let columns = values.map(\.count).max() ?? 0
        // The left margin holds the widest row name and the rotated row title (about 20 px).
        let left = max(56.0, 28 + ((rowNames ?? []).map { LabelFit.width($0, size: 9) }.max() ?? 0))
        let top = 28.0
        let bottom = 40.0
        let barWidth = 70.0
        let cellW = max(1, min(cellSize, (maxWidth - left - barWidth) / Double(max(columns, 1))))
        let cellH = max(1, min(cellSize, 400 / Double(max(rows, 1))))
        // Wide enough for the title (about 7 px per character at 13 px).
        let width = max(left + cellW * Double(columns) + barWidth, Double(title.count) * 7.2 + 16)
        let height = top + cellH * Double(rows) + bottom
        var svg = SVG(width: width, height: height)
        svg.text(width / 2, 16, title, size: 13, anchor: .middle, weight: "bold")
        let finite = values.flatMap { $0 }.compactMap { $0 }.filter(\.isFinite)
        guard let lo = finite.min(), let hi = finite.max() else {
            svg.text(width / 2, height / 2, "no data", anchor: .middle)
            return svg.render(label: title, chart: "heatmap")
        }
        let domain = self.domain ?? (lo...hi)
        let span = domain.upperBound - domain.lowerBound
        let rowNames = self.rowNames ?? (0..<rows).map(String.init)
        let columnNames = self.columnNames ?? (0..<columns).map(String.init)
        svg.beginData()
        for (r, row) in values.enumerated() {
            for (c, value) in row.enumerated() {
                guard let value, value.isFinite else { continue }
                let t = span > 0 ? (value - domain.lowerBound) / span : 0.5
                svg.rect(
                    left + Double(c) * cellW, top + Double(r) * cellH, cellW, cellH, fill: colorMap.color(t).hex,
                    title:
                        "\(rowLabel) \(rowNames[r]), \(columnLabel) \(columnNames[c]): \(valueLabel) "
                        + "\(ChartFormat.number(value))"
                )
            }
        }
        svg.endData()
        // The grid's outline (and the plotted area tests read).
        svg.rect(left, top, cellW * Double(columns), cellH * Double(rows), fill: "none", cls: "plot")
        // Axis labels: every k-th row and column, k the smallest that keeps neighbouring labels apart (9 px labels
        // are about 11 px tall; columns by their widest name).
        let rowEvery = LabelFit.every(count: rows, spacing: cellH, extent: 9, gap: 2)
        let widest = columnNames.map { LabelFit.width($0, size: 9) }.max() ?? 0
        let columnEvery = LabelFit.every(count: columns, spacing: cellW, extent: widest)
        for r in stride(from: 0, to: rows, by: rowEvery) {
            svg.text(left - 4, top + (Double(r) + 0.5) * cellH + 4, rowNames[r], size: 9, anchor: .end)
        }
        for c in stride(from: 0, to: columns, by: columnEvery) {
            svg.text(
                left + (Double(c) + 0.5) * cellW, top + Double(rows) * cellH + 12, columnNames[c], size: 9,
                anchor: .middle)
        }
        svg.text(left + cellW * Double(columns) / 2, height - 6, columnLabel, size: 11, anchor: .middle)
        svg.text(12, top + cellH * Double(rows) / 2, rowLabel, size: 11, anchor: .middle, rotate: -90)
        // Colour bar.
        let barX = left + cellW * Double(columns) + 14
        let barH = max(cellH * Double(rows), 60)
        for i in 0..<20 {
            let t = 1 - Double(i) / 19
            svg.rect(barX, top + Double(i) * barH / 20, 12, barH / 20 + 0.5, fill: colorMap.color(t).hex)
        }
        svg.text(barX + 16, top + 8, ChartFormat.number(domain.upperBound), size: 9)
        svg.text(barX + 16, top + barH, ChartFormat.number(domain.lowerBound), size: 9)
        if valueLabel.count <= 10 { svg.text(barX + 6, top + barH + 14, valueLabel, size: 9, anchor: .middle) }
        return svg.render(label: title, chart: "heatmap")
    }
}
