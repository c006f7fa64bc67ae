// The quantization points of `fit-lowrank --sweep`, on the same error-versus-memory curve as the low-rank
// fits: KIVI-style quantization of the cache itself, cskv with quantized latents, and a GEAR-style composition
// (quantized + rank-r residual + sparse outliers). Evaluated by streaming the tokens of each layer (every scheme
// on each block in the same pass), with exact memory (codes, float16 scales and zero points per group, sparse
// values and indices) and, for dumps with queries, the attention-output error. docs/fit-lowrank.md,
// "Quantization on the same curve", states the formulas.
import Foundation
import KVNumerics

public enum QuantizationSweep {
    /// One quantized point of the sweep. Every scheme keeps the last `--window` valid tokens of each sequence
    /// exact (float16) and quantizes the older ones with `LatentQuantizer` (group-wise asymmetric min/max, float16
    /// scale and zero point): keys per channel over groups of consecutive tokens, values per token over groups of
    /// channels (KIVI's axes).
    public enum Scheme: Sendable, Equatable {
        /// The cache itself quantized to `bits`, groups of `group` tokens (keys) or channels (values).
        case kivi(bits: Int, group: Int)
        /// cskv's per-layer projection at keep ratio `keepRatio`, latents quantized to `bits` in groups of `group`.
        case cskv(bits: Int, group: Int, keepRatio: Double)
        /// KIVI at `bits`, group 32; then the residual's top round(rankFraction·C) directions (a per-layer
        /// projection fitted on the fit tokens' residual Gram, float16 latents); then, per token, the
        /// round(sparse·C) largest remaining |errors| stored exactly (float16 value + 16-bit channel index).
        case gear(bits: Int, rankFraction: Double, sparse: Double)
        /// `--keep-sinks` only: cskv's per-layer projection at `keepRatio`, latents unquantized (float16), the
        /// window exact and, with `sinks`, the sink rows too (the projection fitted without them). These are the
        /// sweep's `cskv` and `cskv+sinks` points; streamed for their attention-output errors.
        case lowRank(keepRatio: Double, sinks: Bool)

        public var name: String {
            switch self {
            case .lowRank(_, let sinks): return "cskv" + (sinks ? LowRankSweep.sinksSuffix : "")
            case .kivi(let bits, let group): return "kivi-int\(bits)-g\(group)"
            case .cskv(let bits, _, _): return "cskv-int\(bits)"
            case .gear(let bits, let r, let s): return "gear-int\(bits)-r\(r)-s\(s)"
            }
        }

        /// The sweep's `keep_ratio` column: the nominal stored fraction of an older token, before the window and
        /// the scales (KIVI bits/16; cskv its keep ratio; GEAR bits/16 + r/C + 2s).
        public var keepRatio: Double {
            switch self {
            case .kivi(let bits, _): return Double(bits) / 16
            case .cskv(_, _, let q): return q
            case .gear(let bits, let r, let s): return Double(bits) / 16 + r + 2 * s
            case .lowRank(let q, _): return q
            }
        }

        var bits: Int {
            switch self {
            case .kivi(let b, _), .cskv(let b, _, _), .gear(let b, _, _): return b
            case .lowRank: return 16
            }
        }

        var group: Int {
            switch self {
            case .kivi(_, let g), .cskv(_, let g, _): return g
            case .gear: return QuantizationSweep.gearGroup
            case .lowRank: return 1
            }
        }
    }

    /// KIVI's ladder: 2, 4 and 8 bits at groups of 32 and 128.
    public static let kiviLadder: [Scheme] = [32, 128].flatMap { g in [2, 4, 8].map { Scheme.kivi(bits: $0, group: g) }
    }
    /// GEAR's ladder (group 32): points near keep ratios 0.25 and 0.375.
    public static let gearLadder: [Scheme] = [
        .gear(bits: 2, rankFraction: 0.0625, sparse: 0.01), .gear(bits: 2, rankFraction: 0.125, sparse: 0.02),
        .gear(bits: 4, rankFraction: 0.0625, sparse: 0.01),
    ]
    static let gearGroup = 32
    /// Bits of cskv's quantized latents in the sweep, each at every keep ratio of the ladder.
    public static let cskvBits = [4, 8]

    /// Every scheme of a sweep over `ladder` with cskv's quantization group `quantGroup`, in row order; with
    /// `sinks`, then cskv's unquantized latents without and with the sinks kept (`lowRank`) at every keep ratio
    /// (streamed only for their attention errors: the caller asks for them only when there are any).
    public static func schemes(ladder: [Double], quantGroup: Int, sinks: Bool = false) -> [Scheme] {
        kiviLadder + cskvBits.flatMap { b in ladder.map { Scheme.cskv(bits: b, group: quantGroup, keepRatio: $0) } }
            + gearLadder
            + (sinks ? [false, true].flatMap { k in ladder.map { Scheme.lowRank(keepRatio: $0, sinks: k) } } : [])
    }

    /// Whether a row of `Totals.rungs` is a `lowRank` scheme (merged into the Gram-priced cskv rows).
    public static func isLowRank(_ method: String) -> Bool {
        method == "cskv" || method == "cskv" + LowRankSweep.sinksSuffix
    }

    /// Squared errors and norms per scheme and (kind, layer), stored and original 16-bit units, and the
    /// attention-output errors per layer, added up one layer at a time.
    public struct Totals: Sendable {
        public let schemes: [Scheme]
        var squared: [[String: Double]], heldSquared: [[String: Double]]
        var norms: [String: Double] = [:], heldNorms: [String: Double] = [:]
        /// Stored 16-bit units per scheme, and the original's, over the evaluated tokens.
        var stored: [Double]
        var original = 0.0
        /// Per scheme, the relative attention-output error of each layer where defined.
        var attention: [[Double]]
        var attentionLayers = 0

        public init(schemes: [Scheme]) {
            self.schemes = schemes
            squared = schemes.map { _ in [:] }
            heldSquared = squared
            stored = schemes.map { _ in 0 }
            attention = schemes.map { _ in [] }
        }

        /// The sweep's rows, one per scheme (`heldOut`: there are held-out tokens).
        public func rungs(heldOut: Bool) -> [FitReport.Rung] {
            schemes.indices.map { i in
                var rung = FitReport.Rung(
                    method: schemes[i].name, keepRatio: schemes[i].keepRatio,
                    memoryRatio: original > 0 ? stored[i] / original : 0,
                    fitError: Self.rms(squared[i], norms),
                    heldOutError: heldOut ? Self.rms(heldSquared[i], heldNorms) : nil, ranks: nil)
                let a = attention[i]
                rung.attentionOutputError =
                    a.isEmpty ? nil : (a.reduce(0) { $0 + $1 * $1 } / Double(a.count)).squareRoot()
                return rung
            }
        }

        /// Root mean square over (kind, layer) with energy of the relative errors; nil when none has energy.
        static func rms(_ squared: [String: Double], _ norms: [String: Double]) -> Double? {
            let relative = norms.keys.sorted().compactMap { key -> Double? in
                norms[key]! > 0 ? (squared[key] ?? 0) / norms[key]! : nil
            }
            let value = relative.isEmpty ? nil : (relative.reduce(0, +) / Double(relative.count)).squareRoot()
            return value.flatMap { $0.isFinite ? $0 : nil }
        }

        /// Evaluates every scheme on one layer: a pass over the fit tokens for GEAR's residual Grams, then one
        /// over the fit tokens and, with held-out tokens, one over those (the evaluated set: memory and attention).
        /// `cskv` holds the layer's cskv projections (one per kind, widest rung) and `cskvRanks[ri][i]` the rank
        /// of projection i at ladder rung ri.
        /// `sinks`: the kept positions with the layer's cskv projections fitted without them and their ranks, for
        /// the `lowRank` schemes with sinks.
        public mutating func addLayer(
            _ dump: Dump, layer: Int, split: FitSplit, heldOut: Bool, options: FitOptions, cskv: [Projection],
            cskvRanks: [[Int]], ladder: [Double],
            sinks: (positions: KeepSinks, cskv: [Projection], ranks: [[Int]])? = nil
        ) throws {
            let kinds = LowRankFit.kinds.filter(dump.kinds.contains)
            let headDim = dump.shape.headDim
            let channels = Dictionary(uniqueKeysWithValues: kinds.map { ($0, dump.shape.heads(of: $0) * headDim) })
            let residualBases = try QuantizationSweep.gearBases(
                dump, layer: layer, runs: split.fit, kinds: kinds, channels: channels, schemes: schemes,
                options: options)
            var rebuilders = [TensorKind: [Rebuilder]]()
            for kind in kinds {
                rebuilders[kind] = schemes.map { scheme in
                    // The `lowRank` scheme with sinks rebuilds through the projections fitted without them.
                    var (projections, ranks) = (cskv, cskvRanks)
                    if case .lowRank(_, true) = scheme, let sinks { (projections, ranks) = (sinks.cskv, sinks.ranks) }
                    return Rebuilder(
                        scheme: scheme, kind: kind, layer: layer, channels: channels[kind]!,
                        cskv: projections.first { $0.kind == kind },
                        cskvRank: { q in
                            let ri = ladder.firstIndex(of: q)!
                            return ranks[ri][projections.firstIndex { $0.kind == kind }!]
                        }, residualBasis: residualBases[kind]?[scheme.name])
                }
            }
            // Per kind, cskv's projections at the widest rank any scheme uses, for the latents they share.
            var wide = [TensorKind: [Bool: GroupReconstructor]]()
            for kind in kinds {
                for sinksVariant in [false, true] {
                    let users = rebuilders[kind]!.filter { $0.cskv != nil && $0.usesSinkProjections == sinksVariant }
                    guard let rank = users.map(\.rank).max(), let projection = users[0].cskv?.projections[0] else {
                        continue
                    }
                    wide[kind, default: [:]][sinksVariant] = GroupReconstructor(
                        projections: [projection], ranks: [rank], layers: [layer], channels: channels[kind]!,
                        kind: kind, quantizer: nil)
                }
            }
            let queries =
                dump.hasAttendableQueries && kinds.count == 2 && options.attentionQueries > 0
                ? options.attentionQueries : 0
            let sets: [(TokenRuns, held: Bool, evaluated: Bool)] =
                heldOut ? [(split.fit, false, false), (split.eval, true, true)] : [(split.fit, false, true)]
            for (runs, held, evaluated) in sets {
                try pass(
                    dump, layer: layer, runs: runs, held: held, evaluated: evaluated, kinds: kinds,
                    channels: channels, rebuilders: &rebuilders, wide: wide, queries: evaluated ? queries : 0,
                    options: options, sinks: sinks?.positions)
            }
        }

        /// One streaming pass over `runs` for one layer: every scheme rebuilds every block.
        mutating func pass(
            _ dump: Dump, layer: Int, runs: TokenRuns, held: Bool, evaluated: Bool, kinds: [TensorKind],
            channels: [TensorKind: Int], rebuilders: inout [TensorKind: [Rebuilder]],
            wide: [TensorKind: [Bool: GroupReconstructor]], queries: Int, options: FitOptions, sinks: KeepSinks? = nil
        ) throws {
            let scratch = ReadScratch()
            let readers = try Dictionary(
                uniqueKeysWithValues: kinds.map { kind throws(DumpError) in
                    (kind, try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch))
                })
            let queryReader =
                queries > 0 ? try TensorReader(dump: dump, layer: layer, kind: .query, scratch: scratch) : nil
            let exact = ExactRows(runs, window: options.window, sinks: nil)
            // The `lowRank` scheme with sinks keeps the sink rows exact too.
            let exactWithSinks = ExactRows(runs, window: options.window, sinks: sinks)
            var bySequence = [[TokenRun]](repeating: [], count: runs.lengths.count)
            for run in runs.runs { bySequence[run.sequence].append(run) }
            var attentionError = [(error: Double, norm: Double)](repeating: (0, 0), count: schemes.count)
            let sharedKivi = BlockCache.sharedKeys(schemes)
            for (sequence, sequenceRuns) in bySequence.enumerated() where !sequenceRuns.isEmpty {
                var attention: BlockAttention?
                if let queryReader, let queryHeads = dump.shape.queryHeads {
                    let positions = sequenceRuns.flatMap { $0.start..<($0.start + $0.count) }
                    let sampled = QuerySampling.evenly(positions, count: queries)
                    var q = [Float](repeating: 0, count: sampled.count * queryHeads * dump.shape.headDim)
                    try q.withUnsafeMutableBufferPointer { out throws(DumpError) in
                        for (i, position) in sampled.enumerated() {
                            try queryReader.read(sequence: sequence, start: position, count: 1, into: out, row: i)
                        }
                    }
                    attention = BlockAttention(
                        q: q, positions: sampled, queryHeads: queryHeads, kvHeads: dump.shape.kvHeads,
                        headDim: dump.shape.headDim, causal: options.causal, variants: schemes.count + 1)
                }
                let pieces = TokenRuns(runs: sequenceRuns, lengths: runs.lengths).split(maxCount: options.blockTokens)
                for piece in pieces {
                    let rows = piece.count
                    // The exact blocks of both kinds, with their rows left out, quantized rows and segments.
                    var blocks: [TensorKind: (x: [Float], excluded: Set<Int>, latent: [Bool], segments: [Range<Int>])] =
                        [:]
                    var sinkRows: [TensorKind: (latent: [Bool], segments: [Range<Int>])] = [:]
                    var masked = [Bool](repeating: false, count: rows)
                    for kind in kinds {
                        let c = channels[kind]!
                        var x = [Float](repeating: 0, count: rows * c)
                        try x.withUnsafeMutableBufferPointer { out throws(DumpError) in
                            try readers[kind]!.read(
                                sequence: sequence, start: piece.start, count: rows, into: out, row: 0)
                        }
                        // Rows holding NaN or ±Inf are left out (zeroed, never in a quantization group).
                        var excluded = Set<Int>()
                        for r in 0..<rows where !(r * c..<(r + 1) * c).allSatisfy({ x[$0].isFinite }) {
                            excluded.insert(r)
                            masked[r] = true
                            for i in (r * c)..<((r + 1) * c) { x[i] = 0 }
                        }
                        let (latent, segments) = latentRows(
                            pieces: [piece][...], rows: rows, excluded: excluded, exact: exact)
                        if sinks != nil {
                            sinkRows[kind] = latentRows(
                                pieces: [piece][...], rows: rows, excluded: excluded, exact: exactWithSinks)
                        }
                        let key = "\(kind)/\(layer)"
                        let norm = QuantizationSweep.squaredDistance(
                            x, [Float](repeating: 0, count: x.count), rows: rows, channels: c, excluded: excluded)
                        if held { heldNorms[key, default: 0] += norm } else { norms[key, default: 0] += norm }
                        if evaluated { original += Double(rows * c) }
                        blocks[kind] = (x, excluded, latent, segments)
                    }
                    if attention != nil {
                        attention!.add(
                            variant: 0, keys: blocks[.key]!.x, values: blocks[.value]!.x, rows: rows,
                            start: piece.start, masked: masked)
                    }
                    var caches = Dictionary(
                        uniqueKeysWithValues: kinds.map { ($0, BlockCache(wide: wide[$0] ?? [:], shared: sharedKivi)) })
                    // One scheme at a time, so that only one rebuilt block per kind is held (besides the cache).
                    for (s, scheme) in schemes.enumerated() {
                        // `lowRank` points carry only attention errors: nothing to stream in a pass without them.
                        if case .lowRank = scheme, attention == nil { continue }
                        var rebuilt: [TensorKind: [Float]] = [:]
                        for kind in kinds {
                            var (x, excluded, latent, segments) = blocks[kind]!
                            if case .lowRank(_, true) = scheme, let rows = sinkRows[kind] {
                                (latent, segments) = rows
                            }
                            let c = channels[kind]!
                            let y = rebuilders[kind]![s].rebuild(
                                x, rows: rows, latent: latent, segments: segments, cache: &caches[kind]!)
                            let error = QuantizationSweep.squaredDistance(
                                x, y, rows: rows, channels: c, excluded: excluded)
                            if held {
                                heldSquared[s]["\(kind)/\(layer)", default: 0] += error
                            } else {
                                squared[s]["\(kind)/\(layer)", default: 0] += error
                            }
                            if evaluated {
                                stored[s] += QuantizationSweep.storedUnits(
                                    scheme, kind: kind, channels: c, rows: rows, latent: latent, segments: segments,
                                    rank: rebuilders[kind]![s].rank)
                            }
                            if attention != nil { rebuilt[kind] = y }
                        }
                        if attention != nil {
                            attention!.add(
                                variant: s + 1, keys: rebuilt[.key]!, values: rebuilt[.value]!, rows: rows,
                                start: piece.start, masked: masked)
                        }
                    }
                }
                if let attention {
                    for s in schemes.indices {
                        let (e, n) = attention.squaredError(variant: s + 1)
                        attentionError[s].error += e
                        attentionError[s].norm += n
                    }
                }
            }
            if queries > 0 {
                for s in schemes.indices where attentionError[s].norm > 0 {
                    let relative = (attentionError[s].error / attentionError[s].norm).squareRoot()
                    if relative.isFinite { attention[s].append(relative) }
                }
            }
        }
    }

    /// Stored 16-bit units of one block of `rows` tokens of `channels` under `scheme`: rows outside `latent`
    /// (window, non-finite) at full cost; latent rows their codes (bits/16 each), two float16 parameters per
    /// quantization group actually formed (keys: ⌈n/G⌉ groups per channel of each segment of n latent rows;
    /// values: ⌈width/G⌉ per row), and GEAR's float16 residual latents and sparse (value, index) pairs.
    static func storedUnits(
        _ scheme: Scheme, kind: TensorKind, channels c: Int, rows: Int, latent: [Bool], segments: [Range<Int>],
        rank: Int
    ) -> Double {
        let latentRows = latent.filter { $0 }.count
        // The quantized width: the channels, or cskv's latent rank.
        let width: Int
        if case .cskv = scheme { width = rank } else { width = c }
        let g = scheme.group
        if case .lowRank = scheme { return Double((rows - latentRows) * c + latentRows * rank) }
        let codes = Double(latentRows * width * scheme.bits) / 16
        let parameters =
            kind == .key
            ? 2 * Double(width * segments.reduce(0) { $0 + ($1.count + g - 1) / g })
            : 2 * Double(latentRows * ((width + g - 1) / g))
        var extra = 0.0
        if case .gear(_, _, let s) = scheme {
            extra = Double(latentRows * (rank + 2 * sparseCount(s, channels: c)))
        }
        return Double((rows - latentRows) * c) + codes + parameters + extra
    }

    /// The `k`-th largest of `values` (1 ≤ k ≤ count), by quickselect with a median-of-three pivot: O(count) on
    /// average; `values` is reordered.
    static func kthLargest(_ values: inout [Float], _ k: Int) -> Float {
        var (low, high, target) = (0, values.count - 1, k - 1)
        while low < high {
            let middle = (low + high) / 2
            let pivot = [values[low], values[middle], values[high]].sorted()[1]
            var (i, j) = (low, high)
            while i <= j {
                while values[i] > pivot { i += 1 }
                while values[j] < pivot { j -= 1 }
                if i <= j {
                    values.swapAt(i, j)
                    (i, j) = (i + 1, j - 1)
                }
            }
            if target <= j {
                high = j
            } else if target >= i {
                low = i
            } else {
                return values[target]
            }
        }
        return values[target]
    }

    /// GEAR's sparse entries per token: round(s·C).
    static func sparseCount(_ s: Double, channels: Int) -> Int { Int((s * Double(channels)).rounded()) }
    /// GEAR's residual rank: round(r·C).
    static func residualRank(_ r: Double, channels: Int) -> Int {
        min(Int((r * Double(channels)).rounded()), channels)
    }

    /// GEAR's residual projections of one layer, per kind and scheme name: the top eigenvectors of Σ EᵀE over
    /// the fit tokens' latent rows, E = X − KIVI(X) (float64 Gram, float32 basis `C × r`).
    static func gearBases(
        _ dump: Dump, layer: Int, runs: TokenRuns, kinds: [TensorKind], channels: [TensorKind: Int],
        schemes: [Scheme], options: FitOptions
    ) throws -> [TensorKind: [String: Matrix<Float>]] {
        let gears = schemes.filter { if case .gear = $0 { return true } else { return false } }
        guard !gears.isEmpty else { return [:] }
        let bitsUsed = Array(Set(gears.map(\.bits))).sorted()
        let scratch = ReadScratch()
        let thresholds = ReconstructionEvaluator.windowThresholds(runs, window: options.window)
        var result: [TensorKind: [String: Matrix<Float>]] = [:]
        for kind in kinds {
            let c = channels[kind]!
            let reader = try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
            // Lower triangles, packed (`BLAS.accumulateGram`).
            var grams = bitsUsed.map { _ in [Double](repeating: 0, count: c * (c + 1) / 2) }
            var product: [Float] = []
            for piece in runs.split(maxCount: options.blockTokens) {
                let rows = piece.count
                var x = [Float](repeating: 0, count: rows * c)
                try x.withUnsafeMutableBufferPointer { out throws(DumpError) in
                    try reader.read(sequence: piece.sequence, start: piece.start, count: rows, into: out, row: 0)
                }
                var excluded = Set<Int>()
                for r in 0..<rows where !(r * c..<(r + 1) * c).allSatisfy({ x[$0].isFinite }) {
                    excluded.insert(r)
                    for i in (r * c)..<((r + 1) * c) { x[i] = 0 }
                }
                let (latent, segments) = latentRows(
                    pieces: [piece][...], rows: rows, excluded: excluded, thresholds: thresholds)
                for (b, bits) in bitsUsed.enumerated() {
                    let q = kivi(
                        x, rows: rows, channels: c, kind: kind,
                        quantizer: LatentQuantizer(bits: bits, group: gearGroup), latent: latent, segments: segments)
                    var e = difference(x, q)
                    // A group range beyond float16 (scale inf) leaves non-finite values: no basis (the errors are
                    // undefined too).
                    guard e.allSatisfy(\.isFinite) else {
                        grams[b][0] = .nan
                        continue
                    }
                    // Rescaled by a power of two so that the float32 products neither overflow nor underflow;
                    // the Gram is scaled back in float64.
                    let scale = PowerOfTwoScale(
                        maxMagnitude: e.withUnsafeBufferPointer { BLAS.maxMagnitude($0) })
                    if !scale.isIdentity { for i in e.indices { e[i] *= scale.factor } }
                    let energy = scale.undo(power: 2)
                    e.withUnsafeBufferPointer { eb in
                        BLAS.accumulateGram(
                            eb, rows: rows, columns: c, into: &grams[b], scratch: &product, multiplier: energy)
                    }
                }
            }
            // One decomposition per bit width, at the widest residual rank of its schemes; each scheme takes a
            // prefix of the vectors.
            for bits in bitsUsed {
                let users = gears.filter { $0.bits == bits }
                let widest =
                    users.map { scheme -> Int in
                        guard case .gear(_, let fraction, _) = scheme else { return 0 }
                        return residualRank(fraction, channels: c)
                    }.max() ?? 0
                let gram = Matrix.fromPackedLower(grams[bitsUsed.firstIndex(of: bits)!], n: c)
                let finite = gram.values.allSatisfy(\.isFinite)
                let vectors =
                    finite && widest > 0
                    ? try SymmetricEigen(gram, topVectors: widest).vectors! : Matrix(rows: c, columns: 0)
                for scheme in users {
                    guard case .gear(_, let fraction, _) = scheme else { continue }
                    let r = finite ? residualRank(fraction, channels: c) : 0
                    var basis = [Float](repeating: 0, count: c * r)
                    for i in 0..<c { for j in 0..<r { basis[i * r + j] = Float(vectors.values[i * widest + j]) } }
                    result[kind, default: [:]][scheme.name] = Matrix(rows: c, columns: r, values: basis)
                }
            }
        }
        return result
    }

    /// a − b elementwise (equal lengths).
    static func difference(_ a: [Float], _ b: [Float]) -> [Float] {
        [Float](unsafeUninitializedCapacity: a.count) { out, count in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in for i in 0..<pa.count { out[i] = pa[i] - pb[i] } }
            }
            count = a.count
        }
    }

    /// Σ (x − y)² over the rows not `excluded` of two `rows × c` blocks, in float64.
    static func squaredDistance(_ x: [Float], _ y: [Float], rows: Int, channels c: Int, excluded: Set<Int>) -> Double {
        x.withUnsafeBufferPointer { px in
            y.withUnsafeBufferPointer { py in
                var total = 0.0
                for r in 0..<rows where !excluded.contains(r) {
                    for i in (r * c)..<((r + 1) * c) {
                        let e = Double(px[i]) - Double(py[i])
                        total += e * e
                    }
                }
                return total
            }
        }
    }

    /// KIVI's quantization of the `latent` rows of a `rows × channels` block (keys per channel over the token
    /// groups of each segment, values per token over channel groups); other rows are returned exact.
    static func kivi(
        _ x: [Float], rows: Int, channels: Int, kind: TensorKind, quantizer: LatentQuantizer, latent: [Bool],
        segments: [Range<Int>]
    ) -> [Float] {
        var q = x
        q.withUnsafeMutableBufferPointer { y in
            if kind == .value {
                quantizer.quantizeRows(y, rows: rows, columns: channels)
            } else {
                quantizer.quantizeColumns(y, columns: channels, segments: segments)
            }
        }
        for r in 0..<rows where !latent[r] {
            for i in (r * channels)..<((r + 1) * channels) { q[i] = x[i] }
        }
        return q
    }

    /// Work shared by the schemes on one block of one kind, each piece formed at most once: KIVI's quantized
    /// block per (bits, group) (the KIVI points and GEAR's first stage), and cskv's latents at the widest rank
    /// of the ladder, per projection set (fitted with or without the sink rows) — every rung's latents are a
    /// prefix of them.
    struct BlockCache {
        /// The reconstructors at the widest rank, by whether they use the projections fitted without sinks.
        var wide: [Bool: GroupReconstructor]
        /// The (bits, group) of KIVI results that more than one scheme uses (only those are kept).
        private let shared: Set<Int>
        private var quantized: [Int: [Float]] = [:]
        private var wideLatents: [Bool: [Float]] = [:]

        init(wide: [Bool: GroupReconstructor], shared: Set<Int>) { (self.wide, self.shared) = (wide, shared) }

        /// The (bits, group) keys of KIVI results that more than one of `schemes` uses.
        static func sharedKeys(_ schemes: [Scheme]) -> Set<Int> {
            let keys = schemes.compactMap { scheme -> Int? in
                switch scheme {
                case .kivi, .gear: return BlockCache.key(bits: scheme.bits, group: scheme.group)
                case .cskv, .lowRank: return nil
                }
            }
            return Set(keys.filter { key in keys.filter { $0 == key }.count > 1 })
        }

        static func key(bits: Int, group: Int) -> Int { bits << 32 | group }

        /// `QuantizationSweep.kivi` of `x` with `quantizer`, formed once per (bits, group). Every caller on one
        /// block must pass the same `latent` rows and `segments` (the block's, window only: the KIVI and GEAR
        /// schemes); a scheme with other exact rows must not use the cache.
        mutating func kivi(
            _ x: [Float], rows: Int, kind: TensorKind, quantizer: LatentQuantizer, latent: [Bool],
            segments: [Range<Int>]
        ) -> [Float] {
            let key = BlockCache.key(bits: quantizer.bits, group: quantizer.group)
            if let known = quantized[key] { return known }
            let q = QuantizationSweep.kivi(
                x, rows: rows, channels: x.count / max(rows, 1), kind: kind, quantizer: quantizer, latent: latent,
                segments: segments)
            if shared.contains(key) { quantized[key] = q }
            return q
        }

        /// (X − μ)P at the widest rank (`rows × rank`, row-major) of the projection set `sinks`.
        mutating func latents(_ x: [Float], rows: Int, sinks: Bool) -> (values: [Float], rank: Int) {
            let rank = wide[sinks]!.ranks[0]
            if let known = wideLatents[sinks] { return (known, rank) }
            let values = wide[sinks]!.latents([x], rows: rows, projection: 0)
            wideLatents[sinks] = values
            return (values, rank)
        }
    }

    /// Rebuilds blocks of one layer and kind under one scheme.
    struct Rebuilder {
        let scheme: Scheme
        let kind: TensorKind
        let channels: Int
        let quantizer: LatentQuantizer
        /// cskv's latent rank, or GEAR's residual rank.
        let rank: Int
        var cskv: GroupReconstructor?
        /// GEAR's residual basis, `channels × rank`.
        let residualBasis: Matrix<Float>?
        /// `lowRank` with sinks: the latents come from the projections fitted without the sink rows.
        var usesSinkProjections: Bool {
            if case .lowRank(_, true) = scheme { return true }
            return false
        }

        init(
            scheme: Scheme, kind: TensorKind, layer: Int, channels: Int, cskv: Projection?, cskvRank: (Double) -> Int,
            residualBasis: Matrix<Float>?
        ) {
            (self.scheme, self.kind, self.channels, self.residualBasis) = (scheme, kind, channels, residualBasis)
            // `lowRank` (16-bit latents) never quantizes; its quantizer is a placeholder.
            quantizer = LatentQuantizer(bits: min(scheme.bits, 8), group: scheme.group)
            switch scheme {
            case .cskv(_, _, let q):
                let r = cskvRank(q)
                rank = r
                self.cskv = cskv.map {
                    GroupReconstructor(
                        projections: [$0], ranks: [r], layers: [layer], channels: channels, kind: kind,
                        quantizer: quantizer)
                }
            case .gear(_, let fraction, _): rank = QuantizationSweep.residualRank(fraction, channels: channels)
            case .kivi: rank = 0
            case .lowRank(let q, _):
                let r = cskvRank(q)
                rank = r
                self.cskv = cskv.map {
                    GroupReconstructor(
                        projections: [$0], ranks: [r], layers: [layer], channels: channels, kind: kind, quantizer: nil)
                }
            }
        }

        /// The scheme's rebuilt block (`rows × channels`) of the exact block `x`, taking KIVI's result and cskv's
        /// latents from `cache` (formed there once per block for every scheme that needs them).
        mutating func rebuild(
            _ x: [Float], rows: Int, latent: [Bool], segments: [Range<Int>], cache: inout BlockCache
        ) -> [Float] {
            switch scheme {
            case .kivi:
                return cache.kivi(x, rows: rows, kind: kind, quantizer: quantizer, latent: latent, segments: segments)
            case .cskv, .lowRank:
                // Latents at this rank: the first `rank` columns of the widest rung's (the basis is a prefix).
                let wide = cache.latents(x, rows: rows, sinks: usesSinkProjections)
                let y =
                    rank == wide.rank
                    ? wide.values
                    : [Float](unsafeUninitializedCapacity: rows * rank) { out, count in
                        wide.values.withUnsafeBufferPointer { source in
                            for r in 0..<rows {
                                for j in 0..<rank { out[r * rank + j] = source[r * wide.rank + j] }
                            }
                        }
                        count = rows * rank
                    }
                var rebuilt = [x]
                cskv!.quantizeAndExpand(
                    y, rows: rows, projection: 0, latentRow: latent, segments: segments, into: &rebuilt)
                return rebuilt[0]
            case .gear(_, _, let s):
                var y = cache.kivi(
                    x, rows: rows, kind: kind, quantizer: quantizer, latent: latent, segments: segments)
                let c = channels
                var e = difference(x, y)
                if let basis = residualBasis, basis.columns == rank, rank > 0 {
                    var latentValues = [Float](repeating: 0, count: rows * rank)
                    var back = [Float](repeating: 0, count: rows * c)
                    e.withUnsafeBufferPointer { eb in
                        basis.values.withUnsafeBufferPointer { pb in
                            latentValues.withUnsafeMutableBufferPointer {
                                BLAS.multiply(eb, pb, m: rows, n: rank, k: c, into: $0)
                            }
                            latentValues.withUnsafeBufferPointer { lb in
                                back.withUnsafeMutableBufferPointer {
                                    BLAS.multiply(lb, pb, m: rows, n: c, k: rank, transposeB: true, into: $0)
                                }
                            }
                        }
                    }
                    y.withUnsafeMutableBufferPointer { y in
                        e.withUnsafeMutableBufferPointer { e in
                            x.withUnsafeBufferPointer { x in
                                for r in 0..<rows where latent[r] {
                                    for i in (r * c)..<((r + 1) * c) {
                                        y[i] += back[i]
                                        e[i] = x[i] - y[i]
                                    }
                                }
                            }
                        }
                    }
                }
                let k = sparseCount(s, channels: c)
                if k > 0 {
                    var magnitudes: [Float] = []
                    magnitudes.reserveCapacity(c)
                    y.withUnsafeMutableBufferPointer { y in
                        e.withUnsafeBufferPointer { e in
                            x.withUnsafeBufferPointer { x in
                                for r in 0..<rows where latent[r] {
                                    // The k largest remaining |errors| of the token, stored exactly (the float16
                                    // original); among equal ones the first channel wins. The k-th largest is found
                                    // by selection, so a row costs O(C), not k scans of it.
                                    let row = (r * c)..<((r + 1) * c)
                                    magnitudes.removeAll(keepingCapacity: true)
                                    for i in row where y[i] != x[i] { magnitudes.append(abs(e[i])) }
                                    guard !magnitudes.isEmpty else { continue }
                                    let take = min(k, magnitudes.count)
                                    let threshold = QuantizationSweep.kthLargest(&magnitudes, take)
                                    var above = 0
                                    for i in row where y[i] != x[i] && abs(e[i]) > threshold { above += 1 }
                                    var ties = take - above
                                    for i in row where y[i] != x[i] {
                                        let m = abs(e[i])
                                        if m > threshold || (m == threshold && ties > 0) {
                                            if m == threshold { ties -= 1 }
                                            y[i] = x[i]
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                return y
            }
        }
    }
}
