// Raw chunk access, for readers that decode chunks themselves on every core (libhdf5 1.10 runs its filter
// pipeline on one thread, under its global lock): where a chunk is stored and how big it is, its stored bytes
// and filter mask (H5Dread_chunk), and the decoder of the filters kvstat implements itself (gzip through
// libdeflate, shuffle). Anything else — other filters, an unexpected size, data that does not decode — is left to
// libhdf5's own pipeline by the caller, so its answers (and its error messages) stay the reference.
internal import CDeflate
internal import CHDF5

extension HDF5Dataset {
    /// Bytes of one whole decoded chunk (chunk elements × stored element width); nil when the dataset is not
    /// chunked, has no fixed element width, or the product overflows.
    public var chunkBytes: Int? {
        guard let chunkShape, element.byteWidth > 0 else { return nil }
        var bytes = element.byteWidth
        for extent in chunkShape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: extent)
            if overflow { return nil }
            bytes = product
        }
        return bytes
    }

    /// Stored bytes of the chunk whose first element is `offset` (one index per dimension, a multiple of the
    /// chunk shape): 0 when it was never written or its index entry cannot be read. This is the size
    /// `readStoredChunk` writes: both come from one lookup in libhdf5's chunk index (H5Dget_chunk_storage_size).
    public func storedChunkBytes(at offset: [Int]) -> Int {
        silenceHDF5ErrorPrinting()
        let size = kv_chunk_bytes(handle.id, offset.map { hsize_t($0) })
        return size > 0 && size <= Int64(Int.max) ? Int(size) : 0
    }

    /// Reads the stored (still filtered) bytes of the chunk whose first element is `offset` into `buffer`, which
    /// must hold `storedChunkBytes(at:)` bytes; returns the chunk's filter mask (bit i set: filter i of the
    /// pipeline was skipped when the chunk was written).
    public func readStoredChunk(at offset: [Int], into buffer: UnsafeMutableRawBufferPointer) throws -> UInt32 {
        silenceHDF5ErrorPrinting()
        let needed = storedChunkBytes(at: offset)
        guard needed > 0, buffer.count >= needed else {
            throw HDF5Error(
                .readFailed, "the chunk at \(offset) needs \(needed) bytes, the buffer holds \(buffer.count)",
                file: filePath, object: path)
        }
        let coordinates = offset.map { hsize_t($0) }
        var mask: UInt32 = 0
        try check(
            kv_read_chunk(handle.id, coordinates, &mask, buffer.baseAddress), .readFailed,
            "cannot read the chunk at \(offset)", file: filePath, object: path)
        return mask
    }

    /// The decoder of this dataset's chunks when kvstat decodes every filter of its pipeline itself (none, gzip,
    /// shuffle; gzip at most once); nil otherwise (other filters, partial edge chunks stored unfiltered, an HDF5
    /// without raw chunk reads), and the caller reads through libhdf5's pipeline.
    public var chunkPipeline: ChunkPipeline? {
        guard storageLayout == .chunked, !partialChunksUnfiltered, kv_raw_chunks_supported() != 0,
            let chunkBytes, chunkBytes > 0
        else { return nil }
        return ChunkPipeline(filters: filters, chunkBytes: chunkBytes, elementSize: element.byteWidth)
    }
}

/// The filters of one dataset's pipeline that kvstat decodes itself, in pipeline (encoding) order.
public struct ChunkPipeline: Sendable, Equatable {
    enum Step: Sendable, Equatable {
        /// HDF5 filter 1: a zlib stream (RFC 1950).
        case deflate
        /// HDF5 filter 2: byte planes of `elementSize`-byte elements.
        case shuffle(elementSize: Int)
    }

    let steps: [Step]
    /// Bytes of one decoded chunk.
    public let chunkBytes: Int

    init?(filters: [HDF5Filter], chunkBytes: Int, elementSize: Int) {
        var steps: [Step] = []
        for filter in filters {
            switch filter.id {
            case 1: steps.append(.deflate)
            case 2:
                let size = filter.parameters.first.map(Int.init) ?? elementSize
                steps.append(.shuffle(elementSize: size > 0 ? size : elementSize))
            default: return nil
            }
        }
        // Two gzip passes would need the size between them, which the file does not record.
        if steps.filter({ $0 == .deflate }).count > 1 { return nil }
        self.steps = steps
        self.chunkBytes = chunkBytes
    }

    /// Whether the pipeline has no filters: stored chunks are the decoded bytes.
    public var isEmpty: Bool { steps.isEmpty }

    /// The largest stored size this decoder accepts (gzip's worst-case growth with room to spare); a chunk
    /// declaring more is left to libhdf5.
    public var storedBytesLimit: Int { chunkBytes + chunkBytes / 8 + 4096 }

    /// Decodes one stored chunk whose filter mask is `filterMask` (filters whose bit is set are skipped) into
    /// `output` (at least `chunkBytes`), or returns `stored` itself when every filter was skipped. Returns the
    /// decoded `chunkBytes` bytes, or nil when they do not decode to exactly that size (corrupt, or written by
    /// something this decoder does not know): the caller then asks libhdf5.
    public func decode(
        _ stored: UnsafeRawBufferPointer, filterMask: UInt32, into output: UnsafeMutableRawBufferPointer,
        scratch: ChunkDecodeScratch
    ) -> UnsafeRawBufferPointer? {
        let active = steps.indices.reversed().filter { $0 >= 32 || filterMask & (UInt32(1) << UInt32($0)) == 0 }
        if active.isEmpty { return stored.count == chunkBytes ? stored : nil }
        guard output.count >= chunkBytes, let outputBase = output.baseAddress else { return nil }
        var input = stored
        for (j, index) in active.enumerated() {
            // Alternate between `output` and the scratch buffer so that the last step writes `output`.
            let toOutput = (active.count - 1 - j) % 2 == 0
            let capacity = max(input.count, chunkBytes)
            let target: UnsafeMutableRawPointer
            let targetCount: Int
            if toOutput {
                (target, targetCount) = (outputBase, output.count)
            } else {
                target = scratch.intermediate(capacity)
                targetCount = capacity
            }
            guard let source = input.baseAddress else { return nil }
            switch steps[index] {
            case .deflate:
                guard let decompressor = scratch.decompressor else { return nil }
                var produced = 0
                let result = libdeflate_zlib_decompress(
                    decompressor, source, input.count, target, chunkBytes, &produced)
                guard result == LIBDEFLATE_SUCCESS, produced == chunkBytes else { return nil }
                input = UnsafeRawBufferPointer(start: target, count: produced)
            case .shuffle(let elementSize):
                guard input.count <= targetCount else { return nil }
                kv_unshuffle(
                    source.assumingMemoryBound(to: UInt8.self), target.assumingMemoryBound(to: UInt8.self),
                    input.count, elementSize)
                input = UnsafeRawBufferPointer(start: target, count: input.count)
            }
        }
        return input.count == chunkBytes ? input : nil
    }
}

/// A 64-byte-aligned byte buffer that grows on demand and never shrinks; its contents are not kept when it
/// grows. Owned by one thread at a time (a reader's or a worker's scratch).
public final class GrowableBuffer {
    private var buffer: UnsafeMutableRawPointer?
    public private(set) var capacity = 0

    public init() {}

    /// The buffer, grown to at least `bytes`.
    public func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if let buffer, capacity >= bytes { return buffer }
        buffer?.deallocate()
        let grown = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        buffer = grown
        capacity = bytes
        return grown
    }

    deinit { buffer?.deallocate() }
}

/// The per-thread state of chunk decoding: a libdeflate decompressor and an intermediate buffer. One per worker
/// thread; never used by two threads at once. `@unchecked Sendable` so a reader can hand each worker its own.
public final class ChunkDecodeScratch: @unchecked Sendable {
    let decompressor: OpaquePointer?
    private let buffer = GrowableBuffer()

    public init() {
        decompressor = libdeflate_alloc_decompressor()
    }

    /// The intermediate buffer, grown to at least `bytes` (its contents are not kept when it grows).
    func intermediate(_ bytes: Int) -> UnsafeMutableRawPointer { buffer.reserve(bytes) }

    deinit {
        if let decompressor { libdeflate_free_decompressor(decompressor) }
    }
}
