// Group-wise asymmetric min/max quantization of latents (KIVI's scheme, as CSKV uses it): keys per channel
// over groups of tokens, values per token over groups of channels; scale and minimum kept as float16.
import KVNumerics

/// Quantizes and dequantizes a row-major `rows × columns` latent block in place.
public struct LatentQuantizer: Sendable {
    public let bits: Int
    /// Values per group.
    public let group: Int

    public init(bits: Int, group: Int) {
        precondition((1...8).contains(bits) && group > 0)
        self.bits = bits
        self.group = group
    }

    /// Per channel: each column's values in consecutive row groups of `group` (key latents). Rows of one
    /// block may come from several sequences; `segments` lists the row ranges of each, and groups never
    /// cross them. Each value becomes `value(code(v, …), …)` with its group's `parameters` (vectorised in
    /// `QuantKernels`, bit-identical to that definition; tested against it).
    public func quantizeColumns(_ y: UnsafeMutableBufferPointer<Float>, columns: Int, segments: [Range<Int>]) {
        for segment in segments {
            for start in stride(from: segment.lowerBound, to: segment.upperBound, by: group) {
                let end = min(start + group, segment.upperBound)
                QuantKernels.quantizeColumns(y, columns: columns, rows: start..<end, bits: bits)
            }
        }
    }

    /// Per token: each row's values in consecutive column groups of `group` (value latents), as
    /// `quantizeColumns` rounds them.
    public func quantizeRows(_ y: UnsafeMutableBufferPointer<Float>, rows: Int, columns: Int) {
        QuantKernels.quantizeRows(y, rows: rows, columns: columns, group: group, bits: bits)
    }

    /// Scale and zero point (the group minimum), each rounded to float16 as they would be stored.
    func parameters(_ lo: Float, _ hi: Float) -> (scale: Float, zero: Float) {
        let levels = Float((1 << bits) - 1)
        return (Float(Float16((hi - lo) / levels)), Float(Float16(lo)))
    }

    /// The stored code of `v` in a group with `scale` and `zero` (from `parameters`): round((v − zero) / scale)
    /// clamped to 0 … 2^bits − 1; 0 when the group is constant (scale 0) or `v` is not finite.
    public func code(_ v: Float, scale: Float, zero: Float) -> UInt8 {
        guard scale > 0 else { return 0 }
        let levels = Float((1 << bits) - 1)
        let q = min(max(((v - zero) / scale).rounded(), 0), levels)
        return q.isNaN ? 0 : UInt8(q)
    }

    /// The value a code stands for: code · scale + zero (exactly what `quantizeRows`/`quantizeColumns` leave).
    public func value(_ code: UInt8, scale: Float, zero: Float) -> Float {
        scale > 0 ? Float(code) * scale + zero : zero
    }

    /// One group as it is stored: the float16-rounded scale and minimum of `values[i]` for i in `indices` (NaN
    /// skipped, Swift's `min`/`max` order) and each value's code, in the order of `indices`. The definition the
    /// C kernels (`QuantKernels`) reproduce bit for bit, and what `kvstat compress` writes.
    public func encode(
        _ values: UnsafeBufferPointer<Float>, at indices: [Int]
    ) -> (
        scale: Float, zero: Float, codes: [UInt8]
    ) {
        var lo = Float.infinity
        var hi = -Float.infinity
        for i in indices {
            lo = min(lo, values[i])
            hi = max(hi, values[i])
        }
        let (scale, zero) = parameters(lo, hi)
        return (scale, zero, indices.map { code(values[$0], scale: scale, zero: zero) })
    }

    /// `parameters` for callers outside the module: the float16-rounded scale and minimum of a group.
    public func groupParameters(min lo: Float, max hi: Float) -> (scale: Float, zero: Float) { parameters(lo, hi) }

    /// Stored 16-bit units per token for `rank` latent dims: the codes plus two float16 parameters per group.
    /// Keys: a group spans `group` tokens, so 2·rank/group per token; values: 2·⌈rank/group⌉ per token.
    public func unitsPerToken(rank: Int, kind: TensorKind) -> Double {
        let codes = Double(rank * bits) / 16
        let parameters = kind == .value ? 2 * Double((rank + group - 1) / group) : 2 * Double(rank) / Double(group)
        return codes + parameters
    }
}
