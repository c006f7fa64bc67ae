// The findings of an analysis as typed values, computed once from a StatsReport: summary.md lists their
// sentences and report.html's notes quote them. Each value keeps the numbers it states.
import Foundation
import KVStat

/// What an analysis says in words, per tensor kind in canonical `TensorKind` order.
public struct Findings: Sendable {
    /// The energy level of the headline rank finding (90 %).
    public static let energyLevel = 0.9
    /// The low-frequency band quoted: the lowest 1/8 of DCT frequencies along tokens.
    public static let lowFrequencyFraction = 1.0 / 8

    /// The mean energy effective rank at `Findings.energyLevel` over the layers that have energy (a zero
    /// layer's rank 0 says nothing about compressibility), against the kind's channels per layer.
    public struct EnergyRank: Sendable, Equatable {
        public var kind: TensorKind
        public var meanRank: Double
        /// Channels per layer (heads × head_dim of this kind).
        public var channels: Int
        /// Layers averaged (those with energy).
        public var layers: Int
        /// meanRank ÷ channels.
        public var share: Double { meanRank / Double(channels) }

        /// summary.md's clause: "keys with 8.6 % of channels (mean rank 33.0 of 384)".
        public var phrase: String {
            "\(kind.plural) with \(Findings.percent(share)) of channels "
                + "(mean rank \(Findings.fixed(meanRank, 1)) of \(channels))"
        }

        /// report.html's sentence: "Keys reach 90 % energy with 8.6 % of channels on average (33 of 384)."
        public var sentence: String {
            "\(kind.sentencePlural) reach \(LevelLabel.percent(Findings.energyLevel)) energy with "
                + "\(Findings.fixed(100 * meanRank / Double(channels), 1)) % of channels on average "
                + "(\(Int(meanRank.rounded())) of \(channels))."
        }
    }

    /// Layers whose spectrum was computed but has no energy (all zeros, or no finite rows).
    public struct EmptyLayers: Sendable, Equatable {
        public var kind: TensorKind
        /// Their numbers in the dump.
        public var layers: [Int]
        /// Layers analysed in all.
        public var of: Int

        public var sentence: String {
            "\(kind.sentencePlural): \(layers.count) of \(of) layers have no energy (all zeros, or no finite rows: "
                + "layers \(IndexList.text(layers))); their ratios are undefined (see the notes in stats.json)."
        }
    }

    /// Cross-layer similarity of one kind's computed pairs.
    public struct Similarity: Sendable {
        public var kind: TensorKind
        public var pairs: Int
        /// Mean linear CKA over the pairs where it is defined; nil when none.
        public var meanCKA: Double?
        /// The pair with the largest subspace alignment; nil when no pair has one.
        public var bestAligned: StatsReport.Pair?
        /// The rank the subspace alignment compares at (--align-rank).
        public var alignRank: Int
        /// Pairs whose CKA is undefined.
        public var undefinedCKA: Int
        /// Pairs with an undefined CKA or cosine (not drawn in the line charts' undefined points).
        public var undefinedMeasures: Int

        /// The mean CKA and best-aligned pair; nil when either is missing.
        public var alignmentSentence: String? {
            guard let meanCKA, let best = bestAligned, let alignment = best.subspaceAlignment else { return nil }
            return
                "\(kind.sentencePlural): mean CKA of computed layer pairs \(Findings.fixed(meanCKA, 2)); "
                + "the most aligned token subspaces are layers \(best.layerA) and \(best.layerB) "
                + "(alignment \(Findings.fixed(alignment, 2)) at rank \(alignRank))."
        }

        /// The count of pairs with an undefined CKA; nil when there are none.
        public var undefinedSentence: String? {
            undefinedCKA == 0
                ? nil
                : "\(kind.sentencePlural): CKA is undefined for \(undefinedCKA) of \(pairs) layer pairs "
                    + "(a layer without spread)."
        }
    }

    /// Outlier channels (max |x| above outlier_factor × the median channel's) over the layers of one kind.
    public struct Outliers: Sendable, Equatable {
        public var kind: TensorKind
        /// Outlier channels summed over layers.
        public var channels: Int
        /// Layers with at least one outlier channel.
        public var layersWith: Int
        public var of: Int
        public var factor: Double

        public var sentence: String {
            let rule = "(max |x| above \(ChartFormat.number(factor))× the median channel)"
            return layersWith == 0
                ? "\(kind.sentencePlural): no outlier channels \(rule)."
                : "\(kind.sentencePlural): \(channels) outlier channel\(channels == 1 ? "" : "s") in \(layersWith) "
                    + "of \(of) layers \(rule)."
        }
    }

    /// The token position that most often has a large norm (above outlier_factor × the median); attention-mass
    /// sinks, which may have small norms, are `SinkFindings`'.
    public struct Sinks: Sendable, Equatable {
        public var kind: TensorKind
        /// The position; ties go to the earliest position.
        public var position: Int
        /// Listed sinks at that position, over layers and sequences.
        public var hits: Int
        public var factor: Double

        public var sentence: String {
            "\(kind.sentencePlural): large-norm tokens (norm above \(ChartFormat.number(factor))× the median) "
                + "most often at position \(position) (\(hits) layer-sequence hits)."
        }
    }

    /// The share of energy in the lowest `Findings.lowFrequencyFraction` of DCT frequencies, over layers with energy.
    public struct LowFrequency: Sendable, Equatable {
        public var kind: TensorKind
        public var mean: Double
        public var min: Double
        public var max: Double

        public var sentence: String {
            "\(kind.sentencePlural): the lowest \(LevelLabel.fraction(Findings.lowFrequencyFraction)) of DCT "
                + "frequencies along tokens hold \(Findings.percent(mean)) of the energy on average "
                + "(\(Findings.percent(min))–\(Findings.percent(max)) across layers)."
        }
    }

    public var energyRanks: [EnergyRank] = []
    public var emptyLayers: [EmptyLayers] = []
    public var similarity: [Similarity] = []
    public var outliers: [Outliers] = []
    public var sinks: [Sinks] = []
    public var lowFrequency: [LowFrequency] = []

    /// Pairs with an undefined CKA or cosine, over every kind (report.html says they are not drawn).
    public var undefinedPairs: Int { similarity.reduce(0) { $0 + $1.undefinedMeasures } }

    /// The headline: "Reaching 90 % energy takes keys with …, values with …."; nil when no layer has energy.
    public var energyRankSentence: String? {
        energyRanks.isEmpty
            ? nil
            : "Reaching \(LevelLabel.percent(Findings.energyLevel)) energy takes "
                + energyRanks.map(\.phrase).joined(separator: ", ") + "."
    }

    /// Every finding in summary.md's order: the headline, empty layers, similarity, then outliers, sinks and
    /// low frequencies kind by kind.
    public var sentences: [String] {
        var out: [String] = energyRankSentence.map { [$0] } ?? []
        out += emptyLayers.map(\.sentence)
        for s in similarity { out += [s.alignmentSentence, s.undefinedSentence].compactMap { $0 } }
        for kind in TensorKind.allCases {
            out += outliers.filter { $0.kind == kind }.map(\.sentence)
            out += sinks.filter { $0.kind == kind }.map(\.sentence)
            out += lowFrequency.filter { $0.kind == kind }.map(\.sentence)
        }
        return out
    }

    /// The findings of `r`.
    public init(_ r: StatsReport) {
        let d = r.dump
        for kind in r.analysedKinds {
            let stats = r.layers.compactMap { $0.kinds[kind] }
            let ranks = stats.filter(\.hasEnergy).compactMap { $0.effectiveRank(at: Findings.energyLevel) }
            let channels = (kind == .query ? d.queryHeads ?? d.kvHeads : d.kvHeads) * d.headDim
            if !ranks.isEmpty, channels > 0 {
                energyRanks.append(
                    EnergyRank(
                        kind: kind, meanRank: Double(ranks.reduce(0, +)) / Double(ranks.count),
                        channels: channels, layers: ranks.count))
            }
            let empty = r.layers.filter { $0.kinds[kind]?.lacksEnergy ?? false }.map(\.layer)
            if !empty.isEmpty { emptyLayers.append(EmptyLayers(kind: kind, layers: empty, of: r.layers.count)) }
            if stats.contains(where: { $0.channels != nil }) {
                let counts = stats.map { $0.channels?.outliers?.count ?? 0 }
                outliers.append(
                    Outliers(
                        kind: kind, channels: counts.reduce(0, +), layersWith: counts.filter { $0 > 0 }.count,
                        of: r.layers.count, factor: r.options.outlierFactor))
            }
            var positions: [Int: Int] = [:]
            for s in stats { for sink in s.tokenNorms?.sinks ?? [] { positions[sink.token, default: 0] += 1 } }
            if let top = positions.min(by: { ($1.value, $0.key) < ($0.value, $1.key) }) {
                sinks.append(Sinks(kind: kind, position: top.key, hits: top.value, factor: r.options.outlierFactor))
            }
            let low = stats.compactMap { $0.frequency?.lowEnergy(below: Findings.lowFrequencyFraction) }
            if let lo = low.min(), let hi = low.max() {
                lowFrequency.append(
                    LowFrequency(kind: kind, mean: low.reduce(0, +) / Double(low.count), min: lo, max: hi))
            }
        }
        for kind in r.similarityKinds {
            let pairs = r.pairs(of: kind)
            let cka = pairs.compactMap(\.cka)
            similarity.append(
                Similarity(
                    kind: kind, pairs: pairs.count, meanCKA: cka.isEmpty ? nil : cka.reduce(0, +) / Double(cka.count),
                    bestAligned: pairs.filter { $0.subspaceAlignment != nil }.max {
                        $0.subspaceAlignment! < $1.subspaceAlignment!
                    },
                    alignRank: r.options.alignRank, undefinedCKA: pairs.count - cka.count,
                    undefinedMeasures: pairs.filter { $0.cka == nil || $0.cosine == nil }.count))
        }
    }

    /// A share as a percentage with one decimal: 0.086 → "8.6 %".
    static func percent(_ x: Double) -> String { String(format: "%.1f %%", x * 100) }
    /// Fixed-point with `digits` decimals.
    static func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
}
