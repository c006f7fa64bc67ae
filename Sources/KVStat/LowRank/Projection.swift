// One fitted low-rank projection: which layers, tensor kind and channels it covers, its orthonormal basis
// (columns ordered by captured energy, so every prefix is itself a projection) and the mean when centred.
import KVNumerics

/// An orthonormal projection P (`dimension × rank`, row-major) of some channels of one or more layers.
///
/// Compression keeps y = (x − μ)P per token; reconstruction is x̂ = yPᵀ + μ. `dimension` is
/// `layers.count × channels.count`: the listed channels of each listed layer, side by side (xKV groups).
public struct Projection: Sendable {
    public var kind: TensorKind
    /// Layer numbers covered (one, or xKV's group).
    public var layers: [Int]
    /// Channels of each layer covered (a whole layer, a head, or a group of heads).
    public var channels: Range<Int>
    /// Heads covered, for naming (nil for a whole layer or an xKV group).
    public var heads: Range<Int>?
    /// Basis vectors as columns, `dimension × rank`.
    public var basis: Matrix<Float>
    /// μ when centred.
    public var mean: [Float]?
    /// Eigenvalues of the fitted (centred) Gram, descending, all `dimension` of them.
    public var eigenvalues: [Double]

    public var dimension: Int { basis.rows }
    public var rank: Int { basis.columns }

    /// The first `rank` basis vectors (a nested projection's prefix).
    public func truncated(to rank: Int) -> Projection {
        var copy = self
        var b = Matrix<Float>(rows: dimension, columns: rank)
        for i in 0..<dimension { for j in 0..<rank { b[i, j] = basis[i, j] } }
        copy.basis = b
        return copy
    }

    /// Fraction of the fitted energy the first `rank` vectors leave out: Σ_{i>r} λᵢ / Σ λᵢ.
    public func residualEnergy(rank: Int) -> Double {
        let total = eigenvalues.reduce(0) { $0 + max($1, 0) }
        guard total > 0 else { return 0 }
        return eigenvalues.dropFirst(rank).reduce(0) { $0 + max($1, 0) } / total
    }
}
