// What `kvstat analyze` computes and how: sections, layers, centring, ranks, thresholds, block sizes.

/// The statistics groups `--only` selects.
public enum AnalysisSection: String, Sendable, Codable, CaseIterable {
    case spectra, similarity, outliers, frequency
}

/// Which layer pairs get cross-layer statistics.
public enum LayerPairs: String, Sendable, Codable {
    /// (l, l+1): one cross product per layer, the default.
    case adjacent
    /// Every pair: L(L−1)/2 cross products of channels² float64 each, and one block per layer held at once.
    case all
}

/// Options of an analysis run.
public struct AnalysisOptions: Sendable, Codable, Equatable {
    public var sections: Set<AnalysisSection> = Set(AnalysisSection.allCases)
    /// Layers to analyse (nil: all), in increasing order: numbers the dump has, resolved from a `--layers` list
    /// (`IndexList.resolve`) once the dump is open, so their count never exceeds the dump's layers.
    public var layers: [Int]?
    /// Sequences (batch rows) to analyse (nil: all), in increasing order, resolved like `layers`.
    public var sequences: [Int]?
    /// Token positions to analyse in every sequence (nil: all). Splitting a dump into position ranges and
    /// merging the states reproduces the whole except for the DCT, whose windows then end at the split
    /// unless the split falls on a `dctWindow` boundary.
    public var tokenRange: Range<Int>?
    /// Column-centre X before the SVD (spectra and subspace alignment). CKA is always centred.
    public var center = false
    /// r of the subspace alignments.
    public var alignRank = 32
    /// A channel is an outlier when its max |x| exceeds this × the median channel's; a token is a sink when its
    /// norm exceeds this × the median token norm.
    public var outlierFactor = 6.0
    /// DCT window in tokens (nil: each sequence whole).
    public var dctWindow: Int?
    /// Token rows per block (> 0); a larger value than the tokens read is clipped to them (`BlockPlan`).
    public var blockTokens = TokenBlockReader.defaultBlockTokens
    public var pairs = LayerPairs.adjacent
    /// Largest panel (window tokens × channels × 4 bytes) the frequency pass reads at once; wider layers are
    /// transformed a group of heads at a time.
    public var frequencyPanelBytes = 32 << 20
    /// `--xkv-groups G`: also accumulate, for keys, values and pre-RoPE keys, the Gram of each group of G
    /// consecutive analysed layers side by side (`XKVGroupFolder`), for `fit-lowrank STATE --method xkv
    /// --group-size G`. nil (the default) computes and saves nothing more.
    public var xkvGroupSize: Int?
    /// `--sink-queries N`: query positions sampled per sequence for the attention-mass sinks (`AttentionMass`;
    /// dumps with queries, outliers section); 0 skips them.
    public var sinkQueries = 64
    /// Causal mask for the attention-mass sinks (keys after a query are masked); `--no-causal` for encoders.
    public var causal = true

    public init() {}

    /// What is out of range in these options (a decoded state file's, say), or nil: the same bounds the CLI
    /// enforces on its flags.
    public var problem: String? {
        if !(1...1_000_000).contains(alignRank) { return "align_rank \(alignRank)" }
        if !(outlierFactor.isFinite && outlierFactor > 0) { return "outlier_factor \(outlierFactor)" }
        if let dctWindow, dctWindow < 2 { return "dct_window \(dctWindow)" }
        if blockTokens < 1 { return "block_tokens \(blockTokens)" }
        if frequencyPanelBytes < 1 { return "frequency_panel_bytes \(frequencyPanelBytes)" }
        if let layers, layers.isEmpty { return "an empty layer list" }
        if let g = xkvGroupSize, !(2...XKVGrouping.maxGroupSize).contains(g) { return "xkv_group_size \(g)" }
        if !(0...1_000_000).contains(sinkQueries) { return "sink_queries \(sinkQueries)" }
        return nil
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sections = Set(try c.decode([AnalysisSection].self, forKey: .sections))
        layers = try c.decodeIfPresent([Int].self, forKey: .layers)
        sequences = try c.decodeIfPresent([Int].self, forKey: .sequences)
        tokenRange = try c.decodeIfPresent(Range<Int>.self, forKey: .tokenRange)
        center = try c.decode(Bool.self, forKey: .center)
        alignRank = try c.decode(Int.self, forKey: .alignRank)
        outlierFactor = try c.decode(Double.self, forKey: .outlierFactor)
        dctWindow = try c.decodeIfPresent(Int.self, forKey: .dctWindow)
        blockTokens = try c.decode(Int.self, forKey: .blockTokens)
        pairs = try c.decode(LayerPairs.self, forKey: .pairs)
        frequencyPanelBytes = try c.decode(Int.self, forKey: .frequencyPanelBytes)
        xkvGroupSize = try c.decodeIfPresent(Int.self, forKey: .xkvGroupSize)
        sinkQueries = try c.decodeIfPresent(Int.self, forKey: .sinkQueries) ?? 64
        causal = try c.decodeIfPresent(Bool.self, forKey: .causal) ?? true
    }

    /// Encodes sections in their canonical order, so the same options always give the same JSON.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(AnalysisSection.allCases.filter(sections.contains), forKey: .sections)
        try c.encodeIfPresent(layers, forKey: .layers)
        try c.encodeIfPresent(sequences, forKey: .sequences)
        try c.encodeIfPresent(tokenRange, forKey: .tokenRange)
        try c.encode(center, forKey: .center)
        try c.encode(alignRank, forKey: .alignRank)
        try c.encode(outlierFactor, forKey: .outlierFactor)
        try c.encodeIfPresent(dctWindow, forKey: .dctWindow)
        try c.encode(blockTokens, forKey: .blockTokens)
        try c.encode(pairs, forKey: .pairs)
        try c.encode(frequencyPanelBytes, forKey: .frequencyPanelBytes)
        try c.encodeIfPresent(xkvGroupSize, forKey: .xkvGroupSize)
        try c.encode(sinkQueries, forKey: .sinkQueries)
        try c.encode(causal, forKey: .causal)
    }

    enum CodingKeys: String, CodingKey {
        case sections, layers, sequences, center, pairs
        case tokenRange = "token_range"
        case alignRank = "align_rank"
        case outlierFactor = "outlier_factor"
        case dctWindow = "dct_window"
        case blockTokens = "block_tokens"
        case frequencyPanelBytes = "frequency_panel_bytes"
        case xkvGroupSize = "xkv_group_size"
        case sinkQueries = "sink_queries"
        case causal
    }
}

/// Progress of a long analysis, for the CLI to render.
public struct AnalysisProgress: Sendable {
    public var stage: String
    public var completed: Int
    public var total: Int
    /// Bytes of tensor data read so far in this stage (as float32).
    public var bytes: Int
}
