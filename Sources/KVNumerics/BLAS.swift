// The BLAS calls kvstat's accumulators need: rank-k updates of Gram matrices (SSYRK) and cross products
// (SGEMM), computed in float32 per block and accumulated in float64.
internal import CLAPACK

/// Level-3 BLAS through OpenBLAS.
public enum BLAS {
    /// Sets OpenBLAS's thread count for subsequent calls (process-wide).
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(max(count, 1)))
    }

    /// OpenBLAS's current thread count.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// `gram += Xᵀ X` for the row-major block X (`rows × columns`), both triangles filled.
    /// The product of one block is formed in float32 (SSYRK) in `scratch`, then added in float64, so the
    /// rounding error grows with the block length, not with the whole token count.
    public static func accumulateGram(
        _ block: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
        into gram: inout Matrix<Double>, scratch: inout [Float]
    ) {
        precondition(gram.rows == columns && gram.columns == columns && block.count >= rows * columns)
        guard rows > 0, columns > 0 else { return }
        if scratch.count < columns * columns { scratch = [Float](repeating: 0, count: columns * columns) }
        scratch.withUnsafeMutableBufferPointer { c in
            // Row-major X is column-major Xᵀ (columns × rows, ld = columns): C = (Xᵀ)(Xᵀ)ᵀ, upper triangle.
            cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, Int32(columns), Int32(rows),
                        1, block.baseAddress, Int32(columns), 0, c.baseAddress, Int32(columns))
            gram.values.withUnsafeMutableBufferPointer { g in
                for j in 0..<columns {
                    for i in 0...j {
                        let v = Double(c[j * columns + i])  // column-major upper: (i, j) with i ≤ j
                        g[i * columns + j] += v
                        if i != j { g[j * columns + i] += v }
                    }
                }
            }
        }
    }

    /// `product += Aᵀ B` for row-major blocks A (`rows × aColumns`) and B (`rows × bColumns`) with the
    /// same rows; float32 SGEMM per block into `scratch`, accumulated in float64.
    public static func accumulateCrossProduct(
        _ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, rows: Int, aColumns: Int, bColumns: Int,
        into product: inout Matrix<Double>, scratch: inout [Float]
    ) {
        precondition(product.rows == aColumns && product.columns == bColumns)
        precondition(a.count >= rows * aColumns && b.count >= rows * bColumns)
        guard rows > 0, aColumns > 0, bColumns > 0 else { return }
        if scratch.count < aColumns * bColumns { scratch = [Float](repeating: 0, count: aColumns * bColumns) }
        scratch.withUnsafeMutableBufferPointer { c in
            // Row-major C (aColumns × bColumns) = Aᵀ B.
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(aColumns), Int32(bColumns), Int32(rows),
                        1, a.baseAddress, Int32(aColumns), b.baseAddress, Int32(bColumns), 0, c.baseAddress, Int32(bColumns))
            product.values.withUnsafeMutableBufferPointer { p in
                for i in 0..<(aColumns * bColumns) { p[i] += Double(c[i]) }
            }
        }
    }

    /// Row-major `A B` in float64 (DGEMM), for the small dense products of finished statistics.
    public static func multiply(_ a: Matrix<Double>, _ b: Matrix<Double>, transposeA: Bool = false, transposeB: Bool = false) -> Matrix<Double> {
        let m = transposeA ? a.columns : a.rows, k = transposeA ? a.rows : a.columns
        let kb = transposeB ? b.columns : b.rows, n = transposeB ? b.rows : b.columns
        precondition(k == kb, "inner dimensions differ: \(k) vs \(kb)")
        var c = Matrix<Double>(rows: m, columns: n)
        guard m > 0, n > 0, k > 0 else { return c }
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                c.values.withUnsafeMutableBufferPointer { pc in
                    cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                                Int32(m), Int32(n), Int32(k), 1, pa.baseAddress, Int32(a.columns),
                                pb.baseAddress, Int32(b.columns), 0, pc.baseAddress, Int32(n))
                }
            }
        }
        return c
    }
}
