// The part of a dump a command reads (`--sequences`, `--tokens`): one type, so that analyze, fit-lowrank and eval
// select the same tokens the same way and describe the selection in the same words.

/// Sequences (batch rows) and token positions of a dump: the tokens whose sequence is in `sequences` (nil: every
/// sequence) and whose position lies in `tokenRange` (nil: every position), among the dump's valid tokens.
///
/// The selected tokens keep their positions: a block of selected tokens is the same rows, in the same order, as the
/// same block of a dump file holding only those tokens, so every statistic and fit of a selection equals that of
/// such a file (token positions aside: analyze's sinks and position profile name the original positions).
public struct TokenSelection: Sendable, Equatable {
    /// Sequence numbers, increasing (resolved against the dump: each exists), or nil for all.
    public var sequences: [Int]?
    /// Positions [start, end) in every sequence; end may be `Int.max` (to the end).
    public var tokenRange: Range<Int>?

    public init(sequences: [Int]? = nil, tokenRange: Range<Int>? = nil) {
        self.sequences = sequences
        self.tokenRange = tokenRange
    }

    /// True when nothing is selected away.
    public var isWhole: Bool { sequences == nil && tokenRange == nil }

    /// "sequences 0-3, tokens 0:4096", as stats.json's `dump.selection` and the fit manifest's
    /// `source.selection` say it; nil for the whole dump.
    public var text: String? {
        let parts = [
            sequences.map { "sequences \(IndexList.text($0))" },
            tokenRange.map { "tokens \($0.lowerBound):\($0.upperBound == Int.max ? "" : String($0.upperBound))" },
        ].compactMap { $0 }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }

    /// The dump's valid tokens in the selection. A sequence the dump lacks, or a selection holding no valid token,
    /// is bad data (exit 65), never an empty run.
    public func runs(of dump: Dump) throws(DumpError) -> TokenRuns {
        guard !isWhole else { return dump.tokenRuns }
        if let bad = sequences?.first(where: { $0 < 0 || $0 >= dump.shape.sequences }) {
            throw DumpError(
                .badData, "sequence \(bad) asked for, but the dump has sequences 0–\(dump.shape.sequences - 1)",
                file: dump.path)
        }
        let runs = dump.tokenRuns.selecting(sequences: sequences.map(Set.init), positions: tokenRange)
        guard runs.totalTokens > 0 else {
            throw DumpError(
                .badData, "the selected sequences and token positions hold no valid tokens", file: dump.path)
        }
        return runs
    }

    /// The summary of `dump` counting only `runs` (this selection's, from `runs(of:)`), with the selection
    /// recorded in words and as numbers (`selection`, `selected_sequences`, `selected_tokens`).
    public func summary(of dump: Dump, runs: TokenRuns) -> DumpSummary {
        DumpSummary(dump, selected: runs, selection: text, sequences: sequences, tokenRange: tokenRange)
    }
}

extension AnalysisOptions {
    /// `sequences` and `tokenRange` as one selection.
    public var selection: TokenSelection {
        get { TokenSelection(sequences: sequences, tokenRange: tokenRange) }
        set { (sequences, tokenRange) = (newValue.sequences, newValue.tokenRange) }
    }
}
