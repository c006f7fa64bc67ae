// Typed access to the keyed parts of stats.json and fit manifests (energy levels, frequency fractions,
// similarity kinds, the "all" error), so report code never spells a JSON key: energy and fraction keys go
// through `EnergyFraction.key`, kinds through `TensorKind`.
import Foundation
import KVStat

extension StatsReport.KindStats {
    /// The energy effective rank at `level` (one of `Spectrum.energyLevels`); nil where not computed.
    public func effectiveRank(at level: Double) -> Int? { effectiveRank?[EnergyFraction.key(level)] }

    /// Each head's energy effective rank at `level` (one of `Spectrum.energyLevels`); nil where not computed.
    public func headEffectiveRanks(at level: Double) -> [Int]? { headEffectiveRank?[EnergyFraction.key(level)] }

    /// The spectrum was computed and has energy (the stable rank Σσ²/σ₁² is defined).
    public var hasEnergy: Bool { stableRank != nil }

    /// The spectrum was computed but has no energy (all zeros, or no finite rows): its ratios are null.
    public var lacksEnergy: Bool { singularValues != nil && stableRank == nil }
}

extension StatsReport.Frequency {
    /// The share of energy in the lowest `fraction` of DCT frequencies (one of `FrequencyEnergy.fractions`);
    /// nil when there is no energy.
    public func lowEnergy(below fraction: Double) -> Double? { lowEnergy?[EnergyFraction.key(fraction)] }
}

extension StatsReport {
    /// The kinds any layer has statistics for, in canonical `TensorKind` order.
    public var analysedKinds: [TensorKind] {
        TensorKind.allCases.filter { kind in layers.contains { $0.kinds[kind] != nil } }
    }

    /// The kinds with computed layer pairs, in canonical `TensorKind` order.
    public var similarityKinds: [TensorKind] { TensorKind.allCases.filter { !pairs(of: $0).isEmpty } }

    /// The computed layer pairs of `kind`, in analysis order (empty when none).
    public func pairs(of kind: TensorKind) -> [Pair] { similarity[kind.rawValue] ?? [] }
}

extension FitReport.Errors {
    /// The key of the error over every kind in `overall`.
    public static let allKinds = "all"

    /// The root-mean-square error over every kind and layer where it is defined; nil when none.
    public var overallAllKinds: Double? { overall[Self.allKinds] ?? nil }
}

extension TensorKind {
    /// The plural opening a sentence: "Keys", "Pre-RoPE keys" (`capitalized` would give "Pre-Rope Keys").
    public var sentencePlural: String { plural.prefix(1).uppercased() + plural.dropFirst() }

    /// Kind names (from manifests) in canonical order: known kinds as `TensorKind` orders them, then any
    /// unknown names sorted.
    public static func canonicalOrder(_ names: some Sequence<String>) -> [String] {
        let given = Set(names)
        let known = allCases.map(\.rawValue).filter(given.contains)
        return known + given.subtracting(known).sorted()
    }
}

/// Labels of energy levels and frequency fractions for prose and axes.
public enum LevelLabel {
    /// An energy level as a percentage: 0.9 → "90 %", 0.995 → "99.5 %".
    public static func percent(_ level: Double) -> String { String(format: "%g %%", level * 100) }

    /// A frequency fraction as a fraction of the band: 0.125 → "1/8"; not of the form 1/n: the decimal.
    public static func fraction(_ f: Double) -> String {
        let n = (1 / f).rounded()
        return f > 0 && n.isFinite && n <= 1e6 && abs(1 / n - f) < 1e-12 ? "1/\(Int(n))" : "\(f)"
    }
}
