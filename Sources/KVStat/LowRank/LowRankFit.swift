// `kvstat fit-lowrank` end to end: split the tokens, stream the Grams, fit the projections, evaluate them
// in a second streaming pass, and account for memory — everything the manifest reports.
import Foundation
import KVNumerics

/// A finished fit: the projections and the report about them.
public struct LowRankFitResult: Sendable {
    public var projections: [Projection]
    public var report: FitReport

    public init(projections: [Projection], report: FitReport) {
        self.projections = projections
        self.report = report
    }
}

public enum LowRankFit {
    /// The tensor kinds a fit compresses: keys and values (queries are not cached).
    static let kinds: [TensorKind] = [.key, .value]

    /// Fits `options.method` on `dump` and evaluates it (on held-out tokens and on `evalDump` when given).
    public static func run(
        _ dump: Dump, options: FitOptions, evalDump: Dump? = nil, version: String, command: [String],
        progress: ((AnalysisProgress) -> Void)? = nil
    ) throws -> LowRankFitResult {
        let layers = try dump.selectLayers(options.layers)
        if let evalDump { try checkSameModel(dump, evalDump) }
        // `--sequences`/`--tokens` select the tokens as analyze does; the split and every pass read only those.
        let selected = try options.selection.runs(of: dump)
        let split = try translatingHDF5Errors(file: dump.path) {
            try FitSplit(selected, holdout: options.holdout)
        }
        // Refuse a fit that cannot fit in memory before allocating anything sized by the dump (exit 69).
        try MemoryEstimate.fit(dump: dump, options: options, layers: layers.count, runs: split.fit, eval: evalDump)
            .check(file: dump.path)
        let (groups, notes) = ProjectionFitter.groups(of: layers, options: options)
        // `--keep-sinks K`: K positions per sequence chosen on every selected token (both sides of a hold-out
        // store them exactly), kept exact everywhere, and left out of the Grams the projections are fitted on.
        let sinks =
            options.sinkCount > 0
            ? try KeepSinks.choose(dump, runs: selected, layers: layers, count: options.sinkCount, options: options)
            : nil
        let fitRuns = sinks?.cut(from: split.fit) ?? split.fit
        // `--keys pre-rope`: key_pre_rope is fitted; errors are reported for it and, after RoPE, for key.
        let (kinds, rope) = try fittedKinds(dump, evalDump: evalDump, options: options)
        let reported = rope == nil ? kinds : [.key] + kinds
        let heads = Dictionary(uniqueKeysWithValues: kinds.map { ($0, dump.shape.heads(of: $0)) })
        // Matryoshka allocates across all layers at once; the other methods fit one layer group at a time, so
        // only one group's Grams (xKV: (G·C)² floats) are held.
        let batches: [[[Int]]] = options.method == .matryoshka ? [groups] : groups.map { [$0] }
        var fitted = FittedProjections(projections: [], ranks: [], notes: notes)
        var nullControls: [ShuffledNull.Control] = []
        for batch in batches {
            var grams: [TensorKind: [GramAccumulator]] = [:]
            for kind in kinds {
                grams[kind] = try LayerGroupGrams.accumulate(
                    dump, runs: fitRuns, kind: kind, groups: batch,
                    blockTokens: options.blockTokens, progress: progress)
            }
            let part = try ProjectionFitter.fit(
                grams: grams, groups: batch, heads: heads, headDim: dump.shape.headDim, options: options)
            fitted.projections += part.projections
            fitted.ranks += part.ranks
            fitted.ladderRanks = part.ladderRanks
            if options.method == .xkv {
                nullControls += try shuffledNull(
                    dump, runs: fitRuns, grams: grams, groups: batch, fitted: part, options: options,
                    progress: progress)
            }
        }
        var settings = reconstructionSettings(options)
        settings.rope = rope?.rope
        settings.sinks = sinks
        let names = names(of: fitted.projections, options: options, groups: groups)
        let ranks = fitted.ranks
        let fitErrors = try ReconstructionEvaluator.evaluate(
            dump, runs: split.fit, projections: fitted.projections, ranks: ranks, settings: settings)
        let heldOut =
            options.holdout > 0
            ? try ReconstructionEvaluator.evaluate(
                dump, runs: split.eval, projections: fitted.projections, ranks: ranks, settings: settings) : nil
        // `--eval OTHER`: its sinks are chosen on it by the same rule (positions are a dump's own).
        var externalSinks: KeepSinks?
        let external = try evalDump.map { other in
            var externalSettings = settings
            if options.sinkCount > 0 {
                externalSinks = try KeepSinks.choose(
                    other, runs: other.tokenRuns, layers: layers, count: options.sinkCount, options: options)
                externalSettings.sinks = externalSinks
            }
            return try ReconstructionEvaluator.evaluate(
                other, runs: other.tokenRuns, projections: fitted.projections, ranks: ranks,
                settings: externalSettings)
        }
        var ladder: [FitReport.Rung]?
        if options.method == .matryoshka {
            ladder = try options.ladder.sorted().map { q in
                let rungRanks = fitted.ladderRanks[q]!
                let onFit = try ReconstructionEvaluator.evaluate(
                    dump, runs: split.fit, projections: fitted.projections, ranks: rungRanks, settings: settings)
                let onHeld =
                    options.holdout > 0
                    ? try ReconstructionEvaluator.evaluate(
                        dump, runs: split.eval, projections: fitted.projections, ranks: rungRanks, settings: settings)
                    : nil
                return FitReport.Rung(
                    method: "matryoshka", keepRatio: q,
                    memoryRatio: memoryRatio(
                        fitted.projections, ranks: rungRanks, runs: split.eval, options: options, channels: heads,
                        headDim: dump.shape.headDim, layers: layers.count, sinks: sinks),
                    fitError: onFit.overall(), heldOutError: onHeld?.overall(), ranks: rungRanks)
            }
        }
        var online: [FitReport.OnlineComparison]?
        if options.method == .xkv {
            online = try onlineComparison(
                dump, split: split, kinds: kinds, projections: fitted.projections, groups: groups, options: options,
                errors: heldOut ?? fitErrors)
        }
        // With sinks: the attention errors with them kept exact and without (the same projections rebuilding
        // the sink rows too), from one streaming pass.
        var attention: AttentionErrors?
        var attentionWithoutSinks: AttentionErrors?
        if dump.hasAttendableQueries && options.attentionQueries > 0 {
            if sinks != nil {
                (attention, attentionWithoutSinks) = try AttentionEvaluator.evaluateWithAndWithoutSinks(
                    dump, runs: split.eval, layers: layers, projections: fitted.projections, ranks: ranks,
                    settings: settings, queries: options.attentionQueries, causal: options.causal)
            } else {
                attention = try AttentionEvaluator.evaluate(
                    dump, runs: split.eval, layers: layers, projections: fitted.projections, ranks: ranks,
                    settings: settings, queries: options.attentionQueries, causal: options.causal)
            }
        }
        let ratio = memoryRatio(
            fitted.projections, ranks: ranks, runs: split.eval, options: options, channels: heads,
            headDim: dump.shape.headDim, layers: layers.count, sinks: sinks)
        let fixed = fitted.projections.reduce(0) { $0 + 4 * ($1.dimension * $1.rank + ($1.mean?.count ?? 0)) }
        var report = FitReport(
            kvstatVersion: version, command: command, method: options.method.rawValue, options: options,
            source: .init(
                path: dump.path, sha256: try dump.sha256(), tokens: selected.totalTokens,
                selection: options.selection.text),
            split: split.description,
            layers: layers, layerGroups: groups,
            units: fitted.projections.indices.map { u in
                let p = fitted.projections[u]
                return FitReport.Unit(
                    name: names[u], kind: p.kind.rawValue, layers: p.layers, heads: p.heads.map(Array.init),
                    dimension: p.dimension, rank: ranks[u], storedRank: p.rank,
                    residualEnergy: p.residualEnergy(rank: ranks[u]))
            },
            memoryRatio: ratio, compression: ratio > 0 ? 1 / ratio : 0, fixedCostBytes: fixed,
            fit: errors(fitErrors, layers: layers, kinds: reported, tokens: split.fit.totalTokens),
            heldOut: heldOut.map { errors($0, layers: layers, kinds: reported, tokens: split.eval.totalTokens) },
            external: external.map { errors($0, layers: layers, kinds: reported, tokens: evalDump!.shape.tokens) },
            externalSource: try evalDump.map { .init(path: $0.path, sha256: try $0.sha256(), tokens: $0.shape.tokens) },
            attention: attention, online: online, xkvNull: options.method == .xkv ? nullControls : nil,
            ladder: ladder, sweep: nil,
            notes: fitted.notes + windowNotes(split.eval, options: options) + (heldOut ?? fitErrors).undefinedNotes()
                + (dump.kinds.contains(.query) && !dump.hasAttendableQueries
                    ? ["no attention-level errors: \(dump.unattendableQueriesReason)"] : [])
                + sinkNotes(sinks, external: externalSinks, evalPath: evalDump?.path))
        report.rope = rope?.report
        report.keepSinks = sinks
        report.attentionWithoutSinks = attentionWithoutSinks
        return LowRankFitResult(projections: fitted.projections, report: report)
    }

    /// xKV: every group's shuffled-token null (`ShuffledNull`) beside its grouped fit and the per-layer fits, at
    /// equal memory, on the fit tokens; groups of one layer have none.
    static func shuffledNull(
        _ dump: Dump, runs: TokenRuns, grams: [TensorKind: [GramAccumulator]], groups: [[Int]],
        fitted: FittedProjections, options: FitOptions, progress: ((AnalysisProgress) -> Void)?
    ) throws -> [ShuffledNull.Control] {
        var result: [ShuffledNull.Control] = []
        for (kind, real) in grams.sorted(by: { $0.key < $1.key }) {
            let nulls = try ShuffledNull.accumulate(
                dump, runs: runs, kind: kind, groups: groups, blockTokens: options.blockTokens,
                seed: ShuffledNull.defaultSeed, progress: progress)
            for (g, group) in groups.enumerated() {
                guard let null = nulls[g],
                    let u = fitted.projections.firstIndex(where: { $0.kind == kind && $0.layers == group })
                else { continue }
                result.append(
                    try ShuffledNull.Control(
                        kind: kind, layers: group, rank: fitted.ranks[u],
                        groupedEigenvalues: fitted.projections[u].eigenvalues, real: real[g], null: null,
                        centered: options.center, seed: ShuffledNull.defaultSeed))
            }
        }
        return result
    }

    /// `--keep-sinks`: the rule used, and for `--eval` the positions chosen on the other dump.
    static func sinkNotes(_ sinks: KeepSinks?, external: KeepSinks?, evalPath: String?) -> [String] {
        guard let sinks else { return [] }
        var notes: [String] = []
        if sinks.rule == .firstTokens {
            notes.append(
                "keep-sinks: the dump has no attendable queries, so the first \(sinks.count) selected tokens of each "
                    + "sequence are kept exact (StreamingLLM's rule)")
        }
        if let external, let evalPath {
            let listed = zip(external.sequences, external.positions).map { "\($0): \($1)" }.joined(separator: "; ")
            notes.append(
                "keep-sinks on --eval \(evalPath): chosen on it by rule \(external.rule.rawValue), positions per "
                    + "sequence \(listed)")
        }
        return notes
    }

    /// cskv: a note when the recent-token window holds every evaluated token, so nothing was compressed (the
    /// error is 0 and the memory ratio 1 by construction, not because the projection is good).
    static func windowNotes(_ runs: TokenRuns, options: FitOptions) -> [String] {
        guard options.method == .cskv, options.window > 0, let longest = runs.lengths.max(), longest <= options.window
        else { return [] }
        return [
            "cskv: the window of \(options.window) recent tokens covers every evaluated sequence (the longest has "
                + "\(longest) tokens): nothing was compressed; use a smaller --window"
        ]
    }

    /// The artifact names of projections (see docs/fit-lowrank.md).
    public static func names(of projections: [Projection], options: FitOptions, groups: [[Int]]) -> [String] {
        let position = Dictionary(groups.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return projections.map { name(of: $0, options: options, groupIndex: position[$0.layers] ?? 0) }
    }

    /// The artifact name of one projection, `groupIndex` being its layer group's position (xkv).
    static func name(of p: Projection, options: FitOptions, groupIndex: Int) -> String {
        if p.layers.count > 1 || options.method == .xkv {
            return "groups.\(groupIndex).\(p.kind.rawValue)"
        }
        let base = "layers.\(p.layers[0]).\(p.kind.rawValue)"
        guard let heads = p.heads else { return base }
        return heads.count == 1
            ? "\(base).heads.\(heads.lowerBound)" : "\(base).head_groups.\(heads.lowerBound / heads.count)"
    }

    static func reconstructionSettings(_ options: FitOptions) -> ReconstructionSettings {
        var settings = ReconstructionSettings()
        settings.blockTokens = options.blockTokens
        if options.method == .cskv {
            settings.window = options.window
            settings.quantization = options.quantization
            settings.quantGroup = options.quantGroup
        }
        return settings
    }

    public static func errors(
        _ e: ReconstructionErrors, layers: [Int], kinds: [TensorKind], tokens: Int
    ) -> FitReport.Errors {
        var perLayer: [String: [Double?]] = [:]
        var overall: [String: Double?] = [:]
        for kind in kinds {
            perLayer[kind.rawValue] = layers.map { e.relative(kind, layer: $0) }
            overall[kind.rawValue] = e.overall(kind)
        }
        overall["all"] = e.overall()
        return FitReport.Errors(tokens: tokens, perLayer: perLayer, overall: overall)
    }

    /// Stored 16-bit units per token ÷ original units per token, over the evaluated sequences: rows kept exact
    /// (CSKV's window, `--keep-sinks` positions; a sink inside the window once) count in full, latents count
    /// their quantized size and scales.
    static func memoryRatio(
        _ projections: [Projection], ranks: [Int], runs: TokenRuns, options: FitOptions,
        channels heads: [TensorKind: Int], headDim: Int, layers: Int, sinks: KeepSinks? = nil
    ) -> Double {
        let original = Double(layers) * heads.values.reduce(0) { $0 + Double($1 * headDim) }
        guard original > 0 else { return 0 }
        var latent = 0.0
        let quantizer =
            options.method == .cskv && options.quantization != .none
            ? LatentQuantizer(bits: options.quantization.bits, group: options.quantGroup) : nil
        for (p, r) in zip(projections, ranks) { latent += quantizer?.unitsPerToken(rank: r, kind: p.kind) ?? Double(r) }
        let window = options.method == .cskv ? options.window : 0
        guard window > 0 || sinks != nil else { return latent / original }
        let exact = ExactRows(runs, window: window, sinks: sinks).counts(runs)
        var stored = 0.0
        for (length, kept) in zip(runs.lengths, exact) where length > 0 {
            stored += Double(kept) * original + Double(length - kept) * latent
        }
        return stored / (Double(runs.totalTokens) * original)
    }

    /// For each xKV group: the online optimum at equal memory. Storing both SVD factors of the T × G·C
    /// evaluated matrix costs r'(T + G·C) floats; the fixed projection stores T·r, so r' = ⌊T·r / (T + G·C)⌋.
    static func onlineComparison(
        _ dump: Dump, split: FitSplit, kinds: [TensorKind], projections: [Projection],
        groups: [[Int]], options: FitOptions, errors: ReconstructionErrors
    ) throws -> [FitReport.OnlineComparison] {
        let index = ProjectionGroups(projections)
        var result: [FitReport.OnlineComparison] = []
        for kind in kinds {
            for group in groups {
                guard let p = index.members[.init(kind: kind, layers: group)]?.first.map({ projections[$0] }) else {
                    continue
                }
                // The evaluated tokens' group Gram: the fitted one when fit and evaluation tokens are the same.
                let values: [Double]
                let t: Double
                if options.holdout > 0 {
                    let gram = try LayerGroupGrams.accumulate(
                        dump, runs: split.eval, kind: kind, groups: [group], blockTokens: options.blockTokens)[0]
                    values = try SymmetricEigen(gram.denseMatrix(centered: options.center)).values
                    t = Double(gram.count)
                } else {
                    values = p.eigenvalues
                    t = Double(split.fit.totalTokens)
                }
                let onlineRank = Int((t * Double(p.rank) / (t + Double(p.dimension))).rounded(.down))
                let total = values.reduce(0) { $0 + max($1, 0) }
                let residual: Double? =
                    total > 0 ? values.dropFirst(onlineRank).reduce(0) { $0 + max($1, 0) } / total : nil
                // The fixed projection's error over the group: the layers' squared errors pooled.
                let err = group.reduce(0.0) { $0 + (errors.errorSquared[kind]?[$1] ?? 0) }
                let norm = group.reduce(0.0) { $0 + (errors.normSquared[kind]?[$1] ?? 0) }
                result.append(
                    .init(
                        kind: kind.rawValue, layers: group, rank: p.rank, onlineRank: onlineRank,
                        fixedError: norm > 0 ? finite((err / norm).squareRoot()) : nil,
                        onlineError: residual.flatMap { finite($0.squareRoot()) }))
            }
        }
        return result
    }

    static func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }

    /// Dumps evaluated together must have the same layers, heads and head_dim.
    static func checkSameModel(_ a: Dump, _ b: Dump) throws(DumpError) {
        // The same check `kvstat eval` makes against an artifact's recorded model (FitModel).
        guard FitModel(a).matches(FitModel(b)) else {
            throw DumpError(
                .badData,
                "is not a dump of the same model as \(a.path): layers \(IndexList.text(b.layerNumbers)) × "
                    + "\(b.shape.kvHeads) kv heads × head_dim \(b.shape.headDim), expected layers "
                    + "\(IndexList.text(a.layerNumbers)) × \(a.shape.kvHeads) × \(a.shape.headDim)",
                file: b.path)
        }
    }
}
