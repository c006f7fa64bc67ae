// An opened, validated KV dump: its layout, layer numbers, shape, element format, padding and provenance.
// Opening checks every tensor once (types, shapes, filters, whether its bytes were ever written) and the
// padding's values, so later passes can trust the data's structure; the file's identity is recorded so a
// run can tell when it changed underneath (`checkUnchanged`).
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
    /// The dump's layer numbers, ascending, as the file names them (`layer_00, layer_05, layer_07` are 0, 5,
    /// 7; stacked and `--layout` dumps have 0 ..< layers). Every layer argument — `dataset(layer:)`,
    /// `TensorReader(layer:)`, `--layers`, stats.json and fit manifests — is one of these numbers.
    public let layerNumbers: [Int]
    /// Row of `layout.tensors` for each layer number.
    private let rows: [Int: Int]
    /// The files the tensors are read from: the HDF5 file, or the safetensors files (a folder's in name order).
    public let sourceFiles: [String]
    /// The files as they were when opened (see `checkUnchanged()`).
    let snapshot: SourceSnapshot

    /// Opens and validates the dump at `path`, detecting its layout unless `layout` is given. `path` is an HDF5
    /// file, a safetensors file, or a folder of safetensors files (`DumpSource`); safetensors tensors are read
    /// through an in-memory HDF5 catalogue of them (`SafetensorsCatalogue`), so everything below is the same.
    public init(path: String, layout spec: LayoutSpec? = nil) throws(DumpError) {
        self.path = path
        let source = try DumpSource.resolve(path)
        sourceFiles = source.files
        let before = SourceSnapshot(paths: source.files)
        let opened = try translatingHDF5Errors(file: path) {
            () throws -> (HDF5File, HDF5Group, DumpLayout, [String: String], Int?) in
            let file: HDF5File
            var imageBytes: Int?
            switch source {
            case .hdf5: file = try HDF5File.open(path)
            case .safetensors(let files, let inFolder):
                let catalogue = try SafetensorsCatalogue.open(files: files, inFolder: inFolder, label: path)
                (file, imageBytes) = (catalogue.0, catalogue.1)
            }
            let root = try file.root()
            let layout = try LayoutDetector.detect(root: root, spec: spec)
            var attributes: [String: String] = [:]
            // Provenance only: an attribute HDF5 cannot convert (a 128-bit integer, say) is left out, not fatal.
            for name in try root.attributeNames() {
                if let text = try? root.stringAttribute(name) {
                    attributes[name] = text
                } else if let numbers = try? root.numericAttribute(name) {
                    let shown = numbers.prefix(64).map {
                        $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : "\($0)"
                    }
                    let more = numbers.count > 64 ? ", … (\(numbers.count) values)" : ""
                    attributes[name] = shown.joined(separator: ", ") + more
                }
            }
            return (file, root, layout, attributes, imageBytes)
        }
        guard before.isComplete, let firstSize = before.files.first??.size else {
            throw DumpError(
                .changedDuringRun, "changed while it was being opened (it could not be stat'ed)",
                file: path)
        }
        let snapshot = before
        self.snapshot = snapshot
        // Bounds contiguous data in an HDF5 file; a catalogue's datasets are external, bounded by their headers.
        let fileSize = opened.4 ?? firstSize
        (file, layout, attributes) = (opened.0, opened.2, opened.3)
        let root = opened.1
        layerNumbers = layout.layerNumbers
        rows = Dictionary(layout.layerNumbers.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let validated = try translatingHDF5Errors(file: path) {
            try Dump.validate(
                layout: opened.2, root: root, fileDtype: opened.3["dtype"], path: path,
                fileSize: fileSize)
        }
        kinds = layout.kinds
        format = validated.format
        storedTensors = validated.stored
        let runs = try translatingHDF5Errors(file: path) {
            try Dump.tokenRuns(
                layout: opened.2, root: root, sequences: validated.sequences,
                tokens: validated.maxTokens, path: path, fileSize: fileSize)
        }
        tokenRuns = runs
        shape = DumpShape(
            layers: layout.layers, sequences: validated.sequences, kvHeads: validated.kvHeads,
            queryHeads: validated.queryHeads, headDim: validated.headDim, maxTokens: validated.maxTokens,
            tokens: runs.totalTokens)
        if shape.maxTokens == 0 {
            throw DumpError(
                .badData, "has zero tokens: nothing to analyse", file: path,
                dataset: layout.tensors.first?[.key]?.datasetPath)
        }
        if shape.tokens == 0 {
            throw DumpError(
                .badData, "has no valid tokens: every token is padding (lengths or attention mask are all zero)",
                file: path, dataset: layout.lengthsPath ?? layout.attentionMaskPath)
        }
        // Chunks never written are an error only where real tokens are (padding may be left unwritten).
        try translatingHDF5Errors(file: path) {
            for (dataset, axes, layerIndices) in validated.partlyWritten {
                try StorageCheck.checkChunks(dataset, axes: axes, layerIndices: layerIndices, runs: runs)
            }
        }
        let after = SourceSnapshot(paths: snapshot.paths)
        if after != snapshot {
            throw DumpError(
                .changedDuringRun, "changed while it was being opened (\(snapshot.changes(to: after)))",
                file: path)
        }
    }

    /// The layers a run reads: `requested` (layer numbers as in the file) or every layer; a number the dump
    /// lacks is an error naming the layers it has. A set keeps the check linear in the layer count.
    public func selectLayers(_ requested: [Int]?) throws(DumpError) -> [Int] {
        let layers = requested ?? layerNumbers
        let available = Set(layerNumbers)
        if let bad = layers.first(where: { !available.contains($0) }) {
            throw DumpError(
                .badData, "layer \(bad) asked for, but the dump has layers \(IndexList.text(layerNumbers))", file: path)
        }
        return layers
    }

    /// Opens the dataset holding `kind` of the layer numbered `layer` in the file (one of `layerNumbers`).
    func dataset(layer: Int, kind: TensorKind) throws -> (HDF5Dataset, TensorLocation) {
        guard let row = rows[layer] else {
            throw DumpError(
                .badLayout, "has no layer \(layer) (its layers are \(IndexList.text(layerNumbers)))",
                file: path)
        }
        guard let location = layout.tensors[row][kind] else {
            throw DumpError(.badLayout, "layer \(layer) has no \(kind.rawValue) tensor", file: path)
        }
        return (try file.root().dataset(location.datasetPath), location)
    }

    /// Whether the dump's queries can meet its keys in q·kᵀ (attention-level errors, attention-mass sinks): it has
    /// queries, and they were not written before RoPE. A root `query_rope` attribute says so ("post-RoPE" or
    /// "none"; "pre-RoPE" is refused); without one, dumps of tools/kvdump.py before it wrote that attribute are
    /// known by their `rope` attribute, which called the queries "raw q_proj" outputs (pre-RoPE).
    public var hasAttendableQueries: Bool {
        guard kinds.contains(.query) else { return false }
        if let declared = attributes["query_rope"] { return declared.lowercased() != "pre-rope" }
        return !(attributes["rope"]?.contains("raw q_proj") ?? false)
    }

    /// Why `hasAttendableQueries` is false, for notes and the sinks section.
    public var unattendableQueriesReason: String {
        kinds.contains(.query)
            ? "the dump's queries were written before RoPE (its query_rope/rope attributes say so) and cannot meet "
                + "its post-RoPE keys; re-dump them after RoPE (tools/kvdump.py --queries does)"
            : "the dump has no queries"
    }

    /// Bytes the tensors occupy in the file.
    public var bytesOnDisk: Int { storedTensors.reduce(0) { $0 + $1.bytesOnDisk } }

    /// Bytes of the tensors uncompressed, in their stored format (padding included).
    public var bytesStored: Int {
        storedTensors.reduce(0) { total, tensor in
            let bytes = (Dump.elementCount(tensor.shape) ?? Int.max / 8) * tensor.format.byteWidth
            let (sum, overflow) = total.addingReportingOverflow(bytes)
            return overflow ? Int.max : sum
        }
    }

    /// Bytes of the valid tokens as float32: what a numpy script would hold to analyse everything at once.
    public var bytesAsFloat32: Int {
        var total = 0
        for kind in kinds {
            let (perLayer, o1) = shape.tokens.multipliedReportingOverflow(by: shape.heads(of: kind) * shape.headDim * 4)
            let (bytes, o2) = perLayer.multipliedReportingOverflow(by: shape.layers)
            let (sum, o3) = total.addingReportingOverflow(bytes)
            if o1 || o2 || o3 { return Int.max }
            total = sum
        }
        return total
    }

    // MARK: validation

    struct Validated {
        var sequences = 0, kvHeads = 0, headDim = 0, maxTokens = 0
        var queryHeads: Int?
        var format = StorageFormat.float32
        var stored: [StoredTensor] = []
        /// Chunked tensors with some chunks never written, with the layer indices read from each.
        var partlyWritten: [(HDF5Dataset, AxisOrder, [Int?])] = []
    }

    static func extent(_ shape: [Int], _ axes: AxisOrder, _ axis: Character) -> Int {
        axes.index(of: axis).map { shape[$0] } ?? 1
    }

    /// Elements of `shape`, nil when the product does not fit in an Int with room for 8-byte elements.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for extent in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: extent)
            if overflow || product > Int.max / 8 { return nil }
            count = product
        }
        return count
    }

    static func validate(
        layout: DumpLayout, root: HDF5Group, fileDtype: String?, path: String,
        fileSize: Int
    ) throws -> Validated {
        var result = Validated()
        var reference: (path: String, b: Int, h: Int, t: Int, d: Int)?
        var seen: [String: (Int, [Int])] = [:]  // dataset reading → (index in partlyWritten or -1, shape)
        var storedPaths: Set<String> = []
        guard !layout.tensors.isEmpty else {
            throw DumpError(.badLayout, "has no layers: nothing to analyse")
        }
        for row in layout.tensors {
            for kind in TensorKind.allCases {
                guard let location = row[kind] else { continue }
                // A dataset read under the same axes and head count was checked already; one that two kinds read
                // differently (a layout file's per-kind axes) is checked again under each reading.
                let reading = "\(location.datasetPath)\u{0}\(location.axes)\u{0}\(location.heads ?? 0)"
                if let (index, shape) = seen[reading] {
                    // Another layer of a stacked dataset already checked: only its layer index is new.
                    if let l = location.layerIndex, l >= extent(shape, location.axes, "l") {
                        let stored = extent(shape, location.axes, "l")
                        throw DumpError(
                            .badData, "has \(stored) layers along its layer axis; layer \(l) was asked for",
                            dataset: location.datasetPath)
                    }
                    if index >= 0 { result.partlyWritten[index].2.append(location.layerIndex) }
                    continue
                }
                let dataset = try root.dataset(location.datasetPath)
                let shape = dataset.shape
                guard shape.count == location.axes.rank else {
                    throw DumpError(
                        .badData,
                        "has \(shape.count) dimensions \(shape) but its axis order '\(location.axes)' has "
                            + "\(location.axes.rank)",
                        dataset: dataset.path)
                }
                guard elementCount(shape) != nil else {
                    throw DumpError(
                        .badData, "declares shape \(shape), more elements than can be addressed",
                        dataset: dataset.path)
                }
                let format = try StorageFormat.of(dataset, fileDtype: fileDtype)
                if let l = location.layerIndex, l >= extent(shape, location.axes, "l") {
                    throw DumpError(
                        .badData,
                        "has \(extent(shape, location.axes, "l")) layers along its layer axis; layer \(l) was asked "
                            + "for",
                        dataset: dataset.path)
                }
                guard let (b, h, t, d) = location.extents(of: shape) else {
                    // LayoutDetector resolves every `c` axis's head count to one that divides it; kept as the error
                    // a layout built some other way would get.
                    let channels = extent(shape, location.axes, "c")
                    throw DumpError(
                        .badData,
                        "has \(channels) channels (axes \(location.axes)), not a multiple of its "
                            + "\(location.heads.map(String.init) ?? "unknown") heads",
                        dataset: dataset.path)
                }
                guard h > 0, d > 0, b > 0 else {
                    throw DumpError(
                        .badData, "has an empty batch, head or head_dim axis (shape \(shape), axes \(location.axes))",
                        dataset: dataset.path)
                }
                guard h <= maxChannels, d <= maxChannels, h * d <= maxChannels else {
                    let channels = h.multipliedReportingOverflow(by: d).overflow ? "too many" : String(h * d)
                    let message =
                        "has \(h) heads × \(d) head_dim = \(channels) channels, more than the "
                        + "\(maxChannels) kvstat supports (shape \(shape), axes \(location.axes)); check the axis order"
                    throw DumpError(.badData, message, dataset: dataset.path)
                }
                if let ref = reference {
                    if kind == .query {
                        guard b == ref.b, t == ref.t, d == ref.d else {
                            throw DumpError(
                                .badData,
                                "query shape (batch \(b), tokens \(t), head_dim \(d)) differs from the keys' (batch "
                                    + "\(ref.b), tokens \(ref.t), head_dim \(ref.d)) in \(ref.path)",
                                dataset: dataset.path)
                        }
                        guard h % ref.h == 0 else {
                            throw DumpError(
                                .badData, "has \(h) query heads, not a multiple of the \(ref.h) key/value heads",
                                dataset: dataset.path)
                        }
                        if let q = result.queryHeads, q != h {
                            throw DumpError(
                                .badData, "has \(h) query heads where other layers have \(q)", dataset: dataset.path)
                        }
                        result.queryHeads = h
                    } else if (b, h, t, d) != (ref.b, ref.h, ref.t, ref.d) {
                        throw DumpError(
                            .badData,
                            "\(kind.rawValue) shape [batch \(b), heads \(h), tokens \(t), head_dim \(d)] differs "
                                + "from [batch \(ref.b), heads \(ref.h), tokens \(ref.t), head_dim \(ref.d)] of "
                                + "\(ref.path)",
                            dataset: dataset.path)
                    }
                } else {
                    guard kind == .key else {
                        throw DumpError(.badLayout, "the first layer has no key tensor", dataset: dataset.path)
                    }
                    reference = (dataset.path, b, h, t, d)
                    result.format = format
                    (result.sequences, result.kvHeads, result.maxTokens, result.headDim) = (b, h, t, d)
                }
                let unpadded = layout.lengthsPath == nil && layout.attentionMaskPath == nil
                try StorageCheck.check(dataset, dumpPath: path, fileSize: fileSize, requireAll: unpadded)
                if case .partly = dataset.writtenState {
                    seen[reading] = (result.partlyWritten.count, shape)
                    result.partlyWritten.append((dataset, location.axes, [location.layerIndex]))
                } else {
                    seen[reading] = (-1, shape)
                }
                guard storedPaths.insert(dataset.path).inserted else { continue }  // listed once, however read
                result.stored.append(
                    StoredTensor(
                        path: dataset.path, shape: shape, axes: location.axes.description, format: format,
                        chunkShape: dataset.chunkShape, filters: dataset.filters.map(\.name),
                        bytesOnDisk: dataset.storageBytes))
            }
        }
        return result
    }

    static func tokenRuns(
        layout: DumpLayout, root: HDF5Group, sequences: Int, tokens: Int, path: String,
        fileSize: Int
    ) throws -> TokenRuns {
        if let lengthsPath = layout.lengthsPath {
            return try PaddingReader.lengths(
                try root.dataset(lengthsPath), sequences: sequences, tokens: tokens,
                dumpPath: path, fileSize: fileSize)
        }
        if let maskPath = layout.attentionMaskPath {
            return try PaddingReader.mask(
                try root.dataset(maskPath), sequences: sequences, tokens: tokens,
                dumpPath: path, fileSize: fileSize)
        }
        return TokenRuns(sequences: sequences, tokens: tokens)
    }
}
