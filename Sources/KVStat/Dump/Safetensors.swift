// Reading and checking the header of a safetensors file: 8 bytes giving the header's length N (unsigned,
// little-endian), N bytes of JSON — an object mapping each tensor name to {dtype, shape, data_offsets:[begin,
// end]}, plus an optional `__metadata__` object of strings — then the tensors' raw little-endian bytes, each at
// 8 + N + begin. Everything is checked before any tensor is described to libhdf5 (SafetensorsCatalogue), so a
// header that lies is one error line naming the file and the tensor, never a read outside a tensor's bytes.
import Foundation

/// Element types of safetensors tensors kvstat catalogues. Floats are what it analyses; integers and booleans
/// are catalogued too, so padding (`lengths`, `attention_mask`) can be read and other tensors ignored, as in an
/// HDF5 dump. Other dtypes (float8, complex, …) are refused.
enum SafetensorsDType: String, Sendable, CaseIterable {
    case float16 = "F16"
    case bfloat16 = "BF16"
    case float32 = "F32"
    case float64 = "F64"
    case int8 = "I8"
    case int16 = "I16"
    case int32 = "I32"
    case int64 = "I64"
    case uint8 = "U8"
    case uint16 = "U16"
    case uint32 = "U32"
    case uint64 = "U64"
    case bool = "BOOL"

    /// Bytes per element.
    var width: Int {
        switch self {
        case .int8, .uint8, .bool: return 1
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64: return 8
        }
    }
}

/// One tensor of a safetensors file, checked: its bytes are `begin ..< end` of the data that follows the
/// header, and they hold exactly `shape`'s elements of `dtype`.
struct SafetensorsTensor: Sendable, Equatable {
    var name: String
    var dtype: SafetensorsDType
    var shape: [Int]
    var begin: Int
    var end: Int
}

/// The checked header of one safetensors file.
struct SafetensorsHeader: Sendable {
    /// The file, as given.
    var path: String
    /// N: bytes of JSON after the 8-byte length.
    var headerBytes: Int
    /// The file's size when its header was read; always 8 + N + the last tensor's end.
    var fileSize: Int
    /// The tensors, in the order of their bytes.
    var tensors: [SafetensorsTensor]
    /// `__metadata__`: strings as stored; numbers and booleans as their JSON text; other values left out.
    var metadata: [String: String]

    /// File offset of the data section (tensor offsets count from here).
    var dataOffset: Int { 8 + headerBytes }

    /// Largest header accepted (the limit the reference implementation sets).
    static let maxHeaderBytes = 100_000_000

    /// Most dimensions a tensor may have (HDF5's limit).
    static let maxRank = 32

    /// Whether `head` (a file's first bytes) starts like safetensors: a length of at least 2 that fits in a
    /// file of `fileSize` bytes and the limit, followed by `{`.
    static func looksLikeSafetensors(_ head: [UInt8], fileSize: Int) -> Bool {
        guard head.count >= 9 else { return false }
        let length = head.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return length >= 2 && length <= UInt64(maxHeaderBytes) && length <= UInt64(max(fileSize - 8, 0))
            && head[8] == UInt8(ascii: "{")
    }

    /// Reads and checks the header of the safetensors file at `path`. Errors name the file (and the tensor):
    /// `cannotOpen` when it cannot be read, `notReadable` when it is shorter than its header says, `badData`
    /// for a header that is not valid safetensors.
    static func read(_ path: String) throws(DumpError) -> SafetensorsHeader {
        // Non-blocking, so that a FIFO put in the file's place opens at once (and is refused by fstat below).
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw DumpError(.cannotOpen, "cannot open it (\(String(cString: strerror(errno))))", file: path)
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw DumpError(.cannotOpen, "is not a regular file (a FIFO, device or socket); give a file", file: path)
        }
        let fileSize = Int(status.st_size)
        guard fileSize >= 8 else {
            throw DumpError(
                .notReadable, "is \(fileSize) bytes: too short for a safetensors file (8-byte header length)",
                file: path)
        }
        let lengthBytes = try readBytes(descriptor, at: 0, count: 8, path: path)
        let length = lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard length <= UInt64(maxHeaderBytes) else {
            throw DumpError(
                .badData,
                "safetensors header length is \(length) bytes, more than the \(maxHeaderBytes) allowed (not a "
                    + "safetensors file, or a corrupt one)", file: path)
        }
        guard Int(length) <= fileSize - 8 else {
            throw DumpError(
                .notReadable,
                "file is truncated: its safetensors header declares \(length) bytes, but only \(fileSize - 8) "
                    + "follow the length", file: path)
        }
        let json = try readBytes(descriptor, at: 8, count: Int(length), path: path)
        return try parse(json: json, fileSize: fileSize, path: path)
    }

    /// `count` bytes at `offset`, all of them or an error.
    private static func readBytes(
        _ descriptor: Int32, at offset: Int, count: Int, path: String
    ) throws(DumpError)
        -> [UInt8]
    {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + done, count - done, offset + done)
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = n < 0 ? String(cString: strerror(errno)) : "the file ended"
                throw DumpError(.notReadable, "cannot read the safetensors header (\(reason))", file: path)
            }
            done += n
        }
        return bytes
    }

    /// Checks the header JSON `json` of a file of `fileSize` bytes (the 8-byte length excluded from `json`).
    static func parse(json: [UInt8], fileSize: Int, path: String) throws(DumpError) -> SafetensorsHeader {
        // JSON objects may repeat a name, and decoders keep one of them: count the names as written first.
        let written = topLevelKeys(json)
        if let written {
            var seen: Set<ArraySlice<UInt8>> = []
            if let twice = written.first(where: { !seen.insert($0).inserted }) {
                let name = String(decoding: twice, as: UTF8.self)
                throw DumpError(.badData, "safetensors header names tensor '\(name)' twice", file: path)
            }
        }
        let entries: RawHeader
        do {
            entries = try JSONDecoder().decode(RawHeader.self, from: Data(json))
        } catch let error as DecodingError {
            throw describe(error, json: Data(json), path: path)
        } catch {
            throw DumpError(.badData, "safetensors header is not valid JSON (\(error))", file: path)
        }
        if let written, written.count != entries.names.count + (entries.hasMetadata ? 1 : 0) {
            throw DumpError(
                .badData, "safetensors header names a tensor twice (spelled with different escapes)", file: path)
        }
        var tensors: [SafetensorsTensor] = []
        for (name, entry) in zip(entries.names, entries.entries) {
            tensors.append(try check(name: name, entry, path: path))
        }
        // Bytes in order, as the format requires: no two tensors share a byte, none leaves a hole before it, and
        // the data ends exactly where the last tensor does.
        tensors.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var previous: SafetensorsTensor?
        for tensor in tensors where tensor.end > tensor.begin {
            let expected = previous?.end ?? 0
            if let previous, tensor.begin < expected {
                throw DumpError(
                    .badData,
                    "tensors '\(previous.name)' (bytes \(previous.begin)–\(previous.end)) and '\(tensor.name)' "
                        + "(bytes \(tensor.begin)–\(tensor.end)) overlap", file: path, dataset: tensor.name)
            }
            if tensor.begin > expected {
                throw DumpError(
                    .badData,
                    "data bytes \(expected)–\(tensor.begin) before tensor '\(tensor.name)' belong to no tensor (the "
                        + "safetensors format allows no holes)", file: path, dataset: tensor.name)
            }
            previous = tensor
        }
        let dataBytes = fileSize - 8 - json.count
        let used = previous?.end ?? 0
        if let last = previous, used > dataBytes {
            throw DumpError(
                .notReadable,
                "file is truncated: tensor '\(last.name)' ends at data byte \(used), but only \(dataBytes) bytes "
                    + "follow the header", file: path, dataset: last.name)
        }
        if used < dataBytes {
            throw DumpError(
                .badData,
                "has \(dataBytes - used) bytes after its last tensor that its safetensors header does not describe",
                file: path)
        }
        return SafetensorsHeader(
            path: path, headerBytes: json.count, fileSize: fileSize, tensors: tensors, metadata: entries.metadata)
    }

    /// One tensor's entry, checked on its own.
    private static func check(name: String, _ entry: RawEntry, path: String) throws(DumpError) -> SafetensorsTensor {
        func fail(_ message: String) -> DumpError { DumpError(.badData, message, file: path, dataset: name) }
        // A NUL would cut the name where libhdf5 reads it; control characters would break the one-line messages.
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw DumpError(
                .badData, "safetensors header names a tensor with a control character (\(name.debugDescription))",
                file: path)
        }
        guard let dtype = SafetensorsDType(rawValue: entry.dtype) else {
            throw fail(
                "has dtype \(entry.dtype); kvstat reads F16, BF16, F32 and F64 tensors (and integer or BOOL "
                    + "padding tensors)")
        }
        guard !name.isEmpty else { throw fail("a tensor has an empty name") }
        guard entry.shape.count <= maxRank else {
            throw fail("has \(entry.shape.count) dimensions; at most \(maxRank) are supported")
        }
        var elements = 1
        for extent in entry.shape {
            guard extent >= 0 else { throw fail("has shape \(entry.shape), with a negative extent") }
            let (product, overflow) = elements.multipliedReportingOverflow(by: extent)
            guard !overflow, product <= Int.max / 8 else {
                throw fail("declares shape \(entry.shape), more elements than can be addressed")
            }
            elements = product
        }
        guard entry.dataOffsets.count == 2 else {
            throw fail("has data_offsets \(entry.dataOffsets); expected [begin, end]")
        }
        let (begin, end) = (entry.dataOffsets[0], entry.dataOffsets[1])
        guard begin >= 0, end >= begin else {
            throw fail("has data_offsets [\(begin), \(end)]: they must satisfy 0 ≤ begin ≤ end")
        }
        let bytes = elements * dtype.width
        guard end - begin == bytes else {
            throw fail(
                "has data_offsets [\(begin), \(end)] (\(end - begin) bytes), but shape \(entry.shape) of "
                    + "\(dtype.rawValue) takes \(bytes) bytes")
        }
        return SafetensorsTensor(name: name, dtype: dtype, shape: entry.shape, begin: begin, end: end)
    }

    /// One error line for a header the decoder refused, naming the tensor whose entry is wrong.
    private static func describe(_ error: DecodingError, json: Data, path: String) -> DumpError {
        let context: DecodingError.Context
        switch error {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
            context = c
        @unknown default:
            return DumpError(.badData, "safetensors header cannot be read (\(error))", file: path)
        }
        guard let tensor = context.codingPath.first?.stringValue else {
            if case .dataCorrupted = error {
                // The decoder calls a number that is not a whole Int (24.5, 1e30) invalid JSON as well.
                if (try? JSONSerialization.jsonObject(with: json)) != nil {
                    return DumpError(
                        .badData,
                        "safetensors header has a shape or data_offsets number that is not a whole number an Int "
                            + "can hold", file: path)
                }
                return DumpError(.badData, "safetensors header is not valid JSON", file: path)
            }
            return DumpError(.badData, "safetensors header is not a JSON object of tensors", file: path)
        }
        let field = context.codingPath.dropFirst().first?.stringValue
        var reason: String
        switch error {
        case .keyNotFound(let key, _): reason = "has no '\(key.stringValue)'"
        case .typeMismatch, .valueNotFound:
            reason = field.map { "has a '\($0)' of the wrong type" } ?? "is not an object"
        default: reason = field.map { "has an unreadable '\($0)'" } ?? "is unreadable"
        }
        reason += " (expected {\"dtype\": \"F16\", \"shape\": [whole numbers ≥ 0], \"data_offsets\": [begin, end]})"
        return DumpError(.badData, "safetensors header entry " + reason, file: path, dataset: tensor)
    }

    /// The top-level object's keys as written (raw bytes between the quotes), nil when `json` is not an object
    /// this scanner can follow (the decoder has already accepted it, so that does not happen in practice).
    static func topLevelKeys(_ json: [UInt8]) -> [ArraySlice<UInt8>]? {
        var i = 0
        func skipSpace() {
            while i < json.count, [0x20, 0x09, 0x0A, 0x0D].contains(json[i]) { i += 1 }
        }
        /// Skips a string starting at the quote at `i`; returns its raw contents.
        func string() -> ArraySlice<UInt8>? {
            guard i < json.count, json[i] == UInt8(ascii: "\"") else { return nil }
            let start = i + 1
            i += 1
            while i < json.count {
                if json[i] == UInt8(ascii: "\\") {
                    i += 2
                    continue
                }
                if json[i] == UInt8(ascii: "\"") {
                    i += 1
                    return json[start..<(i - 1)]
                }
                i += 1
            }
            return nil
        }
        skipSpace()
        guard i < json.count, json[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var keys: [ArraySlice<UInt8>] = []
        while true {
            skipSpace()
            guard i < json.count else { return nil }
            if json[i] == UInt8(ascii: "}") { return keys }
            if json[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard let key = string() else { return nil }
            keys.append(key)
            skipSpace()
            guard i < json.count, json[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            // Skip the value: nested brackets counted, strings skipped whole.
            var depth = 0
            while i < json.count {
                let byte = json[i]
                if byte == UInt8(ascii: "\"") {
                    guard string() != nil else { return nil }
                    continue
                }
                if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") { depth += 1 }
                if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                    if depth == 0 { break }
                    depth -= 1
                }
                if byte == UInt8(ascii: ","), depth == 0 { break }
                i += 1
            }
        }
    }
}

/// The header as JSON: tensor entries in the decoder's order, and the metadata.
private struct RawHeader: Decodable {
    var names: [String] = []
    var entries: [RawEntry] = []
    var metadata: [String: String] = [:]
    var hasMetadata = false

    struct Name: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Name.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                hasMetadata = true
                // Provenance only: a value that is not text is shown as its JSON text or left out, not fatal.
                let values = (try? container.decode([String: MetadataValue].self, forKey: key)) ?? [:]
                metadata = values.compactMapValues(\.text)
            } else {
                names.append(key.stringValue)
                entries.append(try container.decode(RawEntry.self, forKey: key))
            }
        }
    }
}

private struct RawEntry: Decodable {
    var dtype: String
    var shape: [Int]
    var dataOffsets: [Int]

    enum CodingKeys: String, CodingKey {
        case dtype, shape
        case dataOffsets = "data_offsets"
    }
}

/// A `__metadata__` value: text for strings, numbers and booleans; nil for anything else.
private struct MetadataValue: Decodable {
    var text: String?

    init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer()
        if let string = try? value.decode(String.self) {
            text = string
        } else if let bool = try? value.decode(Bool.self) {
            text = String(bool)
        } else if let integer = try? value.decode(Int.self) {
            text = String(integer)
        } else if let number = try? value.decode(Double.self) {
            text = "\(number)"
        } else {
            text = nil
        }
    }
}
