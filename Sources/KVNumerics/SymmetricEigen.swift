// Eigendecomposition of a symmetric matrix: all eigenvalues and, when asked, only the eigenvectors of the
// largest ones (LAPACK dsytrd + dsterf + dstemr + dormtr; dsyevd when every vector is wanted), descending.
internal import CLAPACK

/// The eigenvalues (descending) and the leading eigenvectors of a symmetric float64 matrix.
///
/// Used on Gram matrices XᵀX: their eigenvalues are the squared singular values of X and their eigenvectors
/// X's right singular vectors. Statistics need every eigenvalue but only the top r vectors, so after one
/// reduction to tridiagonal form the vectors come from MRRR restricted to indices n−r+1…n (O(n²r)) instead
/// of the O(n³) full back-transformation. Workspace sizes are at least LAPACK's documented minimums, not
/// only its query, which returns them in floating point and can round them down (see TOOLCHAIN.md, trap 4).
public struct SymmetricEigen: Sendable {
    /// Eigenvalues, largest first.
    public let values: [Double]
    /// The eigenvectors of the `topVectors` largest eigenvalues, as columns in the order of `values`
    /// (`n × topVectors`); nil when none were asked for.
    public let vectors: Matrix<Double>?

    /// Decomposes `matrix` (only its upper triangle is read), with the eigenvectors of the `topVectors`
    /// largest eigenvalues (0: none; at most n).
    public init(_ matrix: Matrix<Double>, topVectors: Int = 0) throws {
        let n = matrix.rows
        precondition(matrix.columns == n, "SymmetricEigen needs a square matrix")
        precondition(topVectors >= 0 && topVectors <= n, "topVectors must lie in 0...n")
        guard n > 0 else {
            values = []
            vectors = topVectors > 0 ? Matrix(rows: 0, columns: 0) : nil
            return
        }
        if topVectors == n {
            let (ascending, columnMajor) = try SymmetricEigen.dsyevd(matrix, n: n)
            values = Array(ascending.reversed())
            vectors = SymmetricEigen.descendingColumns(columnMajor, n: n, count: n)
        } else {
            let (ascending, columnMajor) = try SymmetricEigen.tridiagonal(matrix, n: n, top: topVectors)
            values = Array(ascending.reversed())
            vectors = topVectors > 0 ? SymmetricEigen.descendingColumns(columnMajor, n: n, count: topVectors) : nil
        }
    }

    /// All eigenvalues ascending and all eigenvectors (column-major), by divide and conquer.
    private static func dsyevd(_ matrix: Matrix<Double>, n: Int) throws -> ([Double], [Double]) {
        var a = matrix.values  // row-major upper == column-major lower; use 'L' on the column-major view
        var w = [Double](repeating: 0, count: n)
        let lwork = 1 + 6 * n + 2 * n * n
        let liwork = 3 + 5 * n
        var work = [Double](repeating: 0, count: lwork)
        var iwork = [Int32](repeating: 0, count: liwork)
        let info = LAPACKE_dsyevd_work(
            LAPACK_COL_MAJOR, 86 /* V */, 76 /* L */, Int32(n), &a, Int32(n), &w,
            &work, Int32(lwork), &iwork, Int32(liwork))
        try checkLAPACK(info, "dsyevd", "eigenvalue algorithm failed to converge")
        return (w, a)
    }

    /// All eigenvalues ascending and the eigenvectors (column-major) of the `top` largest, from one reduction
    /// to tridiagonal form (dsytrd): eigenvalues by dsterf, the top vectors by dstemr (MRRR) mapped back
    /// through the reflectors by dormtr. This is dsyevr's algorithm without reducing the matrix twice.
    private static func tridiagonal(_ matrix: Matrix<Double>, n: Int, top: Int) throws -> ([Double], [Double]) {
        var a = matrix.values
        var d = [Double](repeating: 0, count: n)
        var e = [Double](repeating: 0, count: max(n - 1, 1))
        var tau = [Double](repeating: 0, count: max(n - 1, 1))
        var query = 0.0
        try checkLAPACK(
            LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 76 /* L */, Int32(n), &a, Int32(n), &d, &e, &tau, &query, -1),
            "dsytrd", "workspace query failed")
        var work = [Double](repeating: 0, count: max(Int(query), 64 * n))
        try checkLAPACK(
            LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 76, Int32(n), &a, Int32(n), &d, &e, &tau, &work, Int32(work.count)),
            "dsytrd", "reduction to tridiagonal form failed")
        var values = d
        var offDiagonal = e
        try checkLAPACK(
            LAPACKE_dsterf(Int32(n), &values, &offDiagonal), "dsterf", "eigenvalue algorithm failed to converge")
        guard top > 0 else { return (values, []) }
        // dstemr wants e of length n (last entry workspace) and overwrites d and e.
        var dd = d
        var ee = e + [0]
        var found: Int32 = 0
        var w = [Double](repeating: 0, count: n)
        var z = [Double](repeating: 0, count: n * top)
        var isuppz = [Int32](repeating: 0, count: 2 * top)
        var tryrac: Int32 = 1
        var stemrWork = [Double](repeating: 0, count: 18 * n)
        var iwork = [Int32](repeating: 0, count: 10 * n)
        try checkLAPACK(
            LAPACKE_dstemr_work(
                LAPACK_COL_MAJOR, 86 /* V */, 73 /* I */, Int32(n), &dd, &ee, 0, 0,
                Int32(n - top + 1), Int32(n), &found, &w, &z, Int32(n), Int32(top), &isuppz,
                &tryrac, &stemrWork, Int32(stemrWork.count), &iwork, Int32(iwork.count)),
            "dstemr", "eigenvector algorithm failed to converge")
        guard Int(found) == top else {
            throw NumericalError(routine: "dstemr", info: 0, message: "returned \(found) of \(top) eigenvectors")
        }
        try checkLAPACK(
            LAPACKE_dormtr_work(
                LAPACK_COL_MAJOR, 76 /* L */, 76 /* L */, 78 /* N */, Int32(n), Int32(top),
                &a, Int32(n), &tau, &z, Int32(n), &query, -1), "dormtr", "workspace query failed")
        var ormWork = [Double](repeating: 0, count: max(Int(query), 64 * top))
        try checkLAPACK(
            LAPACKE_dormtr_work(
                LAPACK_COL_MAJOR, 76, 76, 78, Int32(n), Int32(top), &a, Int32(n), &tau, &z, Int32(n),
                &ormWork, Int32(ormWork.count)), "dormtr", "back-transformation failed")
        return (values, z)
    }

    /// Column-major vectors in ascending eigenvalue order → row-major matrix with columns descending.
    private static func descendingColumns(_ columnMajor: [Double], n: Int, count: Int) -> Matrix<Double> {
        var v = Matrix<Double>(rows: n, columns: count)
        for j in 0..<count {
            let source = count - 1 - j
            for i in 0..<n { v.values[i * count + j] = columnMajor[source * n + i] }
        }
        return v
    }
}
