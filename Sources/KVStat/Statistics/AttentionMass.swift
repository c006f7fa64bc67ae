// Attention sinks by attention mass, for dumps that hold queries: the share of attention each key position
// receives, per layer and query head, over a sample of query positions (StreamingLLM's sinks, which KIVI,
// RotateKV and every compression method keep exact). A sink may have a small norm, so norms alone miss it.
// Each sequence's keys stream through twice per layer (the softmax normalisers, then the weights), and each layer
// is finished into its top positions as soon as it is measured, so memory is the sampled queries, one block of
// keys and values, one layer's per-position sums (transient), and a few numbers per analysed layer.
import Foundation
import KVNumerics

/// Attention received per key position of the analysed layers (`AttentionMass.measure`).
///
/// Definitions (docs/statistics.md, "Attention-mass sinks"). For each sequence, the query positions are its
/// selected valid tokens at or after `minQueryPosition` (all of them when none is, or without `causal`), of which
/// `QuerySampling.evenly` takes up to `queriesPerSequence`. Query head h attends to KV head ⌊h·kvHeads/queryHeads⌋
/// (GQA) over the sequence's selected valid keys (those at or before the query with `causal`):
/// w(q, h, p) = softmax_p(q_h · k_p / √d), in float64. Key rows with a NaN/±Inf value are left out; a query row
/// with one is not counted. Sums over every counted (query, head) row: `weight[h][p]` = Σ w(q, h, p), `rows[h]`
/// the rows counted; the share of position p is Σ_h weight[h][p] / Σ_h rows[h] (each row distributes 1, so the
/// shares sum to 1), that of head h weight[h][p] / rows[h]. `uniform[p]` = Σ over counted queries of 1/v(q), v the
/// keys query q sees: the share p would take if every query attended evenly (for comparison: a causal mask alone
/// favours early positions). `keyNorm`/`valueNorm[p]`: Σ over sequences of ‖x_p‖₂ (every head) of the finite rows,
/// `keyCount`/`valueCount[p]` the rows summed.
public struct AttentionMass: Sendable, Equatable {
    /// Query positions below this are not sampled when the sequence has later ones (causal only): an early
    /// query sees so few keys that it would weigh them by construction.
    public static let minQueryPosition = 16

    /// One measured layer, finished: what the report needs, not the per-position sums.
    public struct Layer: Sendable, Equatable {
        public var layer: Int
        /// Queries counted (finite rows of every head), for the uniform shares.
        public var queries: Int
        /// (query, head) rows counted over every query head: Σ_h rows[h].
        public var rows: Int
        /// The `topCount` positions with the largest share, largest first (ties: the lower position); empty when
        /// no row was counted.
        public var top: [Position]
        /// Per query head with counted rows, its top position (ties: the lower) and share.
        public var heads: [StatsReport.HeadSink]
    }

    /// A top position of a layer with its share and the sums its norm ratios need.
    public struct Position: Sendable, Equatable {
        public var position: Int
        /// Σ_h weight[h][p] / Σ_h rows[h].
        public var share: Double
        /// uniform[p] / queries (0 with no query counted).
        public var uniformShare: Double
        /// keyNorm[p], keyCount[p], valueNorm[p], valueCount[p] (see the type's definitions).
        public var keyNormSum: Double
        public var keyCount: Int
        public var valueNormSum: Double
        public var valueCount: Int
    }

    public var queryHeads: Int
    /// Key positions tracked: the largest selected position + 1.
    public var positions: Int
    public var queriesPerSequence: Int
    public var causal: Bool
    public var layers: [Layer]
    /// Why nothing was measured (no queries, `--sink-queries 0`, outliers not computed); nil when measured.
    public var note: String?

    /// Nothing measured, for the reason `note`.
    public static func unmeasured(_ note: String, queriesPerSequence: Int, causal: Bool) -> AttentionMass {
        AttentionMass(
            queryHeads: 0, positions: 0, queriesPerSequence: queriesPerSequence, causal: causal, layers: [], note: note)
    }

    /// Whether `options` ask for it: the outliers section with `sinkQueries` > 0.
    public static func isComputed(by options: AnalysisOptions) -> Bool {
        options.sections.contains(.outliers) && options.sinkQueries > 0
    }

    /// Measures `layers` of `dump` over the tokens of `runs` (see the type's definitions). Throws when the dump
    /// cannot be read; a dump without queries gives `unmeasured`.
    public static func measure(
        _ dump: Dump, runs: TokenRuns, layers: [Int], queriesPerSequence: Int, causal: Bool, blockTokens: Int
    ) throws -> AttentionMass {
        try measure(
            dump, runs: runs, layers: layers, queriesPerSequence: queriesPerSequence, causal: causal,
            blockTokens: blockTokens, observe: nil)
    }

    /// `measure`, with each layer's per-position sums handed to `observe` (when given) instead of being
    /// finished into `layers`: fit-lowrank's `--keep-sinks` pools them over layers (`KeepSinks.choose`).
    static func measure(
        _ dump: Dump, runs: TokenRuns, layers: [Int], queriesPerSequence: Int, causal: Bool, blockTokens: Int,
        observe: ((Sums) -> Void)?
    ) throws -> AttentionMass {
        guard let queryHeads = dump.shape.queryHeads, dump.hasAttendableQueries, dump.kinds.contains(.key) else {
            return unmeasured(
                "Attention-mass sinks cannot be judged: \(dump.unattendableQueriesReason).",
                queriesPerSequence: queriesPerSequence, causal: causal)
        }
        let (kvHeads, d) = (dump.shape.kvHeads, dump.shape.headDim)
        let perKV = max(queryHeads / max(kvHeads, 1), 1)
        let width = kvHeads * d
        let positionCount = (runs.runs.map { $0.start + $0.count }.max() ?? 0)
        var bySequence = [[TokenRun]](repeating: [], count: runs.lengths.count)
        for run in runs.runs { bySequence[run.sequence].append(run) }
        let scratch = ReadScratch()
        let scale = 1 / Double(d).squareRoot()
        var result = AttentionMass(
            queryHeads: queryHeads, positions: positionCount, queriesPerSequence: queriesPerSequence, causal: causal,
            layers: [], note: nil)
        for layer in layers {
            let queryReader = try TensorReader(dump: dump, layer: layer, kind: .query, scratch: scratch)
            let keyReader = try TensorReader(dump: dump, layer: layer, kind: .key, scratch: scratch)
            let valueReader =
                dump.kinds.contains(.value)
                ? try TensorReader(dump: dump, layer: layer, kind: .value, scratch: scratch) : nil
            var out = Sums(
                layer: layer, queryHeads: queryHeads, positions: positionCount,
                weight: [Double](repeating: 0, count: queryHeads * positionCount),
                rows: [Int](repeating: 0, count: queryHeads), uniform: [Double](repeating: 0, count: positionCount),
                queries: 0, keyNorm: [Double](repeating: 0, count: positionCount),
                valueNorm: [Double](repeating: 0, count: positionCount),
                keyCount: [Int](repeating: 0, count: positionCount),
                valueCount: [Int](repeating: 0, count: positionCount))
            for (sequence, sequenceRuns) in bySequence.enumerated() where !sequenceRuns.isEmpty {
                let positions = sequenceRuns.flatMap { $0.start..<($0.start + $0.count) }
                let late = positions.filter { $0 >= minQueryPosition }
                let sampled = QuerySampling.evenly(
                    causal && !late.isEmpty ? late : positions, count: queriesPerSequence)
                let n = sampled.count
                var q = [Float](repeating: 0, count: n * queryHeads * d)
                try q.withUnsafeMutableBufferPointer { buffer throws(DumpError) in
                    for (i, position) in sampled.enumerated() {
                        try queryReader.read(sequence: sequence, start: position, count: 1, into: buffer, row: i)
                    }
                }
                // Per KV head g: its n·perKV query rows (query i, head g·perKV + j at row i·perKV + j), scaled.
                let rowsPerGroup = n * perKV
                var groups = [Matrix<Double>](repeating: Matrix(rows: rowsPerGroup, columns: d), count: kvHeads)
                var finiteRow = [Bool](repeating: true, count: n * queryHeads)
                for i in 0..<n {
                    for h in 0..<queryHeads {
                        let (g, j) = (min(h / perKV, kvHeads - 1), h % perKV)
                        for c in 0..<d {
                            let x = q[(i * queryHeads + h) * d + c]
                            if !x.isFinite { finiteRow[i * queryHeads + h] = false }
                            groups[g].values[(i * perKV + j) * d + c] = x.isFinite ? Double(x) * scale : 0
                        }
                    }
                }
                // Running maximum and normaliser per (query, head); keys each query sees.
                var maximum = [Double](repeating: -.infinity, count: n * queryHeads)
                var total = [Double](repeating: 0, count: n * queryHeads)
                var seen = [Int](repeating: 0, count: n)
                let pieces = TokenRuns(runs: sequenceRuns, lengths: runs.lengths).split(maxCount: max(blockTokens, 1))
                for pass in 0..<2 {
                    for piece in pieces {
                        let rows = piece.count
                        var keys = [Float](repeating: 0, count: rows * width)
                        try keys.withUnsafeMutableBufferPointer { buffer throws(DumpError) in
                            try keyReader.read(
                                sequence: sequence, start: piece.start, count: rows, into: buffer, row: 0)
                        }
                        let valid = (0..<rows).map { t in (0..<width).allSatisfy { keys[t * width + $0].isFinite } }
                        if pass == 1 {
                            addNorms(
                                keys, valid: valid, rows: rows, width: width, start: piece.start, into: &out.keyNorm,
                                counts: &out.keyCount)
                            if let valueReader {
                                var values = [Float](repeating: 0, count: rows * width)
                                try values.withUnsafeMutableBufferPointer { buffer throws(DumpError) in
                                    try valueReader.read(
                                        sequence: sequence, start: piece.start, count: rows, into: buffer, row: 0)
                                }
                                let finite = (0..<rows).map { t in
                                    (0..<width).allSatisfy { values[t * width + $0].isFinite }
                                }
                                addNorms(
                                    values, valid: finite, rows: rows, width: width, start: piece.start,
                                    into: &out.valueNorm, counts: &out.valueCount)
                            }
                        }
                        // Keys query i sees in this block: rows 0 ..< visible[i], less the invalid ones.
                        let visible = sampled.map { causal ? min(max($0 - piece.start + 1, 0), rows) : rows }
                        if pass == 0 {
                            for i in 0..<n { seen[i] += (0..<visible[i]).filter { valid[$0] }.count }
                        }
                        for g in 0..<kvHeads {
                            var block = Matrix<Double>(rows: rows, columns: d)
                            for t in 0..<rows where valid[t] {
                                for c in 0..<d { block.values[t * d + c] = Double(keys[t * width + g * d + c]) }
                            }
                            let logits = BLAS.multiply(groups[g], block, transposeB: true)
                            for i in 0..<n {
                                for j in 0..<perKV {
                                    let h = g * perKV + j
                                    let slot = i * queryHeads + h
                                    let row = (i * perKV + j) * rows
                                    if pass == 0 {
                                        var top = maximum[slot]
                                        for t in 0..<visible[i] where valid[t] {
                                            top = max(top, logits.values[row + t])
                                        }
                                        guard top > -.infinity else { continue }
                                        var sum =
                                            maximum[slot] == -.infinity ? 0 : total[slot] * exp(maximum[slot] - top)
                                        for t in 0..<visible[i] where valid[t] {
                                            sum += exp(logits.values[row + t] - top)
                                        }
                                        (maximum[slot], total[slot]) = (top, sum)
                                    } else if finiteRow[slot], total[slot] > 0 {
                                        for t in 0..<visible[i] where valid[t] {
                                            out.weight[h * positionCount + piece.start + t] +=
                                                exp(logits.values[row + t] - maximum[slot]) / total[slot]
                                        }
                                    }
                                }
                            }
                        }
                        if pass == 1 {
                            for i in 0..<n
                            where seen[i] > 0 && (0..<queryHeads).allSatisfy({ finiteRow[i * queryHeads + $0] }) {
                                for t in 0..<visible[i] where valid[t] {
                                    out.uniform[piece.start + t] += 1 / Double(seen[i])
                                }
                            }
                        }
                    }
                }
                for i in 0..<n {
                    for h in 0..<queryHeads where finiteRow[i * queryHeads + h] && total[i * queryHeads + h] > 0 {
                        out.rows[h] += 1
                    }
                    if seen[i] > 0 && (0..<queryHeads).allSatisfy({ finiteRow[i * queryHeads + $0] }) {
                        out.queries += 1
                    }
                }
            }
            if let observe { observe(out) } else { result.layers.append(out.finished()) }
        }
        return result
    }

    /// Adds ‖row‖₂ (float64) of each valid row t of `x` to `sums[start + t]`, and 1 to `counts[start + t]`.
    private static func addNorms(
        _ x: [Float], valid: [Bool], rows: Int, width: Int, start: Int, into sums: inout [Double],
        counts: inout [Int]
    ) {
        for t in 0..<rows where valid[t] {
            var s = 0.0
            for c in 0..<width { s += Double(x[t * width + c]) * Double(x[t * width + c]) }
            sums[start + t] += s.squareRoot()
            counts[start + t] += 1
        }
    }

    /// One layer's sums while it is measured (8·T·(Hq + 5) bytes), finished into a `Layer` before the next.
    struct Sums {
        var layer: Int
        var queryHeads: Int
        var positions: Int
        /// `queryHeads × positions`, row h: Σ of head h's weights on each key position.
        var weight: [Double]
        /// Per query head: (query, head) rows counted.
        var rows: [Int]
        /// Per key position: Σ of 1/v over the counted queries (v the keys each sees).
        var uniform: [Double]
        var queries: Int
        var keyNorm: [Double]
        var valueNorm: [Double]
        var keyCount: [Int]
        var valueCount: [Int]

        /// The layer's top positions by share and each head's top position; ties go to the lower position.
        func finished() -> Layer {
            let rowsTotal = rows.reduce(0, +)
            guard rowsTotal > 0 else { return Layer(layer: layer, queries: queries, rows: 0, top: [], heads: []) }
            var share = [Double](repeating: 0, count: positions)
            for h in 0..<queryHeads {
                for p in 0..<positions { share[p] += weight[h * positions + p] }
            }
            for p in 0..<positions { share[p] /= Double(rowsTotal) }
            // The first `topCount` of the order (share descending, then position ascending), kept sorted.
            let before = { (a: Int, b: Int) -> Bool in share[a] != share[b] ? share[a] > share[b] : a < b }
            var order: [Int] = []
            for p in 0..<positions {
                if order.count == AttentionMass.topCount, let last = order.last, !before(p, last) { continue }
                var i = order.count
                while i > 0 && before(p, order[i - 1]) { i -= 1 }
                order.insert(p, at: i)
                if order.count > AttentionMass.topCount { order.removeLast() }
            }
            let top = order.map { p in
                Position(
                    position: p, share: share[p], uniformShare: queries > 0 ? uniform[p] / Double(queries) : 0,
                    keyNormSum: keyNorm[p], keyCount: keyCount[p], valueNormSum: valueNorm[p],
                    valueCount: valueCount[p])
            }
            let heads = (0..<queryHeads).compactMap { h -> StatsReport.HeadSink? in
                guard rows[h] > 0 else { return nil }
                var best = 0
                for p in 0..<positions where weight[h * positions + p] > weight[h * positions + best] { best = p }
                return StatsReport.HeadSink(
                    head: h, position: best, share: weight[h * positions + best] / Double(rows[h]))
            }
            return Layer(layer: layer, queries: queries, rows: rowsTotal, top: top, heads: heads)
        }
    }
}
