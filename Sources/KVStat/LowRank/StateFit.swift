// Fitting projections from a saved analysis state (a batch corpus, `kvstat merge --save-state`) instead of a
// dump: the per-layer Gram matrices of every token the state has seen (xKV: its layer groups' Grams, saved with
// `--xkv-groups`), and errors priced from the same Grams.
import Foundation

public enum StateFit {
    /// Fits `options.method` on the Grams of `state`: pca, matryoshka and cskv on its per-layer Grams, xkv on its
    /// group Grams (`analyze --save-state --xkv-groups G`, fitted with `--group-size G`; G = 1 is per-layer). Errors
    /// are the fit errors on the state's tokens (`GramErrorEstimate`), priced from the Grams the projections were
    /// fitted on; cskv's window is counted in memory but not excluded from the error, which is therefore an upper
    /// bound. xkv's shuffled-token null needs token rows: a state fit has none (a note says so).
    public static func run(
        _ state: AnalysisState, path: String, options: FitOptions, version: String,
        command: [String]
    ) throws -> LowRankFitResult {
        guard options.holdout == 0 else {
            throw DumpError(.usage, "--holdout needs tokens to hold out; a state file holds only sums", file: path)
        }
        let source = DumpSummary.combining(state.sources)
        let kinds = LowRankFit.kinds.filter { state.kinds[$0] != nil }
        let grouped = options.method == .xkv && options.groupSize > 1
        if grouped { try checkGroups(state, options: options, path: path) }
        guard !kinds.isEmpty,
            grouped || state.options.sections.contains(.spectra) || state.options.sections.contains(.similarity)
        else {
            throw DumpError(
                .badData, "the state holds no key/value Gram matrices (analyze with spectra or similarity)", file: path)
        }
        let heads = Dictionary(
            uniqueKeysWithValues: kinds.map {
                ($0, $0 == .query ? source.queryHeads ?? source.kvHeads : source.kvHeads)
            })
        let (groups, groupNotes) = ProjectionFitter.groups(of: state.layers, options: options)
        guard !grouped || state.xkvGroups == groups else {
            throw DumpError(
                .badLayout,
                "the state's xKV groups (\(state.xkvGroups.map { IndexList.text($0) }.joined(separator: "; "))) are "
                    + "not the fit's (\(groups.map { IndexList.text($0) }.joined(separator: "; ")))", file: path)
        }
        let grams = Dictionary(
            uniqueKeysWithValues: kinds.map { ($0, grouped ? state.kinds[$0]!.xkvGroups : state.kinds[$0]!.gram) })
        let fitted = try ProjectionFitter.fit(
            grams: grams, groups: groups, heads: heads, headDim: source.headDim, options: options)
        // Errors of every projection at `ranks`, priced from the same Grams (those it was fitted on, so from its
        // eigenvalues and basis alone).
        let groupPosition = Dictionary(uniqueKeysWithValues: groups.enumerated().map { ($1, $0) })
        func errors(_ ranks: [Int]) -> ReconstructionErrors {
            var result = ReconstructionErrors()
            for (p, rank) in zip(fitted.projections, ranks) {
                let g = groupPosition[p.layers]!
                let squared = GramErrorEstimate.errorSquaredOnFittedGram(
                    p, ranks: [rank], gram: grams[p.kind]![g], channelsPerLayer: heads[p.kind]! * source.headDim)[0]
                for (slice, layer) in p.layers.enumerated() {
                    result.errorSquared[p.kind, default: [:]][layer, default: 0] += squared[slice]
                }
            }
            // Each layer's ‖X‖², from the Gram its errors come from (a group's: rows finite in all its layers).
            for kind in kinds {
                let c = heads[kind]! * source.headDim
                for (g, group) in groups.enumerated() {
                    for (slice, layer) in group.enumerated() {
                        result.normSquared[kind, default: [:]][layer] =
                            grams[kind]![g].diagonalSum((slice * c)..<((slice + 1) * c))
                    }
                }
            }
            return result
        }
        let runs = TokenRuns(lengths: source.sequenceLengths)
        let ratio = LowRankFit.memoryRatio(
            fitted.projections, ranks: fitted.ranks, runs: runs, options: options, channels: heads,
            headDim: source.headDim, layers: state.layers.count)
        let names = LowRankFit.names(of: fitted.projections, options: options, groups: groups)
        let report = FitReport(
            kvstatVersion: version, command: command, method: options.method.rawValue, options: options,
            source: .init(path: path, sha256: nil, tokens: source.tokens),
            split:
                "fit on the state's \(state.sources.count) source(s), \(source.tokens) tokens; errors from its Gram "
                + "matrices",
            layers: state.layers, layerGroups: groups,
            units: fitted.projections.indices.map { u in
                let p = fitted.projections[u]
                return FitReport.Unit(
                    name: names[u], kind: p.kind.rawValue, layers: p.layers, heads: p.heads.map(Array.init),
                    dimension: p.dimension,
                    rank: fitted.ranks[u], storedRank: p.rank, residualEnergy: p.residualEnergy(rank: fitted.ranks[u]))
            },
            memoryRatio: ratio, compression: ratio > 0 ? 1 / ratio : 0,
            fixedCostBytes: fitted.projections.reduce(0) { $0 + 4 * ($1.dimension * $1.rank + ($1.mean?.count ?? 0)) },
            fit: LowRankFit.errors(errors(fitted.ranks), layers: state.layers, kinds: kinds, tokens: source.tokens),
            heldOut: nil, external: nil, externalSource: nil, attention: nil,
            online: options.method == .xkv
                ? online(fitted.projections, errors: errors(fitted.ranks), tokens: source.tokens) : nil,
            ladder: options.method == .matryoshka
                ? options.ladder.sorted().map { q in
                    FitReport.Rung(
                        method: "matryoshka", keepRatio: q,
                        memoryRatio: LowRankFit.memoryRatio(
                            fitted.projections, ranks: fitted.ladderRanks[q]!, runs: runs, options: options,
                            channels: heads, headDim: source.headDim, layers: state.layers.count),
                        fitError: errors(fitted.ladderRanks[q]!).overall(), heldOutError: nil,
                        ranks: fitted.ladderRanks[q]!)
                } : nil,
            sweep: nil, notes: groupNotes + fitted.notes + nullNote(options) + errors(fitted.ranks).undefinedNotes())
        return LowRankFitResult(projections: fitted.projections, report: report)
    }

    /// xkv: each group's online optimum at equal memory, as `LowRankFit.onlineComparison` gives it when the
    /// errors are on the fit tokens: r' = ⌊T·r / (T + G·C)⌋ of the group's own eigenvalues, against the fixed
    /// projection's error pooled over the group's layers.
    static func online(
        _ projections: [Projection], errors: ReconstructionErrors, tokens: Int
    )
        -> [FitReport.OnlineComparison]
    {
        let t = Double(tokens)
        return projections.map { p in
            let onlineRank = Int((t * Double(p.rank) / (t + Double(p.dimension))).rounded(.down))
            let total = p.eigenvalues.reduce(0) { $0 + max($1, 0) }
            let residual: Double? =
                total > 0 ? p.eigenvalues.dropFirst(onlineRank).reduce(0) { $0 + max($1, 0) } / total : nil
            let err = p.layers.reduce(0.0) { $0 + (errors.errorSquared[p.kind]?[$1] ?? 0) }
            let norm = p.layers.reduce(0.0) { $0 + (errors.normSquared[p.kind]?[$1] ?? 0) }
            return .init(
                kind: p.kind.rawValue, layers: p.layers, rank: p.rank, onlineRank: onlineRank,
                fixedError: norm > 0 ? LowRankFit.finite((err / norm).squareRoot()) : nil,
                onlineError: residual.flatMap { LowRankFit.finite($0.squareRoot()) })
        }
    }

    /// xkv: why the manifest has no `xkv_null`.
    static func nullNote(_ options: FitOptions) -> [String] {
        guard options.method == .xkv else { return [] }
        return [
            "xkv_null omitted: the shuffled-token null reorders token rows, which a state file does not hold "
                + "(fit xkv on a dump for it)"
        ]
    }

    /// xkv with `--group-size G` > 1 needs the state's group Grams of that grouping: one line (exit 65) saying
    /// which the state holds and how to make a state with them.
    static func checkGroups(_ state: AnalysisState, options: FitOptions, path: String) throws(DumpError) {
        let g = options.groupSize
        let how =
            "analyze each dump with --save-state FILE --xkv-groups \(g) "
            + "(kvstat batch: --analyze-arg=--xkv-groups=\(g)) and merge those states"
        guard let held = state.options.xkvGroupSize else {
            throw DumpError(
                .badData,
                "xkv --group-size \(g) needs the state's xKV group Grams, and it holds none (states analysed without "
                    + "--xkv-groups, or merged from states with different groupings); \(how)", file: path)
        }
        guard held == g else {
            throw DumpError(
                .badData,
                "holds xKV group Grams for --xkv-groups \(held), not --group-size \(g): fit with --group-size \(held), "
                    + "or \(how)", file: path)
        }
    }
}
