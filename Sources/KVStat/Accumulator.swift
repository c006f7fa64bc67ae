// The shape every statistic takes: state + fold(block) + merge(other), finished separately. It gives
// streaming (bounded memory), partial results (--save-state) and merging across token ranges and dumps.

/// A mergeable summary of token rows. For any split of the rows into A and B,
/// `merge(fold(A), fold(B))` equals `fold(A ++ B)` up to floating-point rounding (a test per accumulator).
public protocol Accumulator: Sendable {
    /// Adds the valid rows of `block`.
    mutating func fold(_ block: TokenBlock)
    /// Adds everything `other` has seen.
    mutating func merge(_ other: Self)
}
