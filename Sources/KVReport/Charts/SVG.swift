// A small SVG writer: escaped text, attributes formatted compactly, and elements appended in order.
import Foundation

/// Escapes text for XML content and attribute values.
public func escapeXML(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(c)
        }
    }
    return out
}

/// An SVG image being built: `width × height` user units, elements in paint order.
public struct SVG {
    public let width: Double
    public let height: Double
    private var body: [String] = []

    public init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    static func n(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    /// Appends raw markup (already escaped).
    public mutating func raw(_ markup: String) { body.append(markup) }

    public mutating func line(
        _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String = "#888", width: Double = 1,
        dash: String? = nil
    ) {
        body.append(
            "<line x1=\"\(SVG.n(x1))\" y1=\"\(SVG.n(y1))\" x2=\"\(SVG.n(x2))\" y2=\"\(SVG.n(y2))\" "
                + "stroke=\"\(stroke)\" stroke-width=\"\(SVG.n(width))\""
                + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>")
    }

    /// A rectangle, with a hover title when given (`cls`: a class, e.g. "plot" for a chart's plotted area).
    public mutating func rect(
        _ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, title: String? = nil, stroke: String? = nil,
        cls: String? = nil
    ) {
        let open =
            (cls.map { "<rect class=\"\($0)\" x=" } ?? "<rect x=")
            + "\"\(SVG.n(x))\" y=\"\(SVG.n(y))\" width=\"\(SVG.n(max(w, 0)))\" height=\"\(SVG.n(max(h, 0)))\" "
            + "fill=\"\(fill)\""
            + (stroke.map { " stroke=\"\($0)\"" } ?? "")
        body.append(title.map { open + "><title>\(escapeXML($0))</title></rect>" } ?? open + "/>")
    }

    public mutating func circle(_ cx: Double, _ cy: Double, r: Double, fill: String, title: String? = nil) {
        let open = "<circle cx=\"\(SVG.n(cx))\" cy=\"\(SVG.n(cy))\" r=\"\(SVG.n(r))\" fill=\"\(fill)\""
        body.append(title.map { open + "><title>\(escapeXML($0))</title></circle>" } ?? open + "/>")
    }

    /// A polyline through `points`, with a hover title naming the series.
    public mutating func polyline(
        _ points: [(Double, Double)], stroke: String, width: Double = 1.5, title: String? = nil
    ) {
        guard !points.isEmpty else { return }
        let coordinates = points.map { "\(SVG.n($0.0)),\(SVG.n($0.1))" }.joined(separator: " ")
        let open =
            "<polyline points=\"\(coordinates)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(SVG.n(width))\""
        body.append(title.map { open + "><title>\(escapeXML($0))</title></polyline>" } ?? open + "/>")
    }

    public enum Anchor: String { case start, middle, end }

    public mutating func text(
        _ x: Double, _ y: Double, _ content: String, size: Double = 11, anchor: Anchor = .start,
        rotate: Double? = nil, weight: String? = nil
    ) {
        let transform = rotate.map { " transform=\"rotate(\(SVG.n($0)) \(SVG.n(x)) \(SVG.n(y)))\"" } ?? ""
        let bold = weight.map { " font-weight=\"\($0)\"" } ?? ""
        body.append(
            "<text x=\"\(SVG.n(x))\" y=\"\(SVG.n(y))\" font-size=\"\(SVG.n(size))\" "
                + "text-anchor=\"\(anchor.rawValue)\"\(transform)\(bold)>\(escapeXML(content))</text>"
        )
    }

    /// Opens a group of the chart's data marks (`<g class="data">`: lines, points, cells), closed by `endData`.
    /// Tests read the data's extent from it.
    public mutating func beginData() { body.append("<g class=\"data\">") }

    public mutating func endData() { body.append("</g>") }

    /// The finished `<svg>` element, with `label` as its accessible name and `chart` its kind ("line",
    /// "heatmap") in `data-chart`.
    public func render(label: String, chart: String? = nil) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" "
            + (chart.map { "data-chart=\"\($0)\" " } ?? "") + "viewBox=\"0 0 \(SVG.n(width)) \(SVG.n(height))\" "
            + "width=\"\(SVG.n(width))\" height=\"\(SVG.n(height))\" role=\"img\" "
            + "aria-label=\"\(escapeXML(label))\" font-family=\"sans-serif\">"
            + body.joined() + "</svg>"
    }
}
