// Reads token ranges of one layer's tensor as float32 rows [tokens, heads × head_dim], whatever the stored
// axis order and element format: the hyperslab primitive every pass is built on.
//
// Two paths, both converting float16/bfloat16/float32 to float32 fused with the transposition into rows, on
// every core (`TensorReader.workers`):
// - chunked datasets whose filters kvstat decodes itself (none, gzip, shuffle; the filter mask of each chunk
//   honoured) are read chunk by chunk: the stored bytes from libhdf5 (H5Dread_chunk), inflated with libdeflate
//   and unshuffled by the worker that converts them. A decoded chunk the read used only part of is kept (up to
//   `HDF5Dataset.chunkCacheBytes` per reader) for the next read. A chunk that is unwritten, declares an odd
//   size or does not decode is read through libhdf5's own pipeline instead, so its fill value, its answer or
//   its error is libhdf5's. The part of an unfiltered chunk a read needs and does not keep is read straight
//   from the file instead (its address from H5Dget_chunk_info_by_coord, `pread` on the sec2 driver's
//   descriptor, one call per contiguous run), so reads of a few heads over many tokens copy only those heads;
// - everything else (contiguous and compact datasets, other filters, float64) is read with one libhdf5
//   hyperslab read of the stored bytes (float64: converted to float32 by libhdf5), then converted.
import Dispatch
import Foundation
import HDF5Kit
import KVNumerics
import Synchronization

/// Reads rows of one (layer, kind) tensor. Owns its dataset handle and decoded-chunk cache; not shared
/// between threads (it uses worker threads of its own inside `read`).
public final class TensorReader {
    public let dump: Dump
    public let layer: Int
    public let kind: TensorKind
    /// Heads of this tensor (query heads for queries).
    public let heads: Int
    public let headDim: Int
    let dataset: HDF5Dataset
    let location: TensorLocation
    let format: StorageFormat
    private let scratch: ReadScratch
    /// Set when chunks are read and decoded here rather than through libhdf5's pipeline.
    private let pipeline: ChunkPipeline?
    private let cache = DecodedChunkCache()
    /// The file's descriptor for reading parts of unfiltered chunks directly (see the file header); nil when the
    /// dataset has filters or the file is not read through libhdf5's sec2 driver at plain offsets.
    private let descriptor: Int32?
    /// Whether chunks a read uses only part of may be kept between reads; tests turn it off to take the direct
    /// partial reads (which the cache would otherwise serve) on small fixtures.
    var keepsPartlyReadChunks = true
    /// Direct partial reads whose contiguous runs average fewer bytes than this read the span from the part's
    /// first byte to its last in one `pread` instead (a `pread` costs about as much as copying 8 KiB from the page
    /// cache). Tests set 0 (always per run) and `Int.max` (always one span).
    var shortRunBytes = 8192

    /// Worker threads a read uses: the cores, or fewer when BLAS was limited to fewer threads (`--threads`,
    /// `kvstat batch --jobs`), so that a run asked to use one core uses one.
    public static var workers: Int {
        max(1, min(ProcessInfo.processInfo.activeProcessorCount, BLAS.threads))
    }

    /// Largest decoded chunk (bytes) read by the chunk path; larger ones go through libhdf5.
    static let largestDirectChunk = 64 << 20

    /// Reads smaller than this many elements run on the calling thread alone.
    static let parallelElements = 1 << 16

    /// Opens the tensor of the layer numbered `layer` in the file (one of `dump.layerNumbers`: `layer_05` is
    /// 5). Readers that are used one at a time (one per layer, say) can share `scratch`, so memory is one
    /// block's worth of conversion buffers however many readers are open.
    public init(dump: Dump, layer: Int, kind: TensorKind, scratch: ReadScratch = ReadScratch()) throws(DumpError) {
        self.scratch = scratch
        self.dump = dump
        self.layer = layer
        self.kind = kind
        let (dataset, location) = try translatingHDF5Errors(file: dump.path) {
            try dump.dataset(layer: layer, kind: kind)
        }
        self.dataset = dataset
        self.location = location
        format = try translatingHDF5Errors(file: dump.path) {
            try StorageFormat.of(dataset, fileDtype: dump.attributes["dtype"])
        }
        heads = dump.shape.heads(of: kind)
        headDim = dump.shape.headDim
        // `Dump.validate` checked every (dataset, axes) reading; a mismatch here is a bug, reported, never a trap.
        guard dataset.shape.count == location.axes.rank else {
            throw DumpError(
                .badLayout,
                "has \(dataset.shape.count) dimensions but is read with axes '\(location.axes)'",
                file: dump.path, dataset: location.datasetPath)
        }
        let rankFits = dataset.shape.count <= HalfFloat.maximumBoxRank
        // Chunks beyond 64 MiB (never what a dumper writes; a corrupt layout may declare them) are left to libhdf5,
        // so a worker's buffers stay bounded.
        let decodable = format != .float64 && rankFits ? dataset.chunkPipeline : nil
        pipeline = decodable.flatMap { $0.chunkBytes <= TensorReader.largestDirectChunk ? $0 : nil }
        descriptor = pipeline?.isEmpty == true ? dataset.directFileDescriptor : nil
    }

    /// Dataset path, for messages.
    public var datasetPath: String { dataset.path }

    /// Whether this reader decodes the dataset's chunks itself (see the file header); for tests and benchmarks.
    public var readsChunksDirectly: Bool { pipeline != nil }

    /// Stored chunks this reader has read (and decoded) itself; a chunk kept between reads counts once. For tests.
    public private(set) var chunksRead = 0

    /// Parts of unfiltered chunks read straight from the file (each counted every time). For tests.
    public private(set) var chunkPartsRead = 0

    /// Reads tokens `start ..< start + count` of `sequence`, heads `heads`, into `output` starting at row
    /// `row`: output row `row + i` holds token `start + i`, columns `(h - heads.lowerBound) * headDim + d`,
    /// with `heads.count * headDim` columns per row.
    public func read(
        sequence: Int, start: Int, count: Int, heads headRange: Range<Int>? = nil,
        into output: UnsafeMutableBufferPointer<Float>, row: Int
    ) throws(DumpError) {
        let headRange = headRange ?? 0..<heads
        let axes = location.axes
        var starts = [Int](repeating: 0, count: axes.rank)
        var counts = dataset.shape
        // Where one step along each stored axis lands in `output`, in floats.
        var destinationStrides = [Int](repeating: 0, count: axes.rank)
        let columns = headRange.count * headDim
        for (i, axis) in axes.letters.enumerated() {
            switch axis {
            case "l": (starts[i], counts[i]) = (location.layerIndex ?? 0, 1)
            case "b": (starts[i], counts[i]) = (sequence, 1)
            case "h": (starts[i], counts[i], destinationStrides[i]) = (headRange.lowerBound, headRange.count, headDim)
            case "t": (starts[i], counts[i], destinationStrides[i]) = (start, count, columns)
            case "d": destinationStrides[i] = 1
            case "c":
                // Heads × head_dim merged, head-major: the heads asked for are one contiguous run of channels.
                (starts[i], counts[i], destinationStrides[i]) = (headRange.lowerBound * headDim, columns, 1)
            default: break
            }
        }
        let elements = counts.reduce(1, *)
        precondition(output.count >= (row + count) * columns, "output buffer too small")
        if elements == 0 { return }
        guard let base = output.baseAddress else { return }
        let box = Box(starts: starts, counts: counts, destination: base + row * columns, strides: destinationStrides)
        try translatingHDF5Errors(file: dump.path) {
            if let pipeline {
                try readChunks(box, pipeline: pipeline)
            } else {
                try readWhole(box)
            }
        }
    }

    // MARK: - Stored bytes and their conversion

    /// The stored element format `HalfFloat.convertBox` reads, and whether its bytes need swapping, for bytes
    /// read raw (`.fileType`); float64 is read as native float32 (converted by libhdf5).
    private var converted: (format: HalfFloat.StoredFormat, bigEndian: Bool, width: Int, memory: MemoryElement) {
        switch format {
        case .float16: return (.float16, !dataset.isLittleEndian, 2, .fileType)
        case .bfloat16: return (.bfloat16, !dataset.isLittleEndian, 2, .fileType)
        case .float32: return (.float32, !dataset.isLittleEndian, 4, .fileType)
        case .float64: return (.float32, false, 4, .float32)
        }
    }

    /// One libhdf5 hyperslab read of the whole box into the shared scratch, then conversion into rows on
    /// every worker, each taking a slab of the box along its outermost axis of more than one element.
    private func readWhole(_ box: Box) throws {
        let (stored, bigEndian, width, memory) = converted
        let elements = box.counts.reduce(1, *)
        let raw = scratch.whole.reserve(elements * width)
        try dataset.read(
            start: box.starts, count: box.counts, as: memory,
            into: UnsafeMutableRawBufferPointer(start: raw, count: elements * width))
        let sourceStrides = Box.denseStrides(box.counts)
        let workers = elements >= TensorReader.parallelElements ? TensorReader.workers : 1
        guard workers > 1, let axis = box.counts.firstIndex(where: { $0 > 1 }) else {
            HalfFloat.convertBox(
                stored, bigEndian: bigEndian, source: raw, sourceStrides: sourceStrides, destination: box.destination,
                destinationStrides: box.strides, counts: box.counts)
            return
        }
        let extent = box.counts[axis]
        let slabs = min(workers, extent)
        // Safe to share: each slab writes its own rows of `output` and reads only the scratch.
        let job = UncheckedSendable((raw, box))
        DispatchQueue.concurrentPerform(iterations: slabs) { slab in
            let (raw, box) = job.value
            let lower = extent * slab / slabs
            let upper = extent * (slab + 1) / slabs
            var counts = box.counts
            counts[axis] = upper - lower
            HalfFloat.convertBox(
                stored, bigEndian: bigEndian, source: raw + lower * sourceStrides[axis] * width,
                sourceStrides: sourceStrides, destination: box.destination + lower * box.strides[axis],
                destinationStrides: box.strides, counts: counts)
        }
    }

    /// Reads the box chunk by chunk on every worker (see the file header).
    private func readChunks(_ box: Box, pipeline: ChunkPipeline) throws {
        // A box outside the dataset (a caller's bug) gets libhdf5's hyperslab error from `readWhole`.
        let inside = zip(zip(box.starts, box.counts), dataset.shape).allSatisfy {
            $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1
        }
        guard inside, let chunkShape = dataset.chunkShape, chunkShape.count == box.counts.count,
            chunkShape.allSatisfy({ $0 > 0 })
        else { return try readWhole(box) }
        let grid = ChunkGrid(box: box, chunkShape: chunkShape, shape: dataset.shape)
        let elements = box.counts.reduce(1, *)
        // Each worker holds up to three chunks (stored, decoded, intermediate): keep that under 64 MiB.
        let memoryBound = max(1, TensorReader.largestDirectChunk / max(3 * pipeline.chunkBytes, 1))
        var workers = elements >= TensorReader.parallelElements ? min(TensorReader.workers, grid.count) : 1
        workers = max(1, min(workers, memoryBound))
        scratch.reserveWorkers(workers)
        cache.beginRead()
        let cacheable = keepsPartlyReadChunks && pipeline.chunkBytes <= HDF5Dataset.chunkCacheBytes
        let job = ChunkJob(
            reader: self, box: box, grid: grid, pipeline: pipeline, cacheable: cacheable,
            workers: Array(scratch.workers.prefix(workers)))
        // Workers take pieces in order, so the reads of neighbouring chunks (serialised by libhdf5's lock)
        // overlap with the decoding and conversion of the previous ones.
        let run = { @Sendable (worker: Int) in
            let scratch = job.workers[worker]
            while true {
                let piece = job.next.wrappingAdd(1, ordering: .relaxed).oldValue
                if piece >= job.grid.count || job.failed.load(ordering: .relaxed) { break }
                do {
                    try job.reader.readPiece(piece, of: job, scratch: scratch)
                } catch {
                    scratch.error = error
                    job.failed.store(true, ordering: .relaxed)
                    break
                }
            }
        }
        if workers == 1 {
            run(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: workers, execute: run)
        }
        // Decoded chunks the read used only part of are kept for the next read.
        for worker in job.workers {
            chunksRead += worker.chunksRead
            chunkPartsRead += worker.partsRead
            (worker.chunksRead, worker.partsRead) = (0, 0)
            for kept in worker.kept {
                cache.insert(kept.offset, kept.buffer, bytes: pipeline.chunkBytes, remaining: kept.remaining)
            }
            worker.kept.removeAll()
        }
        cache.endRead()
        for worker in job.workers {
            if let error = worker.error {
                worker.error = nil
                throw error
            }
        }
    }

    /// Reads piece `index` (one chunk's part of the box) into the rows.
    fileprivate func readPiece(_ index: Int, of job: ChunkJob, scratch: WorkerScratch) throws {
        let piece = job.grid.piece(index)
        let (stored, bigEndian, width, _) = converted
        let chunkStrides = job.grid.chunkStrides
        let pipeline = job.pipeline
        func convert(_ source: UnsafeRawPointer, strides: [Int]) {
            HalfFloat.convertBox(
                stored, bigEndian: bigEndian, source: source, sourceStrides: strides,
                destination: piece.destination, destinationStrides: job.box.strides, counts: piece.counts)
        }
        // A chunk kept decoded by an earlier read.
        if let cached = cache.lookup(piece.chunkStart, consuming: piece.elements) {
            convert(cached + piece.offsetInChunk * width, strides: chunkStrides)
            return
        }
        // libhdf5 decides for chunks this path does not take: never written (the fill value), unfiltered ones
        // larger than its cache and only partly needed (it reads just those bytes), odd sizes, data that does
        // not decode.
        func throughLibrary() throws {
            let elements = piece.counts.reduce(1, *)
            let buffer = scratch.piece.reserve(elements * width)
            try dataset.read(
                start: piece.start, count: piece.counts, as: converted.memory,
                into: UnsafeMutableRawBufferPointer(start: buffer, count: elements * width))
            convert(buffer, strides: Box.denseStrides(piece.counts))
        }
        let storedBytes = dataset.storedChunkBytes(at: piece.chunkStart)
        guard storedBytes > 0 else { return try throughLibrary() }
        if pipeline.isEmpty {
            // A whole unfiltered chunk costs one copy from the page cache, which beats libhdf5's hyperslab
            // machinery even when only a quarter of it is needed (measured on the DCT pass's head panels).
            // Kept too when partly used: reads of single tokens (attention queries) then cost one chunk read
            // per chunk, as with libhdf5's chunk cache.
            guard storedBytes == pipeline.chunkBytes else { return try throughLibrary() }
            let keep = job.cacheable && !piece.whole && cache.reserve(pipeline.chunkBytes)
            // A part not kept for later reads: only its bytes, straight from the file. (The DCT pass reads two
            // heads of eight over every token: whole chunks would be copied four times.)
            if !piece.whole && !keep, let descriptor,
                let location = dataset.storedChunkLocation(at: piece.chunkStart),
                location.bytes == pipeline.chunkBytes,
                readPartOfChunk(piece, at: location.fileOffset, descriptor: descriptor, job: job, scratch: scratch)
            {
                scratch.partsRead += 1
                return
            }
            guard piece.whole || pipeline.chunkBytes <= HDF5Dataset.chunkCacheBytes else {
                return try throughLibrary()
            }
            let buffer =
                keep
                ? UnsafeMutableRawPointer.allocate(byteCount: storedBytes, alignment: 64)
                : scratch.stored.reserve(storedBytes)
            let mask = try? dataset.readStoredChunk(
                at: piece.chunkStart, into: .init(start: buffer, count: storedBytes))
            guard mask != nil else {
                if keep { buffer.deallocate() }
                return try throughLibrary()
            }
            scratch.chunksRead += 1
            convert(buffer + piece.offsetInChunk * width, strides: chunkStrides)
            if keep { scratch.kept.append((piece.chunkStart, buffer, piece.chunkElements - piece.elements)) }
            return
        }
        guard storedBytes <= pipeline.storedBytesLimit else { return try throughLibrary() }
        let storedBuffer = scratch.stored.reserve(storedBytes)
        guard
            let mask = try? dataset.readStoredChunk(
                at: piece.chunkStart, into: .init(start: storedBuffer, count: storedBytes))
        else { return try throughLibrary() }
        let keep = job.cacheable && !piece.whole && cache.reserve(pipeline.chunkBytes)
        let target =
            keep
            ? UnsafeMutableRawPointer.allocate(byteCount: pipeline.chunkBytes, alignment: 64)
            : scratch.decoded.reserve(pipeline.chunkBytes)
        guard
            let decoded = pipeline.decode(
                UnsafeRawBufferPointer(start: storedBuffer, count: storedBytes), filterMask: mask,
                into: UnsafeMutableRawBufferPointer(start: target, count: pipeline.chunkBytes),
                scratch: scratch.decoder), let decodedBase = decoded.baseAddress
        else {
            if keep { target.deallocate() }
            return try throughLibrary()
        }
        scratch.chunksRead += 1
        convert(decodedBase + piece.offsetInChunk * width, strides: chunkStrides)
        if keep {
            // Every filter skipped: the bytes are in the stored buffer, which the next chunk reuses.
            if decodedBase != UnsafeRawPointer(target) {
                target.copyMemory(from: decodedBase, byteCount: decoded.count)
            }
            scratch.kept.append((piece.chunkStart, target, piece.chunkElements - piece.elements))
        }
    }
}

extension TensorReader {
    /// Reads the bytes `piece` needs of the unfiltered chunk stored at `fileOffset` of `descriptor` and converts
    /// them into the rows: one `pread` per contiguous run of the piece in the chunk (the piece is contiguous
    /// along the axes after the last one it does not cover whole), or, when runs are many and short, one of the
    /// span from its first to its last byte (never more than the chunk). The bytes land at their offsets in the
    /// chunk relative to the piece's first element, so they are converted with the chunk's strides. False when
    /// the file cannot be read there (ends first: it was truncated); the caller then reads the chunk as before.
    fileprivate func readPartOfChunk(
        _ piece: ChunkGrid.Piece, at fileOffset: Int, descriptor: Int32, job: ChunkJob, scratch: WorkerScratch
    ) -> Bool {
        let (stored, bigEndian, width, _) = converted
        let counts = piece.counts
        let chunkShape = job.grid.chunkShape
        let chunkStrides = job.grid.chunkStrides
        var axis = counts.count - 1
        while axis > 0 && counts[axis] == chunkShape[axis] { axis -= 1 }
        let runBytes = counts[axis] * chunkStrides[axis] * width
        let runs = counts[..<axis].reduce(1, *)
        var span = 1
        for a in counts.indices { span += (counts[a] - 1) * chunkStrides[a] }
        let buffer = scratch.stored.reserve(span * width)
        let first = fileOffset + piece.offsetInChunk * width
        if runs == 1 || span * width / runs >= shortRunBytes {
            var index = [Int](repeating: 0, count: axis)
            for _ in 0..<runs {
                var offset = 0
                for a in 0..<axis { offset += index[a] * chunkStrides[a] * width }
                guard readFileBytes(descriptor, at: first + offset, count: runBytes, into: buffer + offset) else {
                    return false
                }
                var a = axis - 1
                while a >= 0 {
                    index[a] += 1
                    if index[a] < counts[a] { break }
                    index[a] = 0
                    a -= 1
                }
            }
        } else {
            guard readFileBytes(descriptor, at: first, count: span * width, into: buffer) else { return false }
        }
        HalfFloat.convertBox(
            stored, bigEndian: bigEndian, source: buffer, sourceStrides: chunkStrides,
            destination: piece.destination, destinationStrides: job.box.strides, counts: counts)
        return true
    }
}

/// The part of a tensor one read asks for, in storage order, and where it goes.
struct Box {
    var starts: [Int]
    var counts: [Int]
    /// Where the box's first element goes.
    var destination: UnsafeMutablePointer<Float>
    /// Floats between neighbours along each stored axis in the destination.
    var strides: [Int]

    /// Row-major strides (in elements) of a dense array of `counts`.
    static func denseStrides(_ counts: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: counts.count)
        for i in stride(from: counts.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * counts[i + 1] }
        return strides
    }
}

/// The chunks a box touches, numbered row-major over the chunk grid, and each one's part of the box.
struct ChunkGrid {
    let box: Box
    let chunkShape: [Int]
    let shape: [Int]
    /// First chunk index along each axis, and chunks along each axis.
    let first: [Int]
    let extent: [Int]
    /// Chunks touched.
    let count: Int
    /// Row-major strides (in elements) inside one whole chunk.
    let chunkStrides: [Int]

    init(box: Box, chunkShape: [Int], shape: [Int]) {
        self.box = box
        self.chunkShape = chunkShape
        self.shape = shape
        first = zip(box.starts, chunkShape).map { $0 / $1 }
        extent = zip(zip(box.starts, box.counts), chunkShape).map { ($0.0 + $0.1 - 1) / $1 - $0.0 / $1 + 1 }
        count = extent.reduce(1, *)
        chunkStrides = Box.denseStrides(chunkShape)
    }

    struct Piece {
        /// The chunk's first element.
        var chunkStart: [Int]
        /// The piece: the box ∩ the chunk.
        var start: [Int]
        var counts: [Int]
        /// Elements from the chunk's first element to the piece's, in the chunk's row-major order.
        var offsetInChunk: Int
        /// Where the piece's first element goes.
        var destination: UnsafeMutablePointer<Float>
        /// Whether the piece is the whole chunk (clipped to the dataset's extent).
        var whole: Bool
        /// Elements of the piece, and of the chunk clipped to the dataset's extent.
        var elements: Int
        var chunkElements: Int
    }

    func piece(_ index: Int) -> Piece {
        var rest = index
        var chunkStart = [Int](repeating: 0, count: shape.count)
        var start = chunkStart
        var counts = chunkStart
        var offset = 0
        var destination = box.destination
        var whole = true
        var elements = 1
        var chunkElements = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            let c = first[axis] + rest % extent[axis]
            rest /= extent[axis]
            let lower = c * chunkShape[axis]
            let upper = min(lower + chunkShape[axis], shape[axis])
            let from = max(lower, box.starts[axis])
            let to = min(upper, box.starts[axis] + box.counts[axis])
            chunkStart[axis] = lower
            start[axis] = from
            counts[axis] = to - from
            offset += (from - lower) * chunkStrides[axis]
            destination += (from - box.starts[axis]) * box.strides[axis]
            if from != lower || to != upper { whole = false }
            elements *= to - from
            chunkElements *= upper - lower
        }
        return Piece(
            chunkStart: chunkStart, start: start, counts: counts, offsetInChunk: offset, destination: destination,
            whole: whole, elements: elements, chunkElements: chunkElements)
    }
}

/// What the workers of one chunked read share. `@unchecked Sendable`: every worker writes only its own pieces'
/// rows of the output and its own `WorkerScratch`; the reader's cache is used under its lock while they run
/// (inserts and drops wait until they are done), and `failed` and `next` are atomic.
private final class ChunkJob: @unchecked Sendable {
    let reader: TensorReader
    let box: Box
    let grid: ChunkGrid
    let pipeline: ChunkPipeline
    let cacheable: Bool
    let workers: [WorkerScratch]
    let failed = Atomic<Bool>(false)
    /// The next piece to take.
    let next = Atomic<Int>(0)

    init(
        reader: TensorReader, box: Box, grid: ChunkGrid, pipeline: ChunkPipeline, cacheable: Bool,
        workers: [WorkerScratch]
    ) {
        (self.reader, self.box, self.grid, self.pipeline) = (reader, box, grid, pipeline)
        (self.cacheable, self.workers) = (cacheable, workers)
    }
}

/// A value handed to worker threads that the caller knows is safe to share (see each use).
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Decoded chunks one reader keeps between reads, keyed by their first element: a chunk a read used only part
/// of, so that the next read (the next block of tokens, the next heads) does not decode it again. Bounded by
/// `budget` bytes at every moment: workers reserve room before they decode a chunk to keep, and a chunk that
/// does not fit is simply not kept. A chunk leaves when all its elements have been read, or when it has not
/// been used for `staleReads` reads (padding a reader never asks for, a token range it left).
private final class DecodedChunkCache: @unchecked Sendable {
    private struct Entry {
        let buffer: UnsafeMutableRawPointer
        let bytes: Int
        /// Elements of the chunk not read yet (clipped to the dataset's extent).
        var remaining: Int
        /// The read that used it last.
        var used: Int
    }
    let budget = HDF5Dataset.chunkCacheBytes
    static let staleReads = 4
    private var entries: [[Int]: Entry] = [:]
    private var bytes = 0
    private var reserved = 0
    private var clock = 0
    private let lock = NSLock()

    /// Starts a read (on the reader's thread, before the workers): drops chunks unused for `staleReads` reads.
    func beginRead() {
        clock += 1
        reserved = 0
        drop { clock - $0.used > DecodedChunkCache.staleReads }
    }

    /// The decoded chunk starting at `offset`, of which `elements` are being read now. Workers call this
    /// concurrently (under the lock); the buffer stays valid until the read is over.
    func lookup(_ offset: [Int], consuming elements: Int) -> UnsafeRawPointer? {
        lock.withLock {
            guard let entry = entries[offset] else { return nil }
            entries[offset]?.remaining -= elements
            entries[offset]?.used = clock
            return UnsafeRawPointer(entry.buffer)
        }
    }

    /// Whether a chunk of `count` bytes may be kept by this read (room is reserved when it may).
    func reserve(_ count: Int) -> Bool {
        lock.withLock {
            guard bytes + reserved + count <= budget else { return false }
            reserved += count
            return true
        }
    }

    /// Keeps a chunk decoded by this read, with `remaining` of its elements still unread (after the workers).
    func insert(_ offset: [Int], _ buffer: UnsafeMutableRawPointer, bytes count: Int, remaining: Int) {
        if let old = entries.updateValue(
            Entry(buffer: buffer, bytes: count, remaining: remaining, used: clock), forKey: offset)
        {
            old.buffer.deallocate()
            bytes -= old.bytes
        }
        bytes += count
    }

    /// Ends a read (after the workers): drops the chunks every element of which has now been read.
    func endRead() {
        reserved = 0
        drop { $0.remaining <= 0 }
    }

    deinit { drop { _ in true } }

    private func drop(where condition: (Entry) -> Bool) {
        for (offset, entry) in entries where condition(entry) {
            entry.buffer.deallocate()
            entries[offset] = nil
            bytes -= entry.bytes
        }
    }
}

/// One worker's buffers: a chunk's stored bytes, its decoded bytes, a piece read through libhdf5, the
/// decoder's state, the chunks it decoded for the cache, and its error.
final class WorkerScratch: @unchecked Sendable {
    let stored = GrowableBuffer()
    let decoded = GrowableBuffer()
    let piece = GrowableBuffer()
    let decoder = ChunkDecodeScratch()
    var kept: [(offset: [Int], buffer: UnsafeMutableRawPointer, remaining: Int)] = []
    var chunksRead = 0
    var partsRead = 0
    var error: (any Error)?
}

/// Conversion buffers a `TensorReader` reads through: the stored bytes of a whole read, and each worker's chunk
/// buffers. Shared by readers used one after another; never by two reads at once.
public final class ReadScratch {
    let whole = GrowableBuffer()
    private(set) var workers: [WorkerScratch] = []

    public init() {}

    func reserveWorkers(_ count: Int) {
        while workers.count < count { workers.append(WorkerScratch()) }
    }
}
