// The finished statistics, as written to stats.json (schema "kvstat.stats/1", docs/statistics.md).

/// Everything `kvstat analyze` reports.
public struct StatsReport: Codable, Sendable {
    public struct Channels: Codable, Sendable {
        public var maxAbs: [Double]
        public var mean: [Double]
        public var rms: [Double]
        public var kurtosis: [Double]
        public var medianMaxAbs: Double
        /// Channels with max |x| > outlier_factor × median_max_abs.
        public var outliers: [Int]
        enum CodingKeys: String, CodingKey {
            case mean, rms, kurtosis, outliers
            case maxAbs = "max_abs", medianMaxAbs = "median_max_abs"
        }
    }

    public struct Sink: Codable, Sendable {
        public var sequence: Int
        public var token: Int
        public var norm: Double
        /// norm / median token norm.
        public var ratio: Double
    }

    public struct Tokens: Codable, Sendable {
        public var medianNorm: Double
        public var sinks: [Sink]
        /// Tokens above the threshold in all (sinks lists at most 64).
        public var sinkCount: Int
        enum CodingKeys: String, CodingKey {
            case sinks
            case medianNorm = "median_norm", sinkCount = "sink_count"
        }
    }

    public struct Frequency: Codable, Sendable {
        /// Keys "0.0625", "0.125", "0.25", "0.5".
        public var lowEnergy: [String: Double]
        public var spectrum: [Double]
        enum CodingKeys: String, CodingKey {
            case spectrum
            case lowEnergy = "low_energy"
        }
    }

    public struct KindStats: Codable, Sendable {
        public var tokens: Int
        public var nonFinite: Int
        public var singularValues: [Double]?
        public var effectiveRank: [String: Int]?
        public var stableRank: Double?
        public var entropyRank: Double?
        public var headSingularValues: [[Double]]?
        public var headEffectiveRank: [String: [Int]]?
        public var channels: Channels?
        public var tokenNorms: Tokens?
        public var frequency: Frequency?
        enum CodingKeys: String, CodingKey {
            case tokens, channels, frequency
            case nonFinite = "non_finite", singularValues = "singular_values", effectiveRank = "effective_rank"
            case stableRank = "stable_rank", entropyRank = "entropy_rank", headSingularValues = "head_singular_values"
            case headEffectiveRank = "head_effective_rank", tokenNorms = "token_norms"
        }
    }

    public struct Layer: Codable, Sendable {
        public var layer: Int
        public var kinds: [TensorKind: KindStats]

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: DynamicKey.self)
            try c.encode(layer, forKey: DynamicKey("layer"))
            for (kind, stats) in kinds { try c.encode(stats, forKey: DynamicKey(kind.rawValue)) }
        }

        public init(layer: Int, kinds: [TensorKind: KindStats]) {
            self.layer = layer
            self.kinds = kinds
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: DynamicKey.self)
            layer = try c.decode(Int.self, forKey: DynamicKey("layer"))
            var kinds: [TensorKind: KindStats] = [:]
            for kind in TensorKind.allCases where c.contains(DynamicKey(kind.rawValue)) {
                kinds[kind] = try c.decode(KindStats.self, forKey: DynamicKey(kind.rawValue))
            }
            self.kinds = kinds
        }
    }

    /// L×L matrices over the analysed layers; null where a pair was not computed (adjacent pairs by default).
    public struct Similarity: Codable, Sendable {
        public var cosine: [[Double?]]
        public var cka: [[Double?]]
        public var subspaceAlignment: [[Double?]]
        public var channelAlignment: [[Double?]]
        enum CodingKeys: String, CodingKey {
            case cosine, cka
            case subspaceAlignment = "subspace_alignment", channelAlignment = "channel_alignment"
        }
    }

    public var schema = "kvstat.stats/1"
    public var kvstatVersion: String
    public var options: AnalysisOptions
    public var dump: DumpSummary
    /// Every dump merged into these statistics (one for a plain run).
    public var sources: [String]
    public var layerNumbers: [Int]
    public var layers: [Layer]
    public var similarity: [String: Similarity]

    enum CodingKeys: String, CodingKey {
        case schema, options, dump, sources, layers, similarity
        case kvstatVersion = "kvstat_version", layerNumbers = "layer_numbers"
    }
}

struct DynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
