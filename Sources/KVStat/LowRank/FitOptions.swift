// What `kvstat fit-lowrank` fits and how: method, granularity, budget, centring, xKV groups, CSKV's window
// and quantization, the held-out split and the ladder of budgets.

/// The projection styles of the papers kvstat follows.
public enum FitMethod: String, Sendable, Codable, CaseIterable {
    /// One orthonormal channel projection per layer, head or group of heads (CSKV's channel shrinking, Palu).
    case pca
    /// xKV: one projection shared by a group of adjacent layers, fitted on their concatenated channels.
    case xkv
    /// MatryoshkaKV-style nested per-head projections, ranks allocated across layers, heads and kinds.
    case matryoshka
    /// CSKV: per-layer projections, a recent-token window kept full, optionally quantized latents.
    case cskv
}

/// What one projection covers within a layer. Coded as its text (`layer`, `head`, `group:N`).
public enum Granularity: Sendable, Equatable, Codable, CustomStringConvertible {
    case layer
    case head
    /// Groups of this many adjacent heads.
    case headGroup(Int)

    /// Parses `layer`, `head` or `group:N`.
    public init?(_ text: String) {
        switch text {
        case "layer": self = .layer
        case "head": self = .head
        default:
            guard text.hasPrefix("group:"), let n = Int(text.dropFirst(6)), n > 0 else { return nil }
            self = .headGroup(n)
        }
    }

    public var description: String {
        switch self {
        case .layer: return "layer"
        case .head: return "head"
        case .headGroup(let n): return "group:\(n)"
        }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Granularity(text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "granularity '\(text)'"))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// Heads per projection for a layer of `heads` heads.
    public func headsPerUnit(of heads: Int) -> Int {
        switch self {
        case .layer: return heads
        case .head: return 1
        case .headGroup(let n): return min(n, heads)
        }
    }
}

/// How many latent dimensions to keep. Coded as one key: `{"rank": r}`, `{"keep_ratio": q}`, `{"energy": e}`.
public enum Budget: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The same rank for every projection.
    case rank(Int)
    /// Stored floats per token ÷ original floats per token (xKV: G·q·channels dims per group of G layers).
    case keepRatio(Double)
    /// Per projection, the smallest rank reaching this fraction of the fitted energy.
    case energy(Double)

    public var description: String {
        switch self {
        case .rank(let r): return "rank \(r)"
        case .keepRatio(let q): return "keep ratio \(q)"
        case .energy(let e): return "energy \(e)"
        }
    }

    enum CodingKeys: String, CodingKey {
        case rank, energy
        case keepRatio = "keep_ratio"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let r = try c.decodeIfPresent(Int.self, forKey: .rank) {
            self = .rank(r)
        } else if let q = try c.decodeIfPresent(Double.self, forKey: .keepRatio) {
            self = .keepRatio(q)
        } else {
            self = .energy(try c.decode(Double.self, forKey: .energy))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .rank(let r): try c.encode(r, forKey: .rank)
        case .keepRatio(let q): try c.encode(q, forKey: .keepRatio)
        case .energy(let e): try c.encode(e, forKey: .energy)
        }
    }
}

/// Quantization of CSKV's latents (group-wise asymmetric, min/max, float16 scale and zero point per group).
public enum LatentQuantization: String, Sendable, Codable {
    case none, int8, int4

    /// Bits per latent value (16: stored as float16, like the original cache).
    public var bits: Int {
        switch self {
        case .none: return 16
        case .int8: return 8
        case .int4: return 4
        }
    }
}

/// Options of a fit.
public struct FitOptions: Sendable, Codable, Equatable {
    public var method: FitMethod = .pca
    public var granularity: Granularity = .layer
    public var budget: Budget = .keepRatio(0.25)
    /// Fit (X − 1μᵀ) and store μ.
    public var center = false
    /// xKV: layers per group.
    public var groupSize = 4
    /// CSKV: most recent tokens of each sequence kept in full precision.
    public var window = 0
    public var quantization = LatentQuantization.none
    /// Values per quantization group (tokens for key latents, latent dims for value latents).
    public var quantGroup = 32
    /// Fraction of sequences (or of tokens, for a single-sequence dump) held out for evaluation.
    public var holdout = 0.0
    /// Layers to fit (nil: all): numbers the dump has, resolved from a `--layers` list once the dump is open.
    public var layers: [Int]?
    /// Sequences to fit and evaluate on (nil: all), resolved like `layers` (`--sequences`; `TokenSelection`).
    public var sequences: [Int]?
    /// Token positions to fit and evaluate on in every sequence (nil: all; `--tokens`).
    public var tokenRange: Range<Int>?
    /// Keep ratios of the matryoshka ladder and of `--sweep`.
    public var ladder: [Double] = [0.125, 0.25, 0.375, 0.5, 0.75]
    /// Query positions per sequence sampled for attention-level errors (when the dump has queries).
    public var attentionQueries = 64
    /// Causal mask for attention-level errors.
    public var causal = true
    /// Token rows per block (> 0); a larger value than the tokens read is clipped to them (`BlockPlan`).
    public var blockTokens = TokenBlockReader.defaultBlockTokens
    /// Keys fitted (`--keys`): nil or `.postRope`, the dump's keys; `.preRope`, its pre-RoPE keys, evaluated
    /// before and after RoPE (`RotaryEmbedding`).
    public var keys: KeySpace?
    /// `--rope-theta`, `--rope-style`, `--rotary-dim`: override the dump's RoPE attributes (pre-RoPE fits).
    public var ropeTheta: Double?
    public var ropeStyle: RotaryEmbedding.Style?
    public var rotaryDim: Int?
    /// `--keep-sinks K`: K sink positions per sequence kept exact (`KeepSinks`); nil (absent from the manifest)
    /// for 0, so manifests without it read as before.
    public var keepSinks: Int?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case method, granularity, budget, center, window, quantization, holdout, layers, ladder, causal, sequences
        case tokenRange = "token_range"
        case groupSize = "group_size"
        case quantGroup = "quant_group"
        case attentionQueries = "attention_queries"
        case blockTokens = "block_tokens"
        case keys
        case ropeTheta = "rope_theta"
        case ropeStyle = "rope_style"
        case rotaryDim = "rotary_dim"
        case keepSinks = "keep_sinks"
    }
}

extension FitOptions {
    /// `sequences` and `tokenRange` as one selection: the tokens a fit reads, as analyze selects them.
    public var selection: TokenSelection {
        get { TokenSelection(sequences: sequences, tokenRange: tokenRange) }
        set { (sequences, tokenRange) = (newValue.sequences, newValue.tokenRange) }
    }
}

extension FitOptions {
    /// Sink positions kept exact per sequence (`--keep-sinks`; 0: none).
    public var sinkCount: Int { keepSinks ?? 0 }

    /// Whether the keys fitted are the pre-RoPE keys (`--keys pre-rope`).
    public var preRopeKeys: Bool { keys == .preRope }

    /// The RoPE overrides of the command line.
    public var ropeOverrides: RopeOverrides { RopeOverrides(theta: ropeTheta, style: ropeStyle, rotaryDim: rotaryDim) }
}
