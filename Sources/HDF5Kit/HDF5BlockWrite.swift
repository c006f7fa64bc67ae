// Streaming writes to a file on disk: datasets created with their full extent (chunked), then filled one
// hyperslab at a time, so a writer holds one block per tensor instead of the whole file (HDF5MemoryImage's way).
// float16 datasets are written from raw IEEE half bits (the conversion of HDF5 1.10 rounds some values wrongly).
internal import CHDF5

/// The little-endian element type of a dataset kvstat creates, unconverted: the caller's buffers hold the same
/// element (float16 as its 16-bit pattern), for block writes (`createDataset`) and for datasets whose elements
/// live in another file (`createExternalDataset`).
public enum StoredElement: Sendable, Equatable {
    /// IEEE binary16 (the type h5py writes for numpy float16).
    case float16
    case float32
    case float64
    /// A two's-complement or unsigned integer of 8, 16, 32 or 64 bits.
    case integer(bits: Int, signed: Bool)

    public static let uint8 = StoredElement.integer(bits: 8, signed: false)
    public static let int32 = StoredElement.integer(bits: 32, signed: true)
    public static let int64 = StoredElement.integer(bits: 64, signed: true)

    /// Bytes per element, in memory and in the file.
    public var byteWidth: Int {
        switch self {
        case .float16: return 2
        case .float32: return 4
        case .float64: return 8
        case .integer(let bits, _): return bits / 8
        }
    }

    /// A new handle to the little-endian file (and memory) type. libhdf5 1.10 has no half type of its own: float16
    /// is a copy of float32 given half's fields, as h5py builds it.
    func typeHandle(file: String, object: String) throws -> Handle {
        let base: hid_t
        switch self {
        case .float16, .float32: base = kv_h5t_ieee_f32le()
        case .float64: base = kv_h5t_ieee_f64le()
        case .integer(let bits, let signed): base = kv_h5t_std_integer_le(Int32(bits), signed ? 1 : 0)
        }
        guard base >= 0 else {
            throw HDF5Error(.invalidArgument, "no HDF5 type for \(self)", file: file, object: object)
        }
        let type = Handle(
            try check(H5Tcopy(base), .createFailed, "cannot copy a datatype", file: file, object: object), .datatype)
        if self == .float16 {
            // Sign bit 15, exponent 5 bits at 10, mantissa 10 bits at 0, bias 15; fields before the size shrinks.
            try check(
                H5Tset_fields(type.id, 15, 10, 5, 0, 10), .createFailed, "cannot lay out a half type", file: file,
                object: object)
            try check(H5Tset_size(type.id, 2), .createFailed, "cannot size a half type", file: file, object: object)
            try check(H5Tset_ebias(type.id, 15), .createFailed, "cannot bias a half type", file: file, object: object)
        }
        return type
    }
}

extension HDF5Group {
    /// Creates a dataset of `element` values with its full `shape` and writes nothing: fill it with
    /// `HDF5Dataset.write(_:element:start:count:)`. `chunks` (clipped to the shape, at least 1 per axis) makes it
    /// chunked; nil stores it contiguous. Intermediate groups are created.
    @discardableResult
    public func createDataset(
        _ relative: String, shape: [Int], element: StoredElement, chunks: [Int]? = nil
    ) throws -> HDF5Dataset {
        let type = try element.typeHandle(file: filePath, object: childPath(relative))
        let dataset = try makeDataset(relative, type: type.id, shape: shape.map { max($0, 0) }) { dcpl in
            guard let chunks, !shape.contains(0) else { return }
            let chunkDims = zip(chunks, shape).map { hsize_t(max(min($0, $1), 1)) }
            try check(
                H5Pset_chunk(dcpl, Int32(chunkDims.count), chunkDims), .createFailed, "cannot set chunking",
                file: filePath, object: childPath(relative))
        }
        return try HDF5Dataset(opened: dataset, path: childPath(relative), file: filePath)
    }
}

extension HDF5Dataset {
    /// Writes the row-major block `bytes` (`count.reduce(1, *)` elements of `element`, the dataset's own type)
    /// at offset `start` of the dataset. An empty block writes nothing.
    public func write(_ bytes: UnsafeRawBufferPointer, element: StoredElement, start: [Int], count: [Int]) throws {
        let elements = count.reduce(1, *)
        guard start.count == shape.count, count.count == shape.count,
            zip(zip(start, count), shape).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1 }),
            bytes.count >= elements * element.byteWidth
        else {
            throw HDF5Error(
                .invalidArgument, "block at \(start) of \(count) does not fit shape \(shape) or its buffer",
                file: filePath, object: path)
        }
        guard elements > 0 else { return }
        let type = try element.typeHandle(file: filePath, object: path)
        let fileSpace = Handle(
            try check(H5Dget_space(handle.id), .writeFailed, "cannot get dataspace", file: filePath, object: path),
            .dataspace)
        let offsets = start.map { hsize_t($0) }
        let counts = count.map { hsize_t($0) }
        try check(
            H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, offsets, nil, counts, nil), .writeFailed,
            "cannot select a block", file: filePath, object: path)
        let memorySpace = Handle(
            try check(
                H5Screate_simple(Int32(counts.count), counts, nil), .writeFailed, "cannot create dataspace",
                file: filePath, object: path), .dataspace)
        try check(
            H5Dwrite(handle.id, type.id, memorySpace.id, fileSpace.id, kv_h5p_default(), bytes.baseAddress),
            .writeFailed, "cannot write a block", file: filePath, object: path)
    }
}
