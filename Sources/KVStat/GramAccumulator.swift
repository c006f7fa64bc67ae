// XᵀX, column sums and the row count of one layer's matrix: everything spectra, per-head spectra, CKA and
// subspace alignment need, in C² float64 numbers however many tokens stream through.
import KVNumerics

/// Uncentred second moments of a `tokens × channels` matrix X.
///
/// `gram = Σ_t x_t x_tᵀ = XᵀX`, `sum = Σ_t x_t`, `count` = rows. Each block's product is formed in float32 by
/// SSYRK and added in float64 (`BLAS.accumulateGram`), so rounding grows with the block, not the dump. A
/// block whose values would overflow or underflow float32 when squared (|x| beyond 2^±20) is rescaled by a
/// power of two first (`PowerOfTwoScale`), and its product scaled back in float64.
/// Centring is applied at the end: `XᵀX − n μμᵀ` with μ = sum / n, exact in exact arithmetic and accurate in
/// float64 unless |μ| dwarfs the spread by ~10⁶, which KV activations do not. Merge rule: add all three.
public struct GramAccumulator: Accumulator {
    public internal(set) var count = 0
    public internal(set) var sum: [Double]
    /// XᵀX's lower triangle, packed row by row (what `BLAS.accumulateGram` adds to).
    var packedLower: [Double]

    public init(channels: Int) {
        sum = [Double](repeating: 0, count: channels)
        packedLower = [Double](repeating: 0, count: channels * (channels + 1) / 2)
    }

    /// XᵀX, both triangles.
    public var gram: Matrix<Double> { Matrix.fromPackedLower(packedLower, n: channels) }

    public var channels: Int { sum.count }

    public mutating func fold(_ block: TokenBlock) {
        var scratch: [Float] = []
        fold(block, scratch: &scratch)
    }

    /// `fold`, with the caller's float32 scratch for the block product (channels² floats, kept between calls
    /// so that one buffer serves every layer).
    public mutating func fold(_ block: TokenBlock, scratch: inout [Float]) {
        precondition(block.columns == channels)
        let scale = PowerOfTwoScale(maxMagnitude: BLAS.maxMagnitude(block.values))
        if scale.isIdentity {
            BLAS.accumulateGram(block.values, rows: block.rows, columns: channels, into: &packedLower, scratch: &scratch)
        } else {
            // Values whose squares would leave float32's range: the product of a rescaled copy, scaled back.
            let scaled = [Float](unsafeUninitializedCapacity: block.values.count) { buffer, count in
                scale.apply(block.values, into: buffer)
                count = block.values.count
            }
            scaled.withUnsafeBufferPointer {
                BLAS.accumulateGram($0, rows: block.rows, columns: channels, into: &packedLower, scratch: &scratch,
                                    multiplier: scale.undo(power: 2))
            }
        }
        count += block.validRows
        let columns = channels
        sum.withUnsafeMutableBufferPointer { s in
            for r in 0..<block.rows {
                let row = r * columns
                for c in 0..<columns { s[c] += Double(block.values[row + c]) }
            }
        }
    }

    public mutating func merge(_ other: GramAccumulator) {
        precondition(other.channels == channels)
        count += other.count
        for c in 0..<channels { sum[c] += other.sum[c] }
        for i in packedLower.indices { packedLower[i] += other.packedLower[i] }
    }

    /// Σ of XᵀX's diagonal over `channels`: the squared Frobenius norm of those columns of X.
    public func diagonalSum(_ channels: Range<Int>) -> Double {
        channels.reduce(0.0) { $0 + packedLower[$1 * ($1 + 1) / 2 + $1] }
    }

    /// Column means μ.
    public var mean: [Double] { sum.map { count > 0 ? $0 / Double(count) : 0 } }

    /// XᵀX, or the centred (X − 1μᵀ)ᵀ(X − 1μᵀ) = XᵀX − n μμᵀ.
    public func matrix(centered: Bool) -> Matrix<Double> {
        guard centered, count > 0 else { return gram }
        var m = gram
        let mu = mean, n = Double(count)
        for i in 0..<channels { for j in 0..<channels { m.values[i * channels + j] -= n * mu[i] * mu[j] } }
        return m
    }

}
