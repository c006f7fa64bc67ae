// The stream every statistic folds: one layer's tensor as consecutive blocks of at most `blockTokens` valid
// token rows × (heads × head_dim) float32 columns. Memory is one block, whatever the token count.
import KVNumerics

/// One block of token rows handed to a statistic. `values` points into a reader's buffer: valid only
/// inside the callback that received the block; never store it.
public struct TokenBlock {
    /// Rows in this block (≤ the reader's block size).
    public let rows: Int
    /// Columns: heads × head_dim, head-major (`h * headDim + d`).
    public let columns: Int
    /// `rows × columns` row-major values. Rows that held NaN or ±Inf are zeroed (see `excludedRows`).
    public let values: UnsafeBufferPointer<Float>
    /// The token runs the rows come from, in row order (row 0 is `runs[0].start` of `runs[0].sequence`).
    public let runs: ArraySlice<TokenRun>
    /// Indices of rows zeroed because they held non-finite values; statistics exclude them.
    public let excludedRows: [Int]
    /// Non-finite values found in this block.
    public let nonFiniteValues: Int

    /// Rows that count towards statistics.
    public var validRows: Int { rows - excludedRows.count }
}

/// How a dump's valid tokens are cut into blocks: the same for every layer and kind, so blocks of
/// different layers hold the same tokens row for row (what cross-layer statistics rely on).
///
/// Blocks are packed greedily: runs are cut into pieces of at most `blockTokens` tokens, and consecutive
/// pieces share a block while they fit. The plan is kept as segments — one packed block, or a stretch of
/// full blocks inside one long run — so its memory grows with the number of runs, not with
/// tokens ÷ `blockTokens` (a dump declaring 2⁴⁰ tokens read with `--block-tokens 1` costs a few segments).
public struct BlockPlan: Sendable {
    /// Rows of the largest block: the requested size clipped to the planned tokens (at least 1), so buffers
    /// sized from it never exceed the data.
    public let blockTokens: Int
    /// Block indices, `0 ..< count`.
    public let blocks: Range<Int>
    private let segments: [Segment]
    /// `segments[i]`'s first block index, ascending.
    private let segmentStarts: [Int]

    private enum Segment: Sendable {
        /// One block of several pieces (each a run or the remainder of one).
        case packed([TokenRun])
        /// `run.count / blockTokens` full blocks, block j holding tokens `run.start + j·blockTokens` onwards.
        case full(TokenRun)
    }

    public init(runs: TokenRuns, blockTokens requested: Int) {
        precondition(requested > 0, "blockTokens must be positive")
        let size = min(requested, max(runs.totalTokens, 1))
        blockTokens = size
        var segments: [Segment] = []
        var starts: [Int] = []
        var blockCount = 0
        var current: [TokenRun] = []
        var rows = 0
        func close() {
            guard !current.isEmpty else { return }
            segments.append(.packed(current))
            starts.append(blockCount)
            blockCount += 1
            current = []
            rows = 0
        }
        for run in runs.runs {
            var offset = 0
            while offset < run.count {
                let remaining = run.count - offset
                if remaining >= size {
                    // Full pieces never share a block: close the open one, then one segment for all of them.
                    close()
                    let full = remaining / size
                    let stretch = TokenRun(sequence: run.sequence, start: run.start + offset, count: full * size)
                    segments.append(.full(stretch))
                    starts.append(blockCount)
                    blockCount += full
                    offset += full * size
                    continue
                }
                if rows + remaining > size { close() }
                current.append(TokenRun(sequence: run.sequence, start: run.start + offset, count: remaining))
                rows += remaining
                offset = run.count
            }
        }
        close()
        self.segments = segments
        segmentStarts = starts
        blocks = 0..<blockCount
    }

    /// The token runs block `index` holds, in row order.
    public func pieces(of index: Int) -> ArraySlice<TokenRun> {
        precondition(blocks.contains(index), "block index out of range")
        var low = 0
        var high = segmentStarts.count - 1
        while low < high {  // the last segment starting at or before `index`
            let mid = (low + high + 1) / 2
            if segmentStarts[mid] <= index { low = mid } else { high = mid - 1 }
        }
        switch segments[low] {
        case .packed(let pieces):
            return pieces[...]
        case .full(let run):
            let j = index - segmentStarts[low]
            return [TokenRun(sequence: run.sequence, start: run.start + j * blockTokens, count: blockTokens)][...]
        }
    }

    /// Reads block `index` of `reader`'s tensor into `buffer` (resized as needed), zeroes rows holding
    /// non-finite values, and returns the block.
    public func read(
        _ index: Int, from reader: TensorReader, into buffer: inout [Float], _ body: (TokenBlock) throws -> Void
    ) throws {
        let columns = reader.heads * reader.headDim
        let size = blockTokens.multipliedReportingOverflow(by: columns)
        guard !size.overflow else {
            throw DumpError(
                .tooLarge,
                "a block of \(blockTokens) tokens × \(columns) channels does not fit in memory; "
                    + "use a smaller --block-tokens", file: reader.dump.path)
        }
        if buffer.count < size.partialValue { buffer = [Float](repeating: 0, count: size.partialValue) }
        let pieces = pieces(of: index)
        var rows = 0
        for piece in pieces {
            try buffer.withUnsafeMutableBufferPointer { out throws(DumpError) in
                try reader.read(sequence: piece.sequence, start: piece.start, count: piece.count, into: out, row: rows)
            }
            rows += piece.count
        }
        // Rows holding NaN/±Inf are zeroed and listed (a C kernel, row ranges on every core).
        let (excluded, nonFinite) = buffer.withUnsafeMutableBufferPointer { values in
            MomentKernels.zeroNonFiniteRows(values, rows: rows, columns: columns)
        }
        try buffer.withUnsafeBufferPointer { values in
            try body(
                TokenBlock(
                    rows: rows, columns: columns, values: UnsafeBufferPointer(rebasing: values[0..<(rows * columns)]),
                    runs: pieces, excludedRows: excluded, nonFiniteValues: nonFinite))
        }
    }
}

extension BlockPlan {
    /// Reads block `index` of every reader (the layers of a group, in lockstep) into `buffers[i]`; returns
    /// the block's rows, its token runs, and the rows excluded (non-finite) in any of the layers.
    public func readGroup(
        _ index: Int, from readers: [TensorReader], into buffers: inout [[Float]]
    ) throws
        -> (rows: Int, runs: ArraySlice<TokenRun>, excluded: Set<Int>)
    {
        if buffers.count < readers.count { buffers += [[Float]](repeating: [], count: readers.count - buffers.count) }
        var rows = 0
        var excluded: Set<Int> = []
        for (position, reader) in readers.enumerated() {
            try read(index, from: reader, into: &buffers[position]) { block in
                rows = block.rows
                excluded.formUnion(block.excludedRows)
            }
        }
        return (rows, pieces(of: index), excluded)
    }
}

/// Streams one (layer, kind) tensor of a dump as token blocks.
public final class TokenBlockReader {
    public let reader: TensorReader
    public let plan: BlockPlan
    private var buffer: [Float] = []

    /// Default rows per block: large enough for BLAS to run near its peak, small enough that a block of a
    /// 1024-channel layer is 16 MiB.
    public static let defaultBlockTokens = 4096

    public init(
        dump: Dump, layer: Int, kind: TensorKind, blockTokens: Int = TokenBlockReader.defaultBlockTokens
    ) throws(DumpError) {
        reader = try TensorReader(dump: dump, layer: layer, kind: kind)
        plan = BlockPlan(runs: dump.tokenRuns, blockTokens: blockTokens)
    }

    /// Columns of every block.
    public var columns: Int { reader.heads * reader.headDim }

    /// Calls `body` with each block in token order (sequence, then position).
    public func forEachBlock(_ body: (TokenBlock) throws -> Void) throws {
        for index in plan.blocks.indices {
            try plan.read(index, from: reader, into: &buffer, body)
        }
    }
}
