// The partial eigensolver (top r vectors: MRRR below n/3, divide and conquer above) against matrices whose
// spectrum and eigenvectors are known by construction, A = Q diag(λ) Qᵀ with Q a product of Householder
// reflections, including repeated and zero eigenvalues, and against the full decomposition.
import Foundation
import Testing

@testable import KVNumerics

@Suite struct SymmetricEigenPartialTests {
    /// A random orthogonal n × n matrix (row-major float64): the product of n Householder reflections
    /// I − 2vvᵀ/vᵀv of seeded Gaussian vectors, so its columns are an exact (to rounding) orthonormal basis.
    static func randomOrthogonal(_ n: Int, seed: UInt64) -> [Double] {
        var rng = SplitMix64(state: seed)
        var q = [Double](repeating: 0, count: n * n)
        for i in 0..<n { q[i * n + i] = 1 }
        for _ in 0..<n {
            let v = (0..<n).map { _ in Double(rng.normal()) }
            let vv = v.reduce(0) { $0 + $1 * $1 }
            // Q ← Q (I − 2vvᵀ/vᵀv): each row q_i ← q_i − 2 (q_i·v / vᵀv) vᵀ.
            for i in 0..<n {
                let dot = (0..<n).reduce(0.0) { $0 + q[i * n + $1] * v[$1] }
                for j in 0..<n { q[i * n + j] -= 2 * dot / vv * v[j] }
            }
        }
        return q
    }

    /// A = Q diag(λ) Qᵀ, row-major.
    static func matrix(_ q: [Double], _ lambda: [Double]) -> Matrix<Double> {
        let n = lambda.count
        var a = Matrix<Double>(rows: n, columns: n)
        for i in 0..<n {
            for j in 0...i {
                let v = (0..<n).reduce(0.0) { $0 + q[i * n + $1] * lambda[$1] * q[j * n + $1] }
                a[i, j] = v
                a[j, i] = v
            }
        }
        return a
    }

    /// ‖(I − UUᵀ) V‖_F² for U = the known eigenvectors (columns of Q) with λ ≥ `threshold`: how far the
    /// computed columns V stray outside the exact invariant subspace they must lie in.
    static func outside(_ v: Matrix<Double>, q: [Double], lambda: [Double], threshold: Double) -> Double {
        let n = lambda.count
        let inside = (0..<n).filter { lambda[$0] >= threshold }
        var total = 0.0
        for j in 0..<v.columns {
            var residual = (0..<n).map { v[$0, j] }
            for k in inside {
                let dot = (0..<n).reduce(0.0) { $0 + q[$1 * n + k] * v[$1, j] }
                for i in 0..<n { residual[i] -= dot * q[i * n + k] }
            }
            total += residual.reduce(0) { $0 + $1 * $1 }
        }
        return total
    }

    /// Known spectrum with a triple, a pair and eleven zeros (n = 24, so r < 8 takes dstemr and r ≥ 8 dstedc):
    /// the eigenvalues match whatever r is asked for; the r columns are orthonormal, satisfy Av = λv, and span
    /// the exact invariant subspace of the eigenvalues ≥ λ_r (the whole cluster when r cuts through one, where
    /// the vectors themselves are not unique); where λ_r > λ_{r+1} they span the same subspace as the full
    /// decomposition's first r columns.
    @Test(arguments: [1, 2, 3, 4, 6, 7, 8, 9, 12, 13, 15, 24])
    func knownSpectrumWithRepeatedAndZeroEigenvalues(top: Int) throws {
        let lambda: [Double] = [9, 9, 9, 7, 5, 5, 4, 3, 2.5, 2, 1.5, 1, 0.5] + [Double](repeating: 0, count: 11)
        let n = lambda.count
        let q = Self.randomOrthogonal(n, seed: 5)
        let a = Self.matrix(q, lambda)
        #expect(SymmetricEigen.usesDivideAndConquer(n: n, top: top) == (top >= 8))
        let eigen = try SymmetricEigen(a, topVectors: top)
        let full = try SymmetricEigen(a, topVectors: n)
        for (computed, exact) in zip(eigen.values, lambda) { #expect(abs(computed - exact) <= 1e-12 * 9) }
        #expect(eigen.values == full.values)  // the same reduction and dsterf, whatever the vectors
        let v = try #require(eigen.vectors)
        #expect(v.rows == n && v.columns == top)
        // Orthonormal columns and A v_j = λ_j v_j.
        for j in 0..<top {
            for k in 0...j {
                let dot = (0..<n).reduce(0.0) { $0 + v[$1, j] * v[$1, k] }
                #expect(abs(dot - (j == k ? 1 : 0)) <= 1e-12)
            }
            for i in 0..<n {
                let av = (0..<n).reduce(0.0) { $0 + a[i, $1] * v[$1, j] }
                #expect(abs(av - eigen.values[j] * v[i, j]) <= 1e-12 * 9)
            }
        }
        // Inside the exact invariant subspace of λ ≥ λ_top (the cut's whole cluster included).
        let threshold = lambda[top - 1] - 1e-9
        #expect(Self.outside(v, q: q, lambda: lambda, threshold: threshold) <= 1e-20)
        // Where the cut is a gap, the same subspace as the full decomposition's first `top` columns:
        // ‖V_topᵀ W_top‖²_F = top for equal subspaces (orthonormal bases of the same space).
        if top == n || lambda[top - 1] > lambda[top] {
            let w = try #require(full.vectors)
            var overlap = 0.0
            for j in 0..<top {
                for k in 0..<top {
                    let dot = (0..<n).reduce(0.0) { $0 + v[$1, j] * w[$1, k] }
                    overlap += dot * dot
                }
            }
            #expect(abs(overlap - Double(top)) <= 1e-10)
        }
    }

    /// A rank-deficient Gram (100 rows, 160 columns: 60 zero eigenvalues) through both vector routines: the top
    /// r columns from dstemr (r = 40) and dstedc (r = 120, 20 of them in the null space) agree with the full
    /// decomposition's leading columns up to sign, and the eigenvalues agree with the squared singular values
    /// of X (sgesdd, independent).
    @Test func rankDeficientGramBothRoutines() throws {
        var rng = SplitMix64(state: 29)
        let (rows, n) = (100, 160)
        let x = Matrix<Float>(rows: rows, columns: n, values: (0..<(rows * n)).map { _ in rng.normal() })
        var gram = Matrix<Double>(rows: n, columns: n)
        for i in 0..<n {
            for j in 0...i {
                let v = (0..<rows).reduce(0.0) { $0 + Double(x[$1, i]) * Double(x[$1, j]) }
                gram[i, j] = v
                gram[j, i] = v
            }
        }
        let sigma = try SingularValueDecomposition(x, computeVectors: false).values.map(Double.init)
        let full = try SymmetricEigen(gram, topVectors: n)
        let scale = full.values[0]
        for i in 0..<n {
            let exact = i < rows ? sigma[i] * sigma[i] : 0
            #expect(abs(full.values[i] - exact) <= 1e-5 * scale)
        }
        let w = try #require(full.vectors)
        for top in [40, 120] {
            #expect(SymmetricEigen.usesDivideAndConquer(n: n, top: top) == (top == 120))
            let v = try #require(try SymmetricEigen(gram, topVectors: top).vectors)
            // The non-zero eigenvalues are simple (Marchenko–Pastur spread): each column is ± the full one.
            // Columns past the rank lie in the null space, where any orthonormal basis is right.
            for j in 0..<top {
                if j < rows {
                    let dot = (0..<n).reduce(0.0) { $0 + v[$1, j] * w[$1, j] }
                    #expect(abs(abs(dot) - 1) <= 1e-9, "top \(top), column \(j): \(dot)")
                } else {
                    let image = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + gram[i, $1] * v[$1, j] } }
                    #expect(image.reduce(0) { $0 + $1 * $1 }.squareRoot() <= 1e-9 * scale)
                }
            }
        }
    }

    /// Degenerate sizes: 1 × 1, and the zero matrix (every eigenvalue 0, any orthonormal basis is right).
    @Test func degenerateSizes() throws {
        let one = try SymmetricEigen(Matrix(rows: 1, columns: 1, values: [4]), topVectors: 1)
        #expect(one.values == [4])
        #expect(try #require(one.vectors).values.map(abs) == [1])
        for top in [2, 5] {
            let zero = try SymmetricEigen(Matrix<Double>(rows: 5, columns: 5), topVectors: top)
            #expect(zero.values == [Double](repeating: 0, count: 5))
            let v = try #require(zero.vectors)
            for j in 0..<top {
                for k in 0...j {
                    let dot = (0..<5).reduce(0.0) { $0 + v[$1, j] * v[$1, k] }
                    #expect(abs(dot - (j == k ? 1 : 0)) <= 1e-14)
                }
            }
        }
    }
}
