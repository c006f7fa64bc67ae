// Fitting projections from a saved analysis state (a batch corpus, `kvstat merge --save-state`) instead of a
// dump: the per-layer Gram matrices of every token the state has seen, and errors priced from the same Grams.
import Foundation

public enum StateFit {
    /// Fits `options.method` (pca, matryoshka or cskv: xKV needs cross-layer Grams, which states do not hold)
    /// on the Grams of `state`. Errors are the fit errors on the state's tokens (`GramErrorEstimate`); cskv's
    /// window is counted in memory but not excluded from the error, which is therefore an upper bound.
    public static func run(
        _ state: AnalysisState, path: String, options: FitOptions, version: String,
        command: [String]
    ) throws -> LowRankFitResult {
        guard options.method != .xkv else {
            throw DumpError(
                .badData,
                "xkv needs the Grams of adjacent layers side by side, which state files do not hold; fit xkv on dumps",
                file: path)
        }
        guard options.holdout == 0 else {
            throw DumpError(.usage, "--holdout needs tokens to hold out; a state file holds only sums", file: path)
        }
        let source = DumpSummary.combining(state.sources)
        let kinds = LowRankFit.kinds.filter { state.kinds[$0] != nil }
        guard !kinds.isEmpty, state.options.sections.contains(.spectra) || state.options.sections.contains(.similarity)
        else {
            throw DumpError(
                .badData, "the state holds no key/value Gram matrices (analyze with spectra or similarity)", file: path)
        }
        let heads = Dictionary(
            uniqueKeysWithValues: kinds.map {
                ($0, $0 == .query ? source.queryHeads ?? source.kvHeads : source.kvHeads)
            })
        let groups = state.layers.map { [$0] }
        let grams = Dictionary(uniqueKeysWithValues: kinds.map { ($0, state.kinds[$0]!.gram) })
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
                result.errorSquared[p.kind, default: [:]][p.layers[0], default: 0] += squared[0]
            }
            for kind in kinds {
                for (g, layer) in state.layers.enumerated() {
                    let gram = grams[kind]![g]
                    result.normSquared[kind, default: [:]][layer] = gram.diagonalSum(0..<gram.channels)
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
            heldOut: nil, external: nil, externalSource: nil, attention: nil, online: nil,
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
            sweep: nil, notes: fitted.notes + errors(fitted.ranks).undefinedNotes())
        return LowRankFitResult(projections: fitted.projections, report: report)
    }

}
