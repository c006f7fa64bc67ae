// Axis-order strings such as "bhtd", "lbhtd", "thd" or "btc": which dimension of a stored tensor is the layer,
// batch (sequence), head, token and head_dim axis, or one axis of heads × head_dim channels merged.

/// The meaning of each dimension of a stored tensor, from a string over the letters l, b, h, t, d, c.
///
/// `t` (tokens) is required, and either `d` (head_dim) or `c` (channels: heads × head_dim merged into one axis,
/// head-major, so channel `c` is head `c / head_dim`, dimension `c % head_dim` — what `x.reshape(..., heads *
/// head_dim)` of a `[..., heads, head_dim]` array gives, and what Hugging Face's `k_proj` outputs are). `c`
/// excludes `h` and `d`; its head count comes from elsewhere (`TensorLocation.heads`). `l` (layer), `b` (batch)
/// and `h` (heads) are optional and default to extent 1 when absent. Each letter may appear once.
public struct AxisOrder: Sendable, Equatable, CustomStringConvertible {
    /// The letters, one per dimension, in storage order.
    public let letters: [Character]

    public init(_ text: String) throws(DumpError) {
        let letters = Array(text.lowercased())
        let merged = letters.contains("c")
        guard !letters.isEmpty, letters.allSatisfy({ "lbhtdc".contains($0) }), Set(letters).count == letters.count,
            letters.contains("t"), merged != letters.contains("d"), !(merged && letters.contains("h"))
        else {
            throw DumpError(
                .badLayout,
                "axis order '\(text)' must use each of l, b, h, t, d at most once and include t and d, or put c "
                    + "(heads × head_dim merged) in place of h and d")
        }
        self.letters = letters
    }

    /// Whether one axis (`c`) holds heads × head_dim merged.
    public var mergesHeads: Bool { letters.contains("c") }

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

    /// The default order for a per-layer projection output (`k_proj`, `v_proj`, `q_proj` as a forward hook
    /// captures it) of `rank` dimensions: 3 → btc, 2 → tc, 4 → bhtd (a dumper that already split the heads).
    static func defaultProjection(rank: Int) -> AxisOrder? {
        switch rank {
        case 4: return try? AxisOrder("bhtd")
        case 3: return try? AxisOrder("btc")
        case 2: return try? AxisOrder("tc")
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
