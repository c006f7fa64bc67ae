// JSON encoding with kvstat's conventions: sorted keys, pretty-printed, no escaped slashes.
import Foundation

public enum JSONText {
    /// Encodes `value` as pretty-printed JSON text with sorted keys. Strict JSON: a NaN or ±Inf throws (a bug
    /// upstream, reported as an internal error) instead of being written as a number or a string no reader expects;
    /// undefined values are nil, written as null.
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Decodes kvstat JSON (also files from older versions, which wrote non-finite numbers as strings).
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return try decoder.decode(type, from: data)
    }

    /// Writes `fields` as one JSON object (sorted keys) and a newline to stderr: the `--log-json` event format.
    public static func event(_ fields: [String: Any]) {
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        FileHandle.standardError.write(data + Data("\n".utf8))
    }
}
