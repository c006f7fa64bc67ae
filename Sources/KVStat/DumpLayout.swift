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
    /// `tensors[layer][kind]`.
    public var tensors: [[TensorKind: TensorLocation]]
    /// A `[batch]` dataset of valid token counts, when present.
    public var lengthsPath: String?
    /// A `[batch, tokens]` dataset, non-zero for real tokens, when present (and no lengths).
    public var attentionMaskPath: String?

    /// Number of layers.
    public var layers: Int { tensors.count }

    /// Kinds present in every layer, in canonical order.
    public var kinds: [TensorKind] {
        TensorKind.allCases.filter { kind in tensors.allSatisfy { $0[kind] != nil } }
    }
}
