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
    /// The filter's client data values as stored (shuffle: the element size; gzip: the level).
    public var parameters: [UInt32] = []
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
    /// How the elements are laid out in the file.
    public let storageLayout: StorageLayout
    /// Source file names of a virtual dataset's mappings, as stored ("." is this file); empty otherwise.
    public let virtualSourceFiles: [String]
    /// Raw-data files of a dataset with external storage (`H5Pset_external`), as stored; usually empty.
    public let externalFiles: [String]
    /// The bit layout of a floating-point element type, nil for other types.
    public let floatFields: FloatFields?
    /// Whether partial edge chunks are stored unfiltered (`H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS`), in which
    /// case their bytes cannot be told apart from filtered ones by the filter mask.
    public let partialChunksUnfiltered: Bool
    private let fileType: Handle

    /// Chunk cache per open dataset (libhdf5's; kvstat's own chunk reader keeps the same budget of decoded
    /// chunks). Token blocks are read in whole chunks along every axis but tokens, so the cache only has to hold
    /// the chunks a block boundary cuts; kvstat keeps one dataset open per layer.
    public static let chunkCacheBytes = 8 << 20

    convenience init(openIn parent: Handle, path: String, file: String) throws {
        silenceHDF5ErrorPrinting()
        let dapl = Handle(
            try check(
                H5Pcreate(kv_h5p_dataset_access()), .openFailed, "cannot create property list", file: file, object: path
            ), .propertyList)
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
        // An extent beyond Int.max cannot be addressed (nor is it ever a real tensor); refuse it here so no
        // caller converts it.
        if let huge = dims.prefix(rank).first(where: { $0 > hsize_t(Int.max) }) {
            throw HDF5Error(
                .unsupportedType, "declares an axis of \(huge) elements, more than can be addressed",
                file: file, object: path)
        }
        shape = rank == 0 ? [] : dims.prefix(rank).map { Int($0) }

        fileType = Handle(
            try check(H5Dget_type(handle.id), .readFailed, "cannot read dataset type", file: file, object: path),
            .datatype)
        element = ElementType(type: fileType.id)
        isLittleEndian = H5Tget_order(fileType.id) != H5T_ORDER_BE
        floatFields = H5Tget_class(fileType.id) == H5T_FLOAT ? FloatFields(type: fileType.id) : nil

        let dcpl = Handle(
            try check(
                H5Dget_create_plist(handle.id), .readFailed,
                "cannot read dataset "
                    + "properties", file: file, object: path),
            .propertyList)
        let layout = H5Pget_layout(dcpl.id)
        switch layout {
        case H5D_COMPACT: storageLayout = .compact
        case H5D_CONTIGUOUS: storageLayout = .contiguous
        case H5D_CHUNKED: storageLayout = .chunked
        case H5D_VIRTUAL: storageLayout = .virtual
        default: storageLayout = .other
        }
        virtualSourceFiles = layout == H5D_VIRTUAL ? HDF5Dataset.virtualSources(dcpl.id) : []
        externalFiles = HDF5Dataset.externalFiles(dcpl.id)
        if layout == H5D_CHUNKED {
            var chunk = [hsize_t](repeating: 0, count: max(rank, 1))
            H5Pget_chunk(dcpl.id, Int32(rank), &chunk)
            chunkShape = chunk.prefix(rank).map { Int($0) }
            partialChunksUnfiltered = kv_partial_chunks_unfiltered(dcpl.id) != 0
        } else {
            chunkShape = nil
            partialChunksUnfiltered = false
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
            filters.append(
                HDF5Filter(
                    id: id, name: HDF5Filter.wellKnownName(id) ?? (stored.isEmpty ? "filter \(id)" : stored),
                    available: H5Zfilter_avail(H5Z_filter_t(id)) > 0,
                    parameters: Array(values.prefix(min(max(elements, 0), values.count)))))
        }
        self.filters = filters
        super.init(handle: handle, path: path, file: file)
    }

    /// Bytes the dataset occupies in the file (after compression).
    public var storageBytes: Int { Int(clamping: H5Dget_storage_size(handle.id)) }

    /// Whether the dataset's elements were ever written, from the file's metadata alone (no data is read).
    /// Chunked datasets count their allocated chunks; contiguous ones ask whether storage was allocated.
    public var writtenState: WrittenState {
        switch storageLayout {
        case .chunked:
            guard let chunkShape, !shape.isEmpty else { return .unknown }
            var total = 1
            for (extent, chunk) in zip(shape, chunkShape) {
                let step = max(chunk, 1)
                let (product, overflow) = total.multipliedReportingOverflow(by: (extent + step - 1) / step)
                if overflow { return .unknown }
                total = product
            }
            let allocated = Int(kv_allocated_chunks(handle.id))
            if allocated < 0 { return .unknown }
            if allocated == 0 && total > 0 { return .never }
            return allocated < total ? .partly(allocatedChunks: allocated, totalChunks: total) : .fully
        case .contiguous:
            switch kv_space_status(handle.id) {
            case 0: return .never
            case 2: return .fully
            default: return .unknown
            }
        case .compact: return .fully
        case .virtual, .other: return .unknown
        }
    }

    /// Whether the chunk holding element `offset` (one index per dimension) was ever written. Only for
    /// chunked datasets; an index lookup, no data is read.
    public func isChunkWritten(at offset: [Int]) -> Bool {
        let coordinates = offset.map { hsize_t($0) }
        return kv_chunk_bytes(handle.id, coordinates) > 0
    }

    /// Byte offset of a contiguous dataset's elements in the file, nil when not contiguous or never written.
    public var contiguousOffset: Int? {
        let offset = H5Dget_offset(handle.id)
        return offset == haddr_t.max || offset > haddr_t(Int.max) ? nil : Int(offset)
    }

    /// Source file names of the virtual dataset mappings in `dcpl`.
    private static func virtualSources(_ dcpl: hid_t) -> [String] {
        var count = 0
        guard H5Pget_virtual_count(dcpl, &count) >= 0 else { return [] }
        var names: [String] = []
        for index in 0..<min(count, 100_000) {
            let length = H5Pget_virtual_filename(dcpl, index, nil, 0)
            guard length >= 0 else { continue }
            var buffer = [CChar](repeating: 0, count: length + 1)
            H5Pget_virtual_filename(dcpl, index, &buffer, buffer.count)
            names.append(String(cChars: buffer))
        }
        return names
    }

    /// Raw-data file names of external storage in `dcpl`.
    private static func externalFiles(_ dcpl: hid_t) -> [String] {
        let count = H5Pget_external_count(dcpl)
        guard count > 0 else { return [] }
        var names: [String] = []
        for index in 0..<UInt32(min(count, 10_000)) {
            var buffer = [CChar](repeating: 0, count: 4097)
            var offset: off_t = 0
            var size: hsize_t = 0
            guard H5Pget_external(dcpl, index, buffer.count, &buffer, &offset, &size) >= 0 else { continue }
            names.append(String(cChars: buffer))
        }
        return names
    }

    /// Reads the hyperslab `start ..< start + count` (one entry per dimension) into `buffer`, row-major in the
    /// dataset's dimension order, converting to `memory` (`.fileType` copies the stored bytes unconverted).
    /// `buffer` must hold at least `count.reduce(1, *)` elements of the memory type.
    public func read(
        start: [Int], count: [Int], as memory: MemoryElement, into buffer: UnsafeMutableRawBufferPointer
    ) throws {
        guard start.count == shape.count, count.count == shape.count,
            zip(zip(start, count), shape).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1 })
        else {
            throw HDF5Error(
                .invalidArgument, "hyperslab start \(start) count \(count) outside shape \(shape)", file: filePath,
                object: path)
        }
        silenceHDF5ErrorPrinting()
        let elements = count.reduce(1, *)
        let width = memory == .fileType ? element.byteWidth : memory.byteWidth
        precondition(buffer.count >= elements * width, "read buffer too small")
        if elements == 0 { return }
        let memoryType = memory == .fileType ? fileType.id : memory.nativeType
        let fileSpace = Handle(H5Dget_space(handle.id), .dataspace)
        if !shape.isEmpty {
            let s = start.map { hsize_t($0) }
            let c = count.map { hsize_t($0) }
            try check(
                H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, s, nil, c, nil), .readFailed,
                "cannot select hyperslab", file: filePath, object: path)
        }
        let dims = count.map { hsize_t($0) }
        let memorySpace = Handle(
            H5Screate_simple(Int32(max(dims.count, 1)), dims.isEmpty ? [1] : dims, nil), .dataspace)
        let status = H5Dread(handle.id, memoryType, memorySpace.id, fileSpace.id, kv_h5p_default(), buffer.baseAddress)
        if status < 0 {
            let unavailable = filters.filter { !$0.available }.map(\.name)
            if !unavailable.isEmpty {
                throw HDF5Error(
                    .unavailableFilter, HDF5Filter.unavailableMessage(unavailable), file: filePath, object: path,
                    cause: currentErrorStack())
            }
            let cause = currentErrorStack()
            // A failure inside the filter pipeline (H5Z…): the stored bytes of a chunk do not decode.
            let undecodable = cause?.contains("H5Z") == true
            throw HDF5Error(
                .readFailed,
                "cannot read elements \(start) + \(count)"
                    + (undecodable ? ": a compressed chunk there does not decode (the file is corrupt)" : ""),
                file: filePath, object: path, cause: cause)
        }
    }

    /// Most elements `readAll` reads.
    public static let readAllLimit = 1 << 30

    /// Reads the whole dataset converted to `T`.
    /// Refused above `readAllLimit` elements (1 Gi: 8 GiB of float64), so a file that declares an absurd shape
    /// cannot make the reader allocate it; the streaming readers read hyperslabs instead.
    public func readAll<T: HDF5Storable & Numeric>(as: T.Type = T.self) throws -> [T] {
        var elements = 1
        for extent in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: extent)
            guard !overflow, product <= HDF5Dataset.readAllLimit else {
                throw HDF5Error(
                    .invalidArgument, "declares shape \(shape), too large to read whole", file: filePath, object: path)
            }
            elements = product
        }
        var values = [T](repeating: 0, count: elements)
        try values.withUnsafeMutableBytes { raw in
            try read(start: shape.map { _ in 0 }, count: shape, as: T.memoryElement, into: raw)
        }
        return values
    }
}

/// How a dataset's elements are stored in the file.
public enum StorageLayout: Sendable, Equatable {
    case compact, contiguous, chunked, virtual, other
}

/// Whether a dataset's elements were ever written (see `HDF5Dataset.writtenState`).
public enum WrittenState: Sendable, Equatable {
    /// No storage was ever allocated: every element reads as the fill value.
    case never
    /// Some chunks were never written: their elements read as the fill value.
    case partly(allocatedChunks: Int, totalChunks: Int)
    /// All storage is allocated.
    case fully
    /// Not known (virtual or other layouts, or an HDF5 too old to count chunks).
    case unknown
}

/// The bit fields of an HDF5 floating-point type (`H5Tget_fields`, `H5Tget_ebias`).
public struct FloatFields: Sendable, Equatable {
    public var bits: Int
    public var signPosition: Int
    public var exponentPosition: Int
    public var exponentSize: Int
    public var mantissaPosition: Int
    public var mantissaSize: Int
    public var exponentBias: Int

    init(type: hid_t) {
        var spos = 0
        var epos = 0
        var esize = 0
        var mpos = 0
        var msize = 0
        H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize)
        bits = Int(H5Tget_size(type)) * 8
        (signPosition, exponentPosition, exponentSize) = (spos, epos, esize)
        (mantissaPosition, mantissaSize) = (mpos, msize)
        exponentBias = Int(H5Tget_ebias(type))
    }

    private var fields: [Int] {
        [bits, signPosition, exponentPosition, exponentSize, mantissaPosition, mantissaSize, exponentBias]
    }

    /// IEEE 754 binary16: sign bit 15, 5 exponent bits at 10 (bias 15), 10 mantissa bits.
    public var isIEEEHalf: Bool {
        fields == [16, 15, 10, 5, 0, 10, 15]
    }

    /// bfloat16 declared as an HDF5 float type: sign bit 15, 8 exponent bits at 7 (bias 127), 7 mantissa bits.
    public var isBFloat16: Bool {
        fields == [16, 15, 7, 8, 0, 7, 127]
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
        "compression filter '\(names.joined(separator: "', '"))' is not available in this HDF5 library; convert the "
            + "file with `h5repack -f GZIP=4 IN.h5 OUT.h5` (h5repack needs the filter plugin, e.g. from hdf5plugin) "
            + "or rewrite it with h5py using compression='gzip'"
    }
}
