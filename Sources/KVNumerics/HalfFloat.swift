// Conversion of stored float16 / bfloat16 bit patterns to float32 (F16C-accelerated C kernels).
internal import CHalfFloat

/// Widening conversion of stored 16-bit float formats (and float32) to float32 rows. Exact.
public enum HalfFloat {
    /// Stored element formats `convertBox` reads.
    public enum StoredFormat: Sendable {
        case float16, bfloat16, float32
    }

    /// Most dimensions `convertBox` takes.
    public static let maximumBoxRank = Int(KV_BOX_MAX_RANK)

    /// Converts every element of a box to float32 and scatters it, fusing the widening with a transposition:
    /// element (i₀, …, i_{r−1}), 0 ≤ i_k < `counts[k]`, is read at `source` + Σ i_k·`sourceStrides[k]` stored
    /// elements (2 bytes for float16/bfloat16, 4 for float32) and written to `destination` + Σ i_k·
    /// `destinationStrides[k]`. `bigEndian`: the stored bytes are big-endian (swapped; otherwise untouched).
    /// Exact. Destination positions must be distinct and inside the caller's buffer; the caller checks that.
    public static func convertBox(
        _ format: StoredFormat, bigEndian: Bool, source: UnsafeRawPointer, sourceStrides: [Int],
        destination: UnsafeMutablePointer<Float>, destinationStrides: [Int], counts: [Int]
    ) {
        precondition(
            counts.count <= maximumBoxRank && sourceStrides.count == counts.count
                && destinationStrides.count == counts.count, "box of unsupported rank")
        let code: Int32
        switch format {
        case .float16: code = Int32(KV_BOX_FLOAT16)
        case .bfloat16: code = Int32(KV_BOX_BFLOAT16)
        case .float32: code = Int32(KV_BOX_FLOAT32)
        }
        let status = kv_convert_box(
            code, bigEndian ? 1 : 0, source, sourceStrides, destination, destinationStrides, counts,
            Int32(counts.count))
        precondition(status == 0, "kv_convert_box rejected its arguments")
    }
}
