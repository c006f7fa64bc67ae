// The projections of a fit grouped by the (tensor kind, layer group) they rebuild, built once so that a lookup
// costs the same for a dump of 3 layers or of 3000 (a linear scan per layer made fits quadratic in depth).

/// Index of projections by (kind, layers): in order of first appearance, with each group's member positions
/// and, per kind, the group that covers each layer.
struct ProjectionGroups {
    struct Key: Hashable {
        var kind: TensorKind
        var layers: [Int]
    }

    /// Every (kind, layer group), in order of first appearance in the projection list.
    private(set) var keys: [Key] = []
    /// Positions in the projection list of each group's projections (heads, head groups), in order.
    private(set) var members: [Key: [Int]] = [:]
    /// kind → layer number → the group covering it.
    private(set) var covering: [TensorKind: [Int: Key]] = [:]

    init(_ projections: [Projection]) {
        for (index, p) in projections.enumerated() {
            let key = Key(kind: p.kind, layers: p.layers)
            if members[key] == nil {
                keys.append(key)
                for layer in p.layers { covering[p.kind, default: [:]][layer] = key }
            }
            members[key, default: []].append(index)
        }
    }
}
