// What the fits need of a Gram accumulator beyond the statistics: its dense (optionally centred) float64 matrix,
// built without the generic element-by-element path of `Matrix.fromPackedLower` (unspecialised across modules,
// about half a second per 4096-wide xKV Gram), and the Gram of part of its tokens by subtraction.
import KVNumerics

extension GramAccumulator {
    /// `matrix(centered:)`, value for value (the same float64 operations in the same order): XᵀX with both
    /// triangles filled, minus n μμᵀ (μ = sum / n) when `centered` and n > 0.
    func denseMatrix(centered: Bool) -> Matrix<Double> {
        let c = channels
        var values = [Double](repeating: 0, count: c * c)
        let n = Double(count)
        let mu = centered && count > 0 ? mean : nil
        values.withUnsafeMutableBufferPointer { m in
            packedLower.withUnsafeBufferPointer { packed in
                for i in 0..<c {
                    let row = i * (i + 1) / 2
                    for j in 0...i {
                        let v = packed[row + j]
                        // Row-major (i, j) takes n·μ_i·μ_j and (j, i) n·μ_j·μ_i, as `matrix(centered:)` does.
                        m[i * c + j] = mu.map { v - n * $0[i] * $0[j] } ?? v
                        m[j * c + i] = mu.map { v - n * $0[j] * $0[i] } ?? v
                    }
                }
            }
        }
        return Matrix(rows: c, columns: c, values: values)
    }

    /// The Gram of this one's tokens less those of `part` (a subset of them, folded separately): every sum
    /// minus `part`'s. In exact arithmetic the Gram of the remaining tokens; in float64 its entries carry the
    /// rounding of the whole set's (relative ~1e-16 of the whole set's entries, below the float32 block
    /// products' ~1e-7).
    func subtracting(_ part: GramAccumulator) -> GramAccumulator {
        precondition(part.channels == channels)
        var rest = self
        rest.count -= part.count
        for c in sum.indices { rest.sum[c] -= part.sum[c] }
        rest.packedLower.withUnsafeMutableBufferPointer { r in
            part.packedLower.withUnsafeBufferPointer { p in for i in r.indices { r[i] -= p[i] } }
        }
        return rest
    }
}
