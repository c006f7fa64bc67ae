// Which (sequence, token) positions are real tokens: from a lengths dataset, an attention mask, or all of
// them. Stored as runs of consecutive valid tokens so memory grows with the number of runs, not tokens.

/// A maximal run of valid tokens in one sequence: tokens `start ..< start + count` of sequence `sequence`.
public struct TokenRun: Sendable, Equatable {
    public var sequence: Int
    public var start: Int
    public var count: Int
}

/// The valid token positions of a dump.
public struct TokenRuns: Sendable, Equatable {
    /// Runs in order of sequence, then position.
    public let runs: [TokenRun]
    /// Valid tokens per sequence.
    public let lengths: [Int]

    /// Total valid tokens over all sequences.
    public var totalTokens: Int { lengths.reduce(0, +) }

    /// Every token of every sequence is valid.
    public init(sequences: Int, tokens: Int) {
        runs = tokens == 0 ? [] : (0..<sequences).map { TokenRun(sequence: $0, start: 0, count: tokens) }
        lengths = Array(repeating: tokens, count: sequences)
    }

    /// The first `lengths[b]` tokens of each sequence are valid.
    public init(lengths: [Int]) {
        runs = lengths.enumerated().compactMap {
            $0.element > 0 ? TokenRun(sequence: $0.offset, start: 0, count: $0.element) : nil
        }
        self.lengths = lengths
    }

    /// The valid tokens of the given sequences (nil: all) at positions in `positions` (nil: all): what an
    /// analysis of part of a dump (`--sequences`, `--tokens`) reads. Sequence numbers are kept.
    public func selecting(sequences: Set<Int>? = nil, positions: Range<Int>? = nil) -> TokenRuns {
        var selected: [TokenRun] = []
        var lengths = [Int](repeating: 0, count: self.lengths.count)
        for run in runs where sequences?.contains(run.sequence) ?? true {
            let lo = max(run.start, positions?.lowerBound ?? run.start)
            let hi = min(run.start + run.count, positions?.upperBound ?? run.start + run.count)
            guard lo < hi else { continue }
            selected.append(TokenRun(sequence: run.sequence, start: lo, count: hi - lo))
            lengths[run.sequence] += hi - lo
        }
        return TokenRuns(runs: selected, lengths: lengths)
    }

    init(runs: [TokenRun], lengths: [Int]) {
        self.runs = runs
        self.lengths = lengths
    }

    /// The runs of valid rows `rows` of the token stream (row i is the i-th valid token, sequence by sequence,
    /// as blocks number them), in order; empty where `rows` is empty or past the end.
    public func rows(_ rows: Range<Int>) -> [TokenRun] {
        var result: [TokenRun] = []
        var first = 0  // stream row of the current run's first token
        for run in self.runs {
            defer { first += run.count }
            let lo = max(rows.lowerBound, first)
            let hi = min(rows.upperBound, first + run.count)
            if first >= rows.upperBound { break }
            guard lo < hi else { continue }
            result.append(TokenRun(sequence: run.sequence, start: run.start + lo - first, count: hi - lo))
        }
        return result
    }

    /// The runs cut so that none is longer than `maxCount` tokens.
    public func split(maxCount: Int) -> [TokenRun] {
        precondition(maxCount > 0)
        var result: [TokenRun] = []
        for run in runs {
            var offset = 0
            while offset < run.count {
                let n = min(maxCount, run.count - offset)
                result.append(TokenRun(sequence: run.sequence, start: run.start + offset, count: n))
                offset += n
            }
        }
        return result
    }
}
