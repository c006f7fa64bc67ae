// An opened, validated KV dump: its layout, shape, element format, padding and provenance. Opening checks
// every tensor once (types, shapes, filters) so later passes can trust the data's structure.
import HDF5Kit

/// Sizes shared by every layer of a dump.
public struct DumpShape: Sendable, Equatable, Codable {
    public var layers: Int
    /// Sequences (the batch axis; 1 when the dump has none).
    public var sequences: Int
    public var kvHeads: Int
    /// Query heads when the dump holds queries (a multiple of `kvHeads` under GQA).
    public var queryHeads: Int?
    public var headDim: Int
    /// Token positions per sequence as stored, padding included.
    public var maxTokens: Int
    /// Valid tokens over all sequences, padding excluded.
    public var tokens: Int

    /// Columns of a layer's key or value matrix: kv_heads × head_dim.
    public var channels: Int { kvHeads * headDim }

    /// Heads of `kind`'s tensors.
    public func heads(of kind: TensorKind) -> Int { kind == .query ? (queryHeads ?? kvHeads) : kvHeads }
}

/// Facts about one stored dataset, for `inspect`.
public struct StoredTensor: Sendable, Equatable {
    public var path: String
    public var shape: [Int]
    public var axes: String
    public var format: StorageFormat
    public var chunkShape: [Int]?
    public var filters: [String]
    public var bytesOnDisk: Int
}

/// A KV-cache dump opened for reading. Datasets are opened per pass, so no chunk cache outlives its use.
public final class Dump: Sendable {
    /// Largest kv_heads × head_dim accepted: the Gram matrix of a layer is channels² float64 values.
    public static let maxChannels = 16_384

    public let path: String
    let file: HDF5File
    public let layout: DumpLayout
    public let shape: DumpShape
    /// Tensor kinds present in every layer, canonical order.
    public let kinds: [TensorKind]
    /// Element format of the key tensors (all tensors are read as float32 whatever their format).
    public let format: StorageFormat
    /// Valid token positions.
    public let tokenRuns: TokenRuns
    /// The file's root attributes (provenance: model, revision, text source, …), as text.
    public let attributes: [String: String]
    /// Every distinct stored dataset, in layer then kind order.
    public let storedTensors: [StoredTensor]

    /// Opens and validates the dump at `path`, detecting its layout unless `layout` is given.
    public init(path: String, layout spec: LayoutSpec? = nil) throws(DumpError) {
        self.path = path
        let opened = try translatingHDF5Errors(file: path) { () throws -> (HDF5File, HDF5Group, DumpLayout, [String: String]) in
            let file = try HDF5File.open(path)
            let root = try file.root()
            let layout = try LayoutDetector.detect(root: root, spec: spec)
            var attributes: [String: String] = [:]
            for name in try root.attributeNames() {
                if let text = try root.stringAttribute(name) {
                    attributes[name] = text
                } else if let numbers = try root.numericAttribute(name) {
                    attributes[name] = numbers.map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : String($0) }.joined(separator: ", ")
                }
            }
            return (file, root, layout, attributes)
        }
        (file, layout, attributes) = (opened.0, opened.2, opened.3)
        let root = opened.1
        let validated = try translatingHDF5Errors(file: path) {
            try Dump.validate(layout: opened.2, root: root, fileDtype: opened.3["dtype"])
        }
        kinds = layout.kinds
        format = validated.format
        storedTensors = validated.stored
        let runs = try translatingHDF5Errors(file: path) {
            try Dump.tokenRuns(layout: opened.2, root: root, sequences: validated.sequences, tokens: validated.maxTokens)
        }
        tokenRuns = runs
        shape = DumpShape(
            layers: layout.layers, sequences: validated.sequences, kvHeads: validated.kvHeads,
            queryHeads: validated.queryHeads, headDim: validated.headDim, maxTokens: validated.maxTokens,
            tokens: runs.totalTokens)
        if shape.maxTokens == 0 {
            throw DumpError(.badData, "has zero tokens: nothing to analyse", file: path, dataset: layout.tensors[0][.key]?.datasetPath)
        }
        if shape.tokens == 0 {
            throw DumpError(.badData, "has no valid tokens: every token is padding (lengths or attention mask are all zero)", file: path, dataset: layout.lengthsPath ?? layout.attentionMaskPath)
        }
    }

    /// Opens the dataset holding `kind` of `layer`.
    func dataset(layer: Int, kind: TensorKind) throws -> (HDF5Dataset, TensorLocation) {
        guard let location = layout.tensors[layer][kind] else {
            throw DumpError(.badLayout, "layer \(layer) has no \(kind.rawValue) tensor", file: path)
        }
        return (try file.root().dataset(location.datasetPath), location)
    }

    /// Bytes the tensors occupy in the file.
    public var bytesOnDisk: Int { storedTensors.reduce(0) { $0 + $1.bytesOnDisk } }

    /// Bytes of the tensors uncompressed, in their stored format (padding included).
    public var bytesStored: Int {
        storedTensors.reduce(0) { $0 + $1.shape.reduce(1, *) * $1.format.byteWidth }
    }

    /// Bytes of the valid tokens as float32: what a numpy script would hold to analyse everything at once.
    public var bytesAsFloat32: Int {
        kinds.reduce(0) { $0 + shape.tokens * shape.heads(of: $1) * shape.headDim * 4 } * shape.layers
    }

    // MARK: validation

    struct Validated {
        var sequences = 0, kvHeads = 0, headDim = 0, maxTokens = 0
        var queryHeads: Int?
        var format = StorageFormat.float32
        var stored: [StoredTensor] = []
    }

    static func extent(_ shape: [Int], _ axes: AxisOrder, _ axis: Character) -> Int {
        axes.index(of: axis).map { shape[$0] } ?? 1
    }

    static func validate(layout: DumpLayout, root: HDF5Group, fileDtype: String?) throws -> Validated {
        var result = Validated()
        var reference: (path: String, b: Int, h: Int, t: Int, d: Int)?
        var seen: Set<String> = []
        for row in layout.tensors {
            for kind in TensorKind.allCases {
                guard let location = row[kind] else { continue }
                let dataset = try root.dataset(location.datasetPath)
                let shape = dataset.shape
                guard shape.count == location.axes.rank else {
                    throw DumpError(.badData, "has \(shape.count) dimensions \(shape) but its axis order '\(location.axes)' has \(location.axes.rank)", dataset: dataset.path)
                }
                let format = try StorageFormat.of(dataset, fileDtype: fileDtype)
                let unavailable = dataset.filters.filter { !$0.available }.map(\.name)
                if !unavailable.isEmpty {
                    throw DumpError(.unavailableFilter, HDF5Filter.unavailableMessage(unavailable), dataset: dataset.path)
                }
                if let l = location.layerIndex, l >= extent(shape, location.axes, "l") {
                    throw DumpError(.badData, "has \(extent(shape, location.axes, "l")) layers along its layer axis; layer \(l) was asked for", dataset: dataset.path)
                }
                let b = extent(shape, location.axes, "b"), h = extent(shape, location.axes, "h")
                let t = extent(shape, location.axes, "t"), d = extent(shape, location.axes, "d")
                guard h > 0, d > 0, b > 0 else {
                    throw DumpError(.badData, "has an empty batch, head or head_dim axis (shape \(shape), axes \(location.axes))", dataset: dataset.path)
                }
                guard h * d <= maxChannels else {
                    throw DumpError(.badData, "has \(h) heads × \(d) head_dim = \(h * d) channels, more than the \(maxChannels) kvstat supports (shape \(shape), axes \(location.axes)); check the axis order", dataset: dataset.path)
                }
                if let ref = reference {
                    if kind == .query {
                        guard b == ref.b, t == ref.t, d == ref.d else {
                            throw DumpError(.badData, "query shape (batch \(b), tokens \(t), head_dim \(d)) differs from the keys' (batch \(ref.b), tokens \(ref.t), head_dim \(ref.d)) in \(ref.path)", dataset: dataset.path)
                        }
                        guard h % ref.h == 0 else {
                            throw DumpError(.badData, "has \(h) query heads, not a multiple of the \(ref.h) key/value heads", dataset: dataset.path)
                        }
                        if let q = result.queryHeads, q != h {
                            throw DumpError(.badData, "has \(h) query heads where other layers have \(q)", dataset: dataset.path)
                        }
                        result.queryHeads = h
                    } else if (b, h, t, d) != (ref.b, ref.h, ref.t, ref.d) {
                        throw DumpError(.badData, "\(kind.rawValue) shape [batch \(b), heads \(h), tokens \(t), head_dim \(d)] differs from [batch \(ref.b), heads \(ref.h), tokens \(ref.t), head_dim \(ref.d)] of \(ref.path)", dataset: dataset.path)
                    }
                } else {
                    guard kind == .key else { preconditionFailure("key comes first in TensorKind.allCases") }
                    reference = (dataset.path, b, h, t, d)
                    result.format = format
                    (result.sequences, result.kvHeads, result.maxTokens, result.headDim) = (b, h, t, d)
                }
                if seen.insert(dataset.path).inserted {
                    result.stored.append(StoredTensor(
                        path: dataset.path, shape: shape, axes: location.axes.description, format: format,
                        chunkShape: dataset.chunkShape, filters: dataset.filters.map(\.name), bytesOnDisk: dataset.storageBytes))
                }
            }
        }
        return result
    }

    static func tokenRuns(layout: DumpLayout, root: HDF5Group, sequences: Int, tokens: Int) throws -> TokenRuns {
        if let path = layout.lengthsPath {
            let dataset = try root.dataset(path)
            guard dataset.shape == [sequences] else {
                throw DumpError(.badData, "lengths has shape \(dataset.shape); expected [\(sequences)] (one per sequence)", dataset: path)
            }
            let lengths = try dataset.readAll(as: Int64.self).map(Int.init)
            if let bad = lengths.first(where: { $0 < 0 || $0 > tokens }) {
                throw DumpError(.badData, "lengths holds \(bad), outside 0…\(tokens)", dataset: path)
            }
            return TokenRuns(lengths: lengths)
        }
        if let path = layout.attentionMaskPath {
            let dataset = try root.dataset(path)
            guard dataset.shape == [sequences, tokens] || (sequences == 1 && dataset.shape == [tokens]) else {
                throw DumpError(.badData, "attention mask has shape \(dataset.shape); expected [\(sequences), \(tokens)]", dataset: path)
            }
            return TokenRuns(mask: try dataset.readAll(as: Int64.self), sequences: sequences, tokens: tokens)
        }
        return TokenRuns(sequences: sequences, tokens: tokens)
    }
}
