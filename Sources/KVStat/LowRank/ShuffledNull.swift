// The shuffled-token null of an xKV layer group: the Gram of the group's channels side by side after the token
// rows of every layer but the first were permuted, each layer by its own seeded permutation. Each layer keeps
// its own rows, so its own Gram (and spectrum) is unchanged; only the alignment of token t across layers is
// destroyed. A grouped fit on this Gram is the control that tells xKV's real cross-layer gain from the gain of
// its accounting (G·r latent dimensions shared by G layers against r per layer).
import KVNumerics

public enum ShuffledNull {
    /// The seed of the null's permutations when the caller gives none (documented in docs/fit-lowrank.md).
    public static let defaultSeed = 20_250_301

    /// One xKV group's answer to "is the cross-layer gain real?", all at equal memory per token and on the fit
    /// tokens (in-sample, so the three errors are priced the same way, from Gram eigenvalues):
    /// - `grouped`: the group's shared basis of rank R over its G layers' channels side by side;
    /// - `null`: the same fit on the shuffled-token null (each layer's own Gram kept, alignment destroyed);
    /// - `per_layer`: each layer alone at rank R/G (rounded, at least 1), as pca would give it.
    /// Each error is pooled over the group's layers, √(Σ residual energy / Σ energy). `real_gain` = null −
    /// grouped is what cross-layer token alignment buys; `accounting_gain` = per_layer − null is what sharing
    /// G·(R/G) dimensions among G layers buys on data with no alignment at all.
    public struct Control: Codable, Sendable, Equatable {
        public var kind: String
        public var layers: [Int]
        public var rank: Int
        public var perLayerRank: Int
        public var seed: Int
        /// Null when the group has no energy.
        public var groupedError: Double?
        public var nullError: Double?
        public var perLayerError: Double?
        public var realGain: Double?
        public var accountingGain: Double?

        enum CodingKeys: String, CodingKey {
            case kind, layers, rank, seed
            case perLayerRank = "per_layer_rank"
            case groupedError = "grouped_error"
            case nullError = "null_error"
            case perLayerError = "per_layer_error"
            case realGain = "real_gain"
            case accountingGain = "accounting_gain"
        }

        /// The control of one group from its fitted Gram's eigenvalues (`groupedEigenvalues`, descending), its
        /// null Gram and its fitted Gram (whose diagonal blocks are the layers' own Grams), centred as the fit
        /// was. `rank` is the group's rank R.
        public init(
            kind: TensorKind, layers: [Int], rank: Int, groupedEigenvalues: [Double], real: GramAccumulator,
            null: GramAccumulator, centered: Bool, seed: Int
        ) throws {
            let count = max(layers.count, 1)
            let channels = real.channels / count
            self.kind = kind.rawValue
            self.layers = layers
            self.rank = rank
            self.seed = seed
            // At least 1: a group rank below G/2 rounds to 0 per layer, an error of 1 that would inflate the
            // accounting gain (the per-layer fit then has a little more memory than the grouped one).
            perLayerRank = max(1, Int((Double(rank) / Double(count)).rounded()))
            let nullValues = try SymmetricEigen(null.denseMatrix(centered: centered)).values
            let dense = real.denseMatrix(centered: centered)
            var perLayer: [Double] = []
            var total = 0.0
            for block in 0..<count {
                var own = Matrix<Double>(rows: channels, columns: channels)
                for i in 0..<channels {
                    for j in 0..<channels { own[i, j] = dense[block * channels + i, block * channels + j] }
                }
                let values = try SymmetricEigen(own).values
                total += values.reduce(0) { $0 + max($1, 0) }
                perLayer += values.dropFirst(perLayerRank)
            }
            func pooled(_ residual: [Double], of energy: [Double]?) -> Double? {
                let whole = energy.map { $0.reduce(0) { $0 + max($1, 0) } } ?? total
                guard whole > 0 else { return nil }
                let error = (residual.reduce(0) { $0 + max($1, 0) } / whole).squareRoot()
                return error.isFinite ? min(error, 1) : nil
            }
            groupedError = pooled(Array(groupedEigenvalues.dropFirst(rank)), of: groupedEigenvalues)
            nullError = pooled(Array(nullValues.dropFirst(rank)), of: nullValues)
            perLayerError = pooled(perLayer, of: nil)
            func difference(_ a: Double?, _ b: Double?) -> Double? { a.flatMap { a in b.map { a - $0 } } }
            realGain = difference(nullError, groupedError)
            accountingGain = difference(perLayerError, nullError)
        }
    }

    /// Folds the tokens of `runs` of every group of at least two layers into the Gram of the group's
    /// concatenated channels with the rows of layer position p ≥ 1 permuted by `permutation(position: p, …)`;
    /// nil for groups of one layer (their null is their fit). Reads every layer's rows once, chunk by chunk,
    /// so memory is G chunks of `blockTokens` rows plus the (G·C)² Gram, as for the fit's own Gram.
    ///
    /// The permutation is drawn chunk-wise so that it streams: the valid rows are cut into chunks of
    /// `blockTokens` rows; the order of the full chunks is shuffled, and then the rows inside each chunk. Every
    /// row is used exactly once, and row i of the first layer meets a uniformly random row of a uniformly
    /// random chunk of layer p (a shorter last chunk stays in place, its rows shuffled). A row that is non-finite
    /// in any layer is left out of its joined row, as in the fit's Gram.
    public static func accumulate(
        _ dump: Dump, runs: TokenRuns, kind: TensorKind, groups: [[Int]], blockTokens: Int, seed: Int,
        progress: ((AnalysisProgress) -> Void)? = nil
    ) throws -> [GramAccumulator?] {
        let channels = dump.shape.heads(of: kind) * dump.shape.headDim
        let rows = runs.totalTokens
        let chunk = max(1, min(blockTokens, rows))
        let scratch = ReadScratch()
        var result: [GramAccumulator?] = []
        var productScratch: [Float] = []
        var part: [Float] = []
        var joined: [Float] = []
        for (groupIndex, group) in groups.enumerated() {
            guard group.count > 1 else {
                result.append(nil)
                continue
            }
            let readers = try group.map { layer throws(DumpError) in
                try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
            }
            let width = channels * group.count
            var gram = GramAccumulator(channels: width)
            // The permutations' stream names the group by its first layer, so each group has its own.
            let stream = group[0]
            let orders = (1..<group.count).map {
                chunkOrder(rows: rows, chunk: chunk, seed: seed, group: stream, position: $0)
            }
            if joined.count < chunk * width { joined = [Float](repeating: 0, count: chunk * width) }
            if part.count < chunk * channels { part = [Float](repeating: 0, count: chunk * channels) }
            for target in 0..<((rows + chunk - 1) / chunk) {
                let length = min(chunk, rows - target * chunk)
                var excluded: Set<Int> = []
                for (position, reader) in readers.enumerated() {
                    let source = position == 0 ? target : orders[position - 1][target]
                    let within =
                        position == 0
                        ? nil
                        : SeededShuffle.permutation(count: length, seed: seed, stream: [stream, position, target])
                    try read(runs.rows((source * chunk)..<(source * chunk + length)), from: reader, into: &part)
                    let zeroed = part.withUnsafeMutableBufferPointer { values in
                        MomentKernels.zeroNonFiniteRows(values, rows: length, columns: channels).excluded
                    }
                    joined.withUnsafeMutableBufferPointer { destination in
                        part.withUnsafeBufferPointer { source in
                            guard let to = destination.baseAddress, let from = source.baseAddress else { return }
                            for r in 0..<length {
                                (to + r * width + position * channels).update(
                                    from: from + (within?[r] ?? r) * channels, count: channels)
                            }
                        }
                    }
                    // Rows are zeroed in the source order; the joined rows they land in are excluded.
                    if !zeroed.isEmpty {
                        let sources = Set(zeroed)
                        for r in 0..<length where sources.contains(within?[r] ?? r) { excluded.insert(r) }
                    }
                }
                for r in excluded { for c in 0..<width { joined[r * width + c] = 0 } }
                try joined.withUnsafeBufferPointer { values in
                    let block = TokenBlock(
                        rows: length, columns: width,
                        values: UnsafeBufferPointer(rebasing: values[0..<(length * width)]),
                        runs: runs.rows((target * chunk)..<(target * chunk + length))[...],
                        excludedRows: excluded.sorted(), nonFiniteValues: 0)
                    gram.fold(block, scratch: &productScratch)
                }
            }
            result.append(gram)
            progress?(
                AnalysisProgress(
                    stage: "\(kind.rawValue) shuffled null", completed: groupIndex + 1, total: groups.count,
                    bytes: rows * width * 4))
        }
        return result
    }

    /// The chunk that lands at each chunk position for layer `position` of the group whose first layer is
    /// `group`: the full chunks shuffled, a shorter last chunk in place.
    static func chunkOrder(rows: Int, chunk: Int, seed: Int, group: Int, position: Int) -> [Int] {
        let full = rows / chunk
        var order = SeededShuffle.permutation(count: full, seed: seed, stream: [group, position, -1])
        if rows % chunk != 0 { order.append(full) }
        return order
    }

    /// The row that lands at each row of the stream for layer `position` of the group whose first layer is
    /// `group`: what `accumulate` pairs with row i of that layer (for tests and references; one Int per row).
    public static func permutation(
        rows: Int, blockTokens: Int, seed: Int = defaultSeed, group: Int, position: Int
    ) -> [Int] {
        guard position > 0, rows > 0 else { return Array(0..<max(rows, 0)) }
        let chunk = max(1, min(blockTokens, rows))
        let order = chunkOrder(rows: rows, chunk: chunk, seed: seed, group: group, position: position)
        var result: [Int] = []
        result.reserveCapacity(rows)
        for target in order.indices {
            let length = min(chunk, rows - target * chunk)
            let within = SeededShuffle.permutation(count: length, seed: seed, stream: [group, position, target])
            result += within.map { order[target] * chunk + $0 }
        }
        return result
    }

    /// Reads the token runs `pieces` (consecutive rows of the stream) into `buffer`, row after row.
    private static func read(_ pieces: [TokenRun], from reader: TensorReader, into buffer: inout [Float]) throws {
        var row = 0
        for piece in pieces {
            try buffer.withUnsafeMutableBufferPointer { out throws(DumpError) in
                try reader.read(sequence: piece.sequence, start: piece.start, count: piece.count, into: out, row: row)
            }
            row += piece.count
        }
    }
}
