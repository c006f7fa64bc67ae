// The tables summary.md prints, as typed rows: one per layer and kind (ranks, stable rank, outliers, sinks,
// low-frequency energy) and one per computed layer pair (CKA, cosine, subspace alignment per kind).
import KVStat

/// One kind's row for one layer; nil where the statistic was not computed or is undefined.
public struct LayerRow: Sendable {
    /// The layer's number in the dump.
    public var layer: Int
    /// Energy effective ranks at `LayerTable.energyLevels`.
    public var ranks: [Int?]
    public var stableRank: Double?
    public var outlierChannels: Int?
    public var sinks: Int?
    /// Energy share of the lowest `Findings.lowFrequencyFraction` of DCT frequencies.
    public var lowEnergy: Double?
}

/// The per-layer table of one kind.
public struct LayerTable: Sendable {
    /// The energy levels whose effective ranks the table shows (90 % and 99 %).
    public static let energyLevels = [0.9, 0.99]

    public var kind: TensorKind
    /// Every analysed layer that has statistics of this kind, in analysis order.
    public var rows: [LayerRow]

    /// The tables of every analysed kind of `r`, in canonical order.
    public static func tables(_ r: StatsReport) -> [LayerTable] {
        r.analysedKinds.map { kind in
            LayerTable(
                kind: kind,
                rows: r.layers.compactMap { layer in
                    layer.kinds[kind].map { s in
                        LayerRow(
                            layer: layer.layer, ranks: energyLevels.map { s.effectiveRank(at: $0) },
                            stableRank: s.stableRank,
                            outlierChannels: s.channels?.outliers?.count, sinks: s.tokenNorms?.sinkCount,
                            lowEnergy: s.frequency?.lowEnergy(below: Findings.lowFrequencyFraction))
                    }
                })
        }
    }
}

/// The computed layer pairs with each similarity kind's measures side by side.
public struct SimilarityTable: Sendable {
    /// The measures of one pair and kind; nil where undefined (or the kind lacks the pair).
    public struct Cell: Sendable {
        public var cka: Double?
        public var cosine: Double?
        public var subspaceAlignment: Double?
    }

    public struct Row: Sendable {
        public var layerA: Int
        public var layerB: Int
        /// One cell per kind of `SimilarityTable.kinds`.
        public var cells: [Cell]
    }

    /// The kinds with computed pairs, in canonical order (the column groups).
    public var kinds: [TensorKind]
    /// Every computed pair, in analysis order (the first kind's order, then pairs only later kinds have).
    public var rows: [Row]

    /// The table of `r`'s computed pairs; nil when there are none.
    public init?(_ r: StatsReport) {
        kinds = r.similarityKinds
        guard !kinds.isEmpty else { return nil }
        var order: [[Int]] = []
        var seen = Set<[Int]>()
        let byKind = kinds.map { kind in
            Dictionary(r.pairs(of: kind).map { ([$0.layerA, $0.layerB], $0) }, uniquingKeysWith: { a, _ in a })
        }
        for kind in kinds {
            for p in r.pairs(of: kind) where seen.insert([p.layerA, p.layerB]).inserted {
                order.append([p.layerA, p.layerB])
            }
        }
        rows = order.map { key in
            Row(
                layerA: key[0], layerB: key[1],
                cells: byKind.map { pairs in
                    let p = pairs[key]
                    return Cell(cka: p?.cka, cosine: p?.cosine, subspaceAlignment: p?.subspaceAlignment)
                })
        }
    }
}
