// Groups: listing members, telling groups from datasets, opening and creating children.
internal import CHDF5

/// What a link in a group points at.
public enum ObjectKind: Sendable, Equatable {
    case group, dataset, other
}

/// An open HDF5 group (the root group included).
public final class HDF5Group: HDF5Node, @unchecked Sendable {
    init(openIn parent: Handle, path: String, file: String) throws {
        silenceHDF5ErrorPrinting()
        let id = H5Gopen2(parent.id, path, kv_h5p_default())
        try check(id, .objectNotFound, "cannot open group", file: file, object: path)
        super.init(handle: Handle(id, .group), path: path, file: file)
    }

    override init(handle: Handle, path: String, file: String) {
        super.init(handle: handle, path: path, file: file)
    }

    /// Absolute path of a child given a path relative to this group.
    public func childPath(_ relative: String) -> String {
        if relative.hasPrefix("/") { return relative }
        return path == "/" ? "/" + relative : path + "/" + relative
    }

    /// Number of links in the group (without reading their names).
    public func memberCount() throws -> Int {
        var info = H5G_info_t()
        try check(H5Gget_info(handle.id, &info), .readFailed, "cannot list group", file: filePath, object: path)
        return Int(clamping: info.nlinks)
    }

    /// `memberNames` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public func memberNames() throws -> [String] {
        try MetadataWatchdog.bracket { try memberNamesUnguarded() }
    }

    /// Names of the group's direct members, in HDF5's name order.
    private func memberNamesUnguarded() throws -> [String] {
        var info = H5G_info_t()
        try check(H5Gget_info(handle.id, &info), .readFailed, "cannot list group", file: filePath, object: path)
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for index in 0..<info.nlinks {
            let length = H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, kv_h5p_default())
            try check(length, .readFailed, "cannot read member name", file: filePath, object: path)
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            H5Lget_name_by_idx(
                handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, kv_h5p_default())
            names.append(String(cChars: buffer))
        }
        return names
    }

    /// Whether `relative` (which may contain `/`) names an existing object below this group.
    public func exists(_ relative: String) -> Bool {
        kv_path_exists(handle.id, relative) != 0
    }

    /// The kind of object at `relative`, or nil when nothing is there.
    public func kind(of relative: String) -> ObjectKind? {
        guard exists(relative) else { return nil }
        let type = kv_object_type(handle.id, relative)
        if type == H5O_TYPE_GROUP.rawValue { return .group }
        if type == H5O_TYPE_DATASET.rawValue { return .dataset }
        return type < 0 ? nil : .other
    }

    /// `group` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public func group(_ relative: String) throws -> HDF5Group {
        try MetadataWatchdog.bracket { try groupUnguarded(relative) }
    }

    /// Opens the group at `relative`.
    private func groupUnguarded(_ relative: String) throws -> HDF5Group {
        try HDF5Group(openIn: handle, path: childPath(relative), file: filePath)
    }

    /// `dataset` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public func dataset(_ relative: String) throws -> HDF5Dataset {
        try MetadataWatchdog.bracket { try datasetUnguarded(relative) }
    }

    /// Opens the dataset at `relative`.
    private func datasetUnguarded(_ relative: String) throws -> HDF5Dataset {
        guard exists(relative) else {
            throw HDF5Error(.objectNotFound, "no such dataset", file: filePath, object: childPath(relative))
        }
        return try HDF5Dataset(openIn: handle, path: childPath(relative), file: filePath)
    }

    /// A link-creation property list that creates missing intermediate groups.
    private func intermediateGroupsPropertyList(_ relative: String) throws -> Handle {
        let lcpl = H5Pcreate(kv_h5p_link_create())
        try check(lcpl, .createFailed, "cannot create property list", file: filePath, object: childPath(relative))
        let handle = Handle(lcpl, .propertyList)
        H5Pset_create_intermediate_group(handle.id, 1)
        return handle
    }

    /// Creates the dataset `relative` (intermediate groups too) of file type `type` and `shape` (a scalar when
    /// empty), its creation property list first set up by `configure` (chunking, filters, external storage): the
    /// one place the datasets kvstat writes are created.
    func makeDataset(
        _ relative: String, type: hid_t, shape: [Int], configure: (hid_t) throws -> Void
    ) throws -> Handle {
        let object = childPath(relative)
        let dims = shape.map { hsize_t($0) }
        let space = Handle(
            try check(
                shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), dims, nil), .createFailed,
                "cannot create dataspace", file: filePath, object: object), .dataspace)
        let dcpl = Handle(
            try check(
                H5Pcreate(kv_h5p_dataset_create()), .createFailed, "cannot create property list", file: filePath,
                object: object), .propertyList)
        try configure(dcpl.id)
        let lcpl = try intermediateGroupsPropertyList(relative)
        let id = H5Dcreate2(handle.id, relative, type, space.id, lcpl.id, dcpl.id, kv_h5p_default())
        return Handle(try check(id, .createFailed, "cannot create dataset", file: filePath, object: object), .dataset)
    }

    /// Creates a child group (intermediate groups too).
    public func createGroup(_ relative: String) throws -> HDF5Group {
        let lcpl = try intermediateGroupsPropertyList(relative)
        let id = H5Gcreate2(handle.id, relative, lcpl.id, kv_h5p_default(), kv_h5p_default())
        try check(id, .createFailed, "cannot create group", file: filePath, object: childPath(relative))
        return HDF5Group(handle: Handle(id, .group), path: childPath(relative), file: filePath)
    }

    /// Creates a dataset of `element` values with `shape`, optionally chunked and gzip-compressed, and
    /// writes `values` (row-major, `shape.reduce(1, *)` elements) into it.
    @discardableResult
    public func writeDataset<T: HDF5Storable>(
        _ relative: String, shape: [Int], values: [T], chunks: [Int]? = nil, gzipLevel: Int? = nil
    ) throws -> HDF5Dataset {
        let object = childPath(relative)
        guard values.count == shape.reduce(1, *) else {
            throw HDF5Error(
                .invalidArgument, "shape \(shape) does not hold \(values.count) values", file: filePath, object: object)
        }
        let dataset = try makeDataset(relative, type: T.memoryElement.nativeType, shape: shape) { dcpl in
            guard let chunks, !values.isEmpty else { return }
            let chunkDims = chunks.map { hsize_t(max($0, 1)) }
            try check(
                H5Pset_chunk(dcpl, Int32(chunkDims.count), chunkDims), .createFailed, "cannot set chunking",
                file: filePath, object: object)
            if let gzipLevel {
                H5Pset_shuffle(dcpl)
                H5Pset_deflate(dcpl, UInt32(gzipLevel))
            }
        }
        if !values.isEmpty {
            let status = values.withUnsafeBytes { raw in
                H5Dwrite(
                    dataset.id, T.memoryElement.nativeType, kv_h5s_all(), kv_h5s_all(), kv_h5p_default(),
                    raw.baseAddress)
            }
            try check(status, .writeFailed, "cannot write dataset", file: filePath, object: object)
        }
        return try HDF5Dataset(opened: dataset, path: object, file: filePath)
    }
}

/// Swift element types HDF5Kit can write and read without conversion surprises.
public protocol HDF5Storable: Sendable {
    /// The in-memory HDF5 type of this Swift type.
    static var memoryElement: MemoryElement { get }
}

extension Float: HDF5Storable { public static var memoryElement: MemoryElement { .float32 } }
extension Double: HDF5Storable { public static var memoryElement: MemoryElement { .float64 } }
extension Int64: HDF5Storable { public static var memoryElement: MemoryElement { .int64 } }
extension UInt8: HDF5Storable { public static var memoryElement: MemoryElement { .uint8 } }
extension UInt16: HDF5Storable { public static var memoryElement: MemoryElement { .uint16 } }
