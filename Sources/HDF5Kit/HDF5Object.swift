// The base of groups and datasets, and their attributes: read strings and numbers (scalar or 1-D), write them the way
// h5py does (variable-length UTF-8 strings), list their names.
internal import CHDF5

/// An open HDF5 object that carries attributes: the common base of `HDF5Group` and `HDF5Dataset`.
/// `@unchecked Sendable`: every stored property is immutable, and the thread-safe HDF5 build serialises
/// the C calls.
public class HDF5Node: @unchecked Sendable {
    let handle: Handle
    /// Path of the file holding the object.
    public let filePath: String
    /// Absolute path of the object inside the file, e.g. `/layers/0/key`.
    public let path: String

    init(handle: Handle, path: String, file: String) {
        self.handle = handle
        self.path = path
        self.filePath = file
    }

    /// The object's identity (file number and address): the same for every link that reaches it, so a walk
    /// over groups can tell a group it has already entered (hard links may form cycles).
    public func identity() throws -> ObjectIdentity {
        var bytes = [UInt8](repeating: 0, count: 24)
        try check(
            kv_object_identity(handle.id, &bytes), .readFailed, "cannot read object info", file: filePath,
            object: path)
        return ObjectIdentity(bytes: bytes)
    }

    /// `attributeNames` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public func attributeNames() throws -> [String] {
        try MetadataWatchdog.bracket { try attributeNamesUnguarded() }
    }

    /// Names of the object's attributes.
    private func attributeNamesUnguarded() throws -> [String] {
        var info = H5O_info_t()
        try check(
            H5Oget_info2(handle.id, &info, UInt32(H5O_INFO_NUM_ATTRS)), .readFailed, "cannot read object info",
            file: filePath, object: path)
        var names: [String] = []
        for index in 0..<info.num_attrs {
            let length = H5Aget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, kv_h5p_default())
            try check(length, .readFailed, "cannot read attribute name", file: filePath, object: path)
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            H5Aget_name_by_idx(
                handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, kv_h5p_default())
            names.append(String(cChars: buffer))
        }
        return names
    }

    private func openAttribute(_ name: String) throws -> Handle? {
        silenceHDF5ErrorPrinting()
        let exists = H5Aexists(handle.id, name)
        try check(exists, .readFailed, "cannot look up attribute '\(name)'", file: filePath, object: path)
        guard exists > 0 else { return nil }
        let id = H5Aopen(handle.id, name, kv_h5p_default())
        return Handle(
            try check(id, .readFailed, "cannot open attribute '\(name)'", file: filePath, object: path), .attribute)
    }

    /// `stringAttribute` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public func stringAttribute(_ name: String) throws -> String? {
        try MetadataWatchdog.bracket { try stringAttributeUnguarded(name) }
    }

    /// The attribute `name` as a string (first element if it is an array), or nil if absent or not a string.
    private func stringAttributeUnguarded(_ name: String) throws -> String? {
        guard let attribute = try openAttribute(name) else { return nil }
        let fileType = Handle(H5Aget_type(attribute.id), .datatype)
        guard H5Tget_class(fileType.id) == H5T_STRING else { return nil }
        let space = Handle(H5Aget_space(attribute.id), .dataspace)
        let count = max(Int(H5Sget_simple_extent_npoints(space.id)), 1)
        let where_ = "attribute '\(name)'"
        if H5Tis_variable_str(fileType.id) > 0 {
            let memType = Handle(H5Tcopy(kv_h5t_c_s1()), .datatype)
            H5Tset_size(memType.id, kv_h5t_variable())
            H5Tset_cset(memType.id, H5Tget_cset(fileType.id))
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            try check(
                H5Aread(attribute.id, memType.id, &pointers), .readFailed, "cannot read \(where_)", file: filePath,
                object: path)
            let value = pointers[0].map { String(cString: $0) } ?? ""
            H5Dvlen_reclaim(memType.id, space.id, kv_h5p_default(), &pointers)
            return value
        }
        let size = Int(H5Tget_size(fileType.id))
        var buffer = [UInt8](repeating: 0, count: size * count + 1)
        try check(
            H5Aread(attribute.id, fileType.id, &buffer), .readFailed, "cannot read \(where_)", file: filePath,
            object: path)
        let first = buffer.prefix(size).prefix { $0 != 0 }
        return String(decoding: first, as: UTF8.self).trimmingTrailingSpaces()
    }

    /// Whether the object has an attribute `name` (of any type).
    public func hasAttribute(_ name: String) throws -> Bool {
        try openAttribute(name) != nil
    }

    /// `numericAttribute` inside the metadata watchdog's bracket (a corrupt file must not hang it).
    public func numericAttribute(_ name: String) throws -> [Double]? {
        try MetadataWatchdog.bracket { try numericAttributeUnguarded(name) }
    }

    /// The attribute `name` as numbers (any integer or float type), or nil if absent or not numeric.
    private func numericAttributeUnguarded(_ name: String) throws -> [Double]? {
        guard let attribute = try openAttribute(name) else { return nil }
        let fileType = Handle(H5Aget_type(attribute.id), .datatype)
        let cls = H5Tget_class(fileType.id)
        guard cls == H5T_INTEGER || cls == H5T_FLOAT else { return nil }
        let space = Handle(H5Aget_space(attribute.id), .dataspace)
        var values = [Double](repeating: 0, count: max(Int(H5Sget_simple_extent_npoints(space.id)), 1))
        try check(
            H5Aread(attribute.id, kv_h5t_native_double(), &values), .readFailed, "cannot read attribute '\(name)'",
            file: filePath, object: path)
        return values
    }

    /// Writes (or replaces) a variable-length UTF-8 string attribute, as h5py writes Python strings.
    public func setAttribute(_ name: String, _ value: String) throws {
        try deleteAttributeIfPresent(name)
        let type = Handle(H5Tcopy(kv_h5t_c_s1()), .datatype)
        H5Tset_size(type.id, kv_h5t_variable())
        H5Tset_cset(type.id, H5T_CSET_UTF8)
        let space = Handle(H5Screate(H5S_SCALAR), .dataspace)
        let id = H5Acreate2(handle.id, name, type.id, space.id, kv_h5p_default(), kv_h5p_default())
        let attribute = Handle(
            try check(id, .writeFailed, "cannot create attribute '\(name)'", file: filePath, object: path), .attribute)
        let status = value.withCString { cString -> herr_t in
            var pointer: UnsafePointer<CChar>? = cString
            return H5Awrite(attribute.id, type.id, &pointer)
        }
        try check(status, .writeFailed, "cannot write attribute '\(name)'", file: filePath, object: path)
    }

    /// Writes (or replaces) a 1-D float64 attribute (a scalar when `values` has one element).
    public func setAttribute(_ name: String, _ values: [Double]) throws {
        try deleteAttributeIfPresent(name)
        let space: Handle
        if values.count == 1 {
            space = Handle(H5Screate(H5S_SCALAR), .dataspace)
        } else {
            var dims = [hsize_t(values.count)]
            space = Handle(H5Screate_simple(1, &dims, nil), .dataspace)
        }
        let id = H5Acreate2(handle.id, name, kv_h5t_native_double(), space.id, kv_h5p_default(), kv_h5p_default())
        let attribute = Handle(
            try check(id, .writeFailed, "cannot create attribute '\(name)'", file: filePath, object: path), .attribute)
        try check(
            H5Awrite(attribute.id, kv_h5t_native_double(), values), .writeFailed, "cannot write attribute '\(name)'",
            file: filePath, object: path)
    }

    private func deleteAttributeIfPresent(_ name: String) throws {
        if H5Aexists(handle.id, name) > 0 {
            try check(
                H5Adelete(handle.id, name), .writeFailed, "cannot replace attribute '\(name)'", file: filePath,
                object: path)
        }
    }
}

/// Which object in which open file a link leads to (see `HDF5Node.identity()`).
public struct ObjectIdentity: Hashable, Sendable {
    let bytes: [UInt8]
}

extension String {
    /// Fixed-length HDF5 strings may be space padded (H5T_STR_SPACEPAD).
    fileprivate func trimmingTrailingSpaces() -> String {
        var end = endIndex
        while end > startIndex, self[index(before: end)] == " " { end = index(before: end) }
        return String(self[startIndex..<end])
    }
}
