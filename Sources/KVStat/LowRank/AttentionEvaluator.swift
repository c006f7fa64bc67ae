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
        try evaluate(
            dump, runs: runs, layers: layers, projections: projections, ranks: ranks, settings: settings,
            queries: queries, causal: causal,
            variants: [ExactRows(runs, window: settings.window, sinks: settings.sinks)]
        )[0]
    }

    /// `--keep-sinks`: the errors with the sinks of `settings.sinks` kept exact, and without them (the same
    /// projections rebuilding the sink rows too; cskv's window stays exact in both), in one streaming pass.
    public static func evaluateWithAndWithoutSinks(
        _ dump: Dump, runs: TokenRuns, layers: [Int], projections: [Projection], ranks: [Int],
        settings: ReconstructionSettings, queries: Int, causal: Bool
    ) throws -> (with: AttentionErrors, without: AttentionErrors) {
        let both = try evaluate(
            dump, runs: runs, layers: layers, projections: projections, ranks: ranks, settings: settings,
            queries: queries, causal: causal,
            variants: [
                ExactRows(runs, window: settings.window, sinks: settings.sinks),
                ExactRows(runs, window: settings.window, sinks: nil),
            ])
        return (both[0], both[1])
    }

    /// The errors of each variant of exact rows (`ExactRows`: which rows are stored exactly rather than rebuilt),
    /// all in one streaming pass: each block is rebuilt once per variant.
    static func evaluate(
        _ dump: Dump, runs: TokenRuns, layers: [Int], projections: [Projection], ranks: [Int],
        settings: ReconstructionSettings, queries: Int, causal: Bool, variants: [ExactRows]
    ) throws -> [AttentionErrors] {
        guard let queryHeads = dump.shape.queryHeads else {
            throw DumpError(.badData, "has no query tensors: attention-level errors need them", file: dump.path)
        }
        let kvHeads = dump.shape.kvHeads
        let d = dump.shape.headDim
        let perKV = queryHeads / kvHeads
        let scale = 1 / Double(d).squareRoot()
        let scratch = ReadScratch()
        let slots = 1 + variants.count  // the exact cache, then each variant
        var logitErrors = [[Double?]](repeating: [], count: variants.count)
        var outputErrors = [[Double?]](repeating: [], count: variants.count)
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
            var logit = [(error: Double, norm: Double)](repeating: (0, 0), count: variants.count)
            var output = [(error: Double, norm: Double)](repeating: (0, 0), count: variants.count)
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
                // Online softmax state per (query, head): exact, then rebuilt per variant.
                var state = [OnlineSoftmax](repeating: OnlineSoftmax(d), count: slots * n * queryHeads)
                let pieces = TokenRuns(runs: sequenceRuns, lengths: runs.lengths).split(maxCount: settings.blockTokens)
                for piece in pieces {
                    let rows = piece.count
                    var blocks: [TensorKind: (exact: [Float], rebuilt: [[Float]])] = [:]
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
                        let index = r.group.firstIndex(of: layer)!
                        var rebuiltVariants: [[Float]] = []
                        for exactRows in variants {
                            let (latent, segments) = latentRows(
                                pieces: [piece][...], rows: rows, excluded: [], exact: exactRows)
                            rebuiltVariants.append(
                                r.reconstructor.rebuild(buffers, rows: rows, latentRow: latent, segments: segments)[
                                    index])
                        }
                        blocks[kind] = (buffers[index], rebuiltVariants)
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
                                rebuiltVariants.map {
                                    rope.applied($0, rows: rows, heads: kvHeads, headDim: d, positions: positions)
                                }
                            )
                        }
                        rebuilders[kind] = r
                    }
                    let (keys, values) = (blocks[.key]!, blocks[.value]!)
                    for h in 0..<queryHeads {
                        let g = h / perKV
                        for i in 0..<n {
                            let qRow = (i * queryHeads + h) * d
                            for t in 0..<rows where !causal || piece.start + t <= sampled[i] {
                                let kRow = t * kvHeads * d + g * d
                                // Logits in float64: float32 products overflow for |q|·|k| ≳ 1e38.
                                var exact = 0.0
                                for j in 0..<d { exact += Double(q[qRow + j]) * Double(keys.exact[kRow + j]) }
                                exact *= scale
                                let slot = slots * (i * queryHeads + h)
                                state[slot].add(exact, value: values.exact, at: kRow)
                                for v in variants.indices {
                                    var approx = 0.0
                                    for j in 0..<d {
                                        approx += Double(q[qRow + j]) * Double(keys.rebuilt[v][kRow + j])
                                    }
                                    approx *= scale
                                    logit[v].error += (exact - approx) * (exact - approx)
                                    logit[v].norm += exact * exact
                                    state[slot + 1 + v].add(approx, value: values.rebuilt[v], at: kRow)
                                }
                            }
                        }
                    }
                }
                for s in stride(from: 0, to: state.count, by: slots) {
                    let o = state[s].output
                    for v in variants.indices {
                        let oh = state[s + 1 + v].output
                        for j in 0..<d {
                            output[v].error += (o[j] - oh[j]) * (o[j] - oh[j])
                            output[v].norm += o[j] * o[j]
                        }
                    }
                }
            }
            for v in variants.indices {
                logitErrors[v].append(
                    logit[v].norm > 0 ? finite((logit[v].error / logit[v].norm).squareRoot()) : nil)
                outputErrors[v].append(
                    output[v].norm > 0 ? finite((output[v].error / output[v].norm).squareRoot()) : nil)
            }
        }
        return variants.indices.map {
            AttentionErrors(
                logits: logitErrors[$0], outputs: outputErrors[$0], queriesPerSequence: queries, causal: causal)
        }
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
