// Reconstruction errors of orthonormal projections from Gram matrices alone, for `--sweep`: one Gram per
// unit prices every prefix rank of its basis without another pass over the tokens.
import KVNumerics

public enum GramErrorEstimate {
    /// ‖X' − X'P_rP_rᵀ‖²_F per layer slice of the unit, for each r in `ranks` (prefixes of `projection`'s
    /// basis), where X' = X − 1μᵀ are the evaluation tokens of the unit's channels and `gram` their Gram over
    /// all channels of the unit's layers. With B = X'ᵀX' and a slice S of the unit's dimensions:
    /// Σ_{i∈S} [(I − PPᵀ) B (I − PPᵀ)]_ii = Σ_{i∈S} B_ii − 2 Σ_{j<r} c_{S,j} + Σ_{j,k<r} M_jk N_{S,jk},
    /// c_{S,j} = Σ_{i∈S} P_ij (BP)_ij, M = PᵀBP, N_S = P_Sᵀ P_S — prefix sums over j and k give every r
    /// from one B·P product. Returns `[rank index][layer index]`.
    public static func errorSquared(
        _ projection: Projection, ranks: [Int], gram: GramAccumulator, channelsPerLayer: Int
    ) -> [[Double]] {
        let width = projection.channels.count
        let layers = projection.layers.count
        let dim = projection.dimension
        let stored = projection.rank
        // The unit's block of the evaluation Gram, centred on the projection's mean: with x' = x − μ,
        // Σ x'x'ᵀ = G − s μᵀ − μ sᵀ + n μμᵀ (s = column sums).
        let full = gram.gram
        var index = [Int](repeating: 0, count: dim)
        for position in 0..<layers {
            for c in 0..<width {
                index[position * width + c] = position * channelsPerLayer + projection.channels.lowerBound + c
            }
        }
        var block = Matrix<Double>(rows: dim, columns: dim)
        let n = Double(gram.count)
        for i in 0..<dim {
            for j in 0..<dim {
                var v = full[index[i], index[j]]
                if let mu = projection.mean {
                    let mi = Double(mu[i])
                    let mj = Double(mu[j])
                    v += -gram.sum[index[i]] * mj - mi * gram.sum[index[j]] + n * mi * mj
                }
                block[i, j] = v
            }
        }
        var p = Matrix<Double>(rows: dim, columns: stored)
        for i in 0..<dim { for j in 0..<stored { p[i, j] = Double(projection.basis[i, j]) } }
        let bp = BLAS.multiply(block, p)  // B P
        let m = BLAS.multiply(p, bp, transposeA: true)  // Pᵀ B P
        var result = [[Double]](repeating: [Double](repeating: 0, count: layers), count: ranks.count)
        for slice in 0..<layers {
            let rows = (slice * width)..<((slice + 1) * width)
            var slicePart = Matrix<Double>(rows: width, columns: stored)
            for (k, i) in rows.enumerated() { for j in 0..<stored { slicePart[k, j] = p[i, j] } }
            let nS = BLAS.multiply(slicePart, slicePart, transposeA: true)
            let trace = rows.reduce(0.0) { $0 + block[$1, $1] }
            var c = [Double](repeating: 0, count: stored)
            for i in rows { for j in 0..<stored { c[j] += p[i, j] * bp[i, j] } }
            // Prefix sums: linear[r] = Σ_{j<r} c_j; quadratic[r] = Σ_{j,k<r} M_jk N_jk, grown one border at a time.
            var linear = [Double](repeating: 0, count: stored + 1)
            var quadratic = linear
            for r in 0..<stored {
                linear[r + 1] = linear[r] + c[r]
                var border = m[r, r] * nS[r, r]
                for j in 0..<r { border += 2 * m[j, r] * nS[j, r] }
                quadratic[r + 1] = quadratic[r] + border
            }
            for (ri, r) in ranks.enumerated() {
                let k = min(max(r, 0), stored)
                result[ri][slice] = max(trace - 2 * linear[k] + quadratic[k], 0)
            }
        }
        return result
    }
}
