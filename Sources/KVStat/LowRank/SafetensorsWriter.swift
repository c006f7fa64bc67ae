// Writes float32 tensors in the safetensors format (what `safetensors.torch.load_file` reads): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
import Foundation

/// A safetensors file being assembled in memory (projection artifacts are small: channels × rank floats).
public struct SafetensorsWriter {
    private var tensors: [(name: String, shape: [Int], values: [Float])] = []
    /// Free-form string metadata (`__metadata__` in the header).
    public var metadata: [String: String] = [:]

    public init() {}

    /// Adds a row-major float32 tensor.
    public mutating func add(_ name: String, shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "\(name): shape \(shape) does not hold \(values.count) values")
        tensors.append((name, shape, values))
    }

    /// The file's bytes. Tensors are laid out in name order; the header is padded with spaces to a multiple
    /// of 8 bytes, as the reference implementation does, so the data is aligned.
    public func encoded() throws -> Data {
        let ordered = tensors.sorted { $0.name < $1.name }
        var header: [String: Any] = [:]
        var offset = 0
        for t in ordered {
            let bytes = t.values.count * 4
            header[t.name] =
                ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for t in ordered {
            t.values.withUnsafeBytes { raw in
                // float32 little-endian: the in-memory layout on every platform Swift runs kvstat on.
                data.append(contentsOf: raw)
            }
        }
        return data
    }
}
