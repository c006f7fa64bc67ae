// Singular value decomposition of a float32 matrix (LAPACK sgesdd): the independent reference the
// streaming Gram route is tested against, and the per-dump SVD of xKV's "online" optimum.
internal import CLAPACK

/// Singular values (descending) and optionally the thin factors U and Vᵀ of a row-major float32 matrix.
public struct SingularValueDecomposition: Sendable {
    /// Singular values, largest first (min(rows, columns) of them).
    public let values: [Float]
    /// Left singular vectors, `rows × k` row-major, when requested.
    public let u: Matrix<Float>?
    /// Right singular vectors transposed, `k × columns` row-major, when requested.
    public let vt: Matrix<Float>?

    public init(_ matrix: Matrix<Float>, computeVectors: Bool) throws {
        let m = matrix.rows
        let n = matrix.columns
        let k = min(m, n)
        guard k > 0 else {
            values = []
            u = nil
            vt = nil
            return
        }
        var a = matrix.values
        var s = [Float](repeating: 0, count: k)
        var uValues = [Float](repeating: 0, count: computeVectors ? m * k : 1)
        var vtValues = [Float](repeating: 0, count: computeVectors ? k * n : 1)
        let job: CChar = computeVectors ? 83 /* S */ : 78 /* N */
        var iwork = [Int32](repeating: 0, count: 8 * k)
        var query: Float = 0
        var info = LAPACKE_sgesdd_work(
            LAPACK_ROW_MAJOR, job, Int32(m), Int32(n), &a, Int32(n), &s,
            &uValues, Int32(computeVectors ? k : 1), &vtValues, Int32(n), &query, -1, &iwork)
        try checkLAPACK(info, "sgesdd", "workspace query failed")
        // LAPACK's documented minimum, in integers, guards against the float-rounded query (TOOLCHAIN trap 4).
        let minimum = computeVectors ? 3 * k * k + max(max(m, n), 4 * k * k + 4 * k) : 3 * k + max(max(m, n), 7 * k)
        let lwork = max(Int(query.rounded(.up)) + 1, minimum)
        var work = [Float](repeating: 0, count: lwork)
        info = LAPACKE_sgesdd_work(
            LAPACK_ROW_MAJOR, job, Int32(m), Int32(n), &a, Int32(n), &s,
            &uValues, Int32(computeVectors ? k : 1), &vtValues, Int32(n), &work, Int32(lwork), &iwork)
        try checkLAPACK(info, "sgesdd", "SVD failed to converge")
        values = s
        u = computeVectors ? Matrix(rows: m, columns: k, values: uValues) : nil
        vt = computeVectors ? Matrix(rows: k, columns: n, values: vtValues) : nil
    }
}
