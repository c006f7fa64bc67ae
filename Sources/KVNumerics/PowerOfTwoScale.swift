// Rescaling a float32 block by a power of two so that its squares and fourth powers stay inside float32's
// range: what keeps Gram matrices, moments and norms finite and non-zero for values near 1e20 or 1e-25.

/// An exact rescaling x ↦ x·2^exponent chosen from a block's largest magnitude.
///
/// float32 squares overflow above |x| ≈ 1.8·10¹⁹ and underflow below ≈ 10⁻²³ (fourth powers at ≈ 4·10⁹ and
/// 10⁻¹¹). A block whose largest |x| lies in [2⁻²⁰, 2²⁰] is left alone (exponent 0): its fourth powers, summed
/// over ≤ 2³¹ terms, stay far inside the range. Otherwise the block is multiplied by 2^exponent so that its
/// largest |x| lands in [1, 2); products formed from the scaled block are multiplied back by 2^(−k·exponent)
/// in float64, where they fit. Powers of two change only the exponent, so the rescaling itself is exact
/// (values far below the block's largest may become float32 subnormals or zero: their squares are below
/// 2⁻²⁴⁸ of the block's energy, beneath float32 rounding of the sum anyway).
public struct PowerOfTwoScale: Sendable, Equatable {
    /// x is stored as x·2^exponent.
    public let exponent: Int

    /// Magnitudes kept as they are: [2⁻²⁰, 2²⁰].
    public static let safeRange: ClosedRange<Float> =
        Float(
            sign: .plus, exponent: -20, significand: 1)...Float(
            sign: .plus, exponent: 20, significand: 1)

    /// The scale for a block whose largest |x| is `maxMagnitude` (finite, ≥ 0; subnormals included).
    public init(maxMagnitude: Float) {
        guard maxMagnitude > 0, maxMagnitude.isFinite, !PowerOfTwoScale.safeRange.contains(maxMagnitude) else {
            exponent = 0
            return
        }
        // float32 powers of two reach 2¹²⁷ at most: a subnormal maximum (2⁻¹⁴⁹ … 2⁻¹²⁶) is lifted by 2¹²⁶, which
        // still brings it to at least 2⁻²³, well inside the safe range for squares and fourth powers.
        exponent = min(-Int(maxMagnitude.exponent), 126)
    }

    /// No rescaling.
    public static let identity = PowerOfTwoScale(maxMagnitude: 1)

    /// Whether the block must be rescaled.
    public var isIdentity: Bool { exponent == 0 }

    /// 2^exponent as a float32 multiplier of the stored values (exact).
    public var factor: Float { Float(sign: .plus, exponent: exponent, significand: 1) }

    /// 2^(−power·exponent): multiplies a power-`power` quantity of the scaled values back (float64, exact).
    public func undo(power: Int) -> Double { Double(sign: .plus, exponent: -power * exponent, significand: 1) }

    /// `values` multiplied by `factor` into `output` (same count).
    public func apply(_ values: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count >= values.count)
        let f = factor
        for i in 0..<values.count { output[i] = values[i] * f }
    }
}
