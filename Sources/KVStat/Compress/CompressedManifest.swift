// The provenance and accounting a compressed cache carries (schema kvstat.compressed/1, docs/compressed-format.md):
// stored as the JSON root attribute `manifest` of OUT.h5 and printed by `kvstat compress`.
import Foundation

/// What `kvstat compress` records about one compressed cache.
public struct CompressedManifest: Codable, Sendable, Equatable {
    public static let format = "kvstat.compressed/1"

    public var schema = CompressedManifest.format
    public var kvstatVersion: String
    /// The dump compressed: path, SHA-256, layers, kinds, selection in words (nil: the whole dump).
    public var dumpPath: String
    public var dumpSHA256: String
    public var selection: String?
    /// projections.h5 of the fit whose projections were applied, and its SHA-256.
    public var artifactPath: String
    public var artifactSHA256: String
    public var method: String
    /// matryoshka: the rung (keep ratio) whose ranks were used; nil for the fit's own ranks.
    public var rankRatio: Double?
    /// cskv: recent tokens per sequence kept exactly (float16), latent quantization and group size.
    public var window: Int
    public var quantization: String
    public var quantGroup: Int
    /// The layers and kinds stored, model shape.
    public var layers: [Int]
    public var kinds: [String]
    /// Names of the stored units (`/units/NAME`), in the fit's order.
    public var units: [String]
    public var kvHeads: Int
    public var headDim: Int
    /// Original sequence numbers of the stored sequences and their stored tokens.
    public var sequences: [Int]
    /// Token position, in the dump, of each stored sequence's first stored token (`--tokens START:` gives START).
    public var starts: [Int]
    public var lengths: [Int]
    public var tokens: Int
    public var latentTokens: Int
    public var windowTokens: Int
    /// Block rows used when compressing (key quantization groups never cross a block, as in `eval`).
    public var blockTokens: Int
    /// Bytes of the stored tokens as float16 with no compression: tokens × layers × channels × kinds × 2.
    public var originalFloat16Bytes: Int
    /// The fit's accounting (docs/fit-lowrank.md) for these tokens and ranks: stored 16-bit units ÷ original.
    public var accountedRatio: Double
    /// accountedRatio × originalFloat16Bytes.
    public var accountedBytes: Int
    /// Bytes of the per-token payload written: latents (or codes), scales and minima, window tokens.
    public var payloadBytes: Int
    /// Fixed costs: the projections and means (float32) and the key quantization group index (int32).
    public var projectionBytes: Int
    public var groupIndexBytes: Int
    /// Pre-RoPE key fits: the RoPE `decompress` applies to the rebuilt `key_pre_rope` to write `key` too.
    public var rope: RopeReport? = nil

    enum CodingKeys: String, CodingKey {
        case schema, selection, method, window, quantization, layers, kinds, units, sequences, starts, lengths, tokens,
            rope
        case kvstatVersion = "kvstat_version"
        case dumpPath = "dump_path"
        case dumpSHA256 = "dump_sha256"
        case artifactPath = "artifact_path"
        case artifactSHA256 = "artifact_sha256"
        case rankRatio = "rank_ratio"
        case quantGroup = "quant_group"
        case kvHeads = "kv_heads"
        case headDim = "head_dim"
        case latentTokens = "latent_tokens"
        case windowTokens = "window_tokens"
        case blockTokens = "block_tokens"
        case originalFloat16Bytes = "original_float16_bytes"
        case accountedRatio = "accounted_ratio"
        case accountedBytes = "accounted_bytes"
        case payloadBytes = "payload_bytes"
        case projectionBytes = "projection_bytes"
        case groupIndexBytes = "group_index_bytes"
    }
}

/// What `kvstat compress` prints: the manifest plus the bytes on disk, known only once the file is closed.
public struct CompressionSummary: Codable, Sendable {
    public var manifest: CompressedManifest
    /// Size of the compressed file on disk.
    public var compressedFileBytes: Int
    /// Size of the dump on disk (all of it, whatever the selection; a folder: its files).
    public var dumpFileBytes: Int
    /// compressedFileBytes ÷ manifest.originalFloat16Bytes: the measured counterpart of accounted_ratio.
    public var measuredRatio: Double
    /// compressedFileBytes ÷ dumpFileBytes.
    public var ratioToDumpFile: Double
    /// compressedFileBytes − accountedBytes: the fixed costs (projections, group index, HDF5 metadata) plus
    /// the partial quantization groups the accounting prices as full ones.
    public var unaccountedBytes: Int
    /// compressedFileBytes − payload − projections − group index: HDF5's own metadata (object headers, the
    /// manifest attribute, lengths), a few KiB per stored unit and per (kind, layer).
    public var metadataBytes: Int

    enum CodingKeys: String, CodingKey {
        case manifest
        case compressedFileBytes = "compressed_file_bytes"
        case dumpFileBytes = "dump_file_bytes"
        case measuredRatio = "measured_ratio"
        case ratioToDumpFile = "ratio_to_dump_file"
        case unaccountedBytes = "unaccounted_bytes"
        case metadataBytes = "metadata_bytes"
    }
}
