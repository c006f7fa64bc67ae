// The finished statistics, as written to stats.json (schema "kvstat.stats/2", docs/statistics.md). Values that
// are undefined for degenerate data (a ratio of zero energy, the kurtosis of a constant channel) are JSON null,
// never 0 or NaN, and each such case is named in the layer's `notes`.

/// Everything `kvstat analyze` reports.
public struct StatsReport: Codable, Sendable {
    public struct Channels: Codable, Sendable {
        public var maxAbs: [Double]
        public var mean: [Double]
        public var rms: [Double]
        /// Pearson kurtosis; null for a channel that is constant (up to float32 rounding).
        public var kurtosis: [Double?]
        public var medianMaxAbs: Double
        /// Channels with max |x| > outlier_factor × median_max_abs; null when that median is 0 (a ratio to zero
        /// is undefined).
        public var outliers: [Int]?
        enum CodingKeys: String, CodingKey {
            case mean, rms, kurtosis, outliers
            case maxAbs = "max_abs"
            case medianMaxAbs = "median_max_abs"
        }

        public init(
            maxAbs: [Double], mean: [Double], rms: [Double], kurtosis: [Double?], medianMaxAbs: Double,
            outliers: [Int]?
        ) {
            (self.maxAbs, self.mean, self.rms, self.kurtosis) = (maxAbs, mean, rms, kurtosis)
            (self.medianMaxAbs, self.outliers) = (medianMaxAbs, outliers)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(maxAbs, forKey: .maxAbs)
            try c.encode(mean, forKey: .mean)
            try c.encode(rms, forKey: .rms)
            try c.encode(kurtosis, forKey: .kurtosis)
            try c.encode(medianMaxAbs, forKey: .medianMaxAbs)
            try c.encode(outliers, forKey: .outliers)
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
        /// Null when no token has a non-zero norm.
        public var medianNorm: Double?
        public var sinks: [Sink]
        /// Tokens above the threshold in all (sinks lists at most 64).
        public var sinkCount: Int
        /// Tokens whose non-zero norm is below median_norm / outlier_factor (at most 64, smallest first), and how
        /// many in all; nil in reports written before they were kept.
        public var smallNorms: [Sink]? = nil
        public var smallNormCount: Int? = nil
        enum CodingKeys: String, CodingKey {
            case sinks
            case medianNorm = "median_norm"
            case sinkCount = "sink_count"
            case smallNorms = "small_norms"
            case smallNormCount = "small_norm_count"
        }

        public init(medianNorm: Double?, sinks: [Sink], sinkCount: Int) {
            (self.medianNorm, self.sinks, self.sinkCount) = (medianNorm, sinks, sinkCount)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(medianNorm, forKey: .medianNorm)
            try c.encode(sinks, forKey: .sinks)
            try c.encode(sinkCount, forKey: .sinkCount)
            try c.encode(smallNorms, forKey: .smallNorms)
            try c.encode(smallNormCount, forKey: .smallNormCount)
        }
    }

    public struct Frequency: Codable, Sendable {
        /// Keys from `EnergyFraction` ("0.0625", "0.125", "0.25", "0.5"); null when there is no energy.
        public var lowEnergy: [String: Double]?
        /// Null when there is no energy.
        public var spectrum: [Double]?
        enum CodingKeys: String, CodingKey {
            case spectrum
            case lowEnergy = "low_energy"
        }

        public init(lowEnergy: [String: Double]?, spectrum: [Double]?) {
            (self.lowEnergy, self.spectrum) = (lowEnergy, spectrum)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(lowEnergy, forKey: .lowEnergy)
            try c.encode(spectrum, forKey: .spectrum)
        }
    }

    /// Mean |x| by token-position bucket (`PositionProfile`), non-empty buckets only.
    public struct PositionProfile: Codable, Sendable {
        /// First position of each bucket: 0, 1, 2, 4, 8, …
        public var bucketStart: [Int]
        public var tokens: [Int]
        /// Mean |x| over the bucket's tokens and every channel.
        public var meanAbs: [Double]
        /// Per bucket, mean |x| per head (over the head's channels).
        public var headMeanAbs: [[Double]]
        enum CodingKeys: String, CodingKey {
            case tokens
            case bucketStart = "bucket_start"
            case meanAbs = "mean_abs"
            case headMeanAbs = "head_mean_abs"
        }
    }

    /// One layer's statistics of one tensor kind. Every key is written; a statistic that was not computed
    /// (its section not selected) or is undefined for this data is null, and `notes` says which and why.
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
        public var positionProfile: PositionProfile?
        /// Degenerate conditions met (zero energy, no finite rows, constant channels, …), one sentence each.
        public var notes: [String]
        enum CodingKeys: String, CodingKey {
            case tokens, channels, frequency, notes
            case nonFinite = "non_finite"
            case singularValues = "singular_values"
            case effectiveRank = "effective_rank"
            case stableRank = "stable_rank"
            case entropyRank = "entropy_rank"
            case headSingularValues = "head_singular_values"
            case headEffectiveRank = "head_effective_rank"
            case tokenNorms = "token_norms"
            case positionProfile = "position_profile"
        }

        public init(tokens: Int, nonFinite: Int) {
            self.tokens = tokens
            self.nonFinite = nonFinite
            notes = []
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            tokens = try c.decode(Int.self, forKey: .tokens)
            nonFinite = try c.decode(Int.self, forKey: .nonFinite)
            singularValues = try c.decodeIfPresent([Double].self, forKey: .singularValues)
            effectiveRank = try c.decodeIfPresent([String: Int].self, forKey: .effectiveRank)
            stableRank = try c.decodeIfPresent(Double.self, forKey: .stableRank)
            entropyRank = try c.decodeIfPresent(Double.self, forKey: .entropyRank)
            headSingularValues = try c.decodeIfPresent([[Double]].self, forKey: .headSingularValues)
            headEffectiveRank = try c.decodeIfPresent([String: [Int]].self, forKey: .headEffectiveRank)
            channels = try c.decodeIfPresent(Channels.self, forKey: .channels)
            tokenNorms = try c.decodeIfPresent(Tokens.self, forKey: .tokenNorms)
            frequency = try c.decodeIfPresent(Frequency.self, forKey: .frequency)
            positionProfile = try c.decodeIfPresent(PositionProfile.self, forKey: .positionProfile)
            notes = try c.decodeIfPresent([String].self, forKey: .notes) ?? []
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(tokens, forKey: .tokens)
            try c.encode(nonFinite, forKey: .nonFinite)
            try c.encode(singularValues, forKey: .singularValues)
            try c.encode(effectiveRank, forKey: .effectiveRank)
            try c.encode(stableRank, forKey: .stableRank)
            try c.encode(entropyRank, forKey: .entropyRank)
            try c.encode(headSingularValues, forKey: .headSingularValues)
            try c.encode(headEffectiveRank, forKey: .headEffectiveRank)
            try c.encode(channels, forKey: .channels)
            try c.encode(tokenNorms, forKey: .tokenNorms)
            try c.encode(frequency, forKey: .frequency)
            try c.encode(positionProfile, forKey: .positionProfile)
            try c.encode(notes, forKey: .notes)
        }
    }

    public struct Layer: Codable, Sendable {
        /// The layer's number in the dump.
        public var layer: Int
        public var kinds: [TensorKind: KindStats]

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: DynamicKey.self)
            try c.encode(layer, forKey: DynamicKey("layer"))
            for kind in kinds.keys.sorted() { try c.encode(kinds[kind]!, forKey: DynamicKey(kind.rawValue)) }
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

    /// The similarity of one computed layer pair (adjacent pairs by default, every pair with --all-pairs).
    /// A measure is null where it is undefined: CKA when either layer has no spread (zero centred energy),
    /// the mean cosine when no token has both rows non-zero, the alignments when either layer has no
    /// non-zero singular value.
    public struct Pair: Codable, Sendable, Equatable {
        /// Layer numbers in the dump, layerA < layerB in analysis order.
        public var layerA: Int
        public var layerB: Int
        public var cosine: Double?
        public var cka: Double?
        public var subspaceAlignment: Double?
        public var channelAlignment: Double?
        /// Why the measures are null, when a condition of the pair (not of either layer) makes them undefined.
        public var note: String?
        enum CodingKeys: String, CodingKey {
            case cosine, cka, note
            case layerA = "layer_a"
            case layerB = "layer_b"
            case subspaceAlignment = "subspace_alignment"
            case channelAlignment = "channel_alignment"
        }

        public init(
            layerA: Int, layerB: Int, cosine: Double?, cka: Double?, subspaceAlignment: Double?,
            channelAlignment: Double?
        ) {
            (self.layerA, self.layerB, self.cosine, self.cka) = (layerA, layerB, cosine, cka)
            (self.subspaceAlignment, self.channelAlignment) = (subspaceAlignment, channelAlignment)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(layerA, forKey: .layerA)
            try c.encode(layerB, forKey: .layerB)
            try c.encode(cosine, forKey: .cosine)
            try c.encode(cka, forKey: .cka)
            try c.encode(subspaceAlignment, forKey: .subspaceAlignment)
            try c.encode(channelAlignment, forKey: .channelAlignment)
            try c.encode(note, forKey: .note)
        }
    }

    public static let schemaName = "kvstat.stats/2"

    public var schema = StatsReport.schemaName
    public var kvstatVersion: String
    public var options: AnalysisOptions
    public var dump: DumpSummary
    /// Every dump merged into these statistics (one for a plain run).
    public var sources: [String]
    /// Per tensor kind, how many different dumps its statistics hold (`AnalysisState.dumps(of:)`): dumps of one
    /// model with and without queries merge on the kinds they share, so a corpus may hold keys of 3 dumps and
    /// queries of 1. Nil in reports written before it was recorded.
    public var dumpsPerKind: [String: Int]? = nil
    public var layerNumbers: [Int]
    public var layers: [Layer]
    /// Kind (`key`, `value`, `key_pre_rope`) → the computed layer pairs, in analysis order. A list rather than
    /// an L×L matrix, so the file grows with the pairs computed, not with the square of the layer count.
    public var similarity: [String: [Pair]]
    /// Attention-mass sinks (`AttentionMass`); nil in reports written before they were measured.
    public var attentionSinks: AttentionSinks? = nil

    enum CodingKeys: String, CodingKey {
        case schema, options, dump, sources, layers, similarity
        case attentionSinks = "attention_sinks"
        case dumpsPerKind = "dumps_per_kind"
        case kvstatVersion = "kvstat_version"
        case layerNumbers = "layer_numbers"
    }

    public init(
        kvstatVersion: String, options: AnalysisOptions, dump: DumpSummary, sources: [String], layerNumbers: [Int],
        layers: [Layer], similarity: [String: [Pair]]
    ) {
        (self.kvstatVersion, self.options, self.dump, self.sources) = (kvstatVersion, options, dump, sources)
        (self.layerNumbers, self.layers, self.similarity) = (layerNumbers, layers, similarity)
    }
}

/// JSON keys of energy levels and frequency fractions: 0.9 → "0.9", 0.0625 → "0.0625" (Swift's shortest
/// round-tripping decimal). Every reader and writer of those keys goes through here.
public enum EnergyFraction {
    public static func key(_ value: Double) -> String { "\(value)" }
}

struct DynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
