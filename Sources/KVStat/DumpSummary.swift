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

    enum CodingKeys: String, CodingKey {
        case schema, path, layout, pattern, layers, dtype, kinds, attributes, tensors, padding, sequences, tokens
        case kvHeads = "kv_heads", queryHeads = "query_heads", headDim = "head_dim"
        case maxTokens = "max_tokens", sequenceLengths = "sequence_lengths"
        case bytesOnDisk = "bytes_on_disk", bytesStored = "bytes_stored", bytesFloat32 = "bytes_float32"
    }

    public init(_ dump: Dump) {
        path = dump.path
        layout = dump.layout.style.rawValue
        pattern = dump.layout.pattern
        layers = dump.shape.layers
        kvHeads = dump.shape.kvHeads
        queryHeads = dump.shape.queryHeads
        headDim = dump.shape.headDim
        sequences = dump.shape.sequences
        maxTokens = dump.shape.maxTokens
        tokens = dump.shape.tokens
        sequenceLengths = dump.tokenRuns.lengths
        padding = dump.layout.lengthsPath.map { "lengths \($0)" } ?? dump.layout.attentionMaskPath.map { "attention mask \($0)" } ?? "none"
        dtype = dump.format.rawValue
        kinds = dump.kinds.map(\.rawValue)
        bytesOnDisk = dump.bytesOnDisk
        bytesStored = dump.bytesStored
        bytesFloat32 = dump.bytesAsFloat32
        attributes = dump.attributes
        tensors = dump.storedTensors.map {
            Tensor(path: $0.path, shape: $0.shape, axes: $0.axes, dtype: $0.format.rawValue, chunks: $0.chunkShape,
                   filters: $0.filters, bytesOnDisk: $0.bytesOnDisk)
        }
    }
}
