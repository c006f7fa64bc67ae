// Which model a state's dumps come from: layers, KV heads and head_dim, and the model's name when the dump records
// one (its `model` attribute). States merge only within one signature, and `kvstat batch` keeps one corpus per
// signature, in a folder named after it (OUT/corpus/32L-8kv-128d/, or OUT/corpus/Llama-3.1-8B__32L-8kv-128d/).
import Foundation

/// Layers, key/value heads and head_dim of a dump, and its `model` attribute: dumps of one model share them
/// whatever tensor kinds (queries, pre-RoPE keys) each holds, so they are what corpora are grouped by. The shape
/// alone does not tell models apart (Llama-3-8B and Mistral-7B are both 32 × 8 × 128), so a recorded model name
/// is part of it; a dump without one matches only dumps without one.
public struct ModelSignature: Hashable, Sendable, Comparable {
    public var layers: Int
    public var kvHeads: Int
    public var headDim: Int
    /// The dump's `model` attribute as a folder-name slug (`ModelSignature.slug`); nil when it records none.
    public var model: String?

    public init(layers: Int, kvHeads: Int, headDim: Int, model: String? = nil) {
        (self.layers, self.kvHeads, self.headDim) = (layers, kvHeads, headDim)
        self.model = model.map(Self.slug).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The signature of the dump `summary` describes.
    public init(_ summary: DumpSummary) {
        self.init(
            layers: summary.layers, kvHeads: summary.kvHeads, headDim: summary.headDim,
            model: summary.attributes["model"])
    }

    /// `text` as a folder name's part: letters, digits, `.`, `-` kept, every other character (`/` of
    /// `org/name`, spaces, `_`) an underscore, runs of underscores one, at most 80 characters.
    public static func slug(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            let keep = scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "." || scalar == "-")
            if keep {
                result.unicodeScalars.append(scalar)
            } else if !result.hasSuffix("_") {
                result += "_"
            }
        }
        let trimmed = result.trimmingCharacters(in: CharacterSet(charactersIn: "_."))
        return String(trimmed.prefix(80))
    }

    /// The folder name of its corpus: "32L-8kv-128d" (layers, KV heads, head_dim), after the model's slug and two
    /// underscores when there is one ("Llama-3.1-8B__32L-8kv-128d").
    public var name: String { (model.map { $0 + "__" } ?? "") + "\(layers)L-\(kvHeads)kv-\(headDim)d" }

    /// Reads a `name` back; nil for any other text.
    public init?(name: String) {
        var shape = Substring(name)
        var model: String?
        if let separator = name.range(of: "__", options: .backwards) {
            model = String(name[..<separator.lowerBound])
            shape = name[separator.upperBound...]
            guard let model, !model.isEmpty, Self.slug(model) == model else { return nil }
        }
        let parts = shape.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].hasSuffix("L"), parts[1].hasSuffix("kv"), parts[2].hasSuffix("d"),
            let l = Int(parts[0].dropLast()), let h = Int(parts[1].dropLast(2)), let d = Int(parts[2].dropLast()),
            l > 0, h > 0, d > 0, "\(l)L-\(h)kv-\(d)d" == shape
        else { return nil }
        self.init(layers: l, kvHeads: h, headDim: d, model: model)
    }

    /// "32 layers × 8 kv heads × head_dim 128" (with " of Llama-3.1-8B" when named), for messages.
    public var text: String {
        "\(layers) layers × \(kvHeads) kv heads × head_dim \(headDim)" + (model.map { " of \($0)" } ?? "")
    }

    public static func < (a: ModelSignature, b: ModelSignature) -> Bool {
        (a.layers, a.kvHeads, a.headDim, a.model ?? "") < (b.layers, b.kvHeads, b.headDim, b.model ?? "")
    }
}

extension AnalysisState {
    /// The model of the state's dumps (its first source's: merging keeps every source of one signature).
    public var signature: ModelSignature? { sources.first.map(ModelSignature.init) }

    /// The number of different dumps (by SHA-256, else by path) whose tokens `kind`'s accumulators hold: the
    /// sources whose dump has that kind. Dumps of one model with and without queries merge on the kinds they
    /// share, so a corpus can hold keys of 3 dumps and queries of 1.
    public func dumps(of kind: TensorKind) -> Int {
        Set(sources.filter { $0.kinds.contains(kind.rawValue) }.map { $0.sha256 ?? $0.path }).count
    }

    /// `dumps(of:)` for every kind the state holds, by kind name (stats.json's `dumps_per_kind`).
    public var dumpsPerKind: [String: Int] {
        Dictionary(uniqueKeysWithValues: kinds.keys.map { ($0.rawValue, dumps(of: $0)) })
    }

    /// One summary of every source (`DumpSummary.combining`), listing every kind some source holds (in the
    /// state's order) and the query heads of the first source with queries: the first source alone may lack them.
    public var combinedSummary: DumpSummary {
        var summary = DumpSummary.combining(sources)
        summary.kinds = TensorKind.allCases.map(\.rawValue).filter { name in
            sources.contains { $0.kinds.contains(name) }
        }
        if summary.queryHeads == nil { summary.queryHeads = sources.lazy.compactMap(\.queryHeads).first }
        return summary
    }
}
