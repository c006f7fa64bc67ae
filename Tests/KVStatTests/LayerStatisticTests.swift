// The statistic protocol's laws for every registered statistic — merge(fold(A), fold(B)) finishes like
// fold(A ++ B) — and the position profile (the statistic added through the protocol alone) against a direct
// computation on the sample read by h5py.
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite(.serialized) struct LayerStatisticTests {
    /// Every number of a finished stats entry, in a fixed order (JSON leaves), for comparing two finishes.
    static func numbers(_ stats: StatsReport.KindStats) throws -> [Double] {
        func walk(_ value: Any, _ out: inout [Double]) {
            if let n = value as? NSNumber {
                out.append(n.doubleValue)
            } else if let a = value as? [Any] {
                for v in a { walk(v, &out) }
            } else if let d = value as? [String: Any] {
                for k in d.keys.sorted() { walk(d[k]!, &out) }
            }
        }
        var out: [Double] = []
        walk(try JSONSerialization.jsonObject(with: try JSONEncoder().encode(stats)), &out)
        return out
    }

    /// For each registered statistic: the first half of the sample's blocks and the second half, folded apart
    /// and merged, finish to the numbers of all blocks folded together (within 1e-9 relative: float64 sums in
    /// another order).
    @Test func mergeOfHalvesFinishesLikeTheWhole() throws {
        let dump = try Dump(path: Fixtures.sample)
        let reader = try TokenBlockReader(dump: dump, layer: 2, kind: .key, blockTokens: 64)
        var blocks: [[Float]] = []
        var runs: [ArraySlice<TokenRun>] = []
        try reader.forEachBlock {
            blocks.append(Array($0.values))
            runs.append($0.runs)
        }
        let shape = LayerShape(channels: reader.columns, headDim: dump.shape.headDim)
        let options = AnalysisOptions()
        for type in LayerStatistics.registered {
            try Self.checkMergeLaw(type, blocks: blocks, runs: runs, shape: shape, options: options)
        }
    }

    static func checkMergeLaw<T: LayerStatistic>(
        _ type: T.Type, blocks: [[Float]], runs: [ArraySlice<TokenRun>], shape: LayerShape,
        options: AnalysisOptions
    ) throws {
        var whole = T(shape: shape)
        var first = T(shape: shape)
        var second = T(shape: shape)
        let scratch = FoldScratch()
        for (i, original) in blocks.enumerated() {
            // Every third block has two rows excluded (zeroed, as the reader leaves NaN rows), so the law also
            // covers exclusion.
            var values = original
            let excluded = i % 3 == 0 ? [1, 5].filter { $0 < values.count / shape.channels } : []
            for r in excluded { for c in 0..<shape.channels { values[r * shape.channels + c] = 0 } }
            values.withUnsafeBufferPointer { pointer in
                let block = TokenBlock(
                    rows: pointer.count / shape.channels, columns: shape.channels, values: pointer, runs: runs[i],
                    excludedRows: excluded, nonFiniteValues: excluded.count)
                whole.fold(block, scratch: scratch)
                if i < blocks.count / 2 {
                    first.fold(block, scratch: scratch)
                } else {
                    second.fold(block, scratch: scratch)
                }
            }
        }
        first.merge(second)
        func finished(_ statistic: T) throws -> [Double] {
            var stats = StatsReport.KindStats(tokens: 1, nonFinite: 0)
            var context = FinishContext(
                options: options, shape: shape, timings: StageTimings(), wantsBasis: false, basis: nil)
            try statistic.finish(into: &stats, context: &context)
            return try numbers(stats)
        }
        let a = try finished(first)
        let b = try finished(whole)
        #expect(a.count == b.count, "\(T.stateName)")
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-9 * max(1, abs(y)), "\(T.stateName): \(x) vs \(y)") }
    }

    /// FrequencyEnergy is fed by the DCT pass, not by blocks: its merge law over windows' energies.
    @Test func frequencyEnergyMergesLikeTheWhole() throws {
        var generator = BoundsRandom(state: 7)
        var whole = FrequencyEnergy()
        var first = FrequencyEnergy()
        var second = FrequencyEnergy()
        for window in 0..<6 {
            let length = 10 + 7 * window
            let count = 3
            // Energy per frequency: the squares of `count` random coefficients, summed.
            let energies = (0..<length).map { _ in
                (0..<count).reduce(0.0) { sum, _ in sum + pow(Double.random(in: -2...2, using: &generator), 2) }
            }
            energies.withUnsafeBufferPointer { e in
                whole.fold(perFrequency: e)
                if window < 3 { first.fold(perFrequency: e) } else { second.fold(perFrequency: e) }
            }
        }
        first.merge(second)
        #expect(first.windows == whole.windows)
        #expect(abs(first.total - whole.total) <= 1e-12 * whole.total)
        for (a, b) in zip(first.low + first.bins, whole.low + whole.bins) { #expect(abs(a - b) <= 1e-12 * max(1, b)) }
    }

    /// Mean |x| per position bucket (0, 1, 2–3, 4–7, …) and per head, against the h5py-read matrix of the
    /// sample (rows: valid tokens of each sequence in order; lengths 192, 150, 110).
    @Test func positionProfileMatchesDirectComputation() throws {
        let dump = try Dump(path: Fixtures.sample)
        let kind = TensorKind.value
        let layer = 4
        let x = try wholeMatrix(dump, layer: layer, kind: kind)
        var options = AnalysisOptions()
        options.sections = [.outliers]
        options.layers = [layer]
        options.blockTokens = 100
        let stats = try #require(
            try StatsFinisher.finish(try Analyzer.accumulate(dump, options: options), version: "test")
                .layers[0].kinds[kind]?.positionProfile)
        var sums = [Double](repeating: 0, count: 32)
        var headSums = [[Double]](repeating: [Double](repeating: 0, count: 12), count: 32)
        var counts = [Int](repeating: 0, count: 32)
        var row = 0
        for length in dump.tokenRuns.lengths {
            for t in 0..<length {
                let bucket = t == 0 ? 0 : Int(log2(Double(t))) + 1
                counts[bucket] += 1
                for c in 0..<x.columns {
                    sums[bucket] += Double(abs(x[row, c]))
                    headSums[bucket][c / 32] += Double(abs(x[row, c]))
                }
                row += 1
            }
        }
        let buckets = counts.indices.filter { counts[$0] > 0 }
        #expect(stats.bucketStart == buckets.map { $0 == 0 ? 0 : 1 << ($0 - 1) })
        #expect(stats.tokens == buckets.map { counts[$0] })
        for (i, k) in buckets.enumerated() {
            let expected = sums[k] / Double(counts[k] * x.columns)
            #expect(abs(stats.meanAbs[i] - expected) <= 1e-9 * expected)
            for h in 0..<12 {
                let head = headSums[k][h] / Double(counts[k] * 32)
                #expect(abs(stats.headMeanAbs[i][h] - head) <= 1e-9 * head)
            }
        }
    }
}
