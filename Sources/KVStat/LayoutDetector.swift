// Finding the tensors in a dump: a user's layout spec first, then stacked root datasets, then per-layer
// datasets recognised by their names wherever they sit in the tree.
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
        if let spec {
            layout = try fromSpec(spec, root: root)
        } else if let stacked = try detectStacked(root: root) {
            layout = stacked
        } else {
            layout = try detectPerLayer(root: root)
        }
        if layout.lengthsPath == nil && layout.attentionMaskPath == nil {
            layout.lengthsPath = lengthsNames.first { root.kind(of: $0) == .dataset }.map { "/" + $0 }
            if layout.lengthsPath == nil {
                layout.attentionMaskPath = maskNames.first { root.kind(of: $0) == .dataset }.map { "/" + $0 }
            }
        }
        return layout
    }

    // MARK: user layout

    static func fromSpec(_ spec: LayoutSpec, root: HDF5Group) throws -> DumpLayout {
        let axes = try AxisOrder(spec.axes)
        var tensors: [[TensorKind: TensorLocation]] = []
        if !spec.key.contains("{layer") {
            guard axes.index(of: "l") != nil else {
                throw DumpError(.badLayout, "layout template '\(spec.key)' has no {layer} placeholder, so its axes must include 'l'")
            }
            let keyDataset = try root.dataset(spec.key)
            let layers = spec.layers ?? keyDataset.shape[axes.index(of: "l")!]
            for layer in 0..<layers {
                var row: [TensorKind: TensorLocation] = [:]
                for kind in TensorKind.allCases {
                    if let path = spec.template(for: kind) {
                        row[kind] = TensorLocation(datasetPath: absolute(path), axes: axes, layerIndex: layer)
                    }
                }
                tensors.append(row)
            }
        } else {
            var layer = 0
            while spec.layers.map({ layer < $0 }) ?? root.exists(LayoutSpec.expand(spec.key, layer: layer)) {
                var row: [TensorKind: TensorLocation] = [:]
                for kind in TensorKind.allCases {
                    guard let template = spec.template(for: kind) else { continue }
                    let path = LayoutSpec.expand(template, layer: layer)
                    guard root.kind(of: path) == .dataset else {
                        throw DumpError(.badLayout, "layout names \(kind.rawValue) dataset for layer \(layer), but there is no such dataset", dataset: absolute(path))
                    }
                    row[kind] = TensorLocation(datasetPath: absolute(path), axes: axes, layerIndex: nil)
                }
                tensors.append(row)
                layer += 1
            }
            if tensors.isEmpty {
                throw DumpError(.badLayout, "layout template matches no dataset (layer 0 is missing)", dataset: absolute(LayoutSpec.expand(spec.key, layer: 0)))
            }
        }
        return DumpLayout(style: .custom, pattern: "\(spec.key), \(spec.value) (axes \(axes))", tensors: tensors,
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
        if let text = try key.stringAttribute("axes") {
            axes = try AxisOrder(text)
            // A root `key` dataset whose axes have no layer axis is a one-layer per-layer dump.
            if axes.index(of: "l") == nil { return nil }
        } else if let order = AxisOrder.defaultStacked(rank: key.shape.count) {
            axes = order
        } else {
            throw DumpError(.badLayout, "stacked dataset has \(key.shape.count) dimensions \(key.shape); expected [layers, batch, heads, tokens, head_dim] or [layers, heads, tokens, head_dim], or an 'axes' attribute", dataset: key.path)
        }
        guard key.shape.count == axes.rank else {
            throw DumpError(.badLayout, "dataset has \(key.shape.count) dimensions but its axes '\(axes)' name \(axes.rank)", dataset: key.path)
        }
        let layers = key.shape[axes.index(of: "l")!]
        var names: [TensorKind: String] = [.key: keyName, .value: valueName]
        for kind in [TensorKind.query, .keyPreRope] { names[kind] = find(kind) }
        var tensors: [[TensorKind: TensorLocation]] = []
        for layer in 0..<layers {
            var row: [TensorKind: TensorLocation] = [:]
            for (kind, name) in names {
                let dataset = try root.dataset(name)
                let order = try (dataset.stringAttribute("axes").map { try AxisOrder($0) }) ?? AxisOrder.defaultStacked(rank: dataset.shape.count) ?? axes
                row[kind] = TensorLocation(datasetPath: "/" + name, axes: order, layerIndex: layer)
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

    static func detectPerLayer(root: HDF5Group) throws -> DumpLayout {
        var byLayer: [Int: [TensorKind: Candidate]] = [:]
        var patterns: Set<String> = []
        for path in try datasetPaths(root: root) {
            guard let c = candidate(path: path) else { continue }
            if let other = byLayer[c.layer]?[c.kind] {
                throw DumpError(.badLayout, "ambiguous layout: both \(other.path) and \(c.path) look like layer \(c.layer) \(c.kind.rawValue)s; describe the dump with --layout FILE", dataset: c.path)
            }
            byLayer[c.layer, default: [:]][c.kind] = c
            patterns.insert(c.pattern)
        }
        guard !byLayer.isEmpty else {
            throw DumpError(.badLayout, "no key/value tensors found: expected per-layer datasets such as layer_00/key, layers/0/k or model.layers.0.self_attn.k_proj, or stacked /keys and /values; describe other layouts with --layout FILE (docs/dump-format.md)")
        }
        var tensors: [[TensorKind: TensorLocation]] = []
        for layer in byLayer.keys.sorted() {
            let found = byLayer[layer]!
            for required in [TensorKind.key, .value] where found[required] == nil {
                let present = found.values.map(\.path).sorted().joined(separator: ", ")
                throw DumpError(.badLayout, "layer \(layer) has no \(required.rawValue) tensor (found \(present))", dataset: found.values.first.map { parent(of: $0.path) })
            }
            var row: [TensorKind: TensorLocation] = [:]
            for (kind, c) in found {
                let dataset = try root.dataset(c.path)
                let axes: AxisOrder
                if let text = try dataset.stringAttribute("axes") {
                    axes = try AxisOrder(text)
                } else if let order = AxisOrder.defaultPerLayer(rank: dataset.shape.count) {
                    axes = order
                } else {
                    throw DumpError(.badData, "cannot interpret a \(dataset.shape.count)-D tensor of shape \(dataset.shape): expected [batch, heads, tokens, head_dim] or [heads, tokens, head_dim]; give the axis order with an 'axes' attribute or --layout FILE", dataset: c.path)
                }
                row[kind] = TensorLocation(datasetPath: c.path, axes: axes, layerIndex: nil)
            }
            tensors.append(row)
        }
        return DumpLayout(style: .perLayer, pattern: patterns.sorted().first ?? "", tensors: tensors)
    }

    /// Every dataset path in the file, depth first.
    static func datasetPaths(root: HDF5Group) throws -> [String] {
        var result: [String] = []
        var stack: [HDF5Group] = [root]
        var visited = 0
        while let group = stack.popLast() {
            for name in try group.memberNames() {
                visited += 1
                if visited > walkLimit {
                    throw DumpError(.badLayout, "file has more than \(walkLimit) objects; describe the dump with --layout FILE")
                }
                switch group.kind(of: name) {
                case .dataset: result.append(group.childPath(name))
                case .group: stack.append(try group.group(name))
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
