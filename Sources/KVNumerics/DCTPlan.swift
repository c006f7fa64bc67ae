// Orthonormal DCT-II along the rows of a column block, through FFTW plans made once and reused.
internal import CFFTW
import Foundation

/// Orthonormal DCT-II of `count` interleaved signals of `length` samples.
///
/// Input layout is row-major `length × count` (sample t of signal c at `t * count + c`): exactly a block of
/// token rows, so columns (channels) are transformed along tokens without a transpose. FFTW's REDFT10 computes
/// y_k = 2 Σ_t x_t cos(π k (t + ½) / N); scaling y_0 by √(1/(4N)) and y_k by √(1/(2N)) makes it orthonormal,
/// so Σ_k y_k² = Σ_t x_t² (Parseval), which is what energy fractions need.
public final class DCTPlan: @unchecked Sendable {
    // @unchecked Sendable: the plan is immutable after creation and fftwf_execute_r2r with new arrays is
    // thread-safe; only planning is not, which `planLock` serialises.
    private let plan: fftwf_plan
    public let length: Int
    public let count: Int

    private static let planLock = NSLock()

    public init(length: Int, count: Int) {
        precondition(length > 0 && count > 0)
        self.length = length
        self.count = count
        var n = Int32(length)
        var kind = fftw_r2r_kind(UInt32(kv_fftw_redft10()))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: length * count)
        defer { scratch.deallocate() }
        DCTPlan.planLock.lock()
        plan = fftwf_plan_many_r2r(1, &n, Int32(count), scratch, nil, Int32(count), 1,
                                   scratch, nil, Int32(count), 1, &kind, kv_fftw_estimate() | UInt32(FFTW_UNALIGNED))
        DCTPlan.planLock.unlock()
    }

    deinit {
        DCTPlan.planLock.lock()
        fftwf_destroy_plan(plan)
        DCTPlan.planLock.unlock()
    }

    /// Transforms `input` (row-major `length × count`) into `output` (same layout, orthonormal coefficients;
    /// row k holds frequency k of every signal). `input` and `output` may be the same buffer.
    public func transform(_ input: UnsafeMutableBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(input.count >= length * count && output.count >= length * count)
        fftwf_execute_r2r(plan, input.baseAddress, output.baseAddress)
        let scale0 = Float((1.0 / (4.0 * Double(length))).squareRoot())
        let scale = Float((1.0 / (2.0 * Double(length))).squareRoot())
        for c in 0..<count { output[c] *= scale0 }
        for i in count..<(length * count) { output[i] *= scale }
    }
}
