// Orthonormal DCT-II along the rows of a column block, through FFTW plans made once and reused.
internal import CFFTW
import Foundation

/// Orthonormal DCT-II of `count` interleaved signals of `length` samples.
///
/// Input layout is row-major `length × count` (sample t of signal c at `t * count + c`): exactly a block of
/// token rows, so columns (channels) are transformed along tokens without a transpose. FFTW's REDFT10 computes
/// y_k = 2 Σ_t x_t cos(π k (t + ½) / N); scaling y_0 by √(1/(4N)) and y_k by √(1/(2N)) makes it orthonormal,
/// so Σ_k y_k² = Σ_t x_t² (Parseval), which is what energy fractions need.
///
/// The block is transformed in strips of `stripWidth` columns by one plan applied at each strip's offset:
/// a narrow strided plan keeps a strip's rows in cache. A measured plan (FFTW_MEASURE, timed trials on the
/// caller's buffer) runs 1.6–3.7× faster than an estimated one for long signals, but planning takes
/// 0.05–0.7 s, so callers measure only where the signal is long and the plan is reused.
public final class DCTPlan: @unchecked Sendable {
    // @unchecked Sendable: the plans are immutable after creation and fftwf_execute_r2r with new arrays is
    // thread-safe; only planning is not, which `planLock` serialises.
    private let strip: fftwf_plan
    /// The plan for the last, narrower strip when `count` is not a multiple of `stripWidth`.
    private let remainder: fftwf_plan?
    public let length: Int
    public let count: Int

    /// Columns per strip.
    public static let stripWidth = 16

    /// Signals at least this long are worth a measured plan: at 2048 samples planning costs about as much as
    /// the time it saves on one 1024-channel layer, and a plan is reused for every layer of a dump.
    public static let measuredLength = 2048

    private static let planLock = NSLock()

    /// Plans transforms of `count` interleaved signals of `length` samples. With `measuringOn`, FFTW times
    /// candidate algorithms on that buffer (at least `length × count` floats; its contents are destroyed);
    /// without it, FFTW estimates.
    public init(length: Int, count: Int, measuringOn buffer: UnsafeMutableBufferPointer<Float>? = nil) {
        precondition(length > 0 && count > 0)
        precondition(buffer.map { $0.count >= length * count } ?? true, "DCTPlan: measuring buffer too small")
        self.length = length
        self.count = count
        let width = min(DCTPlan.stripWidth, count)
        let rest = count % width
        let flags = (buffer == nil ? kv_fftw_estimate() : kv_fftw_measure()) | UInt32(FFTW_UNALIGNED)
        let scratch = buffer == nil ? UnsafeMutablePointer<Float>.allocate(capacity: (length - 1) * count + width) : nil
        defer { scratch?.deallocate() }
        let data = buffer?.baseAddress ?? scratch!
        func make(_ signals: Int) -> fftwf_plan {
            var n = Int32(length)
            var kind = fftw_r2r_kind(UInt32(kv_fftw_redft10()))
            return fftwf_plan_many_r2r(
                1, &n, Int32(signals), data, nil, Int32(count), 1,
                data, nil, Int32(count), 1, &kind, flags)
        }
        DCTPlan.planLock.lock()
        strip = make(width)
        remainder = rest > 0 ? make(rest) : nil
        DCTPlan.planLock.unlock()
    }

    deinit {
        DCTPlan.planLock.lock()
        fftwf_destroy_plan(strip)
        if let remainder { fftwf_destroy_plan(remainder) }
        DCTPlan.planLock.unlock()
    }

    /// Transforms `input` (row-major `length × count`) into `output` (same layout, orthonormal coefficients;
    /// row k holds frequency k of every signal). `input` and `output` may be the same buffer.
    public func transform(_ input: UnsafeMutableBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(input.count >= length * count && output.count >= length * count)
        let width = min(DCTPlan.stripWidth, count)
        var column = 0
        while column + width <= count {
            fftwf_execute_r2r(strip, input.baseAddress! + column, output.baseAddress! + column)
            column += width
        }
        if let remainder { fftwf_execute_r2r(remainder, input.baseAddress! + column, output.baseAddress! + column) }
        let scale0 = Float((1.0 / (4.0 * Double(length))).squareRoot())
        let scale = Float((1.0 / (2.0 * Double(length))).squareRoot())
        for c in 0..<count { output[c] *= scale0 }
        for i in count..<(length * count) { output[i] *= scale }
    }
}
