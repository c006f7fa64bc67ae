// Swift entry point of CKernels/PairKernels.h: the per-token cosine of two layers' blocks, vectorised.
internal import CKernels

/// Loops over the same token's rows of two layers.
public enum PairKernels {
    /// Adds, over the rows of the row-major `rows × columns` blocks `a` and `b` where both rows are non-zero,
    /// the cosine ⟨a_r, b_r⟩ / (‖a_r‖ ‖b_r‖) into `sum` and 1 into `count` per such row. Values must be finite
    /// and their squares inside float32's range (rescale first; the cosine does not depend on scale). Each
    /// row's sums are kept in 16 float32 lanes and added in float64: within ~1e-6 of a float64 computation.
    public static func addRowCosines(
        _ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
        sum: inout Double, count: inout Int
    ) {
        precondition(a.count >= rows * columns && b.count >= rows * columns)
        guard rows > 0, columns > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return }
        var rowsCounted: Int64 = 0
        kv_row_cosines(pa, pb, rows, columns, &sum, &rowsCounted)
        count += Int(rowsCounted)
    }
}
