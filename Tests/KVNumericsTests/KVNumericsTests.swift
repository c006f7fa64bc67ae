// The numeric wrappers against independent computations: Swift's own Float16, direct formulas, LAPACK SVD.
import Foundation
import Testing

@testable import KVNumerics

/// A small deterministic generator so tests do not depend on the platform's random source.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func normal() -> Float {
        let u = Float.random(in: Float.ulpOfOne..<1, using: &self)
        let v = Float.random(in: 0..<1, using: &self)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

/// `HalfFloat.convertBox` on a one-dimensional box: `source` widened element by element into `destination`.
func widen(
    _ format: HalfFloat.StoredFormat, _ source: UnsafeBufferPointer<UInt16>,
    into destination: UnsafeMutableBufferPointer<Float>
) {
    HalfFloat.convertBox(
        format, bigEndian: false, source: UnsafeRawPointer(source.baseAddress!), sourceStrides: [1],
        destination: destination.baseAddress!, destinationStrides: [1], counts: [source.count])
}

@Suite struct KVNumericsTests {
    @Test func halfConversionIsExactForEveryBitPattern() {
        let patterns = (0...UInt16.max).map { $0 }
        var converted = [Float](repeating: 0, count: patterns.count)
        patterns.withUnsafeBufferPointer { source in
            converted.withUnsafeMutableBufferPointer { widen(.float16, source, into: $0) }
        }
        var mismatches = 0
        for (bits, value) in zip(patterns, converted) {
            let reference = Float(Float16(bitPattern: bits))
            if reference.isNaN ? !value.isNaN : reference.bitPattern != value.bitPattern { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func bfloat16IsTheUpperHalfOfFloat32() {
        let values: [Float] = [1, -2.5, 3.140625, 0, -0, .infinity, 1e-38, 65504]
        let bits = values.map { UInt16($0.bitPattern >> 16) }
        var converted = [Float](repeating: 0, count: values.count)
        bits.withUnsafeBufferPointer { source in
            converted.withUnsafeMutableBufferPointer { widen(.bfloat16, source, into: $0) }
        }
        #expect(converted.map(\.bitPattern) == values.map { $0.bitPattern & 0xFFFF_0000 })
    }

    /// XᵀX accumulated over blocks equals the direct sum Σ_t x_t x_tᵀ.
    @Test func gramAccumulationMatchesDirectSum() {
        var rng = SplitMix64(state: 1)
        let rows = 37
        let columns = 5
        let x = (0..<(rows * columns)).map { _ in rng.normal() }
        var packed = [Double](repeating: 0, count: columns * (columns + 1) / 2)
        var scratch: [Float] = []
        for start in stride(from: 0, to: rows, by: 10) {
            let n = min(10, rows - start)
            x.withUnsafeBufferPointer { p in
                BLAS.accumulateGram(
                    UnsafeBufferPointer(rebasing: p[(start * columns)..<((start + n) * columns)]), rows: n,
                    columns: columns, into: &packed, scratch: &scratch)
            }
        }
        let gram = Matrix.fromPackedLower(packed, n: columns)
        for i in 0..<columns {
            for j in 0..<columns {
                let direct = (0..<rows).reduce(0.0) { $0 + Double(x[$1 * columns + i]) * Double(x[$1 * columns + j]) }
                #expect(abs(gram[i, j] - direct) <= 1e-5 * max(1, abs(direct)))
            }
        }
        var cross = Matrix<Double>(rows: columns, columns: 2)
        let y = (0..<(rows * 2)).map { _ in rng.normal() }
        x.withUnsafeBufferPointer { px in
            y.withUnsafeBufferPointer { py in
                BLAS.accumulateCrossProduct(
                    px, py, rows: rows, aColumns: columns, bColumns: 2, into: &cross, scratch: &scratch)
            }
        }
        let direct01 = (0..<rows).reduce(0.0) { $0 + Double(x[$1 * columns + 3]) * Double(y[$1 * 2 + 1]) }
        #expect(abs(cross[3, 1] - direct01) <= 1e-5 * max(1, abs(direct01)))
    }

    /// A 3×3 case with a known answer: eigenvalues of [[2,1,0],[1,2,0],[0,0,5]] are 5, 3, 1.
    @Test func symmetricEigenKnownCase() throws {
        let m = Matrix<Double>(rows: 3, columns: 3, values: [2, 1, 0, 1, 2, 0, 0, 0, 5])
        let eigen = try SymmetricEigen(m, topVectors: 3)
        #expect(zip(eigen.values, [5.0, 3, 1]).allSatisfy { abs($0 - $1) < 1e-12 })
        let v = try #require(eigen.vectors)
        // A v_j = λ_j v_j for each column.
        for j in 0..<3 {
            for i in 0..<3 {
                let av = (0..<3).reduce(0.0) { $0 + m[i, $1] * v[$1, j] }
                #expect(abs(av - eigen.values[j] * v[i, j]) < 1e-12)
            }
        }
    }

    /// The top-k eigenvectors (dsyevr over an index range) equal the leading columns of the full
    /// decomposition (dsyevd) up to sign, and the eigenvalues do not depend on how many vectors were asked for.
    @Test func topEigenvectorsMatchFullDecomposition() throws {
        var rng = SplitMix64(state: 11)
        let rows = 300
        let n = 40
        let k = 6
        let x = Matrix<Float>(rows: rows, columns: n, values: (0..<(rows * n)).map { _ in rng.normal() })
        var packed = [Double](repeating: 0, count: n * (n + 1) / 2)
        var scratch: [Float] = []
        x.values.withUnsafeBufferPointer {
            BLAS.accumulateGram($0, rows: rows, columns: n, into: &packed, scratch: &scratch)
        }
        let gram = Matrix.fromPackedLower(packed, n: n)
        let full = try SymmetricEigen(gram, topVectors: n)
        let top = try SymmetricEigen(gram, topVectors: k)
        let none = try SymmetricEigen(gram)
        #expect(none.vectors == nil)
        #expect(top.values == none.values)  // the same reduction and dsterf
        #expect(zip(full.values, none.values).allSatisfy { abs($0 - $1) <= 1e-12 * none.values[0] })
        let vf = try #require(full.vectors)
        let vt = try #require(top.vectors)
        #expect(vt.rows == n && vt.columns == k)
        for j in 0..<k {
            let dot = (0..<n).reduce(0.0) { $0 + vf[$1, j] * vt[$1, j] }
            #expect(abs(abs(dot) - 1) < 1e-9)
        }
    }

    /// The eigenvalues of XᵀX are the squared singular values of X (sgesdd on X itself).
    @Test func gramEigenvaluesAreSquaredSingularValues() throws {
        var rng = SplitMix64(state: 7)
        let rows = 200
        let columns = 12
        let x = Matrix<Float>(rows: rows, columns: columns, values: (0..<(rows * columns)).map { _ in rng.normal() })
        var packed = [Double](repeating: 0, count: columns * (columns + 1) / 2)
        var scratch: [Float] = []
        x.values.withUnsafeBufferPointer {
            BLAS.accumulateGram($0, rows: rows, columns: columns, into: &packed, scratch: &scratch)
        }
        let gram = Matrix.fromPackedLower(packed, n: columns)
        let eigen = try SymmetricEigen(gram)
        let svd = try SingularValueDecomposition(x, computeVectors: true)
        for (lambda, sigma) in zip(eigen.values, svd.values) {
            #expect(abs(lambda.squareRoot() - Double(sigma)) <= 1e-4 * Double(svd.values[0]))
        }
        // U diag(s) Vᵀ reconstructs X.
        let u = try #require(svd.u)
        let vt = try #require(svd.vt)
        var worst: Float = 0
        for i in 0..<rows {
            for j in 0..<columns {
                let r = (0..<columns).reduce(Float(0)) { $0 + u[i, $1] * svd.values[$1] * vt[$1, j] }
                worst = max(worst, abs(r - x[i, j]))
            }
        }
        #expect(worst < 1e-4)
    }

    /// The r2c-based plan's coefficients equal the orthonormal DCT-II formula and preserve energy: one chunk,
    /// and several chunks with a narrower remainder.
    @Test(arguments: [(13, 3), (13, 37), (64, 37)])
    func dctMatchesDirectFormula(n: Int, count: Int) {
        var rng = SplitMix64(state: 3)
        var x = [Float](repeating: 0, count: n * count)
        let plan = DCTPlan(length: n)
        x = (0..<(n * count)).map { _ in rng.normal() }
        let original = x
        x.withUnsafeMutableBufferPointer { plan.transform(UnsafeBufferPointer($0), count: count, into: $0) }
        for c in 0..<count {
            for k in 0..<n {
                let scale = k == 0 ? (1.0 / Double(n)).squareRoot() : (2.0 / Double(n)).squareRoot()
                var sum = 0.0
                for t in 0..<n {
                    let angle = Double.pi * Double(k) * (Double(t) + 0.5) / Double(n)
                    sum += Double(original[t * count + c]) * cos(angle)
                }
                let direct = scale * sum
                #expect(abs(Double(x[k * count + c]) - direct) < 1e-5)
            }
            let energyIn = (0..<n).reduce(0.0) { $0 + Double(original[$1 * count + c] * original[$1 * count + c]) }
            let energyOut = (0..<n).reduce(0.0) { $0 + Double(x[$1 * count + c] * x[$1 * count + c]) }
            #expect(abs(energyIn - energyOut) < 1e-4 * energyIn)
        }
    }
}
