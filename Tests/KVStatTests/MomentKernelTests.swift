// The outliers-stage statistics folded by the C kernels (CKernels/MomentKernels.c) against direct two-pass
// float64 formulas written here: channel moments (kurtosis within 1e-9 of float64), token norms, the position
// profile, Gram column sums, max |x|, the non-finite row scan and the float32 → float64 accumulation loops, on
// seeded data with heavy tails, huge and tiny values, constant channels, excluded rows, one row and one channel,
// through both the one-thread path and the split over cores (blocks above `MomentKernels.parallelThreshold`).
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite struct MomentKernelTests {
    /// A row-major block with its runs (one sequence from position `start`) and rows to exclude (zeroed).
    struct Block {
        var rows: Int
        var columns: Int
        var values: [Float]
        var excluded: [Int] = []
        var start = 0

        /// Calls `body` with the block as a statistic sees it (excluded rows zeroed first).
        func withTokenBlock<R>(_ body: (TokenBlock) throws -> R) rethrows -> R {
            var v = values
            for r in excluded { for j in 0..<columns { v[r * columns + j] = 0 } }
            let runs = [TokenRun(sequence: 0, start: start, count: rows)][...]
            return try v.withUnsafeBufferPointer {
                try body(
                    TokenBlock(
                        rows: rows, columns: columns, values: $0, runs: runs, excludedRows: excluded,
                        nonFiniteValues: 0))
            }
        }

        func column(_ j: Int) -> [Double] {
            let skip = Set(excluded)
            return (0..<rows).filter { !skip.contains($0) }.map { Double(values[$0 * columns + j]) }
        }
    }

    /// Seeded data: per channel a different law — Gaussian, heavy-tailed (normal / uniform², with rare 10⁴×
    /// spikes), huge (~10³⁰ and ~10³⁷, whose float32 sums overflow), tiny (~10⁻³⁰ and subnormal ~10⁻⁴⁰),
    /// constant, and a mean 10⁵× the spread.
    static func block(rows: Int, columns: Int, seed: UInt64) -> Block {
        var rng = Xorshift(state: seed)
        var values = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for j in 0..<columns {
                let g = rng.normal()
                let x: Float
                switch j % 9 {
                case 0: x = g
                case 1: x = 0.3 + g / (rng.uniform() * rng.uniform() + 0.05)
                case 2: x = (r % 97 == 5 ? 1e4 : 1) * g - 2
                case 3: x = 1e30 * g
                case 4: x = 3e37 * (0.5 + abs(g))
                case 5: x = 1e-30 * g + 3e-30
                case 6: x = 1e-40 * g
                case 7: x = 0.1
                default: x = 1e5 + g
                }
                values[r * columns + j] = x
            }
        }
        return Block(rows: rows, columns: columns, values: values)
    }

    /// Mean and central sums M2, M3, M4 of `x`, two passes in float64.
    static func direct(_ x: [Double]) -> (mean: Double, m2: Double, m3: Double, m4: Double) {
        let mean = x.reduce(0, +) / Double(x.count)
        var (m2, m3, m4) = (0.0, 0.0, 0.0)
        for v in x {
            let d = v - mean
            m2 += d * d
            m3 += d * d * d
            m4 += d * d * d * d
        }
        return (mean, m2, m3, m4)
    }

    /// Every channel of `moments` against the direct formulas over `columnValues(j)`.
    static func expectMatches(_ moments: ChannelMoments, _ columnValues: (Int) -> [Double], _ label: String) {
        for j in 0..<moments.channels {
            let x = columnValues(j)
            #expect(moments.count == x.count, "\(label)")
            let (mean, m2, m3, m4) = direct(x)
            let sd = (m2 / Double(x.count)).squareRoot()
            let scale = max(abs(mean), sd, .leastNonzeroMagnitude)
            #expect(abs(moments.mean[j] - mean) <= 1e-12 * scale, "\(label) channel \(j) mean")
            #expect(
                abs(moments.m2[j] - m2) <= 1e-10 * m2 + 1e-24 * scale * scale * Double(x.count),
                "\(label) channel \(j) M2 \(moments.m2[j]) vs \(m2)")
            #expect(
                abs(moments.m3[j] - m3) <= 1e-9 * (m2 * sd) + 1e-30 * pow(scale, 3) * Double(x.count),
                "\(label) channel \(j) M3 \(moments.m3[j]) vs \(m3)")
            #expect(Double(moments.maxAbs[j]) == x.map(abs).max()!, "\(label) channel \(j) max")
            let k = moments.kurtosis[j]
            if sd > 0x1p-20 * abs(mean) * 1.01, x.count > 1 {
                let reference = Double(x.count) * m4 / (m2 * m2)
                let ours = try? #require(k, "\(label) channel \(j) kurtosis undefined")
                if let ours {
                    #expect(
                        abs(ours - reference) <= 1e-9 * reference,
                        "\(label) channel \(j) kurtosis \(ours) vs \(reference)")
                }
            } else if sd <= 0x1p-20 * abs(mean) * 0.99 || x.count == 1 {
                #expect(k == nil, "\(label) channel \(j): constant, kurtosis \(String(describing: k))")
            }
            // What a state file's decoder demands of real data: M2, M4 ≥ 0 and n·M4 ≥ M2².
            let n = Double(moments.count)
            #expect(
                moments.m2[j] >= 0 && moments.m4[j] >= 0
                    && n * moments.m4[j] >= moments.m2[j] * moments.m2[j] * (1 - 1e-9))
        }
    }

    /// One block above the split threshold, one below, and the same rows folded as 3 blocks and as a merge.
    @Test(arguments: [(2100, 37), (700, 9), (1, 9), (513, 1)])
    func channelMomentsMatchFloat64(rows: Int, columns: Int) {
        var b = Self.block(rows: rows, columns: columns, seed: UInt64(rows * 31 + columns))
        if rows > 2 { b.excluded = [0, rows / 2, rows - 1] }
        var whole = ChannelMoments(channels: columns)
        b.withTokenBlock { whole.fold($0) }
        Self.expectMatches(whole, b.column, "\(rows)×\(columns) whole")
        // The same rows in three blocks (their own excluded rows), folded in turn, and two halves merged.
        let cuts = [0, rows / 3, 2 * rows / 3, rows]
        var parts = [ChannelMoments]()
        for p in 0..<3 where cuts[p + 1] > cuts[p] {
            let part = Block(
                rows: cuts[p + 1] - cuts[p], columns: columns,
                values: Array(b.values[(cuts[p] * columns)..<(cuts[p + 1] * columns)]),
                excluded: b.excluded.filter { (cuts[p]..<cuts[p + 1]).contains($0) }.map { $0 - cuts[p] })
            var m = ChannelMoments(channels: columns)
            part.withTokenBlock { m.fold($0) }
            parts.append(m)
        }
        var streamed = parts[0]
        for p in parts.dropFirst() { streamed.merge(p) }
        Self.expectMatches(streamed, b.column, "\(rows)×\(columns) in parts")
    }

    /// Rows excluded everywhere but one, and a block with every row excluded (nothing counts, nothing moves).
    @Test func excludedRowsDoNotCount() {
        var b = Self.block(rows: 300, columns: 18, seed: 7)
        b.excluded = Array(1..<300)
        var m = ChannelMoments(channels: 18)
        b.withTokenBlock { m.fold($0) }
        #expect(m.count == 1)
        for j in 0..<18 { #expect(m.mean[j] == Double(b.values[j]) && m.m2[j] == 0 && m.kurtosis[j] == nil) }
        b.excluded = Array(0..<300)
        var none = ChannelMoments(channels: 18)
        b.withTokenBlock { none.fold($0) }
        #expect(none.count == 0 && none.maxAbs.allSatisfy { $0 == 0 })
    }

    /// Norms in float64 of huge, tiny and ordinary rows (zero rows not counted), above and below the split.
    @Test(arguments: [3000, 40])
    func tokenNormsMatchFloat64(rows: Int) {
        let columns = 33
        var b = Self.block(rows: rows, columns: columns, seed: 99)
        // Rows scaled as wholes: some ~10³⁰ (squares beyond float32), some ~10⁻³⁰, one all zero, two excluded.
        for r in 0..<rows {
            let scale: Float = r % 5 == 1 ? 1e30 : (r % 5 == 2 ? 1e-30 : 1)
            for j in 0..<columns {
                let x = j % 9 == 3 || j % 9 == 4 || j % 9 == 5 || j % 9 == 6 ? 1 : b.values[r * columns + j]
                b.values[r * columns + j] = r == 3 ? 0 : x * scale
            }
        }
        b.excluded = [0, rows - 2]
        b.start = 17
        var sketch = TokenNormSketch()
        b.withTokenBlock { sketch.fold($0) }
        var reference = TokenNormSketch()
        let skip = Set(b.excluded)
        for r in 0..<rows where !skip.contains(r) && r != 3 {
            let norm = (0..<columns).reduce(0.0) { $0 + pow(Double(b.values[r * columns + $1]), 2) }.squareRoot()
            reference.add(TokenNormSketch.Entry(sequence: 0, token: 17 + r, norm: norm))
        }
        #expect(sketch.count == rows - 3 && sketch.count == reference.count)
        #expect(sketch.histogram == reference.histogram)
        #expect(sketch.largest.map(\.token) == reference.largest.map(\.token))
        for (a, e) in zip(sketch.largest, reference.largest) { #expect(abs(a.norm - e.norm) <= 1e-14 * e.norm) }
    }

    /// Σ|x| by position bucket with runs crossing bucket edges and excluded rows, against a direct loop.
    @Test(arguments: [(2500, 40), (37, 3)])
    func positionProfileMatchesDirectSums(rows: Int, columns: Int) {
        var b = Self.block(rows: rows, columns: columns, seed: 5)
        b.excluded = [1, 2, rows / 2, rows - 1]
        var values = b.values
        for r in b.excluded { for j in 0..<columns { values[r * columns + j] = 0 } }
        // Two runs: positions 3… of sequence 0, then 0… of sequence 1.
        let first = rows / 3
        let runs = [
            TokenRun(sequence: 0, start: 3, count: first), TokenRun(sequence: 1, start: 0, count: rows - first),
        ]
        let shape = LayerShape(channels: columns, headDim: columns)
        var profile = PositionProfile(shape: shape)
        values.withUnsafeBufferPointer {
            profile.fold(
                TokenBlock(
                    rows: rows, columns: columns, values: $0, runs: runs[...], excludedRows: b.excluded,
                    nonFiniteValues: 0),
                scratch: FoldScratch())
        }
        var tokens = [Int](repeating: 0, count: PositionProfile.bucketCount)
        var sums = [Double](repeating: 0, count: PositionProfile.bucketCount * columns)
        for r in 0..<rows where !b.excluded.contains(r) {
            let position = r < first ? 3 + r : r - first
            let k = PositionProfile.bucket(position)
            tokens[k] += 1
            for j in 0..<columns { sums[k * columns + j] += Double(abs(values[r * columns + j])) }
        }
        #expect(profile.tokens == tokens)
        for i in sums.indices { #expect(abs(profile.absoluteSums[i] - sums[i]) <= 1e-13 * sums[i]) }
    }

    /// Gram column sums, max |x|, and the packed / plain float32 → float64 accumulations against direct loops.
    @Test func gramLoopsMatchDirect() {
        let b = Self.block(rows: 2203, columns: 36, seed: 11)  // not a multiple of 4: the row tail too
        var gram = GramAccumulator(channels: 36)
        b.withTokenBlock { gram.fold($0) }
        for j in 0..<36 {
            let direct = b.column(j).reduce(0, +)
            #expect(abs(gram.sum[j] - direct) <= 1e-13 * b.column(j).reduce(0) { $0 + abs($1) })
        }
        b.values.withUnsafeBufferPointer { v in
            #expect(BLAS.maxMagnitude(v) == b.values.map(abs).max()!)
            for n in [0, 1, 31, 33, 70_001] {
                #expect(
                    BLAS.maxMagnitude(UnsafeBufferPointer(rebasing: v[0..<n])) == b.values[0..<n].map(abs).max() ?? 0)
            }
        }
        for n in [5, 300] {  // 300² values: the split over cores
            let square = (0..<(n * n)).map { Float($0 % 1000) * 0.37 - 50 }
            var packed = (0..<(n * (n + 1) / 2)).map { Double($0) }
            var expected = packed
            for i in 0..<n { for j in 0...i { expected[i * (i + 1) / 2 + j] += 0.25 * Double(square[i * n + j]) } }
            square.withUnsafeBufferPointer { s in
                packed.withUnsafeMutableBufferPointer {
                    MomentKernels.addPackedLower(s, n: n, into: $0, multiplier: 0.25)
                }
            }
            #expect(packed == expected)
            var plain = [Double](repeating: 1, count: n * n)
            square.withUnsafeBufferPointer { s in
                plain.withUnsafeMutableBufferPointer { MomentKernels.addScaled(s, into: $0, multiplier: 2) }
            }
            #expect(plain == square.map { 1 + 2 * Double($0) })
        }
    }

    /// NaN and ±Inf rows are zeroed and listed in order, values counted, whichever piece of the split holds them.
    @Test(arguments: [3000, 3])
    func nonFiniteRowsAreZeroedAndCounted(rows: Int) {
        let columns = 50
        var values = Self.block(rows: rows, columns: columns, seed: 3).values.map { $0 == 0 ? 1 : $0 }
        let bad: [(Int, Int, Float)] =
            rows > 3
            ? [(0, 0, .nan), (7, 49, .infinity), (7, 3, -.infinity), (1500, 10, .nan), (2999, 49, .infinity)]
            : [(1, 0, -.infinity)]
        for (r, j, x) in bad { values[r * columns + j] = x }
        let (excluded, nonFinite) = values.withUnsafeMutableBufferPointer {
            MomentKernels.zeroNonFiniteRows($0, rows: rows, columns: columns)
        }
        let badRows = Set(bad.map(\.0)).sorted()
        #expect(excluded == badRows)
        #expect(nonFinite == bad.count)
        for r in 0..<rows {
            let row = values[(r * columns)..<((r + 1) * columns)]
            #expect(badRows.contains(r) ? row.allSatisfy { $0 == 0 } : row.allSatisfy { $0 != 0 && $0.isFinite })
        }
    }

    /// The same checks on each build of the kernels this CPU can run (baseline SSE2, AVX2+FMA, AVX-512); the other
    /// tests use the best one. The cap is process-wide: tests running meanwhile use a lower build, which is
    /// equally correct.
    @Test func everyBuildMatches() {
        defer { MomentKernels.limitInstructionSet(2) }
        for level in 0...2 {
            MomentKernels.limitInstructionSet(level)
            #expect(level > 0 || MomentKernels.instructionSet == "baseline")
            channelMomentsMatchFloat64(rows: 2100, columns: 37)
            channelMomentsMatchFloat64(rows: 1, columns: 9)
            excludedRowsDoNotCount()
            tokenNormsMatchFloat64(rows: 3000)
            positionProfileMatchesDirectSums(rows: 2500, columns: 40)
            gramLoopsMatchDirect()
            nonFiniteRowsAreZeroedAndCounted(rows: 3000)
        }
    }
}
