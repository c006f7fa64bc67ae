// Bounded before allocating: layer/sequence lists stay ranges, block plans grow with runs not tokens, and the
// memory estimate follows its documented formulas, saturates instead of overflowing and refuses with exit 69.
import Foundation
import Testing

@testable import KVStat

@Suite struct IndexListTests {
    @Test func parsesIntoMergedRanges() throws {
        #expect(try IndexList.ranges("0-7,12") == [0...7, 12...12])
        #expect(try IndexList.ranges("12, 3-5,0-3 ,6") == [0...6, 12...12])
        #expect(try IndexList.ranges("5,5,5") == [5...5])
        #expect(try IndexList.ranges("0-9223372036854775807,4") == [0...Int.max])
    }

    @Test func refusesWhatIsNotAList() {
        #expect(throws: IndexList.ParseError.tooLarge("99999999999999999999")) {
            try IndexList.ranges("99999999999999999999")
        }
        #expect(throws: IndexList.ParseError.reversed("7-3")) { try IndexList.ranges("1,7-3") }
        #expect(throws: IndexList.ParseError.malformed("")) { try IndexList.ranges("0,,1") }
        #expect(throws: IndexList.ParseError.malformed("-3")) { try IndexList.ranges("-3") }
        #expect(throws: IndexList.ParseError.malformed("1-2-3")) { try IndexList.ranges("1-2-3") }
        #expect(throws: IndexList.ParseError.malformed("x")) { try IndexList.ranges("x") }
        #expect(throws: IndexList.ParseError.malformed("")) { try IndexList.ranges("") }
    }

    /// A billion-number range against a 4-layer dump: one range, answered at once (the old parser expanded it).
    @Test(.timeLimit(.minutes(10))) func hugeRangeIsNeverExpanded() throws {
        let start = Date()
        let ranges = try IndexList.ranges("0-1000000000")
        let (selected, missing) = IndexList.select(ranges, from: [0, 1, 2, 3])
        #expect(selected == [0, 1, 2, 3])
        #expect(missing == [4...1_000_000_000])
        #expect(Date().timeIntervalSince(start) < 1)
    }

    @Test func selectFindsGapsAgainstSparseNumbers() throws {
        let available = [0, 5, 7, 8, 9]
        let (selected, missing) = IndexList.select(try IndexList.ranges("0-1,7-9,20"), from: available)
        #expect(selected == [0, 7, 8, 9])
        #expect(missing == [1...1, 20...20])
        #expect(IndexList.select([5...5], from: available) == ([5], []))
        #expect(IndexList.select([Int.max...Int.max], from: [Int.max]) == ([Int.max], []))
        // A contiguous collection (a dump's sequences) is searched, not walked.
        #expect(IndexList.select([3...4, 10...12], from: 0..<(1 << 40)) == ([3, 4, 10, 11, 12], []))
    }

    @Test func resolveNamesWhatTheDumpLacksAndHas() throws {
        #expect(
            try IndexList.resolve([0...2], in: [0, 1, 2, 3], option: "--layers", noun: "layers", file: "d.h5") == [
                0, 1, 2,
            ])
        do {
            _ = try IndexList.resolve(
                [0...1_000_000_000], in: [0, 1, 2, 3], option: "--layers", noun: "layers", file: "d.h5")
            Issue.record("expected an error")
        } catch {
            #expect(error.category == .badData)
            #expect(
                error.description
                    == "d.h5: --layers names layers 4-1000000000 that the dump does not have; it has layers 0-3")
        }
    }

    @Test func textIsCompactAndBounded() {
        #expect(IndexList.text([7, 0, 1, 2, 3]) == "0-3,7")
        #expect(IndexList.text([Int]()) == "")
        #expect(IndexList.text(Array(stride(from: 0, to: 100, by: 2)), limit: 3) == "0,2,4,… (47 more)")
        #expect(IndexList.text([0...3, 5...5]) == "0-3,5")
    }
}

@Suite struct BlockPlanTests {
    /// The greedy packing written out plainly (pieces of at most `size` tokens share a block while they fit),
    /// as the reference the compact plan must reproduce block for block.
    static func reference(_ runs: [TokenRun], size: Int) -> [[TokenRun]] {
        var pieces: [TokenRun] = []
        for run in runs {
            var offset = 0
            while offset < run.count {
                let n = min(size, run.count - offset)
                pieces.append(TokenRun(sequence: run.sequence, start: run.start + offset, count: n))
                offset += n
            }
        }
        var blocks: [[TokenRun]] = []
        var current: [TokenRun] = []
        var rows = 0
        for piece in pieces {
            if rows + piece.count > size {
                blocks.append(current)
                current = []
                rows = 0
            }
            current.append(piece)
            rows += piece.count
        }
        if !current.isEmpty { blocks.append(current) }
        return blocks
    }

    @Test func matchesTheGreedyReference() {
        var generator = BoundsRandom(state: 20_240_601)
        for _ in 0..<200 {
            let sequences = Int.random(in: 1...5, using: &generator)
            let lengths = (0..<sequences).map { _ in Int.random(in: 0...40, using: &generator) }
            let runs = TokenRuns(lengths: lengths)
            let size = Int.random(in: 1...50, using: &generator)
            let plan = BlockPlan(runs: runs, blockTokens: size)
            let expected = Self.reference(runs.runs, size: min(size, max(runs.totalTokens, 1)))
            #expect(plan.blocks.count == expected.count)
            for (index, block) in expected.enumerated() where index < plan.blocks.count {
                #expect(Array(plan.pieces(of: index)) == block, "size \(size), lengths \(lengths), block \(index)")
            }
        }
    }

    /// Any positive block size is accepted and clipped to the tokens planned.
    @Test func blockSizeIsClippedToTheTokens() {
        let runs = TokenRuns(lengths: [192, 150, 110])
        #expect(BlockPlan(runs: runs, blockTokens: Int.max).blockTokens == 452)
        #expect(BlockPlan(runs: runs, blockTokens: 1 << 40).blocks.count == 1)
        #expect(BlockPlan(runs: runs, blockTokens: 64).blockTokens == 64)
    }

    /// 2⁴⁰ tokens in blocks of one: 2⁴⁰ blocks described by one segment, any block found at once.
    @Test(.timeLimit(.minutes(10))) func planOfHugeRunIsCompact() {
        let runs = TokenRuns(lengths: [1 << 40, 3])
        let plan = BlockPlan(runs: runs, blockTokens: 1)
        #expect(plan.blocks.count == (1 << 40) + 3)
        #expect(Array(plan.pieces(of: (1 << 40) - 1)) == [TokenRun(sequence: 0, start: (1 << 40) - 1, count: 1)])
        #expect(Array(plan.pieces(of: (1 << 40) + 2)) == [TokenRun(sequence: 1, start: 2, count: 1)])
    }
}

@Suite struct MemoryEstimateTests {
    /// A small case computed by hand from the formulas of MemoryEstimate's documentation.
    @Test func analysisFollowsTheFormulas() {
        let C = 8
        let L = 3
        let P = 2
        let B = 16
        let headDim = 4
        let kinds = [
            MemoryEstimate.KindShape(channels: C, heads: 2, paired: true),
            MemoryEstimate.KindShape(channels: C, heads: 2, paired: true),
        ]
        let e = MemoryEstimate.analysis(
            kinds: kinds, layers: L, pairs: P, tokens: 100, blockRows: B, keptBlocks: 2,
            sections: Set(AnalysisSection.allCases), longestWindow: 10, frequencyPanelBytes: 1 << 20,
            alignRank: 32, headDim: headDim, cores: 2)
        #expect(e.bytes(of: "Gram matrices") == 2 * L * (8 * C * (C + 1) / 2 + 8 * C))
        // Moments and the position profile (Σ|x| per bucket and channel, plus the bucket counts).
        #expect(e.bytes(of: "channel moments") == 2 * L * 36 * C + 2 * L * 8 * PositionProfile.bucketCount * (C + 1))
        #expect(e.bytes(of: "token-norm sketches") == 2 * L * (48 * 100 + 2 * 24 * 64))
        #expect(e.bytes(of: "cross-layer products") == 2 * P * 8 * C * C)
        // Stages: block pass (2 + 2.5)·4·B·C + 4·C² = 2560; eigen 24·C² + 16·C·8 + L·8·C·8 = 1536 + 1024 +
        // 1536 = 4096; DCT 2.5 × 10·4·4·2 + 80 + 4 plans × (1 piece (8 channels: one chunk of 16) × (2·4·16·16
        // + 8·10) + 4·16 + 16·10) = 10288, the largest (a piece's two 16-signal buffers are 16 floats a signal
        // at least); without frequency, eigen is.
        #expect(e.bytes(of: "DCT panel") == 10288)
        #expect(e.bytes(of: "eigen stage") == 0)
        #expect(e.bytes(of: "block buffers") == 0)
        let noFrequency = MemoryEstimate.analysis(
            kinds: kinds, layers: L, pairs: P, tokens: 100, blockRows: B, keptBlocks: 2,
            sections: Set(AnalysisSection.allCases).subtracting([.frequency]), longestWindow: 10,
            frequencyPanelBytes: 1 << 20, alignRank: 32, headDim: headDim, cores: 2)
        #expect(noFrequency.bytes(of: "eigen stage") == 4096)
        #expect(e.bytes(of: "report") == 2 * L * C * 2048 + P * 256)
        // L open readers of 8 MiB of kept chunks and 8 MiB of libhdf5 chunk cache each, and the workers' chunks.
        #expect(e.bytes(of: "readers") == L * (16 << 20) + 4 * (64 << 20) / 3 + (1 << 20))
        #expect(e.total == e.parts.reduce(0) { $0 + $1.bytes })
    }

    @Test func fitFollowsTheFormulas() {
        let C = 16
        let L = 4
        let kinds = [MemoryEstimate.KindShape(channels: C, heads: 4, paired: false)]
        // xKV, groups of 2: W = 32.
        let xkv = MemoryEstimate.fit(
            kinds: kinds, layers: L, groupSize: 2, matryoshka: false, blockRows: 8, keepRatio: 0.25,
            queryHeads: 0, headDim: 4, attentionQueries: 64, longestSequence: 100)
        #expect(xkv.bytes(of: "Gram matrices") == 2 * (8 * 32 * 33 / 2 + 8 * 32))  // the fit's and its null's
        #expect(xkv.bytes(of: "projections") == 2 * 4 * 32 * 8)  // 2 groups, r = ⌈0.25·32⌉
        #expect(xkv.bytes(of: "eigen stage") == 40 * 32 * 32)
        // Matryoshka, per head (D = 4): every layer's Gram held.
        let nested = MemoryEstimate.fit(
            kinds: kinds, layers: L, groupSize: 1, unitHeads: 1, matryoshka: true, blockRows: 8,
            keepRatio: 0.5, queryHeads: 0, headDim: 4, attentionQueries: 0, longestSequence: 100)
        #expect(nested.bytes(of: "Gram matrices") == L * (8 * C * (C + 1) / 2 + 8 * C))
        #expect(nested.bytes(of: "projections") == L * 4 * C * 2)
    }

    /// Declared-absurd shapes saturate at Int.max instead of trapping on overflow.
    @Test func absurdShapesSaturate() {
        let kinds = [MemoryEstimate.KindShape(channels: 1 << 40, heads: 1 << 20, paired: true)]
        let e = MemoryEstimate.analysis(
            kinds: kinds, layers: 1 << 30, pairs: Int.max, tokens: Int.max, blockRows: Int.max,
            keptBlocks: 1 << 30,
            sections: Set(AnalysisSection.allCases), longestWindow: Int.max, frequencyPanelBytes: 1 << 25,
            alignRank: Int.max, headDim: 1 << 20)
        #expect(e.total == Int.max)
        #expect(e.description.hasPrefix("about more than 8 EiB"))
        #expect(Bytes.product(1 << 32, 1 << 32) == Int.max)
        #expect(Bytes.sum(Int.max, 1) == Int.max)
        #expect(Bytes.product(3, -1) == 0)
    }

    @Test func checkRefusesWithTheNumbers() throws {
        var e = MemoryEstimate()
        e.add("Gram matrices", 3 << 30, hint: "select fewer --layers")
        e.add("report", 1 << 20)
        try e.check(file: "d.h5", available: 4 << 30)
        try e.check(file: "d.h5", available: nil)
        do {
            try e.check(file: "d.h5", available: 2 << 30)
            Issue.record("expected tooLarge")
        } catch {
            #expect(error.category == .tooLarge)
            #expect(
                error.description
                    == "d.h5: needs about 3.0 GiB (Gram matrices 3.0 GiB, report 1.0 MiB), "
                    + "this machine has 2.0 GiB available; select fewer --layers"
            )
        }
    }

    @Test func memoryLimitReadsProcAndCgroups() {
        #expect(MemoryLimit.memAvailable(meminfo: "MemTotal: 100 kB\nMemAvailable:    2048 kB\n") == 2 << 20)
        #expect(MemoryLimit.memAvailable(meminfo: "MemTotal: 100 kB\n") == nil)
        // v2: the smallest memory.max of the cgroup and its ancestors; "max" is no limit.
        let files = [
            "/sys/fs/cgroup/memory.max": "max\n", "/sys/fs/cgroup/job/memory.max": "8589934592\n",
            "/sys/fs/cgroup/job/step/memory.max": "17179869184\n",
        ]
        #expect(MemoryLimit.cgroupLimit(procSelfCgroup: "0::/job/step\n") { files[$0] } == 8 << 30)
        #expect(MemoryLimit.cgroupLimit(procSelfCgroup: "0::/\n") { files[$0] } == nil)
        // v1: the memory controller's limit; a page-rounded Int.max means none.
        let v1 = [
            "/sys/fs/cgroup/memory/slurm/memory.limit_in_bytes": "4294967296",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
        ]
        #expect(MemoryLimit.cgroupLimit(procSelfCgroup: "4:memory:/slurm\n3:cpu,cpuacct:/\n") { v1[$0] } == 4 << 30)
        #expect(MemoryLimit.cgroupLimit(procSelfCgroup: "4:memory:/\n") { v1[$0] } == nil)
        #expect(MemoryLimit(physical: 16, memAvailable: 8, cgroup: nil).bytes == 8)
        #expect(MemoryLimit(physical: 16, memAvailable: 8, cgroup: 4).bytes == 4)
        #expect(MemoryLimit.current().bytes ?? 1 > 0)
    }
}

/// SplitMix64: a small seeded generator, so the random cases are the same on every run.
struct BoundsRandom: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
