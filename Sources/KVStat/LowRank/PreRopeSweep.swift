// `kvstat fit-lowrank --keys pre-rope --sweep`: pca and xKV fitted on the pre-RoPE keys (methods `pca_pre_rope`,
// `xkv_pre_rope`), priced from Grams beside the post-RoPE points of `LowRankSweep`.
import KVNumerics

public enum PreRopeSweep {
    /// The sweep's names of the pre-RoPE key methods.
    public static let methods: [FitMethod: String] = [.pca: "pca_pre_rope", .xkv: "xkv_pre_rope"]

    /// pca (at `options.granularity`) and xKV fitted on `key_pre_rope` and values at every keep ratio of the
    /// ladder; empty unless `options.keys` is pre-RoPE and the dump has pre-RoPE keys.
    ///
    /// Priced on the pre-RoPE Grams. RoPE turns each token's key by an orthogonal matrix R_t, so
    /// ‖R_t k_t − R_t k̂_t‖ = ‖k_t − k̂_t‖ and ‖R_t k_t‖ = ‖k_t‖: the pre-RoPE error equals the error after RoPE
    /// against RoPE(K_pre) exactly, and against a dump's own post-RoPE keys up to their storage rounding (the
    /// fit's `key` and `key_pre_rope` errors show both). The values are fitted and priced as in pca and xkv;
    /// a point's error is the root mean square over (layer, kind) of keys and values, like every sweep point.
    public static func run(
        _ dump: Dump, options: FitOptions, progress: ((AnalysisProgress) -> Void)? = nil
    ) throws -> [FitReport.Rung] {
        guard options.preRopeKeys, dump.kinds.contains(.keyPreRope) else { return [] }
        let layers = try dump.selectLayers(options.layers)
        let split = try translatingHDF5Errors(file: dump.path) {
            try FitSplit(try options.selection.runs(of: dump), holdout: options.holdout)
        }
        let kinds = [TensorKind.keyPreRope, .value].filter(dump.kinds.contains)
        let heads = Dictionary(uniqueKeysWithValues: kinds.map { ($0, dump.shape.heads(of: $0)) })
        let heldOut = options.holdout > 0
        let ladder = options.ladder.sorted()
        var rungs: [FitReport.Rung] = []
        for method in [FitMethod.pca, .xkv] {
            var o = options
            (o.method, o.quantization, o.window) = (method, .none, 0)
            // One fit per unit at the widest rung; every other rung is a prefix of its basis.
            o.budget = .keepRatio(ladder.last ?? 1)
            let groups = ProjectionFitter.groups(of: layers, options: o).groups
            // Per-layer Grams are small: pca takes them all at once; xKV's G·C-wide Grams one group at a time.
            let batches = method == .xkv ? groups.map { [$0] } : [groups]
            var totals = LowRankSweep.Totals(rungs: ladder.count)
            var shapes: [Projection] = []
            var allRanks: [[Int]] = ladder.map { _ in [] }
            for batch in batches {
                var fitGrams: [TensorKind: [GramAccumulator]] = [:]
                var evalGrams = fitGrams
                for kind in kinds {
                    fitGrams[kind] = try LayerGroupGrams.accumulate(
                        dump, runs: split.fit, kind: kind, groups: batch, blockTokens: options.blockTokens,
                        progress: progress)
                    evalGrams[kind] =
                        heldOut
                        ? try LayerGroupGrams.accumulate(
                            dump, runs: split.eval, kind: kind, groups: batch, blockTokens: options.blockTokens,
                            progress: progress) : fitGrams[kind]
                }
                let fitted = try ProjectionFitter.fit(
                    grams: fitGrams, groups: batch, heads: heads, headDim: dump.shape.headDim, options: o)
                let rankTable = fitted.rankTable(ladder: ladder)
                totals.add(
                    fitted.projections, rankTable: rankTable, groups: batch, errorGrams: fitGrams,
                    normGrams: fitGrams, heads: heads, headDim: dump.shape.headDim, heldOut: false, fittedOn: true)
                if heldOut {
                    totals.add(
                        fitted.projections, rankTable: rankTable, groups: batch, errorGrams: evalGrams,
                        normGrams: evalGrams, heads: heads, headDim: dump.shape.headDim, heldOut: true,
                        fittedOn: false)
                }
                shapes += fitted.shapesOnly
                for ri in ladder.indices { allRanks[ri] += rankTable[ri] }
            }
            for (ri, q) in ladder.enumerated() {
                rungs.append(
                    FitReport.Rung(
                        method: methods[method]!, keepRatio: q,
                        memoryRatio: LowRankFit.memoryRatio(
                            shapes, ranks: allRanks[ri], runs: split.eval, options: o, channels: heads,
                            headDim: dump.shape.headDim, layers: layers.count),
                        fitError: totals.overall(ri, heldOut: false),
                        heldOutError: heldOut ? totals.overall(ri, heldOut: true) : nil, ranks: nil))
            }
        }
        return rungs
    }
}
