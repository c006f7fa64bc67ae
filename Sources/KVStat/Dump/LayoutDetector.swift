// Finding the tensors in a dump: a user's layout spec first, then stacked root datasets, then per-layer
// datasets recognised by their names wherever they sit in the tree (each group entered once, so link cycles
// end). A file with both stacked and per-layer tensors is ambiguous and refused.
import HDF5Kit

/// Resolves a file's `DumpLayout`.
enum LayoutDetector {
    /// Datasets that describe padding rather than holding a tensor.
    static let lengthsNames = ["lengths", "seq_lens", "sequence_lengths"]
    static let maskNames = ["attention_mask", "mask"]

    /// Objects visited at most while walking the tree (a guard against pathological files).
    static let walkLimit = 200_000

    static func detect(root: HDF5Group, spec: LayoutSpec?) throws -> DumpLayout {
        var layout: DumpLayout
        if let spec, spec.namesTensors {
            layout = try fromSpec(spec, root: root)
        } else {
            let candidates = try datasetPaths(root: root).compactMap(candidate(path:))
            if let stacked = try detectStacked(root: root) {
                // Both layouts in one file: which tensors are meant cannot be guessed.
                if let example = candidates.first {
                    let keys = stacked.tensors[0][.key]!.datasetPath
                    let values = stacked.tensors[0][.value]!.datasetPath
                    throw DumpError(
                        .badLayout,
                        "ambiguous layout: both stacked \(keys),\(values) and per-layer "
                            + "datasets (e.g. \(example.path)); describe it with --layout FILE")
                }
                layout = stacked
            } else {
                layout = try detectPerLayer(root: root, candidates: candidates)
            }
        }
        if let spec, !spec.namesTensors {
            try spec.check()
            layout.lengthsPath = spec.lengths.map(absolute) ?? layout.lengthsPath
            layout.attentionMaskPath = spec.attentionMask.map(absolute) ?? layout.attentionMaskPath
        }
        try resolveMergedHeads(&layout, root: root, spec: spec)
        if layout.lengthsPath == nil && layout.attentionMaskPath == nil {
            layout.lengthsPath = lengthsNames.first { root.kind(of: $0) == .dataset }.map { "/" + $0 }
            if layout.lengthsPath == nil {
                layout.attentionMaskPath = maskNames.first { root.kind(of: $0) == .dataset }.map { "/" + $0 }
            }
        }
        return layout
    }

    /// The axis order an `axes` attribute of `dataset` gives, nil without one; an attribute that is not a
    /// string, or not a valid order, is an error naming the dataset.
    static func axesAttribute(_ dataset: HDF5Dataset) throws -> AxisOrder? {
        guard try dataset.hasAttribute("axes") else { return nil }
        guard let text = try dataset.stringAttribute("axes") else {
            throw DumpError(
                .badLayout, "has an 'axes' attribute that is not a string; expected letters such as 'bhtd'",
                dataset: dataset.path)
        }
        do {
            return try AxisOrder(text)
        } catch {
            throw DumpError(.badLayout, "'axes' attribute: \(error.message)", dataset: dataset.path)
        }
    }

    // MARK: merged heads × head_dim

    /// Sets `heads` of every tensor whose axes merge heads × head_dim (`c`): from the dataset's integer `heads`
    /// attribute, else the layout file's `kv_heads` / `query_heads`, else the channel count divided by the
    /// head_dim of the dump's tensors that keep heads and head_dim apart. A count none of these gives, or one that
    /// does not divide the channels, is an error naming the dataset and the ways to give it.
    static func resolveMergedHeads(_ layout: inout DumpLayout, root: HDF5Group, spec: LayoutSpec?) throws {
        guard layout.tensors.contains(where: { $0.values.contains { $0.axes.mergesHeads } }) else { return }
        var shapes: [String: [Int]] = [:]
        func shape(_ path: String) throws -> [Int] {
            if let known = shapes[path] { return known }
            let found = try root.dataset(path).shape
            shapes[path] = found
            return found
        }
        var headDim: Int?
        for location in layout.tensors.flatMap(\.values) where !location.axes.mergesHeads {
            let stored = try shape(location.datasetPath)
            if let d = location.axes.index(of: "d"), d < stored.count, stored[d] > 0 {
                headDim = stored[d]
                break
            }
        }
        for row in layout.tensors.indices {
            for (kind, location) in layout.tensors[row].sorted(by: { $0.key < $1.key })
            where location.axes.mergesHeads && location.heads == nil {
                let stored = try shape(location.datasetPath)
                guard let axis = location.axes.index(of: "c"), axis < stored.count else { continue }
                let channels = stored[axis]
                var heads: Int?
                var source = ""
                if let attribute = try headsAttribute(try root.dataset(location.datasetPath)) {
                    (heads, source) = (attribute, "its 'heads' attribute")
                } else if let given = spec?.heads(for: kind) {
                    (heads, source) = (given, "the layout file's \(kind == .query ? "query_heads" : "kv_heads")")
                } else if let headDim, channels % headDim == 0 {
                    heads = channels / headDim
                }
                guard let heads, heads > 0, channels % heads == 0 else {
                    let given =
                        heads.map { "\(source) says \($0) heads, which do not divide them" }
                        ?? "its head count is unknown"
                    throw DumpError(
                        .badLayout,
                        "holds \(channels) channels of heads × head_dim merged (axes '\(location.axes)') and \(given): "
                            + "give it as an integer 'heads' attribute on the dataset (safetensors: num_kv_heads in "
                            + "the file's __metadata__), or \(kind == .query ? "query_heads" : "kv_heads") in a "
                            + "--layout file",
                        dataset: location.datasetPath)
                }
                layout.tensors[row][kind]?.heads = heads
            }
        }
    }

    /// A dataset's `heads` attribute: nil without one; one positive integer, or an error naming the dataset.
    static func headsAttribute(_ dataset: HDF5Dataset) throws -> Int? {
        guard try dataset.hasAttribute("heads") else { return nil }
        guard let values = try dataset.numericAttribute("heads"), values.count == 1, let value = values.first,
            value == value.rounded(), value >= 1, value <= Double(Dump.maxChannels)
        else {
            throw DumpError(
                .badLayout, "has a 'heads' attribute that is not one integer from 1 to \(Dump.maxChannels)",
                dataset: dataset.path)
        }
        return Int(value)
    }

    /// "bhtd" when every kind has that order, else "key bhtd, key_pre_rope btc" in canonical kind order.
    static func axesText(_ orders: [TensorKind: AxisOrder]) -> String {
        let distinct = Set(orders.values.map(\.description))
        if distinct.count == 1, let only = distinct.first { return only }
        return orders.sorted { $0.key < $1.key }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
    }

    // MARK: user layout

    static func fromSpec(_ spec: LayoutSpec, root: HDF5Group) throws -> DumpLayout {
        try spec.check()
        guard let key = spec.key, let value = spec.value, let axes = try spec.axisOrder(for: .key) else {
            throw DumpError(.badLayout, "layout file names no key and value datasets")
        }
        // `check()` made sure every kind with a template has an order.
        var orders: [TensorKind: AxisOrder] = [:]
        for kind in TensorKind.allCases where spec.template(for: kind) != nil {
            orders[kind] = try spec.axisOrder(for: kind) ?? axes
        }
        var tensors: [[TensorKind: TensorLocation]] = []
        if !key.contains("{layer") {
            for (kind, order) in orders.sorted(by: { $0.key < $1.key }) where order.index(of: "l") == nil {
                throw DumpError(
                    .badLayout,
                    "layout template '\(spec.template(for: kind) ?? key)' has no {layer} placeholder, so its axes "
                        + "('\(order)') must include 'l'")
            }
            guard let layerAxis = axes.index(of: "l") else { throw DumpError(.badLayout, "layout key axes lack 'l'") }
            let keyDataset = try root.dataset(key)
            guard keyDataset.shape.count == axes.rank else {
                let message =
                    "has \(keyDataset.shape.count) dimensions \(keyDataset.shape) but the layout's axes "
                    + "'\(axes)' name \(axes.rank)"
                throw DumpError(.badLayout, message, dataset: keyDataset.path)
            }
            let stored = keyDataset.shape[layerAxis]
            if let asked = spec.layers, asked > stored {
                throw DumpError(
                    .badLayout,
                    "has \(stored) layers along its layer axis, but the layout says "
                        + "layers: \(asked)", dataset: keyDataset.path)
            }
            let layers = spec.layers ?? stored
            guard layers > 0 else {
                throw DumpError(
                    .badData, "has 0 layers along its layer axis: nothing to analyse",
                    dataset: keyDataset.path)
            }
            for layer in 0..<layers {
                var row: [TensorKind: TensorLocation] = [:]
                for (kind, order) in orders {
                    if let path = spec.template(for: kind) {
                        row[kind] = TensorLocation(datasetPath: absolute(path), axes: order, layerIndex: layer)
                    }
                }
                tensors.append(row)
            }
        } else {
            var layer = 0
            while spec.layers.map({ layer < $0 }) ?? root.exists(LayoutSpec.expand(key, layer: layer)) {
                var row: [TensorKind: TensorLocation] = [:]
                for (kind, order) in orders {
                    guard let template = spec.template(for: kind) else { continue }
                    let path = LayoutSpec.expand(template, layer: layer)
                    guard root.kind(of: path) == .dataset else {
                        throw DumpError(
                            .badLayout,
                            "layout names \(kind.rawValue) dataset for layer \(layer), but there is no such dataset",
                            dataset: absolute(path))
                    }
                    row[kind] = TensorLocation(datasetPath: absolute(path), axes: order, layerIndex: nil)
                }
                tensors.append(row)
                layer += 1
            }
            if tensors.isEmpty {
                throw DumpError(
                    .badLayout, "layout template matches no dataset (layer 0 is missing)",
                    dataset: absolute(LayoutSpec.expand(key, layer: 0)))
            }
        }
        return DumpLayout(
            style: .custom, pattern: "\(key), \(value) (axes \(axesText(orders)))", tensors: tensors,
            lengthsPath: spec.lengths.map(absolute), attentionMaskPath: spec.attentionMask.map(absolute))
    }

    // MARK: stacked

    static func detectStacked(root: HDF5Group) throws -> DumpLayout? {
        func find(_ kind: TensorKind) -> String? {
            kind.stackedNames.first { root.kind(of: $0) == .dataset }
        }
        guard let keyName = find(.key), let valueName = find(.value) else { return nil }
        let key = try root.dataset(keyName)
        let axes: AxisOrder
        if let order = try axesAttribute(key) {
            axes = order
            // A root `key` dataset whose axes have no layer axis is a one-layer per-layer dump.
            if axes.index(of: "l") == nil { return nil }
        } else if let order = AxisOrder.defaultStacked(rank: key.shape.count) {
            axes = order
        } else {
            throw DumpError(
                .badLayout,
                "stacked dataset has \(key.shape.count) dimensions \(key.shape); expected [layers, batch, heads, "
                    + "tokens, head_dim] or [layers, heads, tokens, head_dim], or an 'axes' attribute",
                dataset: key.path)
        }
        guard key.shape.count == axes.rank else {
            throw DumpError(
                .badLayout, "dataset has \(key.shape.count) dimensions but its axes '\(axes)' name \(axes.rank)",
                dataset: key.path)
        }
        let layers = key.shape[axes.index(of: "l")!]
        guard layers > 0 else {
            throw DumpError(.badData, "has 0 layers along its layer axis: nothing to analyse", dataset: key.path)
        }
        var names: [TensorKind: String] = [.key: keyName, .value: valueName]
        for kind in [TensorKind.query, .keyPreRope] { names[kind] = find(kind) }
        // Every stacked tensor must hold the same layers: a shorter or longer one would silently lose layers.
        var orders: [TensorKind: AxisOrder] = [.key: axes]
        for (kind, name) in names.sorted(by: { $0.key < $1.key }) where kind != .key {
            let dataset = try root.dataset(name)
            let order = try axesAttribute(dataset) ?? AxisOrder.defaultStacked(rank: dataset.shape.count) ?? axes
            guard dataset.shape.count == order.rank else {
                let message =
                    "dataset has \(dataset.shape.count) dimensions \(dataset.shape) but its axes '\(order)' "
                    + "name \(order.rank)"
                throw DumpError(.badLayout, message, dataset: dataset.path)
            }
            guard let axis = order.index(of: "l") else {
                let message =
                    "has no layer axis (axes '\(order)') but \(key.path) is stacked; give it an 'axes' "
                    + "attribute with 'l'"
                throw DumpError(.badLayout, message, dataset: dataset.path)
            }
            guard dataset.shape[axis] == layers else {
                let message =
                    "has \(dataset.shape[axis]) layers but \(key.path) has \(layers): stacked tensors must "
                    + "hold the same layers"
                throw DumpError(.badData, message, dataset: dataset.path)
            }
            orders[kind] = order
        }
        var tensors: [[TensorKind: TensorLocation]] = []
        for layer in 0..<layers {
            var row: [TensorKind: TensorLocation] = [:]
            for (kind, name) in names {
                row[kind] = TensorLocation(datasetPath: "/" + name, axes: orders[kind]!, layerIndex: layer)
            }
            tensors.append(row)
        }
        return DumpLayout(style: .stacked, pattern: "/\(keyName), /\(valueName) (axes \(axes))", tensors: tensors)
    }

    // MARK: per layer

    /// A dataset path split into the words that name layers and kinds: `model.layers.0.self_attn.k_proj` and
    /// `layers/0/k` both give a layer index (the last number in the path) and a kind (the last word).
    struct Candidate {
        var path: String
        var kind: TensorKind
        var layer: Int
        var pattern: String
        /// Named like a projection's output (`k_proj`, `v_proj`, `q_proj`): what a forward hook captures, before
        /// the rotary embedding and with heads × head_dim merged unless the dumper split them.
        var isProjection: Bool {
            ["k_proj", "v_proj", "q_proj"].contains(path.split(whereSeparator: { $0 == "/" || $0 == "." }).last ?? "")
        }
    }

    static func candidate(path: String) -> Candidate? {
        let components = path.split(separator: "/").flatMap { $0.split(separator: ".") }.map(String.init)
        guard let last = components.last, let kind = TensorKind(datasetName: last) else { return nil }
        for (position, word) in components.dropLast().enumerated().reversed() {
            let digits = word.reversed().prefix { $0.isNumber }
            guard !digits.isEmpty, let layer = Int(String(digits.reversed())) else { continue }
            var words = components
            words[position] = String(word.dropLast(digits.count)) + "{layer}"
            words[words.count - 1] = "{kind}"
            return Candidate(path: path, kind: kind, layer: layer, pattern: "/" + words.joined(separator: "/"))
        }
        return nil
    }

    static func detectPerLayer(root: HDF5Group, candidates found: [Candidate]) throws -> DumpLayout {
        var candidates = found
        if candidates.isEmpty {
            // No numbered paths: root datasets named like a kind (`/key`, `/value` with an `axes` attribute
            // that has no layer axis) are a one-layer dump, layer 0.
            for name in try root.memberNames() where root.kind(of: name) == .dataset {
                guard let kind = TensorKind(datasetName: name) else { continue }
                candidates.append(Candidate(path: "/" + name, kind: kind, layer: 0, pattern: "/{kind}"))
            }
        }
        var grouped: [Int: [TensorKind: [Candidate]]] = [:]
        for c in candidates { grouped[c.layer, default: [:]][c.kind, default: []].append(c) }
        var byLayer: [Int: [TensorKind: Candidate]] = [:]
        var ignored: [String: [String]] = [:]  // reason → datasets
        for (layer, kinds) in grouped.sorted(by: { $0.key < $1.key }) {
            let (found, skipped) = try pairProjections(kinds, layer: layer)
            byLayer[layer] = found
            for (path, reason) in skipped { ignored[reason, default: []].append(path) }
        }
        let patterns = Set(byLayer.values.flatMap(\.values).map(\.pattern))
        guard !byLayer.isEmpty else {
            throw DumpError(
                .badLayout,
                "no key/value tensors found: expected per-layer datasets such as layer_00/key, layers/0/k or "
                    + "model.layers.0.self_attn.k_proj, or stacked /keys and /values; describe other layouts with "
                    + "--layout FILE (docs/dump-format.md)"
            )
        }
        var tensors: [[TensorKind: TensorLocation]] = []
        let numbers = byLayer.keys.sorted()
        for layer in numbers {
            let found = byLayer[layer]!
            for required in [TensorKind.key, .value] where found[required] == nil {
                let present = found.values.map(\.path).sorted().joined(separator: ", ")
                throw DumpError(
                    .badLayout, "layer \(layer) has no \(required.rawValue) tensor (found \(present))",
                    dataset: found.values.first.map { parent(of: $0.path) })
            }
            var row: [TensorKind: TensorLocation] = [:]
            for (kind, c) in found {
                let dataset = try root.dataset(c.path)
                let axes: AxisOrder
                let rank = dataset.shape.count
                if let order = try axesAttribute(dataset) {
                    axes = order
                } else if let order =
                    c.isProjection ? AxisOrder.defaultProjection(rank: rank) : AxisOrder.defaultPerLayer(rank: rank)
                {
                    axes = order
                } else {
                    let expected =
                        c.isProjection
                        ? "[batch, tokens, heads × head_dim], [tokens, heads × head_dim] or [batch, heads, tokens, "
                            + "head_dim]"
                        : "[batch, heads, tokens, head_dim] or [heads, tokens, head_dim]"
                    throw DumpError(
                        .badData,
                        "cannot interpret a \(rank)-D tensor of shape \(dataset.shape): expected \(expected); give "
                            + "the axis order with an 'axes' attribute or --layout FILE",
                        dataset: c.path)
                }
                row[kind] = TensorLocation(datasetPath: c.path, axes: axes, layerIndex: nil)
            }
            tensors.append(row)
        }
        var layout = DumpLayout(
            style: .perLayer, pattern: patterns.sorted().joined(separator: ", "), tensors: tensors,
            layerNumbers: numbers)
        layout.ignored = ignored.sorted { $0.key < $1.key }.map { reason, paths in
            "\(paths[0])\(paths.count > 1 ? " and \(paths.count - 1) more like it" : ""): \(reason), not read"
        }
        return layout
    }

    /// One layer's tensors from its candidates of each kind. Two candidates of one kind are ambiguous, except the
    /// Hugging Face pair of a forward hook's projection output beside the cache's tensor: `k_proj` beside the
    /// cache's keys is the pre-RoPE keys (when the layer has no `key_pre_rope` of its own); `v_proj` beside the
    /// values holds the same numbers and is not read; `q_proj` in such a layer is the queries before RoPE, which
    /// do not meet post-RoPE keys, and is not read either. Returns the tensors, and the datasets not read with
    /// the reason (the same words for every layer, so `inspect` can say it once).
    static func pairProjections(
        _ kinds: [TensorKind: [Candidate]], layer: Int
    ) throws -> ([TensorKind: Candidate], [(path: String, reason: String)]) {
        var found: [TensorKind: Candidate] = [:]
        var ignored: [(path: String, reason: String)] = []
        func ambiguous(_ list: [Candidate]) -> DumpError {
            DumpError(
                .badLayout,
                "ambiguous layout: \(list.map(\.path).sorted().joined(separator: " and ")) all look like layer "
                    + "\(layer) \(list[0].kind.rawValue)s; describe the dump with --layout FILE",
                dataset: list.map(\.path).sorted().last)
        }
        // A k_proj output beside the cache's keys: this layer's projections are taken before RoPE.
        var projectionsArePreRope = false
        for kind in TensorKind.allCases {
            guard let list = kinds[kind], !list.isEmpty else { continue }
            let projections = list.filter(\.isProjection)
            let others = list.filter { !$0.isProjection }
            switch (kind, list.count, projections.count) {
            case (_, 1, _):
                if kind == .query, projectionsArePreRope, let only = projections.first {
                    ignored.append((only.path, "queries before RoPE (q_proj beside the cache's keys)"))
                } else {
                    found[kind] = list[0]
                }
            case (.key, 2, 1) where kinds[.keyPreRope]?.isEmpty ?? true:
                found[.key] = others[0]
                var preRope = projections[0]
                preRope.kind = .keyPreRope
                found[.keyPreRope] = preRope
                projectionsArePreRope = true
            case (.value, 2, 1):
                found[.value] = others[0]
                ignored.append((projections[0].path, "v_proj output, the same numbers as the cache's values"))
            case (.query, 2, 1):
                found[.query] = others[0]
                ignored.append((projections[0].path, "queries before RoPE (q_proj beside the cache's queries)"))
            default:
                throw ambiguous(list)
            }
        }
        return (found, ignored)
    }

    /// Every dataset path in the file, depth first. Each group is entered once, however many links lead to
    /// it: hard or soft links back to a parent (`f["a/b/up"] = f["a"]`) would otherwise make the walk endless.
    static func datasetPaths(root: HDF5Group) throws -> [String] {
        var result: [String] = []
        var stack: [HDF5Group] = [root]
        var entered: Set<ObjectIdentity> = [try root.identity()]
        var visited = 0
        while let group = stack.popLast() {
            visited += try group.memberCount()
            if visited > walkLimit {
                throw DumpError(
                    .badLayout,
                    "file has more than \(walkLimit) objects; describe the dump with --layout FILE")
            }
            for name in try group.memberNames() {
                switch group.kind(of: name) {
                case .dataset: result.append(group.childPath(name))
                case .group:
                    let child = try group.group(name)
                    if entered.insert(try child.identity()).inserted { stack.append(child) }
                default: break
                }
            }
        }
        return result
    }

    static func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : "/" + path }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
