// `kvstat fit-lowrank --sweep`: every method at every keep ratio of the ladder, priced from Gram matrices
// (`GramErrorEstimate`), with xKV's shuffled-token null (`ShuffledNull`) and the quantization schemes
// (`QuantizationSweep`: KIVI, quantized cskv latents, GEAR) on the same curve, so the whole error-versus-memory
// curve costs a few streaming passes.
import KVNumerics

public enum LowRankSweep {
    /// Error-versus-memory points of pca (per layer), xkv and its shuffled-token null (`xkv_null`), matryoshka
    /// and cskv (window, unquantized: priced from Grams) at each ratio of `options.ladder`, and the quantization
    /// schemes evaluated by streaming (`QuantizationSweep`). Per-unit methods are fitted one layer group at a
    /// time (xKV's G·C-wide Grams exist one at a time).
    /// With `--keep-sinks` every method also appears as `METHOD+sinks` (`sinksSuffix`): fitted on the Grams less
    /// the sink rows, priced with them exact and in full in its memory; `sinks` are the fit's positions (chosen
    /// here, by `KeepSinks.choose`, when nil).
    public static func run(
        _ dump: Dump, options: FitOptions, sinks given: KeepSinks? = nil,
        progress: ((AnalysisProgress) -> Void)? = nil
    ) throws -> [FitReport.Rung] {
        let layers = try dump.selectLayers(options.layers)
        let selected = try options.selection.runs(of: dump)
        let split = try translatingHDF5Errors(file: dump.path) {
            try FitSplit(selected, holdout: options.holdout)
        }
        try MemoryEstimate.sweep(dump: dump, options: options, layers: layers.count, runs: split.fit).check(
            file: dump.path)  // exit 69
        let sinks =
            options.sinkCount > 0
            ? try given
                ?? KeepSinks.choose(dump, runs: selected, layers: layers, count: options.sinkCount, options: options)
            : nil
        let kinds = LowRankFit.kinds.filter(dump.kinds.contains)
        let heads = Dictionary(uniqueKeysWithValues: kinds.map { ($0, dump.shape.heads(of: $0)) })
        let heldOut = options.holdout > 0
        let ladder = options.ladder.sorted()
        func grams(_ runs: TokenRuns, _ groups: [[Int]], _ kind: TensorKind) throws -> [GramAccumulator] {
            try LayerGroupGrams.accumulate(
                dump, runs: runs, kind: kind, groups: groups, blockTokens: options.blockTokens, progress: progress)
        }
        // Per-layer Grams (4 MiB each for 1024 channels) serve pca, matryoshka and cskv.
        let single = layers.map { [$0] }
        var fitLayer: [TensorKind: [GramAccumulator]] = [:]
        var evalLayer: [TensorKind: [GramAccumulator]] = [:]
        var oldFit: [TensorKind: [GramAccumulator]] = [:]
        var oldEval: [TensorKind: [GramAccumulator]] = [:]
        // cskv's Grams of the tokens before the window: the whole set's minus the window's when the window holds
        // fewer tokens (one short pass instead of a second full one), else read directly.
        func older(_ runs: TokenRuns, whole: [GramAccumulator], _ kind: TensorKind) throws -> [GramAccumulator] {
            let (before, inside) = (
                olderThanWindow(runs, window: options.window), insideWindow(runs, window: options.window)
            )
            guard inside.totalTokens < before.totalTokens else { return try grams(before, single, kind) }
            return zip(whole, try grams(inside, single, kind)).map { $0.subtracting($1) }
        }
        for kind in kinds {
            fitLayer[kind] = try grams(split.fit, single, kind)
            evalLayer[kind] = heldOut ? try grams(split.eval, single, kind) : fitLayer[kind]
            if options.window > 0 {
                oldFit[kind] = try older(split.fit, whole: fitLayer[kind]!, kind)
                oldEval[kind] = heldOut ? try older(split.eval, whole: evalLayer[kind]!, kind) : oldFit[kind]
            } else {
                (oldFit[kind], oldEval[kind]) = (fitLayer[kind], evalLayer[kind])
            }
        }

        // `--keep-sinks`: the sink rows' own Grams (K rows per sequence: a short pass), subtracted from the
        // fitted and priced Grams for the `+sinks` points; the norms keep them (their error is 0).
        var sinkFit: [TensorKind: [GramAccumulator]] = [:]
        var sinkEval = sinkFit
        var sinkOldFit = sinkFit
        var sinkOldEval = sinkFit
        if let sinks {
            for kind in kinds {
                sinkFit[kind] = try grams(sinks.only(in: split.fit), single, kind)
                sinkEval[kind] = heldOut ? try grams(sinks.only(in: split.eval), single, kind) : sinkFit[kind]
                if options.window > 0 {
                    sinkOldFit[kind] = try grams(
                        sinks.only(in: olderThanWindow(split.fit, window: options.window)), single, kind)
                    sinkOldEval[kind] =
                        heldOut
                        ? try grams(sinks.only(in: olderThanWindow(split.eval, window: options.window)), single, kind)
                        : sinkOldFit[kind]
                } else {
                    (sinkOldFit[kind], sinkOldEval[kind]) = (sinkFit[kind], sinkEval[kind])
                }
            }
        }
        // Variant 0: the method as it is; variant 1 (with sinks): fitted without the sink rows, which are kept.
        let variants = sinks == nil ? [false] : [false, true]
        func cut(_ whole: [GramAccumulator]?, _ part: [GramAccumulator]?) -> [GramAccumulator]? {
            guard let whole, let part else { return whole }
            return zip(whole, part).map { $0.subtracting($1) }
        }

        // pca (whole layers) and cskv fit the same per-layer Grams at the same widest rung: one decomposition
        // serves both (cskv prices its errors on other tokens, those before its window). Every batch's pca fit
        // is held from pca's pass until cskv's (MemoryEstimate.sweep counts them).
        let cskvSharesPCAFit = options.granularity == .layer
        var pcaFits: [Int: [FittedProjections]] = [:]
        var rungsOf: [String: [FitReport.Rung]] = [:]
        var nullRungs: [FitReport.Rung] = []
        // The quantization points (KIVI, cskv with quantized latents, GEAR), streamed layer by layer in cskv's
        // pass; with sinks also cskv's unquantized latents with and without them, for their attention errors.
        // cskv's unquantized points are streamed only for their attention errors, so only when those exist.
        let streamsAttention =
            dump.hasAttendableQueries && kinds.count == 2 && options.attentionQueries > 0
        var quantized = QuantizationSweep.Totals(
            schemes: QuantizationSweep.schemes(
                ladder: ladder, quantGroup: options.quantGroup, sinks: sinks != nil && streamsAttention))
        // The per-layer methods first, so that their Grams are dropped before xKV's group Grams exist.
        for method in [FitMethod.pca, .cskv, .matryoshka, .xkv] {
            if method == .xkv {
                (fitLayer, evalLayer, oldFit, oldEval) = ([:], [:], [:], [:])
                (sinkFit, sinkEval, sinkOldFit, sinkOldEval) = ([:], [:], [:], [:])
            }
            var o = options
            o.method = method
            o.quantization = .none
            if method != .cskv { o.window = 0 }
            // One fit per unit at the widest rung; every other rung is a prefix of its basis.
            o.budget = .keepRatio(ladder.last ?? 1)
            var totals = variants.map { _ in Totals(rungs: ladder.count) }
            // xKV's shuffled-token null (fit tokens only), priced like xKV itself at the same ranks per rung.
            var nullTotals = Totals(rungs: ladder.count)
            var allProjections: [[Projection]] = variants.map { _ in [] }
            var allRanks: [[[Int]]] = variants.map { _ in ladder.map { _ in [] } }
            let groups = method == .xkv ? ProjectionFitter.groups(of: layers, options: o).groups : single
            // Matryoshka allocates across every unit at once; the other methods go group by group.
            let batches: [[Int]] = method == .matryoshka ? [Array(groups.indices)] : groups.indices.map { [$0] }
            for (bi, batch) in batches.enumerated() {
                let batchGroups = batch.map { groups[$0] }
                var fitGrams: [TensorKind: [GramAccumulator]] = [:]
                var evalGrams = fitGrams
                var errorFit = fitGrams
                var errorEval = fitGrams
                var sinkGrams = fitGrams
                var sinkEvalGrams = fitGrams
                var sinkErrorFit = fitGrams
                var sinkErrorEval = fitGrams
                for kind in kinds {
                    if method == .xkv {
                        fitGrams[kind] = try grams(split.fit, batchGroups, kind)
                        evalGrams[kind] = heldOut ? try grams(split.eval, batchGroups, kind) : fitGrams[kind]
                        (errorFit[kind], errorEval[kind]) = (fitGrams[kind], evalGrams[kind])
                        if let sinks {
                            sinkGrams[kind] = try grams(sinks.only(in: split.fit), batchGroups, kind)
                            sinkEvalGrams[kind] =
                                heldOut ? try grams(sinks.only(in: split.eval), batchGroups, kind) : sinkGrams[kind]
                            (sinkErrorFit[kind], sinkErrorEval[kind]) = (sinkGrams[kind], sinkEvalGrams[kind])
                        }
                    } else {
                        fitGrams[kind] = batch.map { fitLayer[kind]![$0] }
                        evalGrams[kind] = batch.map { evalLayer[kind]![$0] }
                        errorFit[kind] = batch.map { (method == .cskv ? oldFit : fitLayer)[kind]![$0] }
                        errorEval[kind] = batch.map { (method == .cskv ? oldEval : evalLayer)[kind]![$0] }
                        if sinks != nil {
                            sinkGrams[kind] = batch.map { sinkFit[kind]![$0] }
                            sinkEvalGrams[kind] = batch.map { sinkEval[kind]![$0] }
                            sinkErrorFit[kind] = batch.map { (method == .cskv ? sinkOldFit : sinkFit)[kind]![$0] }
                            sinkErrorEval[kind] = batch.map { (method == .cskv ? sinkOldEval : sinkEval)[kind]![$0] }
                        }
                    }
                }
                var fittedVariants: [FittedProjections] = []
                var rankTables: [[[Int]]] = []
                for (v, withSinks) in variants.enumerated() {
                    // With sinks: fitted and priced on the Grams less the sink rows (kept exact: no error);
                    // ‖X‖² still counts them.
                    var (fitOn, errorOnFit, errorOnEval) = (fitGrams, errorFit, errorEval)
                    if withSinks {
                        // Only cskv prices on other Grams than it fits on, and only --holdout evaluates other
                        // tokens: the other cuts are the same numbers, shared rather than formed again (an xKV
                        // group's Gram is (G·C)² / 2 doubles).
                        for kind in kinds {
                            fitOn[kind] = cut(fitGrams[kind], sinkGrams[kind])
                            errorOnFit[kind] =
                                method == .cskv ? cut(errorFit[kind], sinkErrorFit[kind]) : fitOn[kind]
                            errorOnEval[kind] =
                                heldOut ? cut(errorEval[kind], sinkErrorEval[kind]) : errorOnFit[kind]
                        }
                        (sinkGrams, sinkEvalGrams, sinkErrorFit, sinkErrorEval) = ([:], [:], [:], [:])
                    }
                    let fitted: FittedProjections
                    if method == .cskv, let shared = pcaFits[bi].flatMap({ v < $0.count ? $0[v] : nil }) {
                        fitted = shared
                    } else {
                        fitted = try ProjectionFitter.fit(
                            grams: fitOn, groups: batchGroups, heads: heads, headDim: dump.shape.headDim, options: o)
                        if method == .pca && cskvSharesPCAFit { pcaFits[bi, default: []].append(fitted) }
                    }
                    let rankTable = fitted.rankTable(ladder: ladder)
                    // Fit errors are priced on the fitted Grams themselves except cskv's (tokens before the window).
                    totals[v].add(
                        fitted.projections, rankTable: rankTable, groups: batchGroups, errorGrams: errorOnFit,
                        normGrams: fitGrams, heads: heads, headDim: dump.shape.headDim, heldOut: false,
                        fittedOn: method != .cskv || options.window == 0)
                    if heldOut {
                        totals[v].add(
                            fitted.projections, rankTable: rankTable, groups: batchGroups, errorGrams: errorOnEval,
                            normGrams: evalGrams, heads: heads, headDim: dump.shape.headDim, heldOut: true,
                            fittedOn: false)
                    }
                    if method == .xkv && !withSinks {
                        try nullTotals.addShuffledNull(
                            dump, runs: split.fit, groups: batchGroups, fitGrams: fitGrams, options: o, heads: heads,
                            ladder: ladder, progress: progress)
                    }
                    allProjections[v] += fitted.shapesOnly
                    for ri in ladder.indices { allRanks[v][ri] += rankTable[ri] }
                    fittedVariants.append(fitted)
                    rankTables.append(rankTable)
                }
                if method == .cskv {
                    pcaFits[bi] = nil
                    try quantized.addLayer(
                        dump, layer: batchGroups[0][0], split: split, heldOut: heldOut, options: options,
                        cskv: fittedVariants[0].projections, cskvRanks: rankTables[0], ladder: ladder,
                        sinks: sinks.map { ($0, fittedVariants[1].projections, rankTables[1]) })
                }
            }
            for (v, withSinks) in variants.enumerated() {
                let name = method.rawValue + (withSinks ? sinksSuffix : "")
                for (ri, q) in ladder.enumerated() {
                    let memory = LowRankFit.memoryRatio(
                        allProjections[v], ranks: allRanks[v][ri], runs: split.eval, options: o, channels: heads,
                        headDim: dump.shape.headDim, layers: layers.count, sinks: withSinks ? sinks : nil)
                    rungsOf[name, default: []].append(
                        FitReport.Rung(
                            method: name, keepRatio: q, memoryRatio: memory,
                            fitError: totals[v].overall(ri, heldOut: false),
                            heldOutError: heldOut ? totals[v].overall(ri, heldOut: true) : nil,
                            ranks: nil))
                    if method == .xkv && !withSinks {
                        nullRungs.append(
                            FitReport.Rung(
                                method: nullMethod, keepRatio: q, memoryRatio: memory,
                                fitError: nullTotals.overall(ri, heldOut: false), heldOutError: nil, ranks: nil))
                    }
                }
            }
        }
        // cskv's unquantized streamed points give the `cskv` and `cskv+sinks` rows their attention errors; they
        // are the same fits as those rows (priced from Grams), so they are not rows of their own.
        let streamed = quantized.rungs(heldOut: heldOut)
        for rung in streamed where QuantizationSweep.isLowRank(rung.method) {
            if let i = rungsOf[rung.method]?.firstIndex(where: { $0.keepRatio == rung.keepRatio }) {
                rungsOf[rung.method]![i].attentionOutputError = rung.attentionOutputError
            }
        }
        let names = FitMethod.allCases.flatMap { m in variants.map { m.rawValue + ($0 ? sinksSuffix : "") } }
        return names.flatMap { rungsOf[$0] ?? [] } + nullRungs
            + streamed.filter { !QuantizationSweep.isLowRank($0.method) }
    }

    /// The suffix of the sweep's methods fitted and priced with `--keep-sinks` (`pca+sinks`, `cskv+sinks`, …).
    public static let sinksSuffix = "+sinks"

    /// The sweep's name for xKV's shuffled-token null.
    public static let nullMethod = "xkv_null"

    /// Squared errors per rung and (kind, layer), and squared norms per (kind, layer), on fit and held-out tokens.
    struct Totals {
        var squared: [[String: Double]], heldSquared: [[String: Double]]
        var norms: [String: Double] = [:], heldNorms: [String: Double] = [:]

        init(rungs: Int) {
            squared = [[String: Double]](repeating: [:], count: rungs)
            heldSquared = squared
        }

        mutating func add(
            _ projections: [Projection], rankTable: [[Int]], groups: [[Int]],
            errorGrams: [TensorKind: [GramAccumulator]],
            normGrams: [TensorKind: [GramAccumulator]], heads: [TensorKind: Int], headDim: Int, heldOut: Bool,
            fittedOn: Bool
        ) {
            let groupPosition = Dictionary(groups.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            for (u, p) in projections.enumerated() {
                let g = groupPosition[p.layers]!
                // `fittedOn`: `errorGrams` are the Grams the projections were fitted on (eigenvalues suffice).
                let (ranks, gram, width) = (rankTable.map { $0[u] }, errorGrams[p.kind]![g], heads[p.kind]! * headDim)
                let perRung =
                    fittedOn
                    ? GramErrorEstimate.errorSquaredOnFittedGram(p, ranks: ranks, gram: gram, channelsPerLayer: width)
                    : GramErrorEstimate.errorSquared(p, ranks: ranks, gram: gram, channelsPerLayer: width)
                for (ri, perLayer) in perRung.enumerated() {
                    for (i, layer) in p.layers.enumerated() {
                        if heldOut {
                            heldSquared[ri]["\(p.kind)/\(layer)", default: 0] += perLayer[i]
                        } else {
                            squared[ri]["\(p.kind)/\(layer)", default: 0] += perLayer[i]
                        }
                    }
                }
            }
            // ‖X‖² per (kind, layer): the diagonal of the uncentred Gram of all evaluated tokens.
            for (kind, kindGrams) in normGrams {
                let c = heads[kind]! * headDim
                for (g, group) in groups.enumerated() {
                    for (i, layer) in group.enumerated() {
                        let norm = kindGrams[g].diagonalSum((i * c)..<((i + 1) * c))
                        if heldOut { heldNorms["\(kind)/\(layer)"] = norm } else { norms["\(kind)/\(layer)"] = norm }
                    }
                }
            }
        }

        /// Adds xKV's shuffled-token null of `groups` (`ShuffledNull`): the groups refitted on their null Grams and
        /// priced on them at every rung's ranks, so its points sit at xKV's memory; a one-layer group's null is
        /// its own fit.
        mutating func addShuffledNull(
            _ dump: Dump, runs: TokenRuns, groups: [[Int]], fitGrams: [TensorKind: [GramAccumulator]],
            options: FitOptions, heads: [TensorKind: Int], ladder: [Double], progress: ((AnalysisProgress) -> Void)?
        ) throws {
            // One kind at a time, so one null Gram exists beside the fitted ones (MemoryEstimate.fit counts one).
            for (kind, real) in fitGrams.sorted(by: { $0.key < $1.key }) {
                let nulls = try ShuffledNull.accumulate(
                    dump, runs: runs, kind: kind, groups: groups, blockTokens: options.blockTokens,
                    seed: ShuffledNull.defaultSeed, progress: progress)
                let nullGrams = [kind: zip(nulls, real).map { $0 ?? $1 }]
                let fitted = try ProjectionFitter.fit(
                    grams: nullGrams, groups: groups, heads: heads, headDim: dump.shape.headDim, options: options)
                let rankTable = fitted.rankTable(ladder: ladder)
                add(
                    fitted.projections, rankTable: rankTable, groups: groups, errorGrams: nullGrams,
                    normGrams: nullGrams, heads: heads, headDim: dump.shape.headDim, heldOut: false, fittedOn: true)
            }
        }

        /// Root mean square over (kind, layer) of the relative errors at rung `ri`, over the layers with energy
        /// (a relative error of zero energy is undefined); nil when no layer has any.
        func overall(_ ri: Int, heldOut: Bool) -> Double? {
            let norm = heldOut ? heldNorms : norms
            let sq = heldOut ? heldSquared[ri] : squared[ri]
            // In key order: a dictionary's order changes from run to run, and so would the sum's last bits.
            let relative = norm.keys.sorted().compactMap { key in norm[key]! > 0 ? (sq[key] ?? 0) / norm[key]! : nil }
            return relative.isEmpty ? nil : (relative.reduce(0, +) / Double(relative.count)).squareRoot()
        }
    }

    /// The tokens of `runs` inside each sequence's last `window` valid tokens (`olderThanWindow`'s complement).
    static func insideWindow(_ runs: TokenRuns, window: Int) -> TokenRuns {
        let thresholds = ReconstructionEvaluator.windowThresholds(runs, window: window)
        var kept: [TokenRun] = []
        for run in runs.runs {
            let start = max(run.start, thresholds[run.sequence])
            if run.start + run.count > start {
                kept.append(TokenRun(sequence: run.sequence, start: start, count: run.start + run.count - start))
            }
        }
        return TokenRuns(
            runs: kept,
            lengths: runs.lengths.indices.map { s in kept.filter { $0.sequence == s }.reduce(0) { $0 + $1.count } })
    }

    /// The tokens of `runs` outside each sequence's last `window` valid tokens.
    static func olderThanWindow(_ runs: TokenRuns, window: Int) -> TokenRuns {
        let thresholds = ReconstructionEvaluator.windowThresholds(runs, window: window)
        var kept: [TokenRun] = []
        for run in runs.runs {
            let end = min(run.start + run.count, thresholds[run.sequence])
            if end > run.start {
                kept.append(TokenRun(sequence: run.sequence, start: run.start, count: end - run.start))
            }
        }
        return TokenRuns(
            runs: kept,
            lengths: runs.lengths.indices.map { s in kept.filter { $0.sequence == s }.reduce(0) { $0 + $1.count } })
    }
}
