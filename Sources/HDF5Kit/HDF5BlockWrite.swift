// Streaming writes to a file on disk: datasets created with their full extent (chunked), then filled one
// hyperslab at a time, so a writer holds one block per tensor instead of the whole file (HDF5MemoryImage's way).
// float16 datasets are written from raw IEEE half bits (the conversion of HDF5 1.10 rounds some values wrongly).
internal import CHDF5

/// The element type of a dataset created by `createDataset(_:shape:element:chunks:)`; the caller's buffers hold
/// the same element, unconverted (float16 as its 16-bit pattern).
public enum StoredElement: Sendable, Equatable {
    case float16, float32, uint8, int32, int64

    /// Bytes per element, in memory and in the file.
    public var byteWidth: Int {
        switch self {
        case .uint8: return 1
        case .float16: return 2
        case .float32, .int32: return 4
        case .int64: return 8
        }
    }

    /// A new handle to the little-endian file (and memory) type; float16 as h5py writes it.
    func typeHandle(file: String, object: String) throws -> Handle {
        let base: hid_t
        switch self {
        case .float16, .float32: base = kv_h5t_ieee_f32le()
        case .uint8: base = kv_h5t_std_integer_le(8, 0)
        case .int32: base = kv_h5t_std_integer_le(32, 1)
        case .int64: base = kv_h5t_std_integer_le(64, 1)
        }
        return try copiedType(base, half: self == .float16, file: file, object: object)
    }
}

/// A copy of the datatype `base`, turned into IEEE half (binary16) when `half`: libhdf5 1.10 has no half type of
/// its own, so a 32-bit float copy gets half's fields. Used for the datasets kvstat creates (decompressed dumps)
/// and catalogues (safetensors' F16 tensors).
func copiedType(_ base: hid_t, half: Bool, file: String, object: String) throws -> Handle {
    let type = Handle(
        try check(H5Tcopy(base), .createFailed, "cannot copy a datatype", file: file, object: object), .datatype)
    if half {
        // Sign bit 15, exponent 5 bits at 10, mantissa 10 bits at 0, bias 15; fields before the size shrinks.
        try check(
            H5Tset_fields(type.id, 15, 10, 5, 0, 10), .createFailed, "cannot lay out a half type", file: file,
            object: object)
        try check(H5Tset_size(type.id, 2), .createFailed, "cannot size a half type", file: file, object: object)
        try check(H5Tset_ebias(type.id, 15), .createFailed, "cannot bias a half type", file: file, object: object)
    }
    return type
}

extension HDF5Group {
    /// Creates a dataset of `element` values with its full `shape` and writes nothing: fill it with
    /// `HDF5Dataset.write(_:element:start:count:)`. `chunks` (clipped to the shape, at least 1 per axis) makes it
    /// chunked; nil stores it contiguous. Intermediate groups are created.
    @discardableResult
    public func createDataset(
        _ relative: String, shape: [Int], element: StoredElement, chunks: [Int]? = nil
    ) throws -> HDF5Dataset {
        let object = childPath(relative)
        let dims = shape.map { hsize_t(max($0, 0)) }
        let space = Handle(
            try check(
                H5Screate_simple(Int32(dims.count), dims, nil), .createFailed, "cannot create dataspace",
                file: filePath, object: object), .dataspace)
        let dcpl = Handle(
            try check(
                H5Pcreate(kv_h5p_dataset_create()), .createFailed, "cannot create property list", file: filePath,
                object: object), .propertyList)
        if let chunks, !shape.contains(0) {
            let chunkDims = zip(chunks, shape).map { hsize_t(max(min($0, $1), 1)) }
            try check(
                H5Pset_chunk(dcpl.id, Int32(chunkDims.count), chunkDims), .createFailed, "cannot set chunking",
                file: filePath, object: object)
        }
        let type = try element.typeHandle(file: filePath, object: object)
        let lcpl = Handle(
            try check(
                H5Pcreate(kv_h5p_link_create()), .createFailed, "cannot create property list", file: filePath,
                object: object), .propertyList)
        H5Pset_create_intermediate_group(lcpl.id, 1)
        let id = H5Dcreate2(handle.id, relative, type.id, space.id, lcpl.id, dcpl.id, kv_h5p_default())
        let dataset = Handle(
            try check(id, .createFailed, "cannot create dataset", file: filePath, object: object), .dataset)
        return try HDF5Dataset(opened: dataset, path: object, file: filePath)
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
