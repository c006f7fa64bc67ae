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
/// Optional: `query`, `key_pre_rope`, `layers` (count), `lengths`, `attention_mask` (dataset paths).
public struct LayoutSpec: Codable, Sendable, Equatable {
    public var key: String
    public var value: String
    public var query: String?
    public var keyPreRope: String?
    public var axes: String
    public var layers: Int?
    public var lengths: String?
    public var attentionMask: String?

    enum CodingKeys: String, CodingKey {
        case key, value, query, axes, layers, lengths
        case keyPreRope = "key_pre_rope"
        case attentionMask = "attention_mask"
    }

    /// Reads a spec from a `.json`, `.yaml` or `.yml` file (JSON is tried when the extension is neither).
    public static func load(_ path: String) throws(DumpError) -> LayoutSpec {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DumpError(.cannotOpen, "cannot read layout file", file: path)
        }
        let isYAML = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        do {
            if isYAML {
                return try YAMLDecoder().decode(LayoutSpec.self, from: String(decoding: data, as: UTF8.self))
            }
            return try JSONDecoder().decode(LayoutSpec.self, from: data)
        } catch {
            throw DumpError(.badLayout, "invalid layout file: \(Self.explain(error)); expected keys key, value, axes (and optionally query, key_pre_rope, layers, lengths, attention_mask)", file: path)
        }
    }

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
            let width = Int(result[open.upperBound..<close]) ?? 1
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
            return "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        default: return "\(error)"
        }
    }
}
