// Fitting axis labels: an upper bound of a label's drawn width, and the thinning of tick and row/column labels
// so that neighbouring labels never overlap, whatever the number of layers or channels.
import Foundation

/// Label sizes and spacing for charts drawn without a browser's text metrics.
public enum LabelFit {
    /// An upper bound of the drawn width of `text` at `size` px in the report's sans-serif fonts: 0.65 em per
    /// character for digits, signs and most lower-case letters (DejaVu Sans digits are 0.636 em, Liberation/Arial
    /// 0.556 em), 0.8 em for upper-case letters (DejaVu's widest but M and W: 0.787), 1 em for m, w, M, W and
    /// wide symbols.
    public static func width(_ text: String, size: Double) -> Double {
        text.reduce(0.0) { total, c in
            let em = "mwMW—…×→".contains(c) ? 1.0 : c.isUppercase ? 0.8 : 0.65
            return total + em * size
        }
    }

    /// The step k (≥ 1) such that labelling every k-th of `count` evenly spaced slots `spacing` px apart leaves at
    /// least `gap` px between neighbouring labels whose extent along the axis is at most `extent` px.
    public static func every(count: Int, spacing: Double, extent: Double, gap: Double = 4) -> Int {
        guard count > 1, spacing > 0, spacing.isFinite else { return 1 }
        let needed = Int(((extent + gap) / spacing).rounded(.up))
        return min(max(1, needed), count)
    }

    /// Whether labels centred at `positions` (ascending) with widths `widths` keep `gap` px apart.
    public static func fits(positions: [Double], widths: [Double], gap: Double = 4) -> Bool {
        for i in positions.indices.dropFirst()
        where positions[i] - positions[i - 1] < (widths[i] + widths[i - 1]) / 2 + gap {
            return false
        }
        return true
    }

    /// Ticks of `scale` for an axis whose labels are `size` px: the most ticks, trying counts from `preferred`
    /// down to 2, whose labels fit side by side along a horizontal axis; `integers` keeps whole values only (layer
    /// numbers). Falls back to the first and last tick, or the first alone.
    public static func horizontalTicks(_ scale: Scale, preferred: Int, size: Double, integers: Bool) -> [Double] {
        func fit(_ ticks: [Double]) -> Bool {
            fits(positions: ticks.map(scale.position), widths: ticks.map { width(scale.label($0), size: size) })
        }
        var last: [Double] = []
        for count in stride(from: preferred, through: 2, by: -1) {
            var ticks = scale.ticks(count)
            if integers { ticks = ticks.filter { $0 == $0.rounded() } }
            last = ticks
            if fit(ticks) { return ticks }
        }
        guard let first = last.first, let end = last.last else { return [] }
        return fit([first, end]) ? [first, end] : [first]
    }
}
