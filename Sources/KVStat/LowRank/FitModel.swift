// The shape of the model a fit was made on, recorded in manifest.json (`model`), and the check that a dump is
// of that model before projections are applied to it (`kvstat eval`, `fit-lowrank --eval`): a projection
// fitted on 2 kv heads must never be applied to half the channels of a 4-head dump.
import Foundation

/// Layers, heads and head_dim of a model, and the channels (heads × head_dim) of each tensor kind.
public struct FitModel: Codable, Sendable, Equatable {
    /// Layers in the dump.
    public var layers: Int
    /// The dump's layer numbers, when known.
    public var layerNumbers: [Int]?
    public var kvHeads: Int
    public var queryHeads: Int?
    public var headDim: Int
    /// kind → channels of one layer's matrix (heads × head_dim).
    public var channels: [String: Int]

    enum CodingKeys: String, CodingKey {
        case layers, channels
        case layerNumbers = "layer_numbers"
        case kvHeads = "kv_heads"
        case queryHeads = "query_heads"
        case headDim = "head_dim"
    }

    public init(layers: Int, layerNumbers: [Int]?, kvHeads: Int, queryHeads: Int?, headDim: Int, kinds: [TensorKind]) {
        (self.layers, self.layerNumbers, self.kvHeads, self.queryHeads, self.headDim) = (
            layers, layerNumbers, kvHeads, queryHeads, headDim
        )
        channels = Dictionary(
            uniqueKeysWithValues: kinds.map {
                ($0.rawValue, ($0 == .query ? queryHeads ?? kvHeads : kvHeads) * headDim)
            })
    }

    /// The model of `dump`.
    public init(_ dump: Dump) {
        self.init(
            layers: dump.shape.layers, layerNumbers: dump.layerNumbers, kvHeads: dump.shape.kvHeads,
            queryHeads: dump.shape.queryHeads, headDim: dump.shape.headDim, kinds: dump.kinds)
    }

    /// The model of the dump(s) a state was made from.
    public init(_ summary: DumpSummary) {
        self.init(
            layers: summary.layers, layerNumbers: summary.layerNumbers, kvHeads: summary.kvHeads,
            queryHeads: summary.queryHeads,
            headDim: summary.headDim, kinds: summary.kinds.compactMap(TensorKind.init(rawValue:)))
    }

    /// "6 layers × 4 kv heads × head_dim 32".
    public var text: String { "\(layers) layers × \(kvHeads) kv heads × head_dim \(headDim)" }

    /// Whether `other` is the same model: the same layers, kv heads and head_dim (query heads too when both
    /// record them; layer numbers when both record them).
    public func matches(_ other: FitModel) -> Bool {
        guard layers == other.layers, kvHeads == other.kvHeads, headDim == other.headDim else { return false }
        if let a = queryHeads, let b = other.queryHeads, a != b { return false }
        if let a = layerNumbers, let b = other.layerNumbers, a != b { return false }
        return true
    }

    /// Throws unless the fit's projections (recorded in `report`, fitted on `report.model`) apply to `dump`,
    /// naming both the dump and `artifact`. Without a recorded model (older manifests), every fitted layer must
    /// be in the dump and the projections of each kind and layer must cover exactly the dump's channels
    /// (0 ..< heads × head_dim), so a projection is never applied to part of a layer.
    public static func check(
        _ projections: [Projection], report: FitReport, artifact: String, against dump: Dump
    ) throws(DumpError) {
        let model = FitModel(dump)
        if let fitted = report.model, !fitted.matches(model) {
            throw DumpError(
                .badData, "is a dump of another model (\(model.text)) than \(artifact) was fitted on (\(fitted.text))",
                file: dump.path)
        }
        var covered: [String: [Range<Int>]] = [:]
        for p in projections {
            for layer in p.layers {
                guard dump.layerNumbers.contains(layer) else {
                    throw DumpError(
                        .badData,
                        "has no layer \(layer) (its layers are \(IndexList.text(dump.layerNumbers))), "
                            + "which \(artifact) holds a projection for", file: dump.path)
                }
                covered["\(p.kind.rawValue) \(layer)", default: []].append(p.channels)
            }
        }
        for (key, ranges) in covered.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: " ")
            let kind = TensorKind(rawValue: String(parts[0]))!
            let width = dump.shape.heads(of: kind) * dump.shape.headDim
            let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
            var next = 0
            for range in sorted where range.lowerBound == next { next = range.upperBound }
            guard next == width, sorted.last?.upperBound == width else {
                let span = sorted.map { "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ")
                throw DumpError(
                    .badData,
                    "has \(width) \(kind.rawValue) channels per layer (\(model.text)), but \(artifact)'s projections "
                        + "for layer \(parts[1]) cover channels \(span): it was fitted on another model",
                    file: dump.path)
            }
        }
    }
}
