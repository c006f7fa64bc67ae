// Datasets whose elements live in another file (HDF5 external storage, `H5Pset_external`: contiguous raw bytes
// at an offset of a named file), and opening an in-memory HDF5 file read-only. Together they let a file of
// another format whose tensors are contiguous little-endian arrays (safetensors) be described as an HDF5 file
// built in memory and read through libhdf5 without copying its data.
internal import CHDF5
internal import CProcessControl
import Foundation

extension HDF5Group {
    /// Creates the dataset `relative` (intermediate groups too) of `shape` whose elements are the `bytes` bytes
    /// at `offset` of the file `externalFile`, row-major, stored as `element`. Nothing is read or written there:
    /// libhdf5 opens that file when elements are read (a `read` each time, so a file shortened later reads as
    /// zeros past its end — callers check the file's size themselves). The fill value is never written, so the
    /// external file is never touched even though this file is writable. `bytes` must equal the elements times
    /// the element width; an empty dataset (a zero extent) gets no external storage.
    @discardableResult
    public func createExternalDataset(
        _ relative: String, element: StoredElement, shape: [Int], externalFile: String, offset: Int, bytes: Int
    ) throws -> HDF5Dataset {
        silenceHDF5ErrorPrinting()
        let object = childPath(relative)
        var elements = 1
        for extent in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: extent)
            guard extent >= 0, !overflow else {
                throw HDF5Error(.invalidArgument, "shape \(shape) cannot be addressed", file: filePath, object: object)
            }
            elements = product
        }
        let (needed, overflow) = elements.multipliedReportingOverflow(by: element.byteWidth)
        guard !overflow, needed == bytes, offset >= 0, shape.count <= 32 else {
            throw HDF5Error(
                .invalidArgument, "shape \(shape) of \(element) does not fill \(bytes) bytes at offset \(offset)",
                file: filePath, object: object)
        }
        let type = try element.typeHandle(file: filePath, object: object)
        let dataset = try makeDataset(relative, type: type.id, shape: shape) { dcpl in
            try check(
                H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), .createFailed, "cannot set the fill time", file: filePath,
                object: object)
            if bytes > 0 {
                try check(
                    H5Pset_external(dcpl, externalFile, off_t(offset), hsize_t(bytes)), .createFailed,
                    "cannot declare external storage in '\(externalFile)'", file: filePath, object: object)
            }
        }
        return try HDF5Dataset(opened: dataset, path: object, file: filePath)
    }
}

extension HDF5File {
    /// Opens the in-memory HDF5 file `image` read-only (core driver, no backing store: nothing on disk is
    /// opened for it; datasets with external storage still read their own files). `label` is what the file's
    /// `path` and every error message show (the user's input, say). The image is copied; it may be freed after.
    public static func open(image: HDF5MemoryImage, label: String) throws -> HDF5File {
        try MetadataWatchdog.bracket {
            silenceHDF5ErrorPrinting()
            kv_crash_guard_note_file(label)
            let fapl = Handle(
                try check(
                    H5Pcreate(kv_h5p_file_access()), .openFailed, "cannot create file access properties", file: label,
                    object: nil), .propertyList)
            try check(
                H5Pset_fapl_core(fapl.id, 64 << 10, false), .openFailed, "cannot select the in-memory driver",
                file: label, object: nil)
            let bytes = image.bytes
            try check(
                H5Pset_file_image(fapl.id, UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count),
                .openFailed, "cannot hand over the in-memory file", file: label, object: nil)
            // The core driver refuses to open an image under the name of a file that exists: use one that cannot.
            let name = "/proc/self/kvstat-memory-image-\(UUID().uuidString)"
            let id = H5Fopen(name, kv_h5f_acc_rdonly(), fapl.id)
            try check(id, .openFailed, "cannot open the in-memory HDF5 file", file: label, object: nil)
            return HDF5File(handle: Handle(id, .file), path: label)
        }
    }
}
