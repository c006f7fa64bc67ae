// Conversion of stored float16 / bfloat16 bit patterns to float32 (F16C-accelerated C kernels).
internal import CHalfFloat

/// Widening conversions for 16-bit float storage formats. Both are exact.
public enum HalfFloat {
    /// IEEE binary16 bit patterns to float32.
    public static func halfToFloat(
        _ source: UnsafeBufferPointer<UInt16>, _ destination: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(destination.count >= source.count)
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        kv_half_to_float(s, d, source.count)
    }

    /// bfloat16 bit patterns (the upper half of a float32) to float32.
    public static func bfloat16ToFloat(
        _ source: UnsafeBufferPointer<UInt16>, _ destination: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(destination.count >= source.count)
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        kv_bfloat16_to_float(s, d, source.count)
    }

    /// Whether the hardware (F16C) path is in use on this CPU.
    public static var usesHardwareConversion: Bool { kv_half_uses_f16c() != 0 }
}
