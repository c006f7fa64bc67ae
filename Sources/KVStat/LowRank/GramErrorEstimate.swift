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
        let full = gram.denseMatrix(centered: false)
        let fullWidth = full.columns
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
                var v = full.values[index[i] * fullWidth + index[j]]
                if let mu = projection.mean {
                    let mi = Double(mu[i])
                    let mj = Double(mu[j])
                    v += -gram.sum[index[i]] * mj - mi * gram.sum[index[j]] + n * mi * mj
                }
                block.values[i * dim + j] = v
            }
        }
        let p = Matrix<Double>(rows: dim, columns: stored, values: projection.basis.values.map { Double($0) })
        let bp = BLAS.multiply(block, p)  // B P
        let m = BLAS.multiply(p, bp, transposeA: true)  // Pᵀ B P
        var result = [[Double]](repeating: [Double](repeating: 0, count: layers), count: ranks.count)
        // Element access through `values` (row-major): Matrix's generic subscript is not specialised across
        // modules, and these loops run dimension · rank and rank² times.
        for slice in 0..<layers {
            let rows = (slice * width)..<((slice + 1) * width)
            let sliceValues = p.values[(rows.lowerBound * stored)..<(rows.upperBound * stored)]
            let slicePart = Matrix<Double>(rows: width, columns: stored, values: Array(sliceValues))
            let nS = BLAS.multiply(slicePart, slicePart, transposeA: true)
            let trace = rows.reduce(0.0) { $0 + block.values[$1 * dim + $1] }
            var c = [Double](repeating: 0, count: stored)
            for i in rows { for j in 0..<stored { c[j] += p.values[i * stored + j] * bp.values[i * stored + j] } }
            // Prefix sums: linear[r] = Σ_{j<r} c_j; quadratic[r] = Σ_{j,k<r} M_jk N_jk, grown one border at a time.
            var linear = [Double](repeating: 0, count: stored + 1)
            var quadratic = linear
            for r in 0..<stored {
                linear[r + 1] = linear[r] + c[r]
                var border = m.values[r * stored + r] * nS.values[r * stored + r]
                for j in 0..<r { border += 2 * m.values[j * stored + r] * nS.values[j * stored + r] }
                quadratic[r + 1] = quadratic[r] + border
            }
            for (ri, r) in ranks.enumerated() {
                let k = min(max(r, 0), stored)
                result[ri][slice] = max(trace - 2 * linear[k] + quadratic[k], 0)
            }
        }
        return result
    }

    /// `errorSquared` when `gram` is the Gram `projection` was fitted on (same tokens and centring), so its
    /// basis P holds the top eigenvectors of the unit's matrix B with eigenvalues λ (`projection.eigenvalues`).
    /// Then (I − PₖPₖᵀ)B(I − PₖPₖᵀ) = B − PₖΛₖPₖᵀ for every prefix k, and a slice S of the unit's dimensions
    /// costs Σ_{i∈S} B_ii − Σ_{j<k} λ_j Σ_{i∈S} P_ij²: O(dimension · rank) instead of the general route's
    /// three matrix products (for an xKV group of 4096 channels and rank 3072, 2.6·10¹¹ float64 flops).
    /// B_ii is centred on the projection's stored (float32) mean as in `errorSquared`; the eigenvalues are of
    /// the Gram centred on the float64 mean, which differs by n‖(I − PPᵀ)δμ‖², second order in the mean's
    /// rounding δμ. The float32 rounding of P changes the result at first order in 2⁻²⁴ of the energy of the
    /// unit's tail: both routes agree to ~1e-7 relative (tested in `GramErrorEstimateTests`).
    public static func errorSquaredOnFittedGram(
        _ projection: Projection, ranks: [Int], gram: GramAccumulator, channelsPerLayer: Int
    ) -> [[Double]] {
        let width = projection.channels.count
        let layers = projection.layers.count
        let stored = projection.rank
        let n = Double(gram.count)
        var result = [[Double]](repeating: [Double](repeating: 0, count: layers), count: ranks.count)
        projection.basis.values.withUnsafeBufferPointer { basis in
            for slice in 0..<layers {
                var trace = 0.0
                // weighted[j] = λ_j Σ_{i∈S} P_ij², accumulated row by row (P is row-major).
                var weighted = [Double](repeating: 0, count: stored)
                for c in 0..<width {
                    let i = slice * width + c
                    let g = slice * channelsPerLayer + projection.channels.lowerBound + c
                    var diagonal = gram.packedLower[g * (g + 1) / 2 + g]
                    if let mu = projection.mean {
                        let m = Double(mu[i])
                        diagonal += -2 * gram.sum[g] * m + n * m * m
                    }
                    trace += diagonal
                    let row = i * stored
                    for j in 0..<stored {
                        let p = Double(basis[row + j])
                        weighted[j] += p * p
                    }
                }
                var captured = [Double](repeating: 0, count: stored + 1)
                for j in 0..<stored { captured[j + 1] = captured[j] + projection.eigenvalues[j] * weighted[j] }
                for (ri, r) in ranks.enumerated() {
                    result[ri][slice] = max(trace - captured[min(max(r, 0), stored)], 0)
                }
            }
        }
        return result
    }
}
