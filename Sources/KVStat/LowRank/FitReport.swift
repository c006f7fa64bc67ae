// What `kvstat fit-lowrank` records in manifest.json (schema "kvstat.fit/1") and fit.csv: the method and
// its parameters, every projection's rank, memory accounting, and errors on fit and held-out tokens.

/// The manifest of a fit.
public struct FitReport: Codable, Sendable {
    public struct Source: Codable, Sendable {
        public var path: String
        public var sha256: String?
        /// The tokens read: those of `selection` when there is one.
        public var tokens: Int
        /// The part of the dump read (`--sequences`, `--tokens`) in stats.json's words ("sequences 0-3, tokens
        /// 0:4096"); absent for the whole dump. The numbers are `options.sequences` and `options.token_range`.
        public var selection: String? = nil
    }

    /// One projection of the artifact.
    public struct Unit: Codable, Sendable {
        public var name: String
        public var kind: String
        public var layers: [Int]
        public var heads: [Int]?
        public var dimension: Int
        /// The rank the budget gives (the first `rank` columns of the stored projection).
        public var rank: Int
        /// Columns stored (matryoshka: the widest rung of the ladder; otherwise `rank`).
        public var storedRank: Int
        /// Fraction of the fitted energy left out at `rank`.
        public var residualEnergy: Double
        enum CodingKeys: String, CodingKey {
            case name, kind, layers, heads, dimension, rank
            case storedRank = "stored_rank"
            case residualEnergy = "residual_energy"
        }
    }

    /// Relative Frobenius errors of one evaluation (fit tokens, held-out tokens or another dump).
    public struct Errors: Codable, Sendable {
        public var tokens: Int
        /// kind → one value per fitted layer, in `layers` order; null where undefined (zero energy).
        public var perLayer: [String: [Double?]]
        /// Root mean square over the layers where it is defined, per kind and over both ("all"); null when none.
        public var overall: [String: Double?]
        /// `kvstat eval --sequences/--tokens`: the part of the dump evaluated, as stats.json's `dump` records it
        /// (`selection` in words, `selected_sequences`, `selected_tokens` as numbers, the end clamped to the
        /// dump's positions); absent for the whole dump, and in manifests, whose `source.selection` and
        /// `options` say it.
        public var selection: String? = nil
        public var selectedSequences: [Int]? = nil
        public var selectedTokens: [Int]? = nil
        enum CodingKeys: String, CodingKey {
            case tokens, overall, selection
            case perLayer = "per_layer"
            case selectedSequences = "selected_sequences"
            case selectedTokens = "selected_tokens"
        }
    }

    /// xKV: the calibrated projection's error beside the online optimum (an SVD of the evaluated tokens
    /// themselves with both factors stored, at the same memory).
    public struct OnlineComparison: Codable, Sendable {
        public var kind: String
        public var layers: [Int]
        public var rank: Int
        public var onlineRank: Int
        /// Null when the group has no energy.
        public var fixedError: Double?
        public var onlineError: Double?
        enum CodingKeys: String, CodingKey {
            case kind, layers, rank
            case onlineRank = "online_rank"
            case fixedError = "fixed_error"
            case onlineError = "online_error"
        }
    }

    /// One rung of a ladder (matryoshka budgets, or a `--sweep` point).
    public struct Rung: Codable, Sendable {
        public var method: String
        public var keepRatio: Double
        /// Stored 16-bit units per token ÷ original, as measured (window and quantization included).
        public var memoryRatio: Double
        /// Null when every layer's error is undefined (zero energy).
        public var fitError: Double?
        public var heldOutError: Double?
        /// Matryoshka: the rank of every unit, in `units` order.
        public var ranks: [Int]?
        /// `--sweep` quantization points (`QuantizationSweep`) on dumps with queries: the RMS over layers of the
        /// relative attention-output error, on the evaluated tokens; nil where not computed.
        public var attentionOutputError: Double? = nil
        enum CodingKeys: String, CodingKey {
            case method, ranks
            case keepRatio = "keep_ratio"
            case memoryRatio = "memory_ratio"
            case fitError = "fit_error"
            case heldOutError = "held_out_error"
            case attentionOutputError = "attention_output_error"
        }
    }

    public var schema = "kvstat.fit/1"
    public var kvstatVersion: String
    public var command: [String]
    public var method: String
    public var options: FitOptions
    public var source: Source
    public var split: String
    public var layers: [Int]
    public var layerGroups: [[Int]]
    public var units: [Unit]
    /// Stored 16-bit units per token ÷ original (projection matrices excluded).
    public var memoryRatio: Double
    /// 1 / memoryRatio.
    public var compression: Double
    /// Bytes of the projection matrices and means (float32), a fixed cost whatever the token count.
    public var fixedCostBytes: Int
    public var fit: Errors
    public var heldOut: Errors?
    /// Errors on `--eval OTHER.h5`.
    public var external: Errors?
    public var externalSource: Source?
    /// Attention logits and outputs with rebuilt keys and values, per layer (dumps with queries; evaluated
    /// on the held-out tokens when there are any).
    public var attention: AttentionErrors?
    public var online: [OnlineComparison]?
    /// xKV: each group's shuffled-token null beside the grouped and per-layer fits at equal memory.
    public var xkvNull: [ShuffledNull.Control]? = nil
    /// Matryoshka: every budget of the ladder, from the one fit.
    public var ladder: [Rung]?
    /// `--sweep`: every method at every keep ratio of the ladder (priced from Grams).
    public var sweep: [Rung]?
    public var notes: [String]
    /// The shape of the model the projections were fitted on (`FitModel`), checked by `kvstat eval` and
    /// `fit-lowrank --eval`; nil in manifests written before it was recorded.
    public var model: FitModel? = nil
    /// `--keys pre-rope`: the RoPE applied to the rebuilt pre-RoPE keys and where its parameters came from;
    /// nil for post-RoPE fits. Their errors then hold `key_pre_rope` (before RoPE) and `key` (after RoPE).
    public var rope: RopeReport? = nil
    /// `--keep-sinks`: the sink positions kept exact per sequence and the rule that chose them; nil without.
    public var keepSinks: KeepSinks? = nil
    /// `--keep-sinks` on a dump with queries: `attention` recomputed with the same projections rebuilding the
    /// sink rows too (the sinks not kept), from the same streaming pass; nil without sinks.
    public var attentionWithoutSinks: AttentionErrors? = nil

    enum CodingKeys: String, CodingKey {
        case schema, command, method, options, source, split, layers, units, fit, attention, online, ladder, sweep,
            notes, compression, external
        case model, rope
        case kvstatVersion = "kvstat_version"
        case layerGroups = "layer_groups"
        case memoryRatio = "memory_ratio"
        case fixedCostBytes = "fixed_cost_bytes"
        case heldOut = "held_out"
        case externalSource = "external_source"
        case xkvNull = "xkv_null"
        case keepSinks = "keep_sinks"
        case attentionWithoutSinks = "attention_without_sinks"
    }
}
