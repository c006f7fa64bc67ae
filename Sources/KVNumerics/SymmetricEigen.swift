// Eigendecomposition of a symmetric matrix (LAPACK dsyevd), eigenvalues sorted descending.
internal import CLAPACK

/// The eigenvalues (descending) and optionally eigenvectors of a symmetric float64 matrix.
///
/// Used on Gram matrices XᵀX: their eigenvalues are the squared singular values of X and their eigenvectors
/// X's right singular vectors. Workspace sizes are computed here rather than trusted from LAPACK's query,
/// which returns them in floating point and can round them down (see TOOLCHAIN.md, trap 4).
public struct SymmetricEigen: Sendable {
    /// Eigenvalues, largest first.
    public let values: [Double]
    /// Eigenvectors as columns, in the order of `values` (`n × n`), when requested.
    public let vectors: Matrix<Double>?

    /// Decomposes `matrix` (only its upper triangle is read).
    public init(_ matrix: Matrix<Double>, computeVectors: Bool) throws {
        let n = matrix.rows
        precondition(matrix.columns == n, "SymmetricEigen needs a square matrix")
        guard n > 0 else {
            values = []
            vectors = computeVectors ? Matrix(rows: 0, columns: 0) : nil
            return
        }
        var a = matrix.values  // row-major upper == column-major lower; use 'L' on the column-major view
        var w = [Double](repeating: 0, count: n)
        let job: CChar = computeVectors ? 86 /* V */ : 78 /* N */
        let lwork = computeVectors ? 1 + 6 * n + 2 * n * n : 2 * n + 1
        let liwork = computeVectors ? 3 + 5 * n : 1
        var work = [Double](repeating: 0, count: lwork)
        var iwork = [Int32](repeating: 0, count: liwork)
        let info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, job, 76 /* L */, Int32(n), &a, Int32(n), &w,
                                       &work, Int32(lwork), &iwork, Int32(liwork))
        try checkLAPACK(info, "dsyevd", "eigenvalue algorithm failed to converge")
        values = Array(w.reversed())
        if computeVectors {
            // Column-major output: eigenvector j is a[j*n ..< (j+1)*n]. Store descending, as columns.
            var v = Matrix<Double>(rows: n, columns: n)
            for j in 0..<n {
                let source = n - 1 - j
                for i in 0..<n { v.values[i * n + j] = a[source * n + i] }
            }
            vectors = v
        } else {
            vectors = nil
        }
    }
}
