// The Gram matrices a fit needs: XᵀX of each group of layers' channels side by side (one layer per group
// for pca, matryoshka and cskv; G adjacent layers for xKV), streamed over a set of tokens.
import KVNumerics

public enum LayerGroupGrams {
    /// Folds the tokens of `runs` of every group in `groups` (lists of layer numbers) into a Gram of the
    /// group's concatenated channels [layer₀ channels | layer₁ channels | …]. The layers of a group are read
    /// in lockstep, one block each, so memory is G blocks plus the (G·C)² Gram.
    public static func accumulate(
        _ dump: Dump, runs: TokenRuns, kind: TensorKind, groups: [[Int]], blockTokens: Int,
        progress: ((AnalysisProgress) -> Void)? = nil
    ) throws -> [GramAccumulator] {
        let plan = BlockPlan(runs: runs, blockTokens: blockTokens)
        let channels = dump.shape.heads(of: kind) * dump.shape.headDim
        let scratch = ReadScratch()
        var result: [GramAccumulator] = []
        var productScratch: [Float] = []
        var bytes = 0
        for (gi, group) in groups.enumerated() {
            let readers = try group.map { layer throws(DumpError) in
                try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
            }
            let width = channels * group.count
            var gram = GramAccumulator(channels: width)
            var buffers: [[Float]] = []
            var joined: [Float] = []
            for blockIndex in plan.blocks.indices {
                if group.count == 1 {
                    if buffers.isEmpty { buffers = [[]] }
                    try plan.read(blockIndex, from: readers[0], into: &buffers[0]) {
                        gram.fold($0, scratch: &productScratch)
                    }
                    continue
                }
                let (rows, runsOfBlock, excluded) = try plan.readGroup(blockIndex, from: readers, into: &buffers)
                if joined.count < rows * width { joined = [Float](repeating: 0, count: plan.blockTokens * width) }
                for (position, values) in buffers.enumerated() {
                    for r in 0..<rows {
                        for c in 0..<channels { joined[r * width + position * channels + c] = values[r * channels + c] }
                    }
                }
                // A row excluded (non-finite) in any layer of the group is excluded from the group.
                for r in excluded { for c in 0..<width { joined[r * width + c] = 0 } }
                joined.withUnsafeBufferPointer { values in
                    let block = TokenBlock(
                        rows: rows, columns: width, values: UnsafeBufferPointer(rebasing: values[0..<(rows * width)]),
                        runs: runsOfBlock, excludedRows: excluded.sorted(), nonFiniteValues: 0)
                    gram.fold(block, scratch: &productScratch)
                }
                bytes += rows * width * 4
            }
            result.append(gram)
            progress?(
                AnalysisProgress(stage: "\(kind.rawValue) Gram", completed: gi + 1, total: groups.count, bytes: bytes))
        }
        return result
    }
}
