// Axis-order strings such as "bhtd", "lbhtd" or "thd": which dimension of a stored tensor is the layer,
// batch (sequence), head, token and head_dim axis.

/// The meaning of each dimension of a stored tensor, from a string over the letters l, b, h, t, d.
///
/// `t` (tokens) and `d` (head_dim) are required; `l` (layer), `b` (batch) and `h` (heads) are optional and
/// default to extent 1 when absent. Each letter may appear once.
public struct AxisOrder: Sendable, Equatable, CustomStringConvertible {
    /// The letters, one per dimension, in storage order.
    public let letters: [Character]

    public init(_ text: String) throws(DumpError) {
        let letters = Array(text.lowercased())
        guard !letters.isEmpty, letters.allSatisfy({ "lbhtd".contains($0) }), Set(letters).count == letters.count,
            letters.contains("t"), letters.contains("d")
        else {
            throw DumpError(
                .badLayout, "axis order '\(text)' must use each of l, b, h, t, d at most once and include t and d")
        }
        self.letters = letters
    }

    /// The dimension index of `axis`, or nil when the tensor has no such axis.
    public func index(of axis: Character) -> Int? { letters.firstIndex(of: axis) }

    /// Number of dimensions.
    public var rank: Int { letters.count }

    public var description: String { String(letters) }

    /// The default order for a per-layer dataset of `rank` dimensions: 4 → bhtd, 3 → htd.
    static func defaultPerLayer(rank: Int) -> AxisOrder? {
        switch rank {
        case 4: return try? AxisOrder("bhtd")
        case 3: return try? AxisOrder("htd")
        default: return nil
        }
    }

    /// The default order for a stacked dataset of `rank` dimensions: 5 → lbhtd, 4 → lhtd.
    static func defaultStacked(rank: Int) -> AxisOrder? {
        switch rank {
        case 5: return try? AxisOrder("lbhtd")
        case 4: return try? AxisOrder("lhtd")
        default: return nil
        }
    }
}
