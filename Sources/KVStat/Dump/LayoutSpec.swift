// `--layout FILE`: a user's description of a dump kvstat cannot detect, in JSON or YAML.
import Foundation
import Yams

/// Where a dump keeps its tensors, given by the user.
///
/// ```json
/// {"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd"}
/// ```
/// `{layer}` is replaced by 0, 1, 2, … until the key dataset is missing (`{layer:02}` zero-pads to two
/// digits); a template without `{layer}` names one stacked dataset whose `axes` include `l`.
/// `axes` is one order for every tensor, or one per kind (`{"key": "bhtd", "value": "bhtd", "key_pre_rope":
/// "btc"}`, covering every kind the file names). Optional: `query`, `key_pre_rope`, `layers` (count), `lengths`,
/// `attention_mask` (dataset paths), `kv_heads` and `query_heads` (head counts of tensors whose axes merge heads
/// × head_dim into `c`). A file with neither `key` nor `value` (nor `axes`) only gives those hints to the
/// detected layout: `{"kv_heads": 8}` for a vLLM folder. Any other key is an error (a misspelt optional key would
/// otherwise be ignored).
public struct LayoutSpec: Codable, Sendable, Equatable {
    public var key: String?
    public var value: String?
    public var query: String?
    public var keyPreRope: String?
    public var axes: AxesSpec?
    public var layers: Int?
    public var lengths: String?
    public var attentionMask: String?
    public var kvHeads: Int?
    public var queryHeads: Int?

    /// `axes`: one order for all tensors, or one per kind name (`key`, `value`, `query`, `key_pre_rope`).
    public enum AxesSpec: Codable, Sendable, Equatable, ExpressibleByStringLiteral {
        case all(String)
        case perKind([String: String])

        public init(stringLiteral text: String) { self = .all(text) }

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .all(text)
            } else {
                self = .perKind(try container.decode([String: String].self))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .all(let text): try container.encode(text)
            case .perKind(let orders): try container.encode(orders)
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case key, value, query, axes, layers, lengths
        case keyPreRope = "key_pre_rope"
        case attentionMask = "attention_mask"
        case kvHeads = "kv_heads"
        case queryHeads = "query_heads"
    }

    /// Whether the file names tensors (`key`, `value`, `axes`) rather than only giving hints to detection.
    public var namesTensors: Bool { key != nil }

    /// Reads a spec from a `.json`, `.yaml` or `.yml` file (JSON is tried when the extension is neither).
    public static func load(_ path: String) throws(DumpError) -> LayoutSpec {
        let data = try InputFile.contents(path, what: "layout file", limit: 1 << 20)
        let isYAML = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        let spec: LayoutSpec
        do {
            let text = String(decoding: data, as: UTF8.self)
            // Unknown keys first: a misspelt optional key (`lenghts:`) must not be silently ignored.
            let names =
                isYAML
                ? try YAMLDecoder().decode(KeyNames.self, from: text)
                : try JSONDecoder().decode(KeyNames.self, from: data)
            let unknown = names.keys.filter { CodingKeys(stringValue: $0) == nil }.sorted()
            if !unknown.isEmpty {
                let listed = unknown.map { "'\($0)'" }.joined(separator: ", ")
                throw DumpError(
                    .badLayout,
                    "unknown key\(unknown.count == 1 ? "" : "s") \(listed) in layout file; "
                        + Self.knownKeys, file: path)
            }
            spec =
                isYAML
                ? try YAMLDecoder().decode(LayoutSpec.self, from: text)
                : try JSONDecoder().decode(LayoutSpec.self, from: data)
        } catch let error as DumpError {
            throw error
        } catch {
            throw DumpError(.badLayout, "invalid layout file: \(Self.explain(error)); \(Self.knownKeys)", file: path)
        }
        do throws(DumpError) {
            try spec.check()
        } catch {
            throw error.with(file: path)
        }
        return spec
    }

    static let knownKeys =
        "known keys are key, value, axes (together) and query, key_pre_rope, layers, lengths, attention_mask, "
        + "kv_heads, query_heads"

    /// Longest zero-padding a `{layer:0N}` placeholder may ask for.
    static let maxPadding = 12

    /// Checks what decoding cannot: placeholders (`{layer}` or `{layer:0N}`, N ≤ 12) used by every template
    /// or by none, a positive `layers`.
    func check() throws(DumpError) {
        if key == nil || value == nil || axes == nil {
            let given = [("key", key != nil), ("value", value != nil), ("axes", axes != nil)].filter(\.1).map(\.0)
            let named = [("query", query), ("key_pre_rope", keyPreRope)].filter { $0.1 != nil }.map(\.0)
            guard given.isEmpty, named.isEmpty, layers == nil else {
                throw DumpError(
                    .badLayout,
                    "layout file gives \((given + named + (layers == nil ? [] : ["layers"])).joined(separator: ", "))"
                        + " without all of key, value and axes; give those three together, or none of them (a "
                        + "file of hints such as kv_heads)")
            }
        }
        for (name, count) in [("kv_heads", kvHeads), ("query_heads", queryHeads)] {
            if let count, !(1...Dump.maxChannels).contains(count) {
                throw DumpError(.badLayout, "layout '\(name)' is \(count); it must be from 1 to \(Dump.maxChannels)")
            }
        }
        try checkAxes()
        let templates = TensorKind.allCases.compactMap { kind in template(for: kind).map { (kind, $0) } }
        for (kind, template) in templates {
            var rest = Substring(template)
            while let open = rest.range(of: "{layer") {
                guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                    throw DumpError(
                        .badLayout,
                        "layout \(kind.rawValue) template '\(template)' has an unclosed {layer placeholder")
                }
                let inside = rest[open.upperBound..<close]
                let width = inside.hasPrefix(":0") ? Int(inside.dropFirst(2)) : nil
                guard inside.isEmpty || (width.map { (1...Self.maxPadding).contains($0) } ?? false) else {
                    throw DumpError(
                        .badLayout,
                        "layout \(kind.rawValue) template '\(template)' has placeholder "
                            + "'{layer\(inside)}'; use {layer} or {layer:0N} with N from 1 to "
                            + "\(Self.maxPadding)")
                }
                rest = rest[rest.index(after: close)...]
            }
        }
        let perLayer = templates.filter { $0.1.contains("{layer") }.map(\.0)
        if !perLayer.isEmpty && perLayer.count != templates.count {
            let stacked = templates.map(\.0).filter { !perLayer.contains($0) }
            let with = perLayer.map(\.rawValue).joined(separator: ", ")
            let without = stacked.map(\.rawValue).joined(separator: ", ")
            throw DumpError(
                .badLayout,
                "layout templates for \(with) have a {layer} placeholder but \(without) do "
                    + "not: use it in every template (one dataset per layer) or in none (stacked datasets "
                    + "with an 'l' axis)")
        }
        if let layers, layers < 1 {
            throw DumpError(.badLayout, "layout 'layers' is \(layers); it must be at least 1")
        }
    }

    /// The axis orders are valid letters, and a per-kind `axes` names exactly the kinds the file has templates for.
    private func checkAxes() throws(DumpError) {
        guard case .perKind(let orders)? = axes else {
            if case .all(let text)? = axes { _ = try AxisOrder(text) }
            return
        }
        let named = Set(TensorKind.allCases.filter { template(for: $0) != nil }.map(\.rawValue))
        let unknown = orders.keys.filter { !named.contains($0) }.sorted()
        let missing = named.subtracting(orders.keys).sorted()
        guard unknown.isEmpty, missing.isEmpty else {
            let parts =
                (unknown.isEmpty
                    ? [] : ["names \(unknown.joined(separator: ", ")), which the file gives no template for"])
                + (missing.isEmpty ? [] : ["lacks \(missing.joined(separator: ", "))"])
            throw DumpError(.badLayout, "layout 'axes' per kind " + parts.joined(separator: " and "))
        }
        for (kind, text) in orders.sorted(by: { $0.key < $1.key }) {
            do throws(DumpError) {
                _ = try AxisOrder(text)
            } catch {
                throw DumpError(.badLayout, "layout 'axes' of \(kind): \(error.message)")
            }
        }
    }

    /// The axis order of `kind`'s tensors (nil when the file names no tensors).
    func axisOrder(for kind: TensorKind) throws(DumpError) -> AxisOrder? {
        switch axes {
        case .none: return nil
        case .all(let text)?: return try AxisOrder(text)
        case .perKind(let orders)?:
            return try orders[kind.rawValue].map { text throws(DumpError) in try AxisOrder(text) }
        }
    }

    /// The head count the file gives for `kind`'s merged-channel tensors.
    func heads(for kind: TensorKind) -> Int? { kind == .query ? queryHeads : kvHeads }

    /// The dataset template for `kind`, if the spec names one.
    func template(for kind: TensorKind) -> String? {
        switch kind {
        case .key: return key
        case .value: return value
        case .query: return query
        case .keyPreRope: return keyPreRope
        }
    }

    /// `template` with its `{layer}` / `{layer:0N}` placeholder replaced by `layer`.
    static func expand(_ template: String, layer: Int) -> String {
        var result = template.replacingOccurrences(of: "{layer}", with: String(layer))
        while let open = result.range(of: "{layer:0"), let close = result[open.upperBound...].firstIndex(of: "}") {
            let width = min(Int(result[open.upperBound..<close]) ?? 1, maxPadding)
            let digits = String(layer)
            let padded = String(repeating: "0", count: max(width - digits.count, 0)) + digits
            result.replaceSubrange(open.lowerBound...close, with: padded)
        }
        return result
    }

    private static func explain(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing key '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            if context.codingPath.isEmpty { return "it is not a mapping of keys to values" }
            return "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let context): return context.debugDescription.oneLine
        default: return "\(error)".oneLine
        }
    }
}

/// The top-level key names of a layout file, whatever their values (to report unknown keys).
private struct KeyNames: Decodable {
    var keys: [String]

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
    }
}

extension String {
    /// The text with line breaks turned into spaces (decoder messages can span lines; errors are one line).
    fileprivate var oneLine: String {
        split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}
