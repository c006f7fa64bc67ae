// The tensor kinds a dump can hold per layer, and the dataset names each is recognised by.

/// Which attention tensor a dataset holds.
public enum TensorKind: String, Sendable, Codable, CaseIterable, Comparable {
    case key
    case value
    case query
    /// Keys before the rotary position embedding (the output of `k_proj`), when the dumper wrote both.
    case keyPreRope = "key_pre_rope"

    /// The plural for prose and progress: "keys", "values", "queries", "pre-RoPE keys".
    public var plural: String {
        switch self {
        case .key: return "keys"
        case .value: return "values"
        case .query: return "queries"
        case .keyPreRope: return "pre-RoPE keys"
        }
    }

    /// Dataset names recognised for this kind in per-layer layouts (lower-cased).
    public var perLayerNames: [String] {
        switch self {
        case .key: return ["key", "k", "k_proj", "keys", "key_states"]
        case .value: return ["value", "v", "v_proj", "values", "value_states"]
        case .query: return ["query", "q", "q_proj", "queries", "query_states"]
        case .keyPreRope: return ["key_pre_rope", "keys_pre_rope", "k_pre_rope"]
        }
    }

    /// Root dataset names recognised for this kind in stacked layouts.
    public var stackedNames: [String] {
        switch self {
        case .key: return ["keys", "key", "k"]
        case .value: return ["values", "value", "v"]
        case .query: return ["queries", "query", "q"]
        case .keyPreRope: return ["keys_pre_rope", "key_pre_rope"]
        }
    }

    /// The kind a dataset name denotes, if any.
    public init?(datasetName: String) {
        let name = datasetName.lowercased()
        guard let kind = TensorKind.allCases.first(where: { $0.perLayerNames.contains(name) }) else { return nil }
        self = kind
    }

    /// Canonical order: key, value, query, key_pre_rope.
    public static func < (a: TensorKind, b: TensorKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}
