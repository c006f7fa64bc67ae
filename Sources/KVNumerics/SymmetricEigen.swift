// Eigendecomposition of a symmetric matrix: all eigenvalues and, when asked, only the eigenvectors of the
// largest ones (LAPACK dsytrd + dsterf, then dstemr or dstedc on the tridiagonal and dormtr), descending.
internal import CLAPACK

/// The eigenvalues (descending) and the leading eigenvectors of a symmetric float64 matrix.
///
/// Used on Gram matrices XᵀX: their eigenvalues are the squared singular values of X and their eigenvectors
/// X's right singular vectors. One reduction to tridiagonal form T = QᵀAQ (dsytrd) serves everything:
/// - eigenvalues by dsterf (Pal–Walker–Kahan QR without vectors), so they do not depend on how many vectors
///   were asked for;
/// - the top r vectors of T by MRRR restricted to indices n−r+1…n (dstemr, O(n·r)) when r < n/3, else by
///   divide and conquer on all of T (dstedc, what dsyevd uses), which is faster when many are wanted
///   (n = 4096, r = 3072: 2.3 s against 3.9 s) at the cost of n² more floats of workspace;
/// - mapped back by Q applied to those r columns only (dormtr, 2n²r flops instead of dsyevd's 2n³).
///
/// Workspace sizes are at least LAPACK's documented minimums, not only its query, which returns them in
/// floating point and can round them down (see TOOLCHAIN.md, trap 4).
public struct SymmetricEigen: Sendable {
    /// Eigenvalues, largest first.
    public let values: [Double]
    /// The eigenvectors of the `topVectors` largest eigenvalues, as columns in the order of `values`
    /// (`n × topVectors`); nil when none were asked for.
    public let vectors: Matrix<Double>?

    /// Decomposes `matrix` (only its lower triangle in column-major order, i.e. its upper triangle, is read),
    /// with the eigenvectors of the `topVectors` largest eigenvalues (0: none; at most n). The matrix is
    /// consumed: a caller that passes its last copy saves one n² copy.
    public init(_ matrix: consuming Matrix<Double>, topVectors: Int = 0) throws {
        let n = matrix.rows
        precondition(matrix.columns == n, "SymmetricEigen needs a square matrix")
        precondition(topVectors >= 0 && topVectors <= n, "topVectors must lie in 0...n")
        guard n > 0 else {
            values = []
            vectors = topVectors > 0 ? Matrix(rows: 0, columns: 0) : nil
            return
        }
        // Row-major upper == column-major lower; LAPACK overwrites it with the reflectors of Q.
        var a = matrix.values
        matrix.values = []  // `a` is now the only reference: LAPACK writes into it without a copy
        let reduced = try SymmetricEigen.tridiagonalize(&a, n: n)
        values = Array(try SymmetricEigen.tridiagonalValues(reduced, n: n).reversed())
        guard topVectors > 0 else {
            vectors = nil
            return
        }
        var z =
            SymmetricEigen.usesDivideAndConquer(n: n, top: topVectors)
            ? try SymmetricEigen.allTridiagonalVectors(reduced, n: n)
            : try SymmetricEigen.topTridiagonalVectors(reduced, n: n, top: topVectors)
        // The top vectors are the last `topVectors` columns (ascending order), contiguous in column-major z.
        let first = z.count / n - topVectors
        try SymmetricEigen.backTransform(&a, tau: reduced.tau, n: n, vectors: &z, firstColumn: first)
        vectors = SymmetricEigen.descendingColumns(z, n: n, firstColumn: first, count: topVectors)
    }

    /// Whether the top `top` of `n` vectors come from dstedc (all vectors of T) rather than dstemr: MRRR's cost
    /// grows with each vector and passes divide and conquer's at about a third of them (measured for n = 1024
    /// and 4096 on OpenBLAS 0.3.21).
    static func usesDivideAndConquer(n: Int, top: Int) -> Bool { 3 * top >= n }

    /// T = QᵀAQ: its diagonal, sub-diagonal and the reflectors' scalars (the vectors stay in `a`).
    struct Tridiagonal {
        var diagonal: [Double]
        var offDiagonal: [Double]
        var tau: [Double]
    }

    private static func tridiagonalize(_ a: inout [Double], n: Int) throws -> Tridiagonal {
        var t = Tridiagonal(
            diagonal: [Double](repeating: 0, count: n), offDiagonal: [Double](repeating: 0, count: max(n - 1, 1)),
            tau: [Double](repeating: 0, count: max(n - 1, 1)))
        var query = 0.0
        try checkLAPACK(
            LAPACKE_dsytrd_work(
                LAPACK_COL_MAJOR, 76 /* L */, Int32(n), &a, Int32(n), &t.diagonal, &t.offDiagonal, &t.tau, &query, -1),
            "dsytrd", "workspace query failed")
        var work = [Double](repeating: 0, count: max(Int(query), 64 * n))
        try checkLAPACK(
            LAPACKE_dsytrd_work(
                LAPACK_COL_MAJOR, 76, Int32(n), &a, Int32(n), &t.diagonal, &t.offDiagonal, &t.tau, &work,
                Int32(work.count)),
            "dsytrd", "reduction to tridiagonal form failed")
        return t
    }

    /// All eigenvalues of T, ascending (dsterf).
    private static func tridiagonalValues(_ t: Tridiagonal, n: Int) throws -> [Double] {
        var values = t.diagonal
        var offDiagonal = t.offDiagonal
        try checkLAPACK(
            LAPACKE_dsterf(Int32(n), &values, &offDiagonal), "dsterf", "eigenvalue algorithm failed to converge")
        return values
    }

    /// Every eigenvector of T (column-major n × n, ascending eigenvalues) by divide and conquer (dstedc).
    private static func allTridiagonalVectors(_ t: Tridiagonal, n: Int) throws -> [Double] {
        var d = t.diagonal
        var e = t.offDiagonal
        var z = [Double](repeating: 0, count: n * n)
        // COMPZ = 'I' needs 1 + 4n + n² reals and 3 + 5n integers (n > 1); the query agrees but is a float.
        var work = [Double](repeating: 0, count: n > 1 ? 1 + 4 * n + n * n : 1)
        var iwork = [Int32](repeating: 0, count: n > 1 ? 3 + 5 * n : 1)
        try checkLAPACK(
            LAPACKE_dstedc_work(
                LAPACK_COL_MAJOR, 73 /* I */, Int32(n), &d, &e, &z, Int32(n), &work, Int32(work.count), &iwork,
                Int32(iwork.count)),
            "dstedc", "eigenvector algorithm failed to converge")
        return z
    }

    /// The eigenvectors of T's `top` largest eigenvalues (column-major n × top, ascending) by MRRR (dstemr).
    private static func topTridiagonalVectors(_ t: Tridiagonal, n: Int, top: Int) throws -> [Double] {
        // dstemr wants e of length n (last entry workspace) and overwrites d and e.
        var d = t.diagonal
        var e = Array(t.offDiagonal.prefix(n - 1)) + [0]
        var found: Int32 = 0
        var w = [Double](repeating: 0, count: n)
        var z = [Double](repeating: 0, count: n * top)
        var isuppz = [Int32](repeating: 0, count: 2 * top)
        var tryrac: Int32 = 1
        var work = [Double](repeating: 0, count: 18 * n)
        var iwork = [Int32](repeating: 0, count: 10 * n)
        try checkLAPACK(
            LAPACKE_dstemr_work(
                LAPACK_COL_MAJOR, 86 /* V */, 73 /* I */, Int32(n), &d, &e, 0, 0,
                Int32(n - top + 1), Int32(n), &found, &w, &z, Int32(n), Int32(top), &isuppz,
                &tryrac, &work, Int32(work.count), &iwork, Int32(iwork.count)),
            "dstemr", "eigenvector algorithm failed to converge")
        guard Int(found) == top else {
            throw NumericalError(routine: "dstemr", info: 0, message: "returned \(found) of \(top) eigenvectors")
        }
        return z
    }

    /// Applies Q (held in `a` and `tau` by dsytrd) to the columns `firstColumn…` of the column-major `vectors`
    /// (dormtr), turning eigenvectors of T into eigenvectors of A. Earlier columns are left as they are.
    private static func backTransform(
        _ a: inout [Double], tau: [Double], n: Int, vectors: inout [Double], firstColumn: Int
    ) throws {
        let columns = vectors.count / n - firstColumn
        guard columns > 0 else { return }
        var tau = tau
        try a.withUnsafeMutableBufferPointer { a in
            try vectors.withUnsafeMutableBufferPointer { z in
                let c = z.baseAddress! + firstColumn * n
                var query = 0.0
                try checkLAPACK(
                    LAPACKE_dormtr_work(
                        LAPACK_COL_MAJOR, 76 /* L */, 76 /* L */, 78 /* N */, Int32(n), Int32(columns),
                        a.baseAddress, Int32(n), &tau, c, Int32(n), &query, -1),
                    "dormtr", "workspace query failed")
                var work = [Double](repeating: 0, count: max(Int(query), 64 * columns, 1))
                try checkLAPACK(
                    LAPACKE_dormtr_work(
                        LAPACK_COL_MAJOR, 76, 76, 78, Int32(n), Int32(columns), a.baseAddress, Int32(n), &tau, c,
                        Int32(n), &work, Int32(work.count)),
                    "dormtr", "back-transformation failed")
            }
        }
    }

    /// Column-major columns `firstColumn ..< firstColumn + count` in ascending eigenvalue order → row-major
    /// `n × count` matrix with columns descending.
    private static func descendingColumns(
        _ columnMajor: [Double], n: Int, firstColumn: Int, count: Int
    )
        -> Matrix<Double>
    {
        var v = Matrix<Double>(rows: n, columns: count)
        v.values.withUnsafeMutableBufferPointer { out in
            columnMajor.withUnsafeBufferPointer { z in
                for j in 0..<count {
                    let source = (firstColumn + count - 1 - j) * n
                    for i in 0..<n { out[i * count + j] = z[source + i] }
                }
            }
        }
        return v
    }
}
