// An owned HDF5 identifier, closed exactly once when the last Swift reference goes away.
internal import CHDF5

/// Owns one `hid_t`. The identifier never leaves HDF5Kit; types above hold this object instead.
/// `@unchecked Sendable`: the id is immutable and HDF5 (thread-safe build) serialises calls itself.
final class Handle: @unchecked Sendable {
    enum Kind { case file, group, dataset, dataspace, datatype, attribute, propertyList }

    let id: hid_t
    let kind: Kind

    init(_ id: hid_t, _ kind: Kind) {
        self.id = id
        self.kind = kind
    }

    deinit {
        switch kind {
        case .file: H5Fclose(id)
        case .group: H5Gclose(id)
        case .dataset: H5Dclose(id)
        case .dataspace: H5Sclose(id)
        case .datatype: H5Tclose(id)
        case .attribute: H5Aclose(id)
        case .propertyList: H5Pclose(id)
        }
    }
}
