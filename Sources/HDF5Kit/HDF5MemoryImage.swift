// Building an HDF5 file entirely in memory (the core driver without a backing store) and handing its bytes
// to the caller, who writes them with plain POSIX calls. libhdf5 1.10 never touches the disk for such a file,
// so a full disk is an ordinary write error for the caller, never a half-closed HDF5 file that crashes the
// library at exit (what H5Fclose after an ENOSPC write did).
internal import CHDF5
internal import CProcessControl
import Foundation

/// The bytes of an HDF5 file built in memory by `build(name:_:)`; owned, freed with the value.
///
/// No copy is made: file image callbacks let the core driver grow its buffer with `realloc` as usual, and at
/// close (`H5FD_FILE_IMAGE_OP_FILE_CLOSE`) keep that buffer instead of freeing it, so the peak memory of a
/// write is the file's size once.
public final class HDF5MemoryImage: @unchecked Sendable {
    // @unchecked Sendable: `buffer` is written once in `build` before the value is returned, then only read.
    private let buffer: UnsafeMutableRawPointer
    /// The file's length in bytes (its end of allocated space when it was closed).
    public let count: Int

    private init(buffer: UnsafeMutableRawPointer, count: Int) {
        self.buffer = buffer
        self.count = count
    }

    deinit { free(buffer) }

    /// The file's bytes, valid while this value lives.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: buffer, count: count) }

    /// Where the core driver's buffer is, as its callbacks see it.
    private struct Sink {
        var buffer: UnsafeMutableRawPointer?
        var capacity = 0
        var closed = false
    }

    /// Creates an empty in-memory HDF5 file called `name` (a label: nothing is created on disk), runs `body`
    /// on it, closes it and returns its bytes. `body` must not keep any group or dataset of the file.
    public static func build(name: String, _ body: (HDF5File) throws -> Void) throws -> HDF5MemoryImage {
        kv_crash_guard_note_writing(name)
        silenceHDF5ErrorPrinting()
        let sink = UnsafeMutablePointer<Sink>.allocate(capacity: 1)
        sink.initialize(to: Sink())
        defer {
            // Once the file is closed, its buffer (unless handed over) and the sink are ours to free. A file still
            // open belongs to libhdf5, which will call back with `sink` when it closes it: both are left to it.
            if sink.pointee.closed {
                free(sink.pointee.buffer)
                sink.deinitialize(count: 1)
                sink.deallocate()
            }
        }
        let length = try fill(name: name, sink: sink, body)
        // Every handle of the file is released by now, so the core driver has closed it and passed its buffer
        // to `image_free`, which kept it.
        guard sink.pointee.closed, let buffer = sink.pointee.buffer else {
            throw HDF5Error(
                .writeFailed, "the in-memory HDF5 file was not closed (an object of it is still open)", file: name)
        }
        guard length <= sink.pointee.capacity else {
            throw HDF5Error(
                .writeFailed,
                "the in-memory HDF5 file is shorter (\(sink.pointee.capacity) bytes) than its end of "
                    + "allocated space (\(length))", file: name)
        }
        sink.pointee.buffer = nil
        return HDF5MemoryImage(buffer: buffer, count: length)
    }

    /// Creates the file, runs `body`, flushes and returns the end of allocated space; every handle of the file
    /// is released when this returns (which closes the file).
    @inline(never)
    private static func fill(
        name: String, sink: UnsafeMutablePointer<Sink>, _ body: (HDF5File) throws -> Void
    ) throws -> Int {
        let fapl = Handle(
            try check(
                H5Pcreate(kv_h5p_file_access()), .createFailed, "cannot create file access properties",
                file: name, object: nil), .propertyList)
        // Grow the buffer 4 MiB at a time (realloc of a large block remaps pages; it copies nothing).
        try check(
            H5Pset_fapl_core(fapl.id, 4 << 20, false), .createFailed, "cannot select the in-memory driver", file: name,
            object: nil)
        var callbacks = H5FD_file_image_callbacks_t(
            image_malloc: { size, _, udata in
                let sink = udata!.assumingMemoryBound(to: Sink.self)
                guard let block = malloc(max(size, 1)) else { return nil }
                sink.pointee.buffer = block
                sink.pointee.capacity = size
                return block
            },
            image_memcpy: { destination, source, size, _, _ in memcpy(destination!, source!, size) },
            image_realloc: { old, size, _, udata in
                let sink = udata!.assumingMemoryBound(to: Sink.self)
                guard let block = realloc(old, max(size, 1)) else { return nil }
                sink.pointee.buffer = block
                sink.pointee.capacity = size
                return block
            },
            image_free: { block, operation, udata in
                let sink = udata!.assumingMemoryBound(to: Sink.self)
                if operation == H5FD_FILE_IMAGE_OP_FILE_CLOSE {
                    // The file is closed: keep its bytes for the caller.
                    sink.pointee.buffer = block
                    sink.pointee.closed = true
                } else {
                    if sink.pointee.buffer == block { sink.pointee.buffer = nil }
                    free(block)
                }
                return 0
            },
            udata_copy: { udata in udata },
            udata_free: { _ in 0 },
            udata: UnsafeMutableRawPointer(sink))
        try check(
            H5Pset_file_image_callbacks(fapl.id, &callbacks), .createFailed, "cannot set file image callbacks",
            file: name, object: nil)
        let id = H5Fcreate(name, kv_h5f_acc_trunc(), kv_h5p_default(), fapl.id)
        try check(id, .createFailed, "cannot create in-memory HDF5 file", file: name, object: nil)
        let file = HDF5File(handle: Handle(id, .file), path: name)
        return try withExtendedLifetime(file) {
            try body(file)
            try file.flush()
            let length = H5Fget_file_image(id, nil, 0)
            try check(length, .writeFailed, "cannot read the in-memory file's size", file: name, object: nil)
            return Int(length)
        }
    }
}
