// Attention-level errors of a fit, for dumps that hold queries: how much the attention logits QKᵀ/√d and
// the outputs softmax(QKᵀ/√d)V change when K and V are rebuilt from their projections — what a model feels.
import Foundation
import KVNumerics

/// Relative errors of attention logits and outputs per layer.
public struct AttentionErrors: Sendable, Codable, Equatable {
    /// ‖L − L̂‖_F / ‖L‖_F over the sampled queries, every query head and every (unmasked) key; null when
    /// ‖L‖ = 0 (zero queries or keys).
    public var logits: [Double?]
    /// ‖O − Ô‖_F / ‖O‖_F of the attention outputs of the sampled queries; null when ‖O‖ = 0.
    public var outputs: [Double?]
    /// Query positions sampled per sequence, and whether keys after a query were masked.
    public var queriesPerSequence: Int
    public var causal: Bool

    enum CodingKeys: String, CodingKey {
        case logits, outputs, causal
        case queriesPerSequence = "queries_per_sequence"
    }
}

public enum AttentionEvaluator {
    /// For each layer in `layers`, per sequence of `runs`: up to `queries` query positions spread evenly over
    /// its valid tokens (the last included), each query head h attending to KV head h·kvHeads/queryHeads (GQA)
    /// over the sequence's valid keys (those at or before the query with `causal`). Keys and values stream
    /// through in blocks; outputs use an online softmax, so memory is one block plus the sampled queries.
    /// With `settings.rope` (pre-RoPE key fits) the keys rebuilt are the pre-RoPE ones, rotated at their token
    /// positions and compared with the dump's post-RoPE keys (RoPE of its pre-RoPE keys when it has none).
    public static func evaluate(
        _ dump: Dump, runs: TokenRuns, layers: [Int], projections: [Projection], ranks: [Int],
        settings: ReconstructionSettings, queries: Int, causal: Bool
    ) throws -> AttentionErrors {
        guard let queryHeads = dump.shape.queryHeads else {
            throw DumpError(.badData, "has no query tensors: attention-level errors need them", file: dump.path)
        }
        let kvHeads = dump.shape.kvHeads
        let d = dump.shape.headDim
        let perKV = queryHeads / kvHeads
        let scale = 1 / Double(d).squareRoot()
        let thresholds = ReconstructionEvaluator.windowThresholds(runs, window: settings.window)
        let scratch = ReadScratch()
        var logitErrors: [Double?] = []
        var outputErrors: [Double?] = []
        var bySequence = [[TokenRun]](repeating: [], count: runs.lengths.count)
        for run in runs.runs { bySequence[run.sequence].append(run) }
        let index = ProjectionGroups(projections)
        for layer in layers {
            let queryReader = try TensorReader(dump: dump, layer: layer, kind: .query, scratch: scratch)
            // The layer groups (xKV) whose projections rebuild this layer's keys and values.
            var rebuilders: [TensorKind: (group: [Int], reconstructor: GroupReconstructor, readers: [TensorReader])] =
                [:]
            // Pre-RoPE key fits rebuild the pre-RoPE keys, rotate them, and compare with the dump's keys.
            let rope = settings.rope
            for kind in [TensorKind.key, .value] {
                let source = kind == .key && rope != nil ? TensorKind.keyPreRope : kind
                guard let group = index.covering[source]?[layer]?.layers else {
                    throw DumpError(
                        .badData, "the fit has no \(source.rawValue) projection for layer \(layer)", file: dump.path)
                }
                let reconstructor = ReconstructionEvaluator.reconstructor(
                    projections, ranks: ranks, kind: source, layers: group, dump: dump,
                    settings: settings, index: index)
                rebuilders[kind] = (
                    group, reconstructor,
                    try group.map { l throws(DumpError) in
                        try TensorReader(dump: dump, layer: l, kind: source, scratch: scratch)
                    }
                )
            }
            // The exact post-RoPE keys: the dump's own (RoPE of the pre-RoPE keys when it has none).
            let postKeys =
                rope != nil && dump.kinds.contains(.key)
                ? try TensorReader(dump: dump, layer: layer, kind: .key, scratch: scratch) : nil
            var logit = (error: 0.0, norm: 0.0)
            var output = (error: 0.0, norm: 0.0)
            for (sequence, sequenceRuns) in bySequence.enumerated() where !sequenceRuns.isEmpty {
                let positions = sequenceRuns.flatMap { $0.start..<($0.start + $0.count) }
                let n = min(queries, positions.count)
                let sampled = QuerySampling.evenly(positions, count: n)
                var q = [Float](repeating: 0, count: n * queryHeads * d)
                try q.withUnsafeMutableBufferPointer { out throws(DumpError) in
                    for (i, position) in sampled.enumerated() {
                        try queryReader.read(sequence: sequence, start: position, count: 1, into: out, row: i)
                    }
                }
                // Online softmax state per (query, head), exact and rebuilt.
                var state = [OnlineSoftmax](repeating: OnlineSoftmax(d), count: 2 * n * queryHeads)
                let pieces = TokenRuns(runs: sequenceRuns, lengths: runs.lengths).split(maxCount: settings.blockTokens)
                for piece in pieces {
                    let rows = piece.count
                    var blocks: [TensorKind: (exact: [Float], rebuilt: [Float])] = [:]
                    for kind in [TensorKind.key, .value] {
                        var r = rebuilders[kind]!
                        let channels = r.reconstructor.channels
                        var buffers = [[Float]](
                            repeating: [Float](repeating: 0, count: rows * channels), count: r.group.count)
                        for (position, reader) in r.readers.enumerated() {
                            try buffers[position].withUnsafeMutableBufferPointer { out throws(DumpError) in
                                try reader.read(sequence: sequence, start: piece.start, count: rows, into: out, row: 0)
                            }
                        }
                        let (latent, segments) = latentRows(
                            pieces: [piece][...], rows: rows, excluded: [], thresholds: thresholds)
                        let rebuilt = r.reconstructor.rebuild(
                            buffers, rows: rows, latentRow: latent, segments: segments)
                        let index = r.group.firstIndex(of: layer)!
                        blocks[kind] = (buffers[index], rebuilt[index])
                        if kind == .key, let rope {
                            let positions = Array(piece.start..<(piece.start + rows))
                            var exact = buffers[index]
                            if let postKeys {
                                try exact.withUnsafeMutableBufferPointer { out throws(DumpError) in
                                    try postKeys.read(
                                        sequence: sequence, start: piece.start, count: rows, into: out, row: 0)
                                }
                            } else {
                                exact = rope.applied(
                                    exact, rows: rows, heads: kvHeads, headDim: d, positions: positions)
                            }
                            blocks[kind] = (
                                exact,
                                rope.applied(
                                    rebuilt[index], rows: rows, heads: kvHeads, headDim: d, positions: positions)
                            )
                        }
                        rebuilders[kind] = r
                    }
                    for h in 0..<queryHeads {
                        let g = h / perKV
                        for i in 0..<n {
                            let qRow = (i * queryHeads + h) * d
                            for t in 0..<rows where !causal || piece.start + t <= sampled[i] {
                                let kRow = t * kvHeads * d + g * d
                                // Logits in float64: float32 products overflow for |q|·|k| ≳ 1e38.
                                var exact = 0.0
                                var approx = 0.0
                                for j in 0..<d {
                                    exact += Double(q[qRow + j]) * Double(blocks[.key]!.exact[kRow + j])
                                    approx += Double(q[qRow + j]) * Double(blocks[.key]!.rebuilt[kRow + j])
                                }
                                exact *= scale
                                approx *= scale
                                logit.error += (exact - approx) * (exact - approx)
                                logit.norm += exact * exact
                                state[2 * (i * queryHeads + h)].add(exact, value: blocks[.value]!.exact, at: kRow)
                                state[2 * (i * queryHeads + h) + 1].add(
                                    approx, value: blocks[.value]!.rebuilt, at: kRow)
                            }
                        }
                    }
                }
                for s in stride(from: 0, to: state.count, by: 2) {
                    let o = state[s].output
                    let oh = state[s + 1].output
                    for j in 0..<d {
                        output.error += (o[j] - oh[j]) * (o[j] - oh[j])
                        output.norm += o[j] * o[j]
                    }
                }
            }
            logitErrors.append(logit.norm > 0 ? finite((logit.error / logit.norm).squareRoot()) : nil)
            outputErrors.append(output.norm > 0 ? finite((output.error / output.norm).squareRoot()) : nil)
        }
        return AttentionErrors(logits: logitErrors, outputs: outputErrors, queriesPerSequence: queries, causal: causal)
    }
}

private func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }

/// softmax(s)·V accumulated one key at a time with a running maximum (the streaming form of attention), in
/// float64 so that large logits neither overflow nor lose the small ones.
struct OnlineSoftmax {
    var maximum = -Double.infinity
    var sum = 0.0
    var accumulator: [Double]

    init(_ dimension: Int) { accumulator = [Double](repeating: 0, count: dimension) }

    /// Adds key score `score` with its value row `value[offset ..< offset + d]`.
    mutating func add(_ score: Double, value: [Float], at offset: Int) {
        if score > maximum {
            let rescale = maximum == -Double.infinity ? 0 : exp(maximum - score)
            sum *= rescale
            for j in accumulator.indices { accumulator[j] *= rescale }
            maximum = score
        }
        let w = exp(score - maximum)
        sum += w
        for j in accumulator.indices { accumulator[j] += w * Double(value[offset + j]) }
    }

    var output: [Double] { sum > 0 ? accumulator.map { $0 / sum } : accumulator }
}
