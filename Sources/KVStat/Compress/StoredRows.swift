// Which token rows of a compressed cache are latents and which are kept exactly (cskv's window), block by
// block: the one bookkeeping `kvstat compress` and `kvstat decompress` share.

/// The rows of one token block: which are window rows, and where its latent and window rows start in the
/// file's latent and window datasets.
struct StoredBlock {
    var rows: Int
    var pieces: ArraySlice<TokenRun>
    var latentStart: Int
    var latentCount: Int
    var windowStart: Int
    var windowCount: Int
    /// First row of the block among all stored rows.
    var rowStart: Int
    /// Key quantization groups starting in this block, as latent-row indices (global).
    var keyGroupStarts: [Int]
}

/// The stored-row layout of a token selection streamed in blocks of `blockTokens` rows. Memory: a few integers
/// per block and one per key quantization group (both also in the file), never one per token.
struct StoredRows {
    let plan: BlockPlan
    /// Per sequence, the first token position of its window (`ReconstructionEvaluator.windowThresholds`).
    let thresholds: [Int]
    let blocks: [StoredBlock]
    let latentTokens: Int
    let windowTokens: Int
    /// Every key quantization group's first latent row, ascending.
    let keyGroupStarts: [Int]

    /// Latent rows are those before each sequence's window; key quantization groups of `group` rows run over
    /// each block's latent rows of one sequence, as `ReconstructionEvaluator` forms them (`latentRows`).
    init(runs: TokenRuns, blockTokens: Int, window: Int, group: Int) {
        plan = BlockPlan(runs: runs, blockTokens: blockTokens)
        let thresholds = ReconstructionEvaluator.windowThresholds(runs, window: window)
        self.thresholds = thresholds
        var blocks: [StoredBlock] = []
        var latent = 0
        var windowRows = 0
        var rowStart = 0
        var groups: [Int] = []
        for index in plan.blocks {
            let pieces = plan.pieces(of: index)
            let rows = pieces.reduce(0) { $0 + $1.count }
            let (isLatent, segments) = latentRows(pieces: pieces, rows: rows, excluded: [], thresholds: thresholds)
            // Latent index of each latent row of the block.
            var latentIndex = [Int](repeating: 0, count: rows)
            var next = latent
            for r in 0..<rows where isLatent[r] {
                latentIndex[r] = next
                next += 1
            }
            let starts = segments.flatMap { s in
                stride(from: s.lowerBound, to: s.upperBound, by: group).map { latentIndex[$0] }
            }
            let latentCount = next - latent
            blocks.append(
                StoredBlock(
                    rows: rows, pieces: pieces, latentStart: latent,
                    latentCount: latentCount, windowStart: windowRows, windowCount: rows - latentCount,
                    rowStart: rowStart, keyGroupStarts: starts))
            groups += starts
            latent = next
            windowRows += rows - latentCount
            rowStart += rows
        }
        self.blocks = blocks
        latentTokens = latent
        windowTokens = windowRows
        keyGroupStarts = groups
    }
}

extension StoredRows {
    /// Whether each row of `block` is one of its sequence's last `window` tokens (stored exactly).
    func isWindow(_ block: StoredBlock) -> [Bool] {
        var flags: [Bool] = []
        flags.reserveCapacity(block.rows)
        for piece in block.pieces {
            for i in 0..<piece.count { flags.append(piece.start + i >= thresholds[piece.sequence]) }
        }
        return flags
    }
}
