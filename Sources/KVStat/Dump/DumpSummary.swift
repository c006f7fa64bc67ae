// What `kvstat inspect` reports about a dump, and what stats.json records in its `dump` section: a plain
// Codable value built from an opened `Dump`.

/// A dump's facts as data: layout, shape, format, sizes, storage and provenance.
public struct DumpSummary: Codable, Sendable, Equatable {
    public struct Tensor: Codable, Sendable, Equatable {
        public var path: String
        public var shape: [Int]
        public var axes: String
        public var dtype: String
        public var chunks: [Int]?
        public var filters: [String]
        public var bytesOnDisk: Int

        enum CodingKeys: String, CodingKey {
            case path, shape, axes, dtype, chunks, filters
            case bytesOnDisk = "bytes_on_disk"
        }
    }

    public var schema = "kvstat.inspect/1"
    public var path: String
    public var layout: String
    public var pattern: String
    public var layers: Int
    /// The file's layer numbers (`Dump.layerNumbers`); nil in summaries saved before they were recorded.
    public var layerNumbers: [Int]?
    public var kvHeads: Int
    public var queryHeads: Int?
    public var headDim: Int
    public var sequences: Int
    public var maxTokens: Int
    public var tokens: Int
    public var sequenceLengths: [Int]
    public var padding: String
    public var dtype: String
    public var kinds: [String]
    public var bytesOnDisk: Int
    public var bytesStored: Int
    public var bytesFloat32: Int
    public var attributes: [String: String]
    public var tensors: [Tensor]
    /// SHA-256 of the file's bytes (hex), when it was computed (analyze does; inspect does not).
    public var sha256: String?
    /// The part of the dump analysed (`--sequences`, `--tokens`), or nil for all of it; `tokens` and
    /// `sequence_lengths` then count the selected tokens only.
    public var selection: String?
    /// `--sequences` as numbers (nil: every sequence): with `selectedTokens`, what `kvstat merge` compares to
    /// refuse parts of one dump that hold the same tokens.
    public var selectedSequences: [Int]?
    /// `--tokens` as [start, end), end clamped to `max_tokens` (nil: every token position).
    public var selectedTokens: [Int]?
    /// Datasets that look like tensors but are not read, each with the reason (`LayoutDetector.pairProjections`);
    /// nil when there are none.
    public var ignored: [String]?

    enum CodingKeys: String, CodingKey {
        case schema, path, layout, pattern, layers, dtype, kinds, attributes, tensors, padding, sequences, tokens,
            sha256, selection, ignored
        case kvHeads = "kv_heads"
        case queryHeads = "query_heads"
        case headDim = "head_dim"
        case maxTokens = "max_tokens"
        case sequenceLengths = "sequence_lengths"
        case layerNumbers = "layer_numbers"
        case bytesOnDisk = "bytes_on_disk"
        case bytesStored = "bytes_stored"
        case bytesFloat32 = "bytes_float32"
        case selectedSequences = "selected_sequences"
        case selectedTokens = "selected_tokens"
    }

    /// The summary of `dump`, counting the tokens of `selected` (a selection of its runs) when given.
    /// `sequences` and `tokenRange` are the selection as numbers (`selectedSequences`, `selectedTokens`).
    public init(
        _ dump: Dump, selected: TokenRuns? = nil, selection: String? = nil,
        sequences selectedSequences: [Int]? = nil, tokenRange: Range<Int>? = nil
    ) {
        path = dump.path
        layout = dump.layout.style.rawValue
        pattern = dump.layout.pattern
        layers = dump.shape.layers
        layerNumbers = dump.layerNumbers
        kvHeads = dump.shape.kvHeads
        queryHeads = dump.shape.queryHeads
        headDim = dump.shape.headDim
        sequences = dump.shape.sequences
        maxTokens = dump.shape.maxTokens
        tokens = selected?.totalTokens ?? dump.shape.tokens
        sequenceLengths = (selected ?? dump.tokenRuns).lengths
        self.selection = selection
        self.selectedSequences = selectedSequences
        selectedTokens = tokenRange.map { [$0.lowerBound, min($0.upperBound, dump.shape.maxTokens)] }
        padding =
            dump.layout.lengthsPath.map { "lengths \($0)" } ?? dump.layout.attentionMaskPath.map {
                "attention mask \($0)"
            } ?? "none"
        dtype = dump.format.rawValue
        kinds = dump.kinds.map(\.rawValue)
        bytesOnDisk = dump.bytesOnDisk
        bytesStored = dump.bytesStored
        bytesFloat32 = dump.bytesAsFloat32
        attributes = dump.attributes
        ignored = dump.layout.ignored.isEmpty ? nil : dump.layout.ignored
        tensors = dump.storedTensors.map {
            Tensor(
                path: $0.path, shape: $0.shape, axes: $0.axes, dtype: $0.format.rawValue, chunks: $0.chunkShape,
                filters: $0.filters, bytesOnDisk: $0.bytesOnDisk)
        }
    }
}

extension DumpSummary {
    /// One summary for the dumps (or parts of one dump) merged into a state: the first source's facts, with
    /// token counts added up. Parts of the same file add their sequence lengths position by position;
    /// different files append theirs, and the path lists how many files there were.
    public static func combining(_ sources: [DumpSummary]) -> DumpSummary {
        guard var combined = sources.first else { preconditionFailure("no sources to combine") }
        let paths = Set(sources.map(\.path))
        for source in sources.dropFirst() {
            combined.tokens += source.tokens
            if paths.count == 1 && source.sequenceLengths.count == combined.sequenceLengths.count {
                for i in combined.sequenceLengths.indices { combined.sequenceLengths[i] += source.sequenceLengths[i] }
            } else {
                combined.sequenceLengths += source.sequenceLengths
                combined.sequences += source.sequences
                combined.bytesOnDisk += source.bytesOnDisk
                combined.bytesStored += source.bytesStored
                combined.bytesFloat32 += source.bytesFloat32
            }
        }
        if sources.count > 1 {
            combined.selection = "merged from \(sources.count) states"
            let hashes = Set(sources.compactMap(\.sha256))
            if paths.count > 1 {
                combined.path = "\(paths.count) dumps"
                combined.sha256 = nil
            } else if hashes.count > 1 {
                combined.sha256 = nil
            }
        }
        return combined
    }
}
