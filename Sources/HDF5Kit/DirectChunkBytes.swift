// Direct reads of stored chunk bytes: where an unfiltered chunk lies in the file, and the descriptor libhdf5's
// default (sec2) driver reads the file through, so a reader can `pread` just the part of a chunk it needs
// instead of the whole chunk (H5Dread_chunk). Anything unusual — another driver, a user block, a chunk never
// written, an HDF5 older than 1.10.5 — answers nil, and the caller reads through libhdf5 as before.
internal import CHDF5

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where one chunk is stored in its file.
public struct StoredChunkLocation: Sendable, Equatable {
    /// Byte offset of the chunk's first stored byte from the start of the file.
    public var fileOffset: Int
    /// Stored bytes.
    public var bytes: Int
    /// Filter mask (bit i set: filter i of the pipeline was skipped).
    public var filterMask: UInt32
}

extension HDF5Dataset {
    /// The descriptor of this dataset's file as libhdf5's sec2 driver holds it, when stored chunk addresses are
    /// byte offsets in it (sec2 driver, no user block) and this HDF5 can tell them (1.10.5 and later); nil
    /// otherwise. Valid while the dataset is open; only ever read from (`readFileBytes`).
    public var directFileDescriptor: Int32? {
        silenceHDF5ErrorPrinting()
        guard storageLayout == .chunked, kv_raw_chunks_supported() != 0 else { return nil }
        let fd = kv_sec2_descriptor(handle.id)
        return fd >= 0 ? fd : nil
    }

    /// Where the chunk whose first element is `offset` is stored; nil when it was never written or its index
    /// entry cannot be read (H5Dget_chunk_info_by_coord).
    public func storedChunkLocation(at offset: [Int]) -> StoredChunkLocation? {
        silenceHDF5ErrorPrinting()
        var mask: UInt32 = 0
        var address: UInt64 = 0
        var size: UInt64 = 0
        guard kv_chunk_location(handle.id, offset.map { hsize_t($0) }, &mask, &address, &size) == 0,
            address <= UInt64(Int.max), size <= UInt64(Int.max)
        else { return nil }
        let (end, overflow) = Int(address).addingReportingOverflow(Int(size))
        guard !overflow, end >= 0 else { return nil }
        return StoredChunkLocation(fileOffset: Int(address), bytes: Int(size), filterMask: mask)
    }
}

/// Reads exactly `count` bytes at `fileOffset` of `descriptor` into `buffer` with `pread` (retried after
/// interruptions and short reads); false when the file ends first or the read fails. Thread-safe: `pread` moves
/// no file position.
public func readFileBytes(
    _ descriptor: Int32, at fileOffset: Int, count: Int, into buffer: UnsafeMutableRawPointer
) -> Bool {
    var done = 0
    while done < count {
        let (position, overflow) = fileOffset.addingReportingOverflow(done)
        guard !overflow else { return false }
        let got = pread(descriptor, buffer + done, count - done, off_t(position))
        if got > 0 {
            done += got
        } else if got < 0 && errno == EINTR {
            continue
        } else {
            return false  // end of file (a truncated file) or an error: the caller asks libhdf5
        }
    }
    return true
}
