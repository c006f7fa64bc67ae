// The stream every statistic folds: one layer's tensor as consecutive blocks of at most `blockTokens` valid
// token rows × (heads × head_dim) float32 columns. Memory is one block, whatever the token count.

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
public struct BlockPlan: Sendable {
    /// Token runs cut to at most `blockTokens` tokens.
    public let pieces: [TokenRun]
    /// Each block's range of `pieces`.
    public let blocks: [Range<Int>]
    public let blockTokens: Int

    public init(runs: TokenRuns, blockTokens: Int) {
        precondition(blockTokens > 0, "blockTokens must be positive")
        self.blockTokens = blockTokens
        pieces = runs.split(maxCount: blockTokens)
        var blocks: [Range<Int>] = []
        var index = 0
        while index < pieces.count {
            let first = index
            var rows = 0
            while index < pieces.count && rows + pieces[index].count <= blockTokens {
                rows += pieces[index].count
                index += 1
            }
            blocks.append(first..<index)
        }
        self.blocks = blocks
    }

    /// Reads block `index` of `reader`'s tensor into `buffer` (resized as needed), zeroes rows holding
    /// non-finite values, and returns the block.
    public func read(_ index: Int, from reader: TensorReader, into buffer: inout [Float], _ body: (TokenBlock) throws -> Void) throws {
        let columns = reader.heads * reader.headDim
        if buffer.count < blockTokens * columns { buffer = [Float](repeating: 0, count: blockTokens * columns) }
        var rows = 0
        for piece in pieces[blocks[index]] {
            try buffer.withUnsafeMutableBufferPointer { out throws(DumpError) in
                try reader.read(sequence: piece.sequence, start: piece.start, count: piece.count, into: out, row: rows)
            }
            rows += piece.count
        }
        var excluded: [Int] = []
        var nonFinite = 0
        buffer.withUnsafeMutableBufferPointer { values in
            for r in 0..<rows {
                var bad = 0
                for c in 0..<columns where !values[r * columns + c].isFinite { bad += 1 }
                if bad > 0 {
                    nonFinite += bad
                    excluded.append(r)
                    for c in 0..<columns { values[r * columns + c] = 0 }
                }
            }
        }
        try buffer.withUnsafeBufferPointer { values in
            try body(TokenBlock(rows: rows, columns: columns, values: UnsafeBufferPointer(rebasing: values[0..<(rows * columns)]),
                                runs: pieces[blocks[index]], excludedRows: excluded, nonFiniteValues: nonFinite))
        }
    }
}

extension BlockPlan {
    /// Reads block `index` of every reader (the layers of a group, in lockstep) into `buffers[i]`; returns
    /// the block's rows, its token runs, and the rows excluded (non-finite) in any of the layers.
    public func readGroup(_ index: Int, from readers: [TensorReader], into buffers: inout [[Float]]) throws
        -> (rows: Int, runs: ArraySlice<TokenRun>, excluded: Set<Int>) {
        if buffers.count < readers.count { buffers += [[Float]](repeating: [], count: readers.count - buffers.count) }
        var rows = 0
        var excluded: Set<Int> = []
        for (position, reader) in readers.enumerated() {
            try read(index, from: reader, into: &buffers[position]) { block in
                rows = block.rows
                excluded.formUnion(block.excludedRows)
            }
        }
        return (rows, pieces[blocks[index]], excluded)
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

    public init(dump: Dump, layer: Int, kind: TensorKind, blockTokens: Int = TokenBlockReader.defaultBlockTokens) throws(DumpError) {
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
