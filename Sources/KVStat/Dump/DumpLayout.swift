// Where each layer's key/value/query tensors live in a dump, and how their axes are ordered.

/// How a dump arranges its tensors.
public enum LayoutStyle: String, Sendable, Codable {
    /// One dataset per layer and kind (`layer_00/key`, `layers/0/k`, `model.layers.0.self_attn.k_proj`, …).
    case perLayer = "per-layer"
    /// One dataset per kind holding every layer (`/keys` of shape `[layers, batch, heads, tokens, head_dim]`).
    case stacked
    /// Given by the user with `--layout FILE`.
    case custom
}

/// One layer's tensor of one kind: a dataset, its axis order, and the layer's index along an `l` axis.
public struct TensorLocation: Sendable, Equatable {
    public var datasetPath: String
    public var axes: AxisOrder
    /// Index along the dataset's `l` axis (stacked layouts), nil when the dataset holds one layer.
    public var layerIndex: Int?
    /// Heads in the `c` axis when `axes` merges heads × head_dim (`AxisOrder.mergesHeads`), resolved by
    /// `LayoutDetector` from a `heads` attribute, the layout file or the dump's other tensors; nil otherwise.
    public var heads: Int?

    public init(datasetPath: String, axes: AxisOrder, layerIndex: Int?, heads: Int? = nil) {
        self.datasetPath = datasetPath
        self.axes = axes
        self.layerIndex = layerIndex
        self.heads = heads
    }

    /// The (batch, heads, tokens, head_dim) extents of a stored `shape` under `axes`: absent axes are 1, and a
    /// `c` axis of C channels is `heads` × C / `heads`. Nil when a `c` axis's head count is unknown, not positive
    /// or does not divide C.
    public func extents(of shape: [Int]) -> (batch: Int, heads: Int, tokens: Int, headDim: Int)? {
        func extent(_ axis: Character) -> Int { axes.index(of: axis).map { shape[$0] } ?? 1 }
        guard axes.mergesHeads else { return (extent("b"), extent("h"), extent("t"), extent("d")) }
        let channels = extent("c")
        guard let heads, heads > 0, channels % heads == 0 else { return nil }
        return (extent("b"), heads, extent("t"), channels / heads)
    }
}

/// The resolved layout of a dump: for every layer, where each tensor kind is.
public struct DumpLayout: Sendable {
    public var style: LayoutStyle
    /// A readable pattern, e.g. `/layers/{layer}/{key,value,query}`.
    public var pattern: String
    /// `tensors[row][kind]`, one row per layer in ascending layer number (`layerNumbers[row]`).
    public var tensors: [[TensorKind: TensorLocation]]
    /// The file's number of each row of `tensors`, ascending and distinct: the number in the dataset path
    /// for per-layer layouts (`layer_00, layer_05, layer_07` are layers 0, 5, 7), the index along the layer
    /// axis for stacked layouts, the value substituted for `{layer}` in `--layout` templates.
    public var layerNumbers: [Int]
    /// A `[batch]` dataset of valid token counts, when present.
    public var lengthsPath: String?
    /// A `[batch, tokens]` dataset, 1 for real tokens and 0 for padding, when present (and no lengths).
    public var attentionMaskPath: String?
    /// Datasets that look like tensors but are not read, each with the reason (`v_proj` outputs beside the
    /// cache's values, say), for `inspect`.
    public var ignored: [String] = []

    /// `layerNumbers` defaults to 0, 1, 2, … (one per row of `tensors`).
    public init(
        style: LayoutStyle, pattern: String, tensors: [[TensorKind: TensorLocation]],
        layerNumbers: [Int]? = nil, lengthsPath: String? = nil, attentionMaskPath: String? = nil
    ) {
        self.style = style
        self.pattern = pattern
        self.tensors = tensors
        self.layerNumbers = layerNumbers ?? Array(tensors.indices)
        self.lengthsPath = lengthsPath
        self.attentionMaskPath = attentionMaskPath
    }

    /// Number of layers.
    public var layers: Int { tensors.count }

    /// Kinds present in every layer, in canonical order.
    public var kinds: [TensorKind] {
        TensorKind.allCases.filter { kind in tensors.allSatisfy { $0[kind] != nil } }
    }
}
