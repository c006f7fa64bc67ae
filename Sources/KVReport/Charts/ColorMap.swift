// Colour maps for heatmaps and series: perceptually ordered (viridis-like) for magnitudes, and a
// categorical palette for series.

/// An RGB colour, written as #rrggbb.
public struct RGB: Sendable, Equatable {
    public var r: Double, g: Double, b: Double

    public init(_ r: Double, _ g: Double, _ b: Double) { (self.r, self.g, self.b) = (r, g, b) }

    public var hex: String {
        func byte(_ v: Double) -> String {
            let n = v.isFinite ? Int((min(max(v, 0), 1) * 255).rounded()) : 0
            return String(n, radix: 16).count == 1 ? "0" + String(n, radix: 16) : String(n, radix: 16)
        }
        return "#" + byte(r) + byte(g) + byte(b)
    }
}

/// A colour map from [0, 1], linearly interpolated between anchor colours.
public struct ColorMap: Sendable {
    public let anchors: [RGB]

    public init(anchors: [RGB]) {
        precondition(anchors.count >= 2)
        self.anchors = anchors
    }

    /// The colour at t (clamped to [0, 1]).
    public func color(_ t: Double) -> RGB {
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(anchors.count - 1)
        let i = min(Int(x), anchors.count - 2)
        let f = x - Double(i)
        let a = anchors[i]
        let b = anchors[i + 1]
        return RGB(a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b))
    }

    /// Viridis sampled at nine points (dark purple → yellow).
    public static let viridis = ColorMap(anchors: [
        RGB(0.267, 0.005, 0.329), RGB(0.283, 0.141, 0.458), RGB(0.254, 0.265, 0.530), RGB(0.207, 0.372, 0.553),
        RGB(0.164, 0.471, 0.558), RGB(0.128, 0.567, 0.551), RGB(0.135, 0.659, 0.518), RGB(0.478, 0.821, 0.318),
        RGB(0.993, 0.906, 0.144),
    ])

    /// Ten distinguishable colours for series (Tableau 10).
    public static let categorical: [RGB] = [
        RGB(0.122, 0.467, 0.706), RGB(1.000, 0.498, 0.055), RGB(0.173, 0.627, 0.173), RGB(0.839, 0.153, 0.157),
        RGB(0.580, 0.404, 0.741), RGB(0.549, 0.337, 0.294), RGB(0.890, 0.467, 0.761), RGB(0.498, 0.498, 0.498),
        RGB(0.737, 0.741, 0.133), RGB(0.090, 0.745, 0.812),
    ]
}
