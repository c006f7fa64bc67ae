// The second streaming pass of a fit: compress every evaluation token block with the projections, rebuild
// it, and add up ‖X − X̂‖² and ‖X‖² per layer and kind (with CSKV's full-precision window and quantized
// latents when asked).
import KVNumerics

/// Squared reconstruction errors and squared norms per (kind, layer).
public struct ReconstructionErrors: Sendable, Equatable {
    public var errorSquared: [TensorKind: [Int: Double]] = [:]
    public var normSquared: [TensorKind: [Int: Double]] = [:]

    /// ‖X − X̂‖_F / ‖X‖_F of one layer and kind; nil when ‖X‖ = 0 (zero energy, or no finite rows), where a
    /// relative error is undefined.
    public func relative(_ kind: TensorKind, layer: Int) -> Double? {
        let n = normSquared[kind]?[layer] ?? 0
        guard n > 0 else { return nil }
        let ratio = ((errorSquared[kind]?[layer] ?? 0) / n).squareRoot()
        return ratio.isFinite ? ratio : nil
    }

    /// Root mean square of the relative errors over the layers where they are defined (of one kind, or of
    /// every kind); nil when none is. Of every kind: a pre-RoPE fit's keys count once, after RoPE (`.key`), so
    /// that it compares with a post-RoPE fit; `.keyPreRope` counts only when there is no `.key`.
    public func overall(_ kind: TensorKind? = nil) -> Double? {
        let hasKey = normSquared[.key] != nil
        // Sorted kinds and layers: a dictionary's order changes from run to run, and so would the sum's last bits.
        let errors = normSquared.keys.sorted().filter {
            kind == nil ? !($0 == .keyPreRope && hasKey) : $0 == kind
        }.flatMap { k in
            normSquared[k]!.keys.sorted().compactMap { relative(k, layer: $0) }
        }
        return errors.isEmpty ? nil : (errors.reduce(0) { $0 + $1 * $1 } / Double(errors.count)).squareRoot()
    }

    /// One note per (kind, layer) whose relative error is undefined, for the manifest.
    public func undefinedNotes() -> [String] {
        normSquared.keys.sorted().flatMap { kind in
            normSquared[kind]!.keys.sorted().compactMap { layer in
                relative(kind, layer: layer) == nil
                    ? "layer \(layer) \(kind.rawValue): zero energy (‖X‖ = 0, or no finite rows): relative error "
                        + "undefined (null)"
                    : nil
            }
        }
    }
}

/// How evaluation treats tokens: CSKV's window and latent quantization.
public struct ReconstructionSettings: Sendable {
    /// Most recent valid tokens of each sequence kept exactly.
    public var window = 0
    public var quantization = LatentQuantization.none
    public var quantGroup = 32
    public var blockTokens = TokenBlockReader.defaultBlockTokens
    /// Pre-RoPE key fits: the RoPE of the dump's keys. The `.keyPreRope` projections are then also priced after
    /// RoPE, ‖K_post − RoPE(K̂_pre)‖ against the dump's `key` (RoPE(K_pre) when it has none), as kind `.key`.
    public var rope: RotaryEmbedding? = nil
    /// `--keep-sinks`: sink positions kept exact like the window (`ExactRows`); nil: none.
    public var sinks: KeepSinks? = nil

    public init() {}
}

/// Rebuilds token blocks of one group of layers and one kind through the projections that cover them:
/// y = (x − μ)P, quantized when asked, x̂ = yPᵀ + μ, each projection on its own channels.
struct GroupReconstructor {
    let projections: [Projection]
    let ranks: [Int]
    let layers: [Int]
    let channels: Int
    let kind: TensorKind
    let quantizer: LatentQuantizer?
    /// Each projection's basis (`dimension × stored rank`); the first `ranks[i]` columns are used, read in place
    /// (SGEMM's `ldb`) rather than copied, so the rungs of one projection share its storage.
    private let bases: [Matrix<Float>]
    private var input: [Float] = [], output: [Float] = []

    init(
        projections: [Projection], ranks: [Int], layers: [Int], channels: Int, kind: TensorKind,
        quantizer: LatentQuantizer?
    ) {
        (self.projections, self.ranks, self.layers, self.channels, self.kind, self.quantizer) = (
            projections, ranks, layers, channels, kind, quantizer
        )
        precondition(zip(projections, ranks).allSatisfy { $1 <= $0.rank }, "a rank above the stored basis")
        bases = projections.map(\.basis)
    }

    /// The rebuilt `rows × channels` block of each layer from the exact ones (`buffers`, same layout). Rows
    /// with `latentRow[r] == false` (window, excluded) are copied exactly; `segments` are the runs of latent
    /// rows from one sequence, which key quantization groups never cross.
    /// `meanScale` multiplies the stored means when the buffers were rescaled by a power of two (the projection
    /// is linear, so a rescaled block rebuilds to the rescaled reconstruction).
    mutating func rebuild(
        _ buffers: [[Float]], rows: Int, latentRow: [Bool], segments: [Range<Int>],
        meanScale: Float = 1
    ) -> [[Float]] {
        var rebuilt = buffers.map { Array($0[0..<(rows * channels)]) }
        for index in projections.indices {
            let y = latents(buffers, rows: rows, projection: index, meanScale: meanScale)
            quantizeAndExpand(
                y, rows: rows, projection: index, latentRow: latentRow, segments: segments, into: &rebuilt,
                meanScale: meanScale)
        }
        return rebuilt
    }

    /// The second half of `rebuild` for latents `y` of projection `index` formed elsewhere (`latents`, or a
    /// prefix of a wider projection's): quantized when asked, then expanded into `rebuilt`.
    mutating func quantizeAndExpand(
        _ y: consuming [Float], rows: Int, projection index: Int, latentRow: [Bool], segments: [Range<Int>],
        into rebuilt: inout [[Float]], meanScale: Float = 1
    ) {
        if let quantizer {
            let rank = ranks[index]
            y.withUnsafeMutableBufferPointer { y in
                if kind == .value {
                    quantizer.quantizeRows(y, rows: rows, columns: rank)
                } else {
                    quantizer.quantizeColumns(y, columns: rank, segments: segments)
                }
            }
        }
        expand(y, rows: rows, projection: index, latentRow: latentRow, into: &rebuilt, meanScale: meanScale)
    }

    /// y = (X_u − μ)P of projection `index` (its first `ranks[index]` columns) for the block `buffers`
    /// (`rows × channels` per layer of the group): `rows × ranks[index]`, row-major, unquantized.
    /// (`kvstat compress` stores these; `rebuild` quantizes and expands them.)
    mutating func latents(_ buffers: [[Float]], rows: Int, projection index: Int, meanScale: Float = 1) -> [Float] {
        let p = projections[index]
        let rank = ranks[index]
        let width = p.channels.count
        let dim = p.dimension
        var y = [Float](repeating: 0, count: rows * rank)
        guard rank > 0 else { return y }
        let basis = bases[index]
        // One layer, all its channels, no mean: the block itself is X_u.
        if layers.count == 1 && width == channels && p.mean == nil {
            buffers[0].withUnsafeBufferPointer { x in
                basis.values.withUnsafeBufferPointer { b in
                    y.withUnsafeMutableBufferPointer { y in
                        BLAS.multiply(x, b, m: rows, n: rank, k: dim, ldb: basis.columns, into: y)
                    }
                }
            }
            return y
        }
        if input.count < rows * dim { input = [Float](repeating: 0, count: rows * dim) }
        // X_u: the unit's channels of each layer side by side, minus μ (scaled once, as each element was).
        let mean = p.mean.map { m in m.map { $0 * meanScale } }
        input.withUnsafeMutableBufferPointer { out in
            for position in layers.indices {
                buffers[position].withUnsafeBufferPointer { source in
                    for r in 0..<rows {
                        let from = r * channels + p.channels.lowerBound
                        let to = r * dim + position * width
                        if let mean {
                            for c in 0..<width { out[to + c] = source[from + c] - mean[position * width + c] }
                        } else {
                            for c in 0..<width { out[to + c] = source[from + c] }
                        }
                    }
                }
            }
        }
        input.withUnsafeBufferPointer { x in
            basis.values.withUnsafeBufferPointer { b in
                y.withUnsafeMutableBufferPointer { y in
                    BLAS.multiply(x, b, m: rows, n: rank, k: dim, ldb: basis.columns, into: y)
                }
            }
        }
        return y
    }

    /// x̂ = yPᵀ + μ of projection `index` from its `rows × ranks[index]` latents `y`, written into the unit's
    /// channels of `rebuilt` (`rows × channels` per layer) at the rows where `latentRow` is true.
    mutating func expand(
        _ y: [Float], rows: Int, projection index: Int, latentRow: [Bool], into rebuilt: inout [[Float]],
        meanScale: Float = 1
    ) {
        // Nothing to write when every row is kept exact (window, sinks, excluded rows).
        guard latentRow.contains(true) else { return }
        let p = projections[index]
        let rank = ranks[index]
        let width = p.channels.count
        let dim = p.dimension
        // One layer, all its channels: yPᵀ straight into the block, the rows kept exact put back after.
        if layers.count == 1 && width == channels && rank > 0 {
            let kept = (0..<rows).filter { !latentRow[$0] }
            let saved = kept.flatMap { r in rebuilt[0][(r * channels)..<((r + 1) * channels)] }
            let mean = p.mean.map { m in m.map { $0 * meanScale } }
            y.withUnsafeBufferPointer { y in
                bases[index].values.withUnsafeBufferPointer { b in
                    rebuilt[0].withUnsafeMutableBufferPointer { out in
                        BLAS.multiply(
                            y, b, m: rows, n: dim, k: rank, transposeB: true, ldb: bases[index].columns, into: out)
                        if let mean {
                            for r in 0..<rows { for c in 0..<width { out[r * channels + c] += mean[c] } }
                        }
                        for (i, r) in kept.enumerated() {
                            for c in 0..<channels { out[r * channels + c] = saved[i * channels + c] }
                        }
                    }
                }
            }
            return
        }
        if output.count < rows * dim { output = [Float](repeating: 0, count: rows * dim) }
        if rank == 0 {
            for i in 0..<(rows * dim) { output[i] = 0 }
        } else {
            let basis = bases[index]
            y.withUnsafeBufferPointer { y in
                basis.values.withUnsafeBufferPointer { b in
                    output.withUnsafeMutableBufferPointer { out in
                        BLAS.multiply(y, b, m: rows, n: dim, k: rank, transposeB: true, ldb: basis.columns, into: out)
                    }
                }
            }
        }
        let mean = p.mean.map { m in m.map { $0 * meanScale } }
        output.withUnsafeBufferPointer { source in
            for position in layers.indices {
                rebuilt[position].withUnsafeMutableBufferPointer { out in
                    for r in 0..<rows where latentRow[r] {
                        let to = r * channels + p.channels.lowerBound
                        let from = r * dim + position * width
                        if let mean {
                            for c in 0..<width { out[to + c] = source[from + c] + mean[position * width + c] }
                        } else {
                            for c in 0..<width { out[to + c] = source[from + c] }
                        }
                    }
                }
            }
        }
    }
}

/// Which rows of a block are stored as latents (not excluded, before the sequence's window), and the runs
/// of such rows within one sequence.
func latentRows(
    pieces: ArraySlice<TokenRun>, rows: Int, excluded: Set<Int>, thresholds: [Int]
) -> (latent: [Bool], segments: [Range<Int>]) {
    latentRows(pieces: pieces, rows: rows, excluded: excluded, exact: ExactRows(thresholds: thresholds))
}

/// Which rows of a block are stored as latents (not excluded, not kept exact by `exact`: the window or a sink),
/// and the runs of such rows within one sequence.
func latentRows(
    pieces: ArraySlice<TokenRun>, rows: Int, excluded: Set<Int>, exact: ExactRows
) -> (latent: [Bool], segments: [Range<Int>]) {
    var latent = [Bool](repeating: true, count: rows)
    var segments: [Range<Int>] = []
    var row = 0
    for piece in pieces {
        var segmentStart: Int?
        for i in 0..<piece.count {
            let stored =
                !excluded.contains(row + i) && !exact.isExact(sequence: piece.sequence, position: piece.start + i)
            latent[row + i] = stored
            if stored, segmentStart == nil { segmentStart = row + i }
            if !stored, let s = segmentStart {
                segments.append(s..<(row + i))
                segmentStart = nil
            }
        }
        if let s = segmentStart { segments.append(s..<(row + piece.count)) }
        row += piece.count
    }
    return (latent, segments)
}

public enum ReconstructionEvaluator {
    /// Evaluates `projections` (each at its own rank, or at `ranks[i]` — a prefix — when given) on the tokens
    /// of `runs`.
    public static func evaluate(
        _ dump: Dump, runs: TokenRuns, projections: [Projection], ranks: [Int]? = nil,
        settings: ReconstructionSettings
    ) throws -> ReconstructionErrors {
        var errors = ReconstructionErrors()
        let plan = BlockPlan(runs: runs, blockTokens: settings.blockTokens)
        let exact = ExactRows(runs, window: settings.window, sinks: settings.sinks)
        let scratch = ReadScratch()
        let index = ProjectionGroups(projections)
        for key in index.keys {
            let (kind, layers) = (key.kind, key.layers)
            var reconstructor = reconstructor(
                projections, ranks: ranks, kind: kind, layers: layers, dump: dump, settings: settings,
                index: index)
            let readers = try layers.map { layer throws(DumpError) in
                try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
            }
            let channels = reconstructor.channels
            var buffers = [[Float]](repeating: [], count: layers.count)
            // Pre-RoPE keys: the dump's post-RoPE keys too (the after-RoPE reference), when it has them.
            let rope = kind == .keyPreRope ? settings.rope : nil
            let postReaders =
                rope != nil && dump.kinds.contains(.key)
                ? try layers.map { layer throws(DumpError) in
                    try TensorReader(dump: dump, layer: layer, kind: .key, scratch: scratch)
                } : []
            var postBuffers = [[Float]](repeating: [], count: postReaders.count)
            for blockIndex in plan.blocks.indices {
                let (rows, pieces, excluded) = try plan.readGroup(blockIndex, from: readers, into: &buffers)
                let postExcluded =
                    postReaders.isEmpty
                    ? excluded : try plan.readGroup(blockIndex, from: postReaders, into: &postBuffers).excluded
                let (latent, segments) = latentRows(pieces: pieces, rows: rows, excluded: excluded, exact: exact)
                // A block whose values would overflow float32 in the projection's products (or underflow) is
                // rebuilt rescaled by a power of two; its squared sums are scaled back in float64.
                let peak = buffers.prefix(layers.count).reduce(Float(0)) { m, b in
                    b.withUnsafeBufferPointer {
                        max(m, BLAS.maxMagnitude(UnsafeBufferPointer(rebasing: $0[0..<(rows * channels)])))
                    }
                }
                let scale = PowerOfTwoScale(maxMagnitude: peak)
                if !scale.isIdentity {
                    for position in layers.indices {
                        buffers[position].withUnsafeMutableBufferPointer { b in
                            let view = UnsafeMutableBufferPointer(rebasing: b[0..<(rows * channels)])
                            scale.apply(UnsafeBufferPointer(view), into: view)
                        }
                    }
                    for position in postBuffers.indices {
                        postBuffers[position].withUnsafeMutableBufferPointer { b in
                            let view = UnsafeMutableBufferPointer(rebasing: b[0..<(rows * channels)])
                            scale.apply(UnsafeBufferPointer(view), into: view)
                        }
                    }
                }
                let rebuilt = reconstructor.rebuild(
                    buffers, rows: rows, latentRow: latent, segments: segments, meanScale: scale.factor)
                let energyScale = scale.undo(power: 2)
                for (position, layer) in layers.enumerated() {
                    var norm = 0.0
                    var error = 0.0
                    // Squares in float64: float32 squares overflow for |x| ≳ 1.8e19 and underflow below ≈ 1e-23.
                    for r in 0..<rows where !excluded.contains(r) {
                        for c in 0..<channels {
                            let x = Double(buffers[position][r * channels + c])
                            let d = x - Double(rebuilt[position][r * channels + c])
                            norm += x * x
                            error += d * d
                        }
                    }
                    errors.normSquared[kind, default: [:]][layer, default: 0] += norm * energyScale
                    errors.errorSquared[kind, default: [:]][layer, default: 0] += error * energyScale
                }
                if let rope {
                    addAfterRope(
                        rope, exact: buffers, reference: postBuffers, rebuilt: rebuilt, rows: rows, pieces: pieces,
                        excluded: excluded.union(postExcluded), layers: layers, heads: dump.shape.heads(of: kind),
                        headDim: dump.shape.headDim, energyScale: energyScale, into: &errors)
                }
            }
        }
        return errors
    }

    /// Adds ‖K_post − RoPE(K̂_pre)‖² and ‖K_post‖² of one block to `errors` as kind `.key`, K_post being
    /// `reference` (the dump's post-RoPE keys) or, when that is empty, RoPE(`exact`); rows at their stored
    /// token positions, rows non-finite in either tensor left out.
    static func addAfterRope(
        _ rope: RotaryEmbedding, exact: [[Float]], reference: [[Float]], rebuilt: [[Float]], rows: Int,
        pieces: ArraySlice<TokenRun>, excluded: Set<Int>, layers: [Int], heads: Int, headDim: Int,
        energyScale: Double, into errors: inout ReconstructionErrors
    ) {
        let positions = RotaryEmbedding.positions(of: pieces)
        let channels = heads * headDim
        for (position, layer) in layers.enumerated() {
            let rotated = rope.applied(
                rebuilt[position], rows: rows, heads: heads, headDim: headDim, positions: positions)
            let post =
                reference.isEmpty
                ? rope.applied(exact[position], rows: rows, heads: heads, headDim: headDim, positions: positions)
                : reference[position]
            var norm = 0.0
            var error = 0.0
            for r in 0..<rows where !excluded.contains(r) {
                for c in 0..<channels {
                    let x = Double(post[r * channels + c])
                    let d = x - Double(rotated[r * channels + c])
                    norm += x * x
                    error += d * d
                }
            }
            errors.normSquared[.key, default: [:]][layer, default: 0] += norm * energyScale
            errors.errorSquared[.key, default: [:]][layer, default: 0] += error * energyScale
        }
    }

    /// The (kind, layer group) pairs of `projections`, in order of first appearance.
    static func groupsOf(_ projections: [Projection]) -> [(kind: TensorKind, layers: [Int])] {
        ProjectionGroups(projections).keys.map { ($0.kind, $0.layers) }
    }

    /// The reconstructor of one (kind, layer group), with the ranks and quantization of `settings`; `index`
    /// is `ProjectionGroups(projections)`, passed in when many groups are looked up.
    static func reconstructor(
        _ projections: [Projection], ranks: [Int]?, kind: TensorKind, layers: [Int], dump: Dump,
        settings: ReconstructionSettings, index: ProjectionGroups? = nil
    ) -> GroupReconstructor {
        let members = (index ?? ProjectionGroups(projections)).members[.init(kind: kind, layers: layers)] ?? []
        let quantizer =
            settings.quantization == .none
            ? nil : LatentQuantizer(bits: settings.quantization.bits, group: settings.quantGroup)
        return GroupReconstructor(
            projections: members.map { projections[$0] }, ranks: members.map { ranks?[$0] ?? projections[$0].rank },
            layers: layers, channels: dump.shape.heads(of: kind) * dump.shape.headDim, kind: kind, quantizer: quantizer)
    }

    /// For each sequence, the first token position inside its window of the last `window` valid tokens
    /// (Int.max when there is no window).
    static func windowThresholds(_ runs: TokenRuns, window: Int) -> [Int] {
        var thresholds = [Int](repeating: Int.max, count: runs.lengths.count)
        guard window > 0 else { return thresholds }
        var remaining = [Int](repeating: window, count: runs.lengths.count)
        for run in runs.runs.reversed() where remaining[run.sequence] > 0 {
            let take = min(run.count, remaining[run.sequence])
            thresholds[run.sequence] = run.start + run.count - take
            remaining[run.sequence] -= take
        }
        return thresholds
    }
}
