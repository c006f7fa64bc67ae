// DCTPlan's r2c-based (Makhoul) orthonormal DCT-II against a direct float64 O(N²) DCT-II formula: energies per
// frequency summed over channels, coefficients, odd and even lengths, several chunks and pieces, non-finite
// inputs, power-of-two rescaling of chunks near float32's limits, and accumulation over calls; and the portable
// C kernels against the vector ones.
import CKernels
import Foundation
import Testing

@testable import KVNumerics

struct DCTEnergyTests {
    /// Direct orthonormal DCT-II of column c of the row-major n × count panel `x`, in float64, with non-finite
    /// values taken as 0: ŷ_k = s_k Σ_t x_t cos(πk(t + ½)/n), s_0 = √(1/n), s_k = √(2/n).
    /// cos(πk(t + ½)/n) = cos(π·m/(2n)) with m = k(2t + 1) mod 4n, read from a table of the 4n values.
    static func directCoefficients(_ x: [Float], n: Int, count: Int, column c: Int) -> [Double] {
        let table = (0..<(4 * n)).map { cos(Double.pi * Double($0) / Double(2 * n)) }
        return (0..<n).map { k in
            var sum = 0.0
            for t in 0..<n {
                let v = x[t * count + c]
                guard v.isFinite else { continue }
                sum += Double(v) * table[(k * (2 * t + 1)) % (4 * n)]
            }
            return sum * (k == 0 ? (1 / Double(n)).squareRoot() : (2 / Double(n)).squareRoot())
        }
    }

    /// Σ over columns of ŷ_k², per k, by the direct formula.
    static func directEnergies(_ x: [Float], n: Int, count: Int) -> [Double] {
        var energy = [Double](repeating: 0, count: n)
        for c in 0..<count {
            for (k, y) in directCoefficients(x, n: n, count: count, column: c).enumerated() { energy[k] += y * y }
        }
        return energy
    }

    /// Energies by a plan that splits even small panels over every core (`minimumPieceFloats` = 1).
    static func energies(_ x: [Float], n: Int, count: Int, plan: DCTPlan? = nil) -> [Double] {
        let plan = plan ?? DCTPlan(length: n)
        plan.minimumPieceFloats = 1
        var energy = [Double](repeating: 0, count: n)
        x.withUnsafeBufferPointer { p in
            energy.withUnsafeMutableBufferPointer { plan.addEnergies(of: p, count: count, into: $0) }
        }
        return energy
    }

    /// Each frequency's energy within float32 FFT error of the direct one: 1e-5 of itself plus 1e-6 of the
    /// panel's whole energy (a frequency with almost no energy is compared on the panel's scale).
    static func expectClose(_ ours: [Double], _ direct: [Double], _ label: String) {
        let total = direct.reduce(0, +)
        #expect(ours.count == direct.count)
        for (k, (a, b)) in zip(ours, direct).enumerated() {
            #expect(abs(a - b) <= 1e-5 * b + 1e-6 * total, "\(label): k = \(k): \(a) vs \(b)")
        }
        #expect(abs(ours.reduce(0, +) - total) <= 1e-6 * total, "\(label): Parseval")
    }

    /// Odd and even lengths, counts below, at and past one chunk of 16 signals (so both pieces of a two-core
    /// machine run, one with a short last chunk).
    @Test(arguments: [(1, 37), (2, 37), (3, 37), (5, 37), (16, 37), (17, 37), (1000, 19), (64, 16), (33, 5)])
    func energiesMatchDirectFormula(n: Int, count: Int) {
        var rng = SplitMix64(state: UInt64(n * 1000 + count))
        let x = (0..<(n * count)).map { _ in rng.normal() + 0.3 }
        Self.expectClose(Self.energies(x, n: n, count: count), Self.directEnergies(x, n: n, count: count), "n \(n)")
    }

    /// Both placements of the r2c plan (in place, out of place) and the timed choice between them, from short
    /// signals to ones past `DCTPlan.timedLength`.
    @Test(arguments: [(17, true), (1000, true), (1000, false), (2048, true), (2048, false), (2049, nil), (3000, nil)])
    func bothPlacementsMatchDirectFormula(n: Int, inPlace: Bool?) {
        let count = inPlace == nil ? 3 : 17  // two chunks (two pieces on two cores) where the placement is fixed
        var rng = SplitMix64(state: UInt64(n))
        let x = (0..<(n * count)).map { _ in rng.normal() }
        let plan = DCTPlan(length: n, inPlace: inPlace)
        if let inPlace { #expect(plan.inPlace == inPlace) }
        if n < DCTPlan.timedLength && inPlace == nil { #expect(!plan.inPlace) }
        let label = "n \(n), in place \(plan.inPlace)"
        let direct = Self.directEnergies(x, n: n, count: count)
        Self.expectClose(Self.energies(x, n: n, count: count, plan: plan), direct, label)
    }

    /// Coefficients (not only energies) for odd and even lengths: the Makhoul reordering and post-twiddle
    /// place every frequency right, including k = n/2 and k > n/2.
    @Test(arguments: [1, 2, 3, 4, 5, 16, 17, 31, 100])
    func coefficientsMatchDirectFormula(n: Int) {
        let count = 21
        var rng = SplitMix64(state: UInt64(n))
        let x = (0..<(n * count)).map { _ in rng.normal() }
        var y = [Float](repeating: .nan, count: n * count)
        let plan = DCTPlan(length: n)
        plan.minimumPieceFloats = 1
        x.withUnsafeBufferPointer { p in
            y.withUnsafeMutableBufferPointer { plan.transform(p, count: count, into: $0) }
        }
        for c in 0..<count {
            for (k, direct) in Self.directCoefficients(x, n: n, count: count, column: c).enumerated() {
                #expect(abs(Double(y[k * count + c]) - direct) <= 2e-6 * Double(n).squareRoot() + 1e-6 * abs(direct))
            }
        }
    }

    /// NaN and ±Inf count as 0, wherever they fall (the vector blocks and the scalar edges of the gather).
    @Test(arguments: [(40, 24), (17, 37), (64, 64)])
    func nonFiniteValuesCountAsZero(n: Int, count: Int) {
        var rng = SplitMix64(state: 99)
        var x = (0..<(n * count)).map { _ in rng.normal() }
        let specials: [Float] = [.nan, .infinity, -.infinity, -.nan, .signalingNaN]
        for i in 0..<(n * count / 7) { x[(i * 7919) % (n * count)] = specials[i % specials.count] }
        x[0] = .nan
        x[n * count - 1] = .infinity
        let ours = Self.energies(x, n: n, count: count)
        #expect(ours.allSatisfy { $0.isFinite })
        Self.expectClose(ours, Self.directEnergies(x, n: n, count: count), "non-finite")
    }

    /// Chunks whose values sit near float32's limits (squares would overflow or underflow) are rescaled by a
    /// power of two and their energies scaled back: the result is the direct float64 energy. Chunk 0 huge,
    /// chunk 1 tiny (subnormal squares), chunk 2 ordinary; an all-zero chunk stays zero.
    @Test func outOfRangeChunksAreRescaled() {
        let n = 48
        let count = 64
        var rng = SplitMix64(state: 5)
        var x = [Float](repeating: 0, count: n * count)
        for t in 0..<n {
            for c in 0..<48 {
                let magnitude: Float = c < 16 ? 1e30 : c < 32 ? 1e-30 : 1
                x[t * count + c] = rng.normal() * magnitude
            }
        }
        let ours = Self.energies(x, n: n, count: count)
        let direct = Self.directEnergies(x, n: n, count: count)
        #expect(ours.allSatisfy { $0.isFinite })
        // Each magnitude's share: the huge chunk dominates the sum, so compare chunk by chunk as well.
        Self.expectClose(ours, direct, "mixed")
        for (lo, hi) in [(0, 16), (16, 32), (32, 48), (48, 64)] {
            var part = [Float](repeating: 0, count: n * count)
            for t in 0..<n { for c in lo..<hi { part[t * count + c] = x[t * count + c] } }
            let mine = Self.energies(part, n: n, count: count)
            let reference = Self.directEnergies(part, n: n, count: count)
            if lo == 48 {
                #expect(mine.allSatisfy { $0 == 0 })
            } else {
                #expect(reference.reduce(0, +) > 0)
                Self.expectClose(mine, reference, "columns \(lo)..<\(hi)")
            }
        }
    }

    /// `addEnergies` adds (two panels into one array give their sum), one plan serves different column counts,
    /// and the same input gives the same bits twice.
    @Test func callsAccumulateAndRepeat() {
        let n = 257
        let plan = DCTPlan(length: n)
        plan.minimumPieceFloats = 1
        var rng = SplitMix64(state: 17)
        let a = (0..<(n * 40)).map { _ in rng.normal() }
        let b = (0..<(n * 8)).map { _ in rng.normal() }
        var energy = [Double](repeating: 0, count: n)
        for (panel, count) in [(a, 40), (b, 8)] {
            panel.withUnsafeBufferPointer { p in
                energy.withUnsafeMutableBufferPointer { plan.addEnergies(of: p, count: count, into: $0) }
            }
        }
        let direct = zip(Self.directEnergies(a, n: n, count: 40), Self.directEnergies(b, n: n, count: 8)).map(+)
        Self.expectClose(energy, direct, "accumulated")
        #expect(Self.energies(a, n: n, count: 40, plan: plan) == Self.energies(a, n: n, count: 40, plan: plan))
    }

    /// The workspace estimate covers what a plan allocates and saturates instead of overflowing.
    @Test func workspaceBytesAreSaturating() {
        let plan = DCTPlan(length: 32768)
        let stride = plan.stride
        #expect(stride % 16 == 0 && stride >= 2 * (32768 / 2 + 1))
        let allocated = plan.pieces * (4 * DCTPlan.chunkSignals * stride + 8 * 32768) + 4 * 2 * (32768 / 2 + 1)
        #expect(DCTPlan.workspaceBytes(length: 32768, pieces: plan.pieces) >= allocated)
        #expect(DCTPlan.workspaceBytes(length: Int.max, pieces: 2) == Int.max)
        #expect(DCTPlan.workspaceBytes(length: 1 << 40, pieces: Int.max) == Int.max)
    }
}

/// The portable kernels (used where the CPU lacks AVX2 + FMA) against the vector ones this machine runs.
struct DCTPortableKernelTests {
    @Test(arguments: [(1, 3), (2, 8), (17, 9), (64, 16), (1000, 13), (33, 24)])
    func portableKernelsMatchVectorOnes(n: Int, signals: Int) {
        var rng = SplitMix64(state: UInt64(7 * n + signals))
        let columns = signals + 5
        var panel = (0..<(n * columns)).map { _ in rng.normal() * 3 }
        panel[n * columns / 2] = .nan
        panel[n * columns / 3] = -.infinity
        let stride = (2 * (n / 2 + 1) + 15) / 16 * 16
        var vector = [Float](repeating: -1, count: signals * stride)
        var portable = vector
        let largest = kv_dct_gather(panel, n, columns, 2, signals, &vector, stride)
        let largestPortable = kv_dct_gather_portable(panel, n, columns, 2, signals, &portable, stride)
        #expect(largest == largestPortable)
        #expect(vector == portable)
        // Energies of the gathered signals read as spectra (any floats will do for the post-twiddle).
        var twiddles = [Float](repeating: 0, count: 2 * (n / 2 + 1))
        kv_dct_twiddles(n, &twiddles)
        var a = [Double](repeating: 0, count: n)
        var b = a
        kv_dct_energies(vector, n, signals, stride, twiddles, 0.25, &a)
        kv_dct_energies_portable(vector, n, signals, stride, twiddles, 0.25, &b)
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-6 * max(abs(y), 1e-30)) }
    }
}
