// What a dataset's elements are, as far as kvstat cares: IEEE floats of a width, integers, strings, other.
internal import CHDF5

/// The element type of a dataset or attribute in the file.
public enum ElementType: Sendable, Equatable, CustomStringConvertible {
    /// IEEE floating point of `bits` width (16, 32, 64).
    case float(bits: Int)
    /// Two's-complement integer.
    case integer(bits: Int, signed: Bool)
    /// Fixed or variable length string.
    case string
    /// Anything else (compound, enum, reference, ...), with HDF5's class name.
    case other(String)

    public var description: String {
        switch self {
        case .float(let bits): return "float\(bits)"
        case .integer(let bits, let signed): return "\(signed ? "int" : "uint")\(bits)"
        case .string: return "string"
        case .other(let name): return name
        }
    }

    /// Bytes per element in the file.
    public var byteWidth: Int {
        switch self {
        case .float(let bits), .integer(let bits, _): return bits / 8
        case .string, .other: return 0
        }
    }

    init(type: hid_t) {
        let size = Int(H5Tget_size(type)) * 8
        let cls = H5Tget_class(type)
        if cls == H5T_FLOAT {
            self = .float(bits: size)
        } else if cls == H5T_INTEGER {
            self = .integer(bits: size, signed: H5Tget_sign(type) == H5T_SGN_2)
        } else if cls == H5T_STRING {
            self = .string
        } else if cls == H5T_ENUM {
            // h5py stores numpy bool as an enum over int8.
            self = .integer(bits: size, signed: true)
        } else {
            let name: String
            switch cls {
            case H5T_COMPOUND: name = "compound"
            case H5T_REFERENCE: name = "reference"
            case H5T_ARRAY: name = "array"
            case H5T_VLEN: name = "vlen"
            case H5T_OPAQUE: name = "opaque"
            case H5T_BITFIELD: name = "bitfield"
            default: name = "unsupported type class \(cls.rawValue)"
            }
            self = .other(name)
        }
    }
}

/// The in-memory element a read converts to. `.fileType` reads the stored bytes unconverted.
public enum MemoryElement: Sendable {
    case float32, float64, int64, uint8, uint16
    /// The dataset's own type: no conversion (used for float16/bfloat16, converted by the caller).
    case fileType
}

extension MemoryElement {
    /// The native HDF5 type for this element (`.fileType` has none: callers pass the dataset's own type).
    var nativeType: hid_t {
        switch self {
        case .float32: return kv_h5t_native_float()
        case .float64: return kv_h5t_native_double()
        case .int64: return kv_h5t_native_int64()
        case .uint8: return kv_h5t_native_uint8()
        case .uint16: return kv_h5t_native_uint16()
        case .fileType: preconditionFailure("fileType has no native HDF5 type")
        }
    }

    /// Bytes per element in memory (`.fileType`: 0, the caller knows the file width).
    public var byteWidth: Int {
        switch self {
        case .float32: return 4
        case .float64, .int64: return 8
        case .uint8: return 1
        case .uint16: return 2
        case .fileType: return 0
        }
    }
}
