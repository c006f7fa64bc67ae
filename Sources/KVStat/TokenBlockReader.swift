// The stream every statistic folds: one layer's tensor as consecutive blocks of at most `blockTokens` valid
// token rows × (heads × head_dim) float32 columns. Memory is one block, whatever the token count.

/// One block of token rows handed to a statistic. `values` points into the reader's buffer: valid only
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

/// Streams one (layer, kind) tensor of a dump as token blocks.
public final class TokenBlockReader {
    public let reader: TensorReader
    public let blockTokens: Int
    /// Runs cut to at most `blockTokens` tokens each.
    let pieces: [TokenRun]
    private var buffer: [Float]

    /// Default rows per block: large enough for BLAS to run near its peak, small enough to stay in cache-
    /// friendly megabytes (4096 × 1024 float32 = 16 MiB).
    public static let defaultBlockTokens = 4096

    public init(dump: Dump, layer: Int, kind: TensorKind, blockTokens: Int = TokenBlockReader.defaultBlockTokens) throws(DumpError) {
        precondition(blockTokens > 0, "blockTokens must be positive")
        reader = try TensorReader(dump: dump, layer: layer, kind: kind)
        self.blockTokens = blockTokens
        pieces = dump.tokenRuns.split(maxCount: blockTokens)
        buffer = [Float](repeating: 0, count: blockTokens * reader.heads * reader.headDim)
    }

    /// Columns of every block.
    public var columns: Int { reader.heads * reader.headDim }

    /// Calls `body` with each block in token order (sequence, then position).
    public func forEachBlock(_ body: (TokenBlock) throws -> Void) throws {
        let columns = self.columns
        var index = 0
        while index < pieces.count {
            var rows = 0
            let first = index
            while index < pieces.count && rows + pieces[index].count <= blockTokens {
                let piece = pieces[index]
                try buffer.withUnsafeMutableBufferPointer { out throws(DumpError) in
                    try reader.read(sequence: piece.sequence, start: piece.start, count: piece.count, into: out, row: rows)
                }
                rows += piece.count
                index += 1
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
                let block = TokenBlock(rows: rows, columns: columns, values: UnsafeBufferPointer(rebasing: values[0..<(rows * columns)]),
                                       runs: pieces[first..<index], excludedRows: excluded, nonFiniteValues: nonFinite)
                try body(block)
            }
        }
    }
}
