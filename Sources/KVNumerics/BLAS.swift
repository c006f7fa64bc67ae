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

    /// `packed += lower triangle of Xᵀ X` for the row-major block X (`rows × columns`). `packed` holds the
    /// lower triangle row by row, `columns·(columns+1)/2` values: (i, j), j ≤ i, at i·(i+1)/2 + j (see
    /// `Matrix.fromPackedLower`). The product of one block is formed in float32 (SSYRK) in `scratch`, then
    /// added in float64, so the rounding error grows with the block length, not with the whole token count.
    /// Both arrays are walked contiguously, and a Gram matrix takes half the memory of a square one.
    /// `multiplier` scales the block's product before it is added (a power of two when the block was
    /// rescaled to keep its squares inside float32's range; see `PowerOfTwoScale`).
    public static func accumulateGram(
        _ block: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
        into packed: inout [Double], scratch: inout [Float], multiplier: Double = 1
    ) {
        precondition(packed.count == columns * (columns + 1) / 2 && block.count >= rows * columns)
        guard rows > 0, columns > 0 else { return }
        if scratch.count < columns * columns { scratch = [Float](repeating: 0, count: columns * columns) }
        scratch.withUnsafeMutableBufferPointer { c in
            // Row-major X is column-major Xᵀ (columns × rows, ld = columns): C = (Xᵀ)(Xᵀ)ᵀ, upper triangle.
            cblas_ssyrk(
                CblasColMajor, CblasUpper, CblasNoTrans, Int32(columns), Int32(rows),
                1, block.baseAddress, Int32(columns), 0, c.baseAddress, Int32(columns))
            packed.withUnsafeMutableBufferPointer { g in
                // Column-major upper (j, i), j ≤ i, sits at i·columns + j: row i of the lower triangle (a C
                // kernel, row ranges on every core).
                MomentKernels.addPackedLower(UnsafeBufferPointer(c), n: columns, into: g, multiplier: multiplier)
            }
        }
    }

    /// `product += Aᵀ B` for row-major blocks A (`rows × aColumns`) and B (`rows × bColumns`) with the
    /// same rows; float32 SGEMM per block into `scratch`, accumulated in float64 after scaling by `multiplier`.
    public static func accumulateCrossProduct(
        _ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, rows: Int, aColumns: Int, bColumns: Int,
        into product: inout Matrix<Double>, scratch: inout [Float], multiplier: Double = 1
    ) {
        precondition(product.rows == aColumns && product.columns == bColumns)
        precondition(a.count >= rows * aColumns && b.count >= rows * bColumns)
        guard rows > 0, aColumns > 0, bColumns > 0 else { return }
        if scratch.count < aColumns * bColumns { scratch = [Float](repeating: 0, count: aColumns * bColumns) }
        scratch.withUnsafeMutableBufferPointer { c in
            // Row-major C (aColumns × bColumns) = Aᵀ B.
            cblas_sgemm(
                CblasRowMajor, CblasTrans, CblasNoTrans, Int32(aColumns), Int32(bColumns), Int32(rows),
                1, a.baseAddress, Int32(aColumns), b.baseAddress, Int32(bColumns), 0, c.baseAddress, Int32(bColumns))
            product.values.withUnsafeMutableBufferPointer { p in
                MomentKernels.addScaled(
                    UnsafeBufferPointer(rebasing: c[0..<(aColumns * bColumns)]), into: p, multiplier: multiplier)
            }
        }
    }

    /// The largest |x| of `values`, 0 for an empty buffer. Values must be finite. (A vectorised C kernel on
    /// every core, `MomentKernels.maxMagnitude`: ISAMAX returns an index, one thread, and wants 32-bit counts.)
    public static func maxMagnitude(_ values: UnsafeBufferPointer<Float>) -> Float {
        MomentKernels.maxMagnitude(values)
    }

    /// Row-major float32 `C = op(A) op(B)` (SGEMM): A is `m × k` (`k × m` when `transposeA`), B is `k × n`
    /// (`n × k` when `transposeB`), C is `m × n`. For projecting token blocks onto bases and back. `ldb`: the
    /// row stride of B's storage when B is the leading columns of a wider row-major matrix (a basis prefix).
    public static func multiply(
        _ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, m: Int, n: Int, k: Int,
        transposeA: Bool = false, transposeB: Bool = false, ldb: Int? = nil,
        into c: UnsafeMutableBufferPointer<Float>
    ) {
        let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
        let stride = ldb ?? bColumns
        precondition(stride >= bColumns, "ldb \(stride) is below B's \(bColumns) columns")
        precondition(a.count >= m * k && c.count >= m * n && (bRows == 0 || b.count >= (bRows - 1) * stride + bColumns))
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            for i in 0..<(m * n) { c[i] = 0 }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), 1, a.baseAddress, Int32(transposeA ? m : k),
            b.baseAddress, Int32(stride), 0, c.baseAddress, Int32(n))
    }

    /// Row-major `A B` in float64 (DGEMM), for the small dense products of finished statistics.
    public static func multiply(
        _ a: Matrix<Double>, _ b: Matrix<Double>, transposeA: Bool = false, transposeB: Bool = false
    ) -> Matrix<Double> {
        let m = transposeA ? a.columns : a.rows
        let k = transposeA ? a.rows : a.columns
        let kb = transposeB ? b.columns : b.rows
        let n = transposeB ? b.rows : b.columns
        precondition(k == kb, "inner dimensions differ: \(k) vs \(kb)")
        var c = Matrix<Double>(rows: m, columns: n)
        guard m > 0, n > 0, k > 0 else { return c }
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                c.values.withUnsafeMutableBufferPointer { pc in
                    cblas_dgemm(
                        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                        Int32(m), Int32(n), Int32(k), 1, pa.baseAddress, Int32(a.columns),
                        pb.baseAddress, Int32(b.columns), 0, pc.baseAddress, Int32(n))
                }
            }
        }
        return c
    }
}
