// Singular-value summaries from the eigenvalues of a Gram matrix: the spectrum itself and effective ranks.
import Foundation

/// The singular values of X (from the eigenvalues of XᵀX) and the ranks researchers quote.
///
/// - Energy effective rank at p: the smallest r with Σ_{i≤r} σ_i² ≥ p · Σ_i σ_i²; 0 for a zero matrix.
/// - Stable rank: ‖X‖_F² / σ_1² = Σσ_i² / σ_1².
/// - Entropy effective rank (Roy & Vetterli 2007): exp(−Σ p_i ln p_i) with p_i = σ_i / Σ_j σ_j.
public struct Spectrum: Sendable, Codable, Equatable {
    /// Energy levels at which effective ranks are reported.
    public static let energyLevels: [Double] = [0.9, 0.95, 0.99]

    public var singularValues: [Double]

    /// From XᵀX's eigenvalues (any order); tiny negative rounding residues are clamped to zero.
    public init(gramEigenvalues: [Double]) {
        singularValues = gramEigenvalues.map { max($0, 0).squareRoot() }.sorted(by: >)
    }

    public var energy: Double { singularValues.reduce(0) { $0 + $1 * $1 } }

    public func effectiveRank(energy p: Double) -> Int {
        let total = energy
        guard total > 0 else { return 0 }
        var cumulative = 0.0
        for (i, s) in singularValues.enumerated() {
            cumulative += s * s
            if cumulative >= p * total { return i + 1 }
        }
        return singularValues.count
    }

    /// Nil for a zero matrix (0/0).
    public var stableRank: Double? {
        guard let first = singularValues.first, first > 0 else { return nil }
        return energy / (first * first)
    }

    /// Nil for a zero matrix (no distribution to take the entropy of).
    public var entropyRank: Double? {
        let total = singularValues.reduce(0, +)
        guard total > 0 else { return nil }
        let h = singularValues.reduce(0.0) { acc, s in s > 0 ? acc - (s / total) * log(s / total) : acc }
        return exp(h)
    }
}
