// How large the values are by token position: per channel, the mean |x| of the tokens in log-spaced position
// buckets. Sinks and early-token outliers show as a first bucket far above the rest (StreamingLLM, KIVI's
// "keep the first tokens" rule), and the profile tells how far into the sequence that lasts.

import KVNumerics

/// Per-channel Σ|x| and token counts by position bucket, for the `outliers` section.
///
/// Bucket 0 holds position 0, bucket k ≥ 1 positions [2^(k−1), 2^k) (positions are token indices within each
/// sequence as stored, padding included in the numbering). Reported per non-empty bucket: its first position,
/// its token count, mean |x| over its tokens and every channel, and the same per head (mean over the head's
/// channels). Rows excluded for non-finite values do not count. Sums in float64 of float32 values: exact to
/// about 2⁻⁵² relative whatever the token count (each bucket's rows of a block are summed by a C kernel,
/// `MomentKernels.addColumnSums`). Merge rule: add counts and sums.
public struct PositionProfile: LayerStatistic, Equatable {
    /// Buckets: position 0, then [1, 2), [2, 4), … [2³⁰, 2³¹); later positions fall in the last one.
    public static let bucketCount = 32

    /// Tokens per bucket.
    public internal(set) var tokens: [Int]
    /// Σ|x| per bucket and channel, bucket-major (`bucket * channels + channel`).
    public internal(set) var absoluteSums: [Double]
    public let channels: Int

    public static var stateName: String { "position" }
    public static var timingStage: String { "outliers" }
    public static func isComputed(by options: AnalysisOptions) -> Bool { options.sections.contains(.outliers) }

    public init(shape: LayerShape) {
        channels = shape.channels
        tokens = [Int](repeating: 0, count: Self.bucketCount)
        absoluteSums = [Double](repeating: 0, count: Self.bucketCount * shape.channels)
    }

    /// The bucket of token position `position` (≥ 0).
    public static func bucket(_ position: Int) -> Int {
        position <= 0 ? 0 : min(Int.bitWidth - position.leadingZeroBitCount, bucketCount - 1)
    }

    /// The first position of bucket `k`.
    public static func firstPosition(_ k: Int) -> Int { k == 0 ? 0 : 1 << (k - 1) }

    /// The first position after bucket `k`: 1 for bucket 0, 2^k for bucket k ≥ 1; `Int.max` for the last one.
    static func bucketEnd(_ k: Int) -> Int { k == 0 ? 1 : (k == bucketCount - 1 ? Int.max : 1 << k) }

    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch) {
        precondition(block.columns == channels)
        let excluded = block.excludedRows.sorted()
        // Stretches of consecutive valid rows in one bucket (positions rise along a run): each adds its Σ|x|
        // per channel to its bucket's sums, in float64 (`MomentKernels.addColumnSums`, channel ranges on every
        // core).
        var segments: [(rows: Range<Int>, target: Int)] = []
        var next = 0  // the first entry of `excluded` not before the current row
        var row = 0
        for run in block.runs {
            var i = 0
            while i < run.count {
                while next < excluded.count && excluded[next] < row + i { next += 1 }
                if next < excluded.count && excluded[next] == row + i {
                    i += 1
                    continue
                }
                let k = Self.bucket(run.start + i)
                var end = min(Self.bucketEnd(k) - run.start, run.count)  // the bucket's rows in this run
                if next < excluded.count && excluded[next] < row + end { end = excluded[next] - row }
                segments.append(((row + i)..<(row + end), k * channels))
                tokens[k] += end - i
                i = end
            }
            row += run.count
        }
        absoluteSums.withUnsafeMutableBufferPointer { sums in
            MomentKernels.addColumnSums(
                block.values, columns: channels, segments: segments, absolute: true, into: sums)
        }
    }

    public mutating func merge(_ other: PositionProfile) {
        for k in tokens.indices { tokens[k] += other.tokens[k] }
        for i in absoluteSums.indices { absoluteSums[i] += other.absoluteSums[i] }
    }

    public func encode(to group: StateGroup) throws {
        try group.write("position_tokens", tokens.map(Int64.init))
        try group.write("position_abs_sums", absoluteSums, shape: [Self.bucketCount, channels])
    }

    public init(decoding group: StateGroup, shape: LayerShape) throws {
        self.init(shape: shape)
        let counts: [Int64] = try group.read("position_tokens", count: Self.bucketCount)
        guard counts.allSatisfy({ $0 >= 0 }) else {
            throw DumpError(
                .badLayout, "holds a negative token count", file: group.file,
                dataset: group.group.childPath("position_tokens"))
        }
        tokens = counts.map { Int($0) }
        absoluteSums = try group.read("position_abs_sums", count: Self.bucketCount * shape.channels)
    }

    /// stats.json `position_profile`: the non-empty buckets' first positions, token counts, mean |x| over all
    /// channels and per head.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        let headDim = max(context.shape.headDim, 1)
        let heads = channels / headDim
        var profile = StatsReport.PositionProfile(bucketStart: [], tokens: [], meanAbs: [], headMeanAbs: [])
        for k in tokens.indices where tokens[k] > 0 {
            let row = absoluteSums[(k * channels)..<((k + 1) * channels)]
            let n = Double(tokens[k])
            profile.bucketStart.append(Self.firstPosition(k))
            profile.tokens.append(tokens[k])
            profile.meanAbs.append(row.reduce(0, +) / (n * Double(max(channels, 1))))
            profile.headMeanAbs.append(
                (0..<heads).map { h in
                    row[(row.startIndex + h * headDim)..<(row.startIndex + (h + 1) * headDim)].reduce(0, +)
                        / (n * Double(headDim))
                })
        }
        stats.positionProfile = profile
    }
}
