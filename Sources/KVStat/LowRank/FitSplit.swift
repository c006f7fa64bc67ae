// Which tokens a fit learns from and which it is evaluated on (`--holdout`).

/// The fit and evaluation tokens of a dump.
public struct FitSplit: Sendable, Equatable {
    public let fit: TokenRuns
    public let eval: TokenRuns
    /// How the split was made, for the manifest.
    public let description: String

    /// Holds out the last ⌈h·B⌉ sequences, or the last ⌈h·T⌉ tokens when the dump holds one sequence;
    /// h = 0 fits and evaluates on everything.
    public init(_ runs: TokenRuns, holdout h: Double) throws(DumpError) {
        guard h > 0 else {
            (fit, eval, description) = (runs, runs, "fit and evaluated on all tokens")
            return
        }
        guard h < 1 else { throw DumpError(.usage, "--holdout must be below 1 (got \(h))") }
        let sequences = runs.lengths.indices.filter { runs.lengths[$0] > 0 }
        if sequences.count > 1 {
            let held = min(max(Int((h * Double(sequences.count)).rounded(.up)), 1), sequences.count - 1)
            let evalSet = Set(sequences.suffix(held))
            fit = runs.selecting(sequences: Set(sequences).subtracting(evalSet))
            eval = runs.selecting(sequences: evalSet)
            description = "held out the last \(held) of \(sequences.count) sequences"
        } else {
            // One sequence: its last ⌈h·T⌉ valid tokens, located by position.
            let total = runs.totalTokens
            let held = min(max(Int((h * Double(total)).rounded(.up)), 1), total - 1)
            var seen = 0
            var cut = 0
            for run in runs.runs {
                if seen + run.count >= total - held {
                    cut = run.start + (total - held - seen)
                    break
                }
                seen += run.count
            }
            fit = runs.selecting(positions: 0..<cut)
            eval = runs.selecting(positions: cut..<Int.max)
            description = "held out the last \(held) of \(total) tokens"
        }
        guard fit.totalTokens > 0, eval.totalTokens > 0 else {
            throw DumpError(.badData, "--holdout \(h) leaves no tokens to fit on or none to evaluate")
        }
    }
}
