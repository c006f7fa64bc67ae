// Attention-mass sinks (`AttentionMass`) against a direct numpy computation on the real samples (SmolLM2: causal,
// GQA 9:3, three sequences of different lengths; MiniLM: an encoder, bidirectional), the degenerate cases (one
// token, all-zero keys, no queries), and the small-norm side of the token-norm sketch.
import Foundation
import Testing

@testable import KVStat

/// The numpy reference of Tests/Fixtures/attention_sinks_reference.py.
struct SinkReference: Decodable {
    struct Layer: Decodable {
        var layer: Int
        var share: [Double]
        var headShare: [[Double]]
        var uniform: [Double]
        var keyNorm: [Double]
        var valueNorm: [Double]
    }
    var layers: [Layer]

    /// Runs python3 with `arguments` (after the script); true when it exited 0.
    @discardableResult
    static func python(_ arguments: [String]) throws -> Bool {
        try Fixtures.runScript("attention_sinks_reference.py", arguments)
    }

    static func compute(_ dump: String, queries: Int, causal: Bool) throws -> SinkReference {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("sinks-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(try python(["share", dump, out.path, "\(queries)", causal ? "1" : "0"]))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(SinkReference.self, from: Data(contentsOf: out))
    }
}

@Suite(.serialized) struct AttentionSinkTests {
    /// The report of `path` with the outliers section only (token norms and attention mass).
    static func report(
        _ path: String, causal: Bool = true, queries: Int = 64, blockTokens: Int = 64
    ) throws
        -> StatsReport
    {
        var options = AnalysisOptions()
        options.sections = [.outliers]
        options.causal = causal
        options.sinkQueries = queries
        options.blockTokens = blockTokens  // several blocks per sequence
        return try StatsFinisher.finish(
            try Analyzer.accumulate(try Dump(path: path), options: options, digest: false), version: "test")
    }

    /// Every layer's top positions, shares, even shares, each head's top position and share, and the norms of the
    /// top positions equal numpy's within 1e-4.
    static func expectMatches(_ report: StatsReport, _ reference: SinkReference) throws {
        let sinks = try #require(report.attentionSinks)
        #expect(sinks.judged)
        #expect(sinks.layers.count == reference.layers.count)
        for (mine, truth) in zip(sinks.layers, reference.layers) {
            #expect(mine.layer == truth.layer)
            let order = truth.share.indices.sorted {
                truth.share[$0] != truth.share[$1] ? truth.share[$0] > truth.share[$1] : $0 < $1
            }
            #expect(mine.top.map(\.position) == Array(order.prefix(AttentionMass.topCount)), "layer \(mine.layer)")
            let stats = try #require(report.layers.first { $0.layer == mine.layer })
            for t in mine.top {
                #expect(abs(t.share - truth.share[t.position]) < 1e-4)
                #expect(abs(t.uniformShare - truth.uniform[t.position]) < 1e-9)
                let keyMedian = try #require(stats.kinds[.key]?.tokenNorms?.medianNorm)
                let valueMedian = try #require(stats.kinds[.value]?.tokenNorms?.medianNorm)
                let key = try #require(t.keyNormRatio) * keyMedian
                let value = try #require(t.valueNormRatio) * valueMedian
                #expect(abs(key - truth.keyNorm[t.position]) <= 1e-4 * truth.keyNorm[t.position])
                #expect(abs(value - truth.valueNorm[t.position]) <= 1e-4 * truth.valueNorm[t.position])
            }
            #expect(mine.heads.count == truth.headShare.count)
            for h in mine.heads {
                let row = truth.headShare[h.head]
                #expect(abs(h.share - row.max()!) < 1e-4)
                #expect(abs(row[h.position] - row.max()!) < 1e-4)
            }
        }
    }

    @Test func smolLM2MatchesNumpyCausalGQA() throws {
        let report = try Self.report(SmolLM2Sample.path)
        let reference = try SinkReference.compute(SmolLM2Sample.path, queries: 64, causal: true)
        try Self.expectMatches(report, reference)
        let sinks = try #require(report.attentionSinks)
        // The sample's sink: position 0 tops every layer but the first, with a small key and value norm.
        #expect(sinks.topPositions.first?.position == 0)
        #expect(sinks.topPositions.first?.layers == [3, 6, 9, 12, 15, 18, 21, 24, 27])
        for layer in sinks.layers where layer.layer >= 15 {
            #expect(layer.top[0].share > 0.4)
            #expect(try #require(layer.top[0].keyNormRatio) < 0.5)
            #expect(try #require(layer.top[0].valueNormRatio) < 0.5)
        }
        #expect(sinks.minQueryPosition == 16 && sinks.queriesPerSequence == 64 && sinks.causal)
    }

    /// Few queries (the first sampled at position 16, not 0) and whole-sequence blocks give the same as numpy too.
    @Test func smolLM2FewQueriesOneBlock() throws {
        let report = try Self.report(SmolLM2Sample.path, queries: 5, blockTokens: 4096)
        try Self.expectMatches(report, try SinkReference.compute(SmolLM2Sample.path, queries: 5, causal: true))
    }

    @Test func miniLMMatchesNumpyBidirectional() throws {
        let report = try Self.report(Fixtures.sample, causal: false)
        let reference = try SinkReference.compute(Fixtures.sample, queries: 64, causal: false)
        try Self.expectMatches(report, reference)
        #expect(report.attentionSinks?.causal == false)
    }

    /// Without queries: not judged, and the note says so.
    @Test func noQueriesCannotBeJudged() throws {
        let dumps = try Self.degenerateDumps()
        let report = try Self.report(dumps + "/no_queries.h5")
        let sinks = try #require(report.attentionSinks)
        #expect(!sinks.judged && sinks.layers.isEmpty)
        #expect(sinks.note == "Attention-mass sinks cannot be judged: the dump has no queries.")
    }

    /// One token: it takes all the attention. All-zero keys: every logit is 0, so attention is even (the share
    /// equals the even share, and every head's equals the layer's).
    @Test func degenerateOneTokenAndZeroKeys() throws {
        let dumps = try Self.degenerateDumps()
        let one = try #require(try Self.report(dumps + "/one.h5").attentionSinks)
        #expect(one.layers.count == 1)
        #expect(one.layers[0].top.map(\.position) == [0])
        #expect(one.layers[0].top[0].share == 1 && one.layers[0].top[0].uniformShare == 1)
        #expect(one.layers[0].heads.allSatisfy { $0.position == 0 && $0.share == 1 })
        #expect(one.layers[0].queries == 1)
        let zero = try Self.report(dumps + "/zero_keys.h5")
        let layer = try #require(zero.attentionSinks?.layers.first)
        for t in layer.top {
            #expect(abs(t.share - t.uniformShare) < 1e-12)
            #expect(t.keyNormRatio == nil)  // every key norm is 0: no median
        }
        #expect(layer.heads.allSatisfy { abs($0.share - layer.top[0].share) < 1e-12 && $0.position == 0 })
        // Sequence 0 has 4 tokens at positions ≥ 16 (all sampled); sequence 1 has 12, none ≥ 16: all 12 are.
        #expect(layer.queries == 4 + 12)
    }

    /// `--sink-queries 0`, no outliers section, and statistics from a state (merged or saved) say why there is
    /// nothing.
    @Test func notComputedSaysWhy() throws {
        var options = AnalysisOptions()
        options.sections = [.outliers]
        options.sinkQueries = 0
        let dump = try Dump(path: SmolLM2Sample.path)
        let none = try StatsFinisher.finish(
            try Analyzer.accumulate(dump, options: options, digest: false), version: "t")
        #expect(none.attentionSinks?.judged == false)
        #expect(none.attentionSinks?.note?.contains("--sink-queries 0") == true)
        options.sinkQueries = 4
        var state = try Analyzer.accumulate(dump, options: options, digest: false)
        #expect(state.attentionMass != nil)
        state.attentionMass = nil  // as loaded from a state file, or merged
        let fromState = try StatsFinisher.finish(state, version: "t")
        #expect(fromState.attentionSinks?.note?.contains("state files") == true)
        options.sections = [.spectra]
        let noOutliers = try StatsFinisher.finish(
            try Analyzer.accumulate(dump, options: options, digest: false), version: "t")
        #expect(noOutliers.attentionSinks?.note?.contains("outliers section") == true)
    }

    /// Small-norm tokens: below median / F, smallest first, merged like the largest, and saved in state files.
    @Test func smallNormTokens() throws {
        var a = TokenNormSketch(capacity: 4)
        var b = TokenNormSketch(capacity: 4)
        var whole = TokenNormSketch(capacity: 4)
        for i in 0..<40 {
            let norm = i == 7 ? 0.01 : i == 30 ? 0.1 : 1 + Double(i % 5) / 100
            let entry = TokenNormSketch.Entry(sequence: 0, token: i, norm: norm)
            if i < 20 { a.add(entry) } else { b.add(entry) }
            whole.add(entry)
        }
        a.merge(b)
        #expect(a == whole)
        let (small, count) = whole.smallNorms(factor: 6)
        #expect(small.map(\.token) == [7, 30])
        #expect(count == 2)
        #expect(whole.smallNorms(factor: 50).entries.map(\.token) == [7])
        #expect(whole.smallest.map(\.token).prefix(2) == [7, 30])
    }

    /// A layer's top positions are the first `topCount` of every position sorted by share (descending, ties to the
    /// lower position), and each head's top its first largest weight: seeded sums with many ties, against a sort.
    @Test func finishedLayerKeepsTheSortedTop() {
        var rng = BoundsRandom(state: 12)
        for (heads, positions) in [(3, 1), (3, 2), (4, 7), (2, 50), (5, 300)] {
            let weight = (0..<heads * positions).map { _ in Double(rng.next() % 4) / 4 }
            let rows = (0..<heads).map { h in h == 1 ? 0 : Int(rng.next() % 5) + 1 }
            let sums = AttentionMass.Sums(
                layer: 3, queryHeads: heads, positions: positions, weight: weight, rows: rows,
                uniform: (0..<positions).map { Double($0) }, queries: 2,
                keyNorm: (0..<positions).map { 2 * Double($0) },
                valueNorm: (0..<positions).map { 3 * Double($0) }, keyCount: Array(0..<positions),
                valueCount: Array(repeating: 1, count: positions))
            let layer = sums.finished()
            var share = [Double](repeating: 0, count: positions)
            for h in 0..<heads { for p in 0..<positions { share[p] += weight[h * positions + p] } }
            share = share.map { $0 / Double(rows.reduce(0, +)) }
            let order = share.indices.sorted { share[$0] != share[$1] ? share[$0] > share[$1] : $0 < $1 }
            #expect(layer.top.map(\.position) == Array(order.prefix(AttentionMass.topCount)))
            #expect(layer.top.map(\.share) == order.prefix(AttentionMass.topCount).map { share[$0] })
            #expect(layer.top.allSatisfy { $0.uniformShare == Double($0.position) / 2 })
            #expect(layer.top.allSatisfy { $0.keyNormSum == 2 * Double($0.position) && $0.keyCount == $0.position })
            #expect(layer.rows == rows.reduce(0, +) && layer.queries == 2)
            #expect(layer.heads.map(\.head) == (0..<heads).filter { $0 != 1 })
            for head in layer.heads {
                let row = weight[head.head * positions..<(head.head + 1) * positions]
                let best = row.firstIndex(of: row.max()!)! - head.head * positions
                #expect(head.position == best && head.share == row.max()! / Double(rows[head.head]))
            }
        }
    }

    /// The memory part follows its documented formula, and an analysis of a dump with queries counts it.
    @Test func memoryEstimate() throws {
        // L·(64·k + 32·Hq) + 8·T·(Hq + 6) + n·Hq·(12·d + 16) + B·(8·Hkv·d + 8·d) + 8·n·(Hq/Hkv)·B, k = 4.
        let bytes = MemoryEstimate.attentionSinks(
            layers: 2, positions: 100, queryHeads: 4, kvHeads: 2, headDim: 8, queries: 10, blockRows: 16)
        #expect(bytes == 2 * (64 * 4 + 32 * 4) + 8 * 100 * 10 + 10 * 4 * (96 + 16) + 16 * (128 + 64) + 8 * 10 * 2 * 16)
        let dump = try Dump(path: SmolLM2Sample.path)
        var options = AnalysisOptions()
        let runs = try options.selection.runs(of: dump)
        let withSinks = MemoryEstimate.analysis(dump: dump, options: options, layers: 10, pairs: 9, runs: runs)
        #expect(withSinks.bytes(of: "attention-mass sinks") > 0)
        options.sinkQueries = 0
        let without = MemoryEstimate.analysis(dump: dump, options: options, layers: 10, pairs: 9, runs: runs)
        #expect(without.bytes(of: "attention-mass sinks") == 0)
    }

    static func degenerateDumps() throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sinks-\(UUID().uuidString)").path
        #expect(try SinkReference.python(["degenerate", folder]))
        return folder
    }
}
