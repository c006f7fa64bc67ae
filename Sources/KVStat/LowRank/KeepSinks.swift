// `fit-lowrank --keep-sinks K`: which token positions of each sequence are attention sinks kept exact (stored
// in full like cskv's recent window, never compressed), and the one rule that says whether a row is kept exact
// (`ExactRows`: inside the window OR a sink position), shared by the evaluation passes, the memory accounting and
// the sweep.
import Foundation

/// The sink positions kept exact, per sequence, and how they were chosen (manifest.json `keep_sinks`).
public struct KeepSinks: Codable, Sendable, Equatable {
    public enum Rule: String, Codable, Sendable {
        /// The K positions with the largest attention mass (AttentionMass's definition and query sampling),
        /// pooled over the fitted layers and every query head.
        case attentionMass = "attention_mass"
        /// The first K selected tokens of each sequence (StreamingLLM's rule): dumps without attendable queries.
        case firstTokens = "first_tokens"
    }

    /// K, as asked (a sequence with fewer selected tokens keeps all of them).
    public var count: Int
    public var rule: Rule
    /// The dump's sequences that have selected tokens, increasing.
    public var sequences: [Int]
    /// `positions[i]`: the kept positions of `sequences[i]` (token indices in the sequence), increasing.
    public var positions: [[Int]]
    /// `attention_mass`: the pooled share of each kept position (Σ of its weights over layers, heads and sampled
    /// queries ÷ the (query, head) rows counted), parallel to `positions`; nil for `first_tokens`.
    public var shares: [[Double]]?
    /// Query positions sampled per sequence for the attention mass (nil for `first_tokens`).
    public var queriesPerSequence: Int?
    /// Causal mask of the attention mass (nil for `first_tokens`).
    public var causal: Bool?

    enum CodingKeys: String, CodingKey {
        case count, rule, sequences, positions, shares, causal
        case queriesPerSequence = "queries_per_sequence"
    }

    /// Query positions per sequence for the attention mass: `--attention-queries`, or analyze's default
    /// `--sink-queries` (64) when that is 0.
    static func massQueries(_ options: FitOptions) -> Int {
        options.attentionQueries > 0 ? options.attentionQueries : AnalysisOptions().sinkQueries
    }

    /// Chooses `count` positions per sequence of `runs` (the selected tokens: with `--holdout`, fit and held-out
    /// tokens together). With attendable queries and keys: per sequence, the largest Σ over `layers` and query
    /// heads of the attention weight w(q, h, p) that `AttentionMass` defines (same sampling, GQA, masking; ties go
    /// to the lower position); otherwise the first `count` selected tokens.
    public static func choose(
        _ dump: Dump, runs: TokenRuns, layers: [Int], count: Int, options: FitOptions
    ) throws -> KeepSinks {
        let count = max(count, 0)
        var bySequence = [[TokenRun]](repeating: [], count: runs.lengths.count)
        for run in runs.runs { bySequence[run.sequence].append(run) }
        let sequences = bySequence.indices.filter { !bySequence[$0].isEmpty }
        let byMass = dump.hasAttendableQueries && dump.kinds.contains(.key) && dump.shape.queryHeads != nil
        var result = KeepSinks(
            count: count, rule: byMass ? .attentionMass : .firstTokens, sequences: sequences, positions: [],
            shares: byMass ? [] : nil, queriesPerSequence: byMass ? massQueries(options) : nil,
            causal: byMass ? options.causal : nil)
        for sequence in sequences {
            let selected = bySequence[sequence].flatMap { $0.start..<($0.start + $0.count) }
            guard byMass, count > 0 else {
                result.positions.append(Array(selected.prefix(count)))
                continue
            }
            // Σ over layers and query heads of each position's weights, and the (query, head) rows counted.
            var weight = [Double](repeating: 0, count: (selected.last ?? 0) + 1)
            var rows = 0
            _ = try AttentionMass.measure(
                dump, runs: TokenRuns(runs: bySequence[sequence], lengths: runs.lengths), layers: layers,
                queriesPerSequence: massQueries(options), causal: options.causal, blockTokens: options.blockTokens,
                observe: { sums in
                    for h in 0..<sums.queryHeads {
                        for p in 0..<min(sums.positions, weight.count) {
                            weight[p] += sums.weight[h * sums.positions + p]
                        }
                    }
                    rows += sums.rows.reduce(0, +)
                })
            let top = selected.sorted { weight[$0] != weight[$1] ? weight[$0] > weight[$1] : $0 < $1 }.prefix(count)
            let kept = top.sorted()
            result.positions.append(kept)
            result.shares!.append(kept.map { rows > 0 ? weight[$0] / Double(rows) : 0 })
        }
        return result
    }

    /// The kept positions of each sequence as sets, indexed by sequence number (`sequences` long at least).
    func sets(sequences: Int) -> [Set<Int>] {
        var result = [Set<Int>](repeating: [], count: max(sequences, (self.sequences.max() ?? -1) + 1))
        for (s, p) in zip(self.sequences, positions) { result[s] = Set(p) }
        return result
    }

    /// `runs` less the kept positions: the rows the projections are fitted on (sinks are not compressed).
    func cut(from runs: TokenRuns) -> TokenRuns {
        let kept = sets(sequences: runs.lengths.count)
        var cutRuns: [TokenRun] = []
        var lengths = runs.lengths
        for run in runs.runs {
            var start = run.start
            for p in kept[run.sequence].filter({ run.start <= $0 && $0 < run.start + run.count }).sorted() {
                if p > start { cutRuns.append(TokenRun(sequence: run.sequence, start: start, count: p - start)) }
                lengths[run.sequence] -= 1
                start = p + 1
            }
            let end = run.start + run.count
            if end > start { cutRuns.append(TokenRun(sequence: run.sequence, start: start, count: end - start)) }
        }
        return TokenRuns(runs: cutRuns, lengths: lengths)
    }

    /// Only the kept positions of `runs`, one run each (the sinks' own rows, e.g. for their Gram).
    func only(in runs: TokenRuns) -> TokenRuns {
        let kept = sets(sequences: runs.lengths.count)
        var onlyRuns: [TokenRun] = []
        var lengths = [Int](repeating: 0, count: runs.lengths.count)
        for run in runs.runs {
            for p in kept[run.sequence].filter({ run.start <= $0 && $0 < run.start + run.count }).sorted() {
                onlyRuns.append(TokenRun(sequence: run.sequence, start: p, count: 1))
                lengths[run.sequence] += 1
            }
        }
        return TokenRuns(runs: onlyRuns, lengths: lengths)
    }
}

/// Which rows of the evaluated tokens are stored exactly rather than as latents: the last `window` valid tokens
/// of each sequence (cskv) OR a kept sink position. A row in both counts once.
struct ExactRows {
    /// Per sequence, the first position of its window (Int.max without a window).
    var thresholds: [Int]
    /// Per sequence, the sink positions kept exact (empty without `--keep-sinks`).
    var sinks: [Set<Int>]

    init(thresholds: [Int], sinks: [Set<Int>] = []) {
        self.thresholds = thresholds
        self.sinks = sinks
    }

    /// The window of `window` recent tokens of each sequence of `runs`, and `sinks` when given.
    init(_ runs: TokenRuns, window: Int, sinks: KeepSinks?) {
        thresholds = ReconstructionEvaluator.windowThresholds(runs, window: window)
        self.sinks = sinks?.sets(sequences: runs.lengths.count) ?? []
    }

    /// Whether the token at `position` of `sequence` is kept exact.
    func isExact(sequence: Int, position: Int) -> Bool {
        position >= thresholds[sequence] || (sequence < sinks.count && sinks[sequence].contains(position))
    }

    /// Exact rows per sequence among the tokens of `runs` (those `thresholds` was made from).
    func counts(_ runs: TokenRuns) -> [Int] {
        var result = [Int](repeating: 0, count: runs.lengths.count)
        for run in runs.runs {
            let end = run.start + run.count
            let threshold = thresholds[run.sequence]
            result[run.sequence] += max(0, end - max(run.start, threshold))
            if run.sequence < sinks.count {
                result[run.sequence] += sinks[run.sequence].filter { $0 >= run.start && $0 < min(end, threshold) }.count
            }
        }
        return result
    }
}
