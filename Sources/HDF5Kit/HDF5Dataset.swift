// Datasets: shape, element type, chunking and filters, and hyperslab reads into caller-provided buffers.
internal import CHDF5

/// One filter in a dataset's pipeline (gzip, shuffle, lzf, blosc, ...).
public struct HDF5Filter: Sendable, Equatable {
    /// HDF5's filter id (1 = deflate/gzip, 2 = shuffle, 32000 = lzf, 32001 = blosc, ...).
    public var id: Int
    /// A readable name: the one stored in the file, else a well-known name for the id.
    public var name: String
    /// Whether this libhdf5 can decode it.
    public var available: Bool
}

/// An open dataset. Reads go into buffers the caller owns; nothing is cached here beyond HDF5's chunk cache.
public final class HDF5Dataset: HDF5Node, @unchecked Sendable {
    /// Extent per dimension.
    public let shape: [Int]
    /// Stored element type.
    public let element: ElementType
    /// Whether multi-byte elements are stored little-endian (the byte order `.fileType` reads deliver).
    public let isLittleEndian: Bool
    /// Chunk extent per dimension, nil for contiguous or compact storage.
    public let chunkShape: [Int]?
    /// The filter pipeline, in order.
    public let filters: [HDF5Filter]
    private let fileType: Handle

    /// Chunk cache per open dataset. Token blocks are read in whole chunks along every axis but tokens, so the
    /// cache only has to hold the chunks a block boundary cuts; kvstat keeps one dataset open per layer.
    static let chunkCacheBytes = 8 << 20

    convenience init(openIn parent: Handle, path: String, file: String) throws {
        silenceHDF5ErrorPrinting()
        let dapl = Handle(try check(H5Pcreate(kv_h5p_dataset_access()), .openFailed, "cannot create property list", file: file, object: path), .propertyList)
        H5Pset_chunk_cache(dapl.id, 12_421, HDF5Dataset.chunkCacheBytes, 1.0)
        let id = H5Dopen2(parent.id, path, dapl.id)
        let handle = Handle(try check(id, .objectNotFound, "cannot open dataset", file: file, object: path), .dataset)
        try self.init(opened: handle, path: path, file: file)
    }

    init(opened handle: Handle, path: String, file: String) throws {
        let space = Handle(H5Dget_space(handle.id), .dataspace)
        let rank = Int(H5Sget_simple_extent_ndims(space.id))
        try check(rank, .readFailed, "cannot read dataset shape", file: file, object: path)
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space.id, &dims, nil)
        shape = rank == 0 ? [] : dims.prefix(rank).map { Int($0) }

        fileType = Handle(try check(H5Dget_type(handle.id), .readFailed, "cannot read dataset type", file: file, object: path), .datatype)
        element = ElementType(type: fileType.id)
        isLittleEndian = H5Tget_order(fileType.id) != H5T_ORDER_BE

        let dcpl = Handle(try check(H5Dget_create_plist(handle.id), .readFailed, "cannot read dataset properties", file: file, object: path), .propertyList)
        if H5Pget_layout(dcpl.id) == H5D_CHUNKED {
            var chunk = [hsize_t](repeating: 0, count: max(rank, 1))
            H5Pget_chunk(dcpl.id, Int32(rank), &chunk)
            chunkShape = chunk.prefix(rank).map { Int($0) }
        } else {
            chunkShape = nil
        }
        var filters: [HDF5Filter] = []
        let count = H5Pget_nfilters(dcpl.id)
        for index in 0..<max(count, 0) {
            var flags: UInt32 = 0
            var elements = 8
            var values = [UInt32](repeating: 0, count: 8)
            var name = [CChar](repeating: 0, count: 256)
            var config: UInt32 = 0
            let id = Int(H5Pget_filter2(dcpl.id, UInt32(index), &flags, &elements, &values, name.count, &name, &config))
            let stored = String(cChars: name)
            filters.append(HDF5Filter(
                id: id, name: HDF5Filter.wellKnownName(id) ?? (stored.isEmpty ? "filter \(id)" : stored),
                available: H5Zfilter_avail(H5Z_filter_t(id)) > 0))
        }
        self.filters = filters
        super.init(handle: handle, path: path, file: file)
    }

    /// Bytes the dataset occupies in the file (after compression).
    public var storageBytes: Int { Int(H5Dget_storage_size(handle.id)) }

    /// Reads the hyperslab `start ..< start + count` (one entry per dimension) into `buffer`, row-major in the
    /// dataset's dimension order, converting to `memory` (`.fileType` copies the stored bytes unconverted).
    /// `buffer` must hold at least `count.reduce(1, *)` elements of the memory type.
    public func read(start: [Int], count: [Int], as memory: MemoryElement, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard start.count == shape.count, count.count == shape.count,
              zip(zip(start, count), shape).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1 })
        else {
            throw HDF5Error(.invalidArgument, "hyperslab start \(start) count \(count) outside shape \(shape)", file: filePath, object: path)
        }
        silenceHDF5ErrorPrinting()
        let elements = count.reduce(1, *)
        let width = memory == .fileType ? element.byteWidth : memory.byteWidth
        precondition(buffer.count >= elements * width, "read buffer too small")
        if elements == 0 { return }
        let memoryType = memory == .fileType ? fileType.id : memory.nativeType
        let fileSpace = Handle(H5Dget_space(handle.id), .dataspace)
        if !shape.isEmpty {
            let s = start.map { hsize_t($0) }, c = count.map { hsize_t($0) }
            try check(H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, s, nil, c, nil), .readFailed, "cannot select hyperslab", file: filePath, object: path)
        }
        let dims = count.map { hsize_t($0) }
        let memorySpace = Handle(H5Screate_simple(Int32(max(dims.count, 1)), dims.isEmpty ? [1] : dims, nil), .dataspace)
        let status = H5Dread(handle.id, memoryType, memorySpace.id, fileSpace.id, kv_h5p_default(), buffer.baseAddress)
        if status < 0 {
            let unavailable = filters.filter { !$0.available }.map(\.name)
            if !unavailable.isEmpty {
                throw HDF5Error(.unavailableFilter, HDF5Filter.unavailableMessage(unavailable), file: filePath, object: path, cause: currentErrorStack())
            }
            throw HDF5Error(.readFailed, "cannot read elements \(start) + \(count)", file: filePath, object: path, cause: currentErrorStack())
        }
    }

    /// Reads the whole dataset converted to `T`.
    public func readAll<T: HDF5Storable & Numeric>(as: T.Type = T.self) throws -> [T] {
        var values = [T](repeating: 0, count: shape.reduce(1, *))
        try values.withUnsafeMutableBytes { raw in
            try read(start: shape.map { _ in 0 }, count: shape, as: T.memoryElement, into: raw)
        }
        return values
    }
}

extension HDF5Filter {
    /// Names of filters registered with The HDF Group, for files that do not store one.
    static func wellKnownName(_ id: Int) -> String? {
        switch id {
        case 1: return "gzip"
        case 2: return "shuffle"
        case 3: return "fletcher32"
        case 4: return "szip"
        case 5: return "nbit"
        case 6: return "scaleoffset"
        case 307: return "bzip2"
        case 32000: return "lzf"
        case 32001: return "blosc"
        case 32004: return "lz4"
        case 32008: return "bitshuffle"
        case 32015: return "zstd"
        case 32026: return "blosc2"
        default: return nil
        }
    }

    /// The one-line explanation for filters this libhdf5 cannot decode, with the conversion command.
    public static func unavailableMessage(_ names: [String]) -> String {
        "compression filter '\(names.joined(separator: "', '"))' is not available in this HDF5 library; convert the file with `h5repack -f GZIP=4 IN.h5 OUT.h5` (h5repack needs the filter plugin, e.g. from hdf5plugin) or rewrite it with h5py using compression='gzip'"
    }
}
