// The finished attention-mass sinks (stats.json `attention_sinks`): per layer the key positions that take the
// largest share of attention, each head's top position, and whether the same position tops every layer, with
// the key and value norms of those positions against the layer's median (a sink's norm may be small).
import Foundation

extension StatsReport {
    /// Attention-mass sinks of the analysed layers (`AttentionMass`); `judged` false (and `note` saying why)
    /// when the dump has no queries, `--sink-queries 0`, the outliers section is off, or the statistics come from
    /// state files (which do not keep them).
    public struct AttentionSinks: Codable, Sendable {
        public var judged: Bool
        public var note: String?
        public var causal: Bool
        public var queriesPerSequence: Int
        public var minQueryPosition: Int
        public var layers: [SinkLayer]
        /// Every position that is the top position of some layer, most layers first.
        public var topPositions: [TopPosition]

        enum CodingKeys: String, CodingKey {
            case judged, note, causal, layers
            case queriesPerSequence = "queries_per_sequence"
            case minQueryPosition = "min_query_position"
            case topPositions = "top_positions"
        }

        public init(
            judged: Bool, note: String?, causal: Bool, queriesPerSequence: Int, layers: [SinkLayer],
            topPositions: [TopPosition]
        ) {
            (self.judged, self.note, self.causal, self.queriesPerSequence) = (judged, note, causal, queriesPerSequence)
            (self.minQueryPosition, self.layers, self.topPositions) = (
                AttentionMass.minQueryPosition, layers, topPositions
            )
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(judged, forKey: .judged)
            try c.encode(note, forKey: .note)
            try c.encode(causal, forKey: .causal)
            try c.encode(queriesPerSequence, forKey: .queriesPerSequence)
            try c.encode(minQueryPosition, forKey: .minQueryPosition)
            try c.encode(layers, forKey: .layers)
            try c.encode(topPositions, forKey: .topPositions)
        }
    }

    /// One key position's share of a layer's attention.
    public struct PositionShare: Codable, Sendable, Equatable {
        public var position: Int
        /// Mean attention weight it receives over the sampled (query, head) rows.
        public var share: Double
        /// The share it would take if every sampled query attended evenly to the keys it sees.
        public var uniformShare: Double
        /// Its mean key (value) norm over sequences / the layer's median key (value) token norm; null when the
        /// median is unknown (outliers of that kind not computed, or every norm zero).
        public var keyNormRatio: Double?
        public var valueNormRatio: Double?

        enum CodingKeys: String, CodingKey {
            case position, share
            case uniformShare = "uniform_share"
            case keyNormRatio = "key_norm_ratio"
            case valueNormRatio = "value_norm_ratio"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(position, forKey: .position)
            try c.encode(share, forKey: .share)
            try c.encode(uniformShare, forKey: .uniformShare)
            try c.encode(keyNormRatio, forKey: .keyNormRatio)
            try c.encode(valueNormRatio, forKey: .valueNormRatio)
        }
    }

    /// A query head's top key position.
    public struct HeadSink: Codable, Sendable, Equatable {
        public var head: Int
        public var position: Int
        public var share: Double
    }

    public struct SinkLayer: Codable, Sendable {
        public var layer: Int
        /// Sampled queries counted (over every sequence).
        public var queries: Int
        /// The `AttentionMass.topCount` positions with the largest share, largest first.
        public var top: [PositionShare]
        /// Per query head, its top position.
        public var heads: [HeadSink]
    }

    /// A position that is the top position of some layers.
    public struct TopPosition: Codable, Sendable, Equatable {
        public var position: Int
        /// The layers (numbers) it tops, and its smallest and largest share there.
        public var layers: [Int]
        public var minShare: Double
        public var maxShare: Double

        enum CodingKeys: String, CodingKey {
            case position, layers
            case minShare = "min_share"
            case maxShare = "max_share"
        }
    }
}

extension AttentionMass {
    /// Positions listed per layer.
    public static let topCount = 4

    /// The report of attention sinks not measured, saying why.
    public static func unjudged(_ note: String, options: AnalysisOptions) -> StatsReport.AttentionSinks {
        StatsReport.AttentionSinks(
            judged: false, note: note, causal: options.causal, queriesPerSequence: options.sinkQueries, layers: [],
            topPositions: [])
    }

    /// The report of the measured layers (their shares were finished as each was measured, see `Layer`), with
    /// the norm ratios: a top position's mean norm over sequences / the layer's median. `keyMedians`/
    /// `valueMedians`: layer number → median token norm of that kind (`TokenNormSketch`).
    public func finish(keyMedians: [Int: Double], valueMedians: [Int: Double]) -> StatsReport.AttentionSinks {
        if let note {
            return StatsReport.AttentionSinks(
                judged: false, note: note, causal: causal, queriesPerSequence: queriesPerSequence, layers: [],
                topPositions: [])
        }
        var sinkLayers: [StatsReport.SinkLayer] = []
        var tops: [Int: [(layer: Int, share: Double)]] = [:]
        for l in layers {
            let ratio = { (sum: Double, count: Int, median: Double?) -> Double? in
                guard let median, median > 0, count > 0 else { return nil }
                let r = sum / Double(count) / median
                return r.isFinite ? r : nil
            }
            let top = l.top.map { t in
                StatsReport.PositionShare(
                    position: t.position, share: t.share, uniformShare: t.uniformShare,
                    keyNormRatio: ratio(t.keyNormSum, t.keyCount, keyMedians[l.layer]),
                    valueNormRatio: ratio(t.valueNormSum, t.valueCount, valueMedians[l.layer]))
            }
            if let first = top.first { tops[first.position, default: []].append((l.layer, first.share)) }
            sinkLayers.append(StatsReport.SinkLayer(layer: l.layer, queries: l.queries, top: top, heads: l.heads))
        }
        let topPositions = tops.map { position, hits in
            StatsReport.TopPosition(
                position: position, layers: hits.map(\.layer), minShare: hits.map(\.share).min()!,
                maxShare: hits.map(\.share).max()!)
        }.sorted { $0.layers.count != $1.layers.count ? $0.layers.count > $1.layers.count : $0.position < $1.position }
        return StatsReport.AttentionSinks(
            judged: true, note: nil, causal: causal, queriesPerSequence: queriesPerSequence, layers: sinkLayers,
            topPositions: topPositions)
    }
}
