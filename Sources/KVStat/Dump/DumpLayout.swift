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
