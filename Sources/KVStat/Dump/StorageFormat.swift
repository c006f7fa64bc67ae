// The element formats kvstat reads, including bfloat16 stored as uint16 with a dtype attribute.
import HDF5Kit

/// How a tensor's elements are stored on disk. All are read as float32.
public enum StorageFormat: String, Sendable, Codable {
    case float16, bfloat16, float32, float64

    /// Bytes per stored element.
    public var byteWidth: Int {
        switch self {
        case .float16, .bfloat16: return 2
        case .float32: return 4
        case .float64: return 8
        }
    }

    /// The format of `dataset`: its HDF5 float type (a 16-bit float type laid out as bfloat16 is bfloat16),
    /// or bfloat16 when it stores 16-bit integers and the dataset or file carries `dtype = "bfloat16"`.
    static func of(_ dataset: HDF5Dataset, fileDtype: String?) throws -> StorageFormat {
        switch dataset.element {
        case .float(16):
            // HDF5 float types carry their bit layout: IEEE half, or bfloat16 declared as a float type.
            if let fields = dataset.floatFields, fields.isBFloat16 { return .bfloat16 }
            if let fields = dataset.floatFields, !fields.isIEEEHalf {
                let message =
                    "stores a 16-bit float type that is neither IEEE half nor bfloat16 (exponent "
                    + "\(fields.exponentSize) bits, mantissa \(fields.mantissaSize) bits, bias \(fields.exponentBias))"
                throw DumpError(.badData, message, dataset: dataset.path)
            }
            return .float16
        case .float(32): return .float32
        case .float(64): return .float64
        case .integer(16, _):
            let declared = try dataset.stringAttribute("dtype") ?? fileDtype
            if declared?.lowercased() == "bfloat16" { return .bfloat16 }
            throw DumpError(
                .badData,
                "stores 16-bit integers without a dtype=\"bfloat16\" attribute; expected float16, bfloat16 (uint16 "
                    + "with that attribute), float32 or float64",
                dataset: dataset.path)
        default:
            throw DumpError(
                .badData,
                "stores \(dataset.element); expected float16, bfloat16 (uint16 with a dtype=\"bfloat16\" "
                    + "attribute), float32 or float64",
                dataset: dataset.path)
        }
    }
}
