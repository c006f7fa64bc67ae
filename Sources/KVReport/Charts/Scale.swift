// Scales map data values to pixel positions: linear and base-10 logarithmic, each with "nice" ticks.
import Foundation

/// A map from a data domain to a pixel range, with tick positions for its axis.
public protocol Scale: Sendable {
    /// The pixel position of `value` (values outside the domain extrapolate).
    func position(_ value: Double) -> Double
    /// Tick values inside the domain, about `count` of them.
    func ticks(_ count: Int) -> [Double]
    /// A tick's label.
    func label(_ value: Double) -> String
}

/// y = range.lower + (x − domain.lower) · (range span / domain span); a zero-width domain maps to the middle.
public struct LinearScale: Scale {
    public let domain: ClosedRange<Double>
    public let range: ClosedRange<Double>
    /// Draw the range reversed (SVG y grows downwards: pass `reversed: true` for a y axis).
    public let reversed: Bool

    public init(domain: ClosedRange<Double>, range: ClosedRange<Double>, reversed: Bool = false) {
        self.domain = domain
        self.range = range
        self.reversed = reversed
    }

    public func position(_ value: Double) -> Double {
        let span = domain.upperBound - domain.lowerBound
        let t = span > 0 ? (value - domain.lowerBound) / span : 0.5
        let u = reversed ? 1 - t : t
        return range.lowerBound + u * (range.upperBound - range.lowerBound)
    }

    /// Multiples of 1, 2 or 5 × 10ᵏ, the step chosen so about `count` ticks fall in the domain.
    public func ticks(_ count: Int) -> [Double] {
        let span = domain.upperBound - domain.lowerBound
        guard span > 0, count > 0 else { return [domain.lowerBound] }
        let step = LinearScale.niceStep(span / Double(count))
        // k·step, rounded to the step's decimals so 3 × 0.2 prints as 0.6.
        let decimals = pow(10, max(0, -log10(step).rounded(.down)))
        let first = (domain.lowerBound / step).rounded(.up)
        let last = (domain.upperBound / step + 1e-9).rounded(.down)
        // A domain far from zero relative to its span (1e20 … 1e20 + 1) has tick indices beyond Int's range or
        // step decimals beyond Double's: label its ends instead.
        guard first.isFinite, last.isFinite, decimals.isFinite, abs(first) < 1e15, abs(last) < 1e15,
            last - first <= Double(16 * count)
        else { return [domain.lowerBound, domain.upperBound] }
        guard first <= last else { return [] }
        return (Int(first)...Int(last)).map { (Double($0) * step * decimals).rounded() / decimals }
    }

    /// The smallest of 1, 2, 5 × 10ᵏ at least `raw`.
    public static func niceStep(_ raw: Double) -> Double {
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        for factor in [1.0, 2, 5, 10] where factor * magnitude >= raw * (1 - 1e-12) { return factor * magnitude }
        return 10 * magnitude
    }

    public func label(_ value: Double) -> String { ChartFormat.number(value) }
}

/// Base-10 logarithmic scale over a positive domain; ticks at powers of ten (and 2, 5 × 10ᵏ over short spans).
public struct LogScale: Scale {
    public let domain: ClosedRange<Double>
    public let range: ClosedRange<Double>
    public let reversed: Bool

    public init(domain: ClosedRange<Double>, range: ClosedRange<Double>, reversed: Bool = false) {
        precondition(domain.lowerBound > 0, "a log scale needs a positive domain")
        self.domain = domain
        self.range = range
        self.reversed = reversed
    }

    public func position(_ value: Double) -> Double {
        let lo = log10(domain.lowerBound)
        let hi = log10(domain.upperBound)
        let t = hi > lo ? (log10(max(value, .leastNormalMagnitude)) - lo) / (hi - lo) : 0.5
        let u = reversed ? 1 - t : t
        return range.lowerBound + u * (range.upperBound - range.lowerBound)
    }

    public func ticks(_ count: Int) -> [Double] {
        let lo = Int(log10(domain.lowerBound).rounded(.down))
        let hi = Int(log10(domain.upperBound).rounded(.up))
        let factors: [Double] = hi - lo <= 2 ? [1, 2, 5] : [1]
        var ticks: [Double] = []
        for k in lo...hi {
            for f in factors {
                let v = f * pow(10, Double(k))
                if v >= domain.lowerBound * (1 - 1e-12) && v <= domain.upperBound * (1 + 1e-12) { ticks.append(v) }
            }
        }
        // Thin out to about `count` ticks on long spans.
        let every = max(1, ticks.count / max(count, 1))
        return ticks.enumerated().filter { $0.offset % every == 0 }.map(\.element)
    }

    public func label(_ value: Double) -> String { ChartFormat.number(value) }
}

/// Number formatting for axes and hover titles.
public enum ChartFormat {
    /// Up to 4 significant digits, exponent form outside [1e-3, 1e5).
    public static func number(_ value: Double) -> String {
        if value == 0 { return "0" }
        let a = abs(value)
        if a >= 1e5 || a < 1e-3 { return String(format: "%.2e", value) }
        var text = String(format: "%.4g", value)
        if text.contains("e") { text = String(format: "%.3f", value) }
        return text
    }
}
