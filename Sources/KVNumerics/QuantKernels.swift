// Swift entry points of the fake-quantization kernels (CKernels/QuantKernels.h): group-wise asymmetric min/max
// quantization and dequantization in place, keys per channel over token groups, values per token over channel
// groups, bit-identical to the scalar definition in LatentQuantizer.
internal import CKernels

/// Vectorised fake quantization of row-major float32 blocks (see `kv_quantize_columns` / `kv_quantize_rows`
/// for the rounding contract).
public enum QuantKernels {
    /// Rows `rows` of every column of a block with `columns` per row: one group per column over those rows.
    public static func quantizeColumns(
        _ y: UnsafeMutableBufferPointer<Float>, columns: Int, rows: Range<Int>, bits: Int
    ) {
        precondition(rows.upperBound * columns <= y.count && (1...8).contains(bits))
        guard !rows.isEmpty, columns > 0, let base = y.baseAddress else { return }
        kv_quantize_columns(base, columns, rows.lowerBound, rows.upperBound, Int32(bits))
    }

    /// Each of `rows` rows in consecutive groups of `group` columns (the last one shorter).
    public static func quantizeRows(
        _ y: UnsafeMutableBufferPointer<Float>, rows: Int, columns: Int, group: Int, bits: Int
    ) {
        precondition(rows * columns <= y.count && group > 0 && (1...8).contains(bits))
        guard rows > 0, columns > 0, let base = y.baseAddress else { return }
        kv_quantize_rows(base, rows, columns, group, Int32(bits))
    }
}
