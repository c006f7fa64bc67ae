// The frequency pass folds each sequence window once, whatever the panel budget cuts it into: the same
// energies (to float64 rounding) and the same window counts with one head per panel as with all heads at once,
// and windows of `--dct-window` counted and bounded as documented.
import Foundation
import Testing

@testable import KVStat

struct FrequencyPassTests {
    static func frequency(_ options: AnalysisOptions) throws -> [TensorKind: [FrequencyEnergy]] {
        let state = try Analyzer.accumulate(try Dump(path: Fixtures.sample), options: options)
        return state.kinds.mapValues { kind in kind.layers.compactMap { $0[FrequencyEnergy.self] } }
    }

    static func options(panelBytes: Int, window: Int? = nil) -> AnalysisOptions {
        var options = AnalysisOptions()
        options.sections = [.frequency]
        options.frequencyPanelBytes = panelBytes
        options.dctWindow = window
        return options
    }

    /// The sample (6 layers, 12 heads of 32, sequences of 192, 150 and 110 tokens) with one head per panel
    /// and with every head in one panel: equal sums, one window per sequence, the shortest 110 tokens.
    @Test func panelBudgetChangesNothing() throws {
        let oneHead = try Self.frequency(Self.options(panelBytes: 1))
        let allHeads = try Self.frequency(Self.options(panelBytes: 1 << 30))
        #expect(!oneHead.isEmpty && oneHead.keys == allHeads.keys)
        for (kind, layers) in oneHead {
            let other = try #require(allHeads[kind])
            #expect(layers.count == 6 && other.count == 6)
            for (a, b) in zip(layers, other) {
                #expect(a.windows == 3 && b.windows == 3)
                #expect(a.shortestWindow == 110 && b.shortestWindow == 110)
                #expect(b.total > 0)
                #expect(abs(a.total - b.total) <= 1e-12 * b.total)
                for (x, y) in zip(a.low + a.bins, b.low + b.bins) { #expect(abs(x - y) <= 1e-12 * b.total) }
            }
        }
    }

    /// The estimate covers the largest panel any window can make: a window shorter than the longest packs more
    /// heads, up to the budget (8 heads of 4 channels, windows up to 12 tokens, a 500-byte budget: the longest
    /// window fits 2 heads, 384 bytes, but a 10-token window fits 3, 480 bytes).
    @Test func memoryEstimateCoversShorterWindows() {
        let headDim = 4
        let heads = 8
        let budget = 500
        let kinds = [MemoryEstimate.KindShape(channels: heads * headDim, heads: heads, paired: false)]
        let e = MemoryEstimate.analysis(
            kinds: kinds, layers: 1, pairs: 0, tokens: 12, blockRows: 1, keptBlocks: 1, sections: [.frequency],
            longestWindow: 12, frequencyPanelBytes: budget, alignRank: 1, headDim: headDim, cores: 2)
        // The pass's own rule (Analyzer.frequencyPass) for every window length up to the longest.
        let largest = (1...12).map { w in
            max(1, min(heads, budget / (w * headDim * 4))) * w * headDim * 4
        }.max()!
        #expect(largest == 480)
        let reader = largest / 2  // raw halves; the float32 read scratch is one more panel
        let needed = 2 * largest + reader + 8 * 12 + MemoryEstimate.dctPlanBytes(longestWindow: 12, cores: 2)
        #expect(e.bytes(of: "DCT panel") >= needed)
    }

    /// Windows of 50 tokens: 192 = 3·50 + 42, 150 = 3·50, 110 = 2·50 + 10, so 10 windows, the shortest 10
    /// tokens; the energy is the same Σx² as with whole sequences (the orthonormal DCT preserves it).
    @Test func windowsAreCountedOncePerWindow() throws {
        let windowed = try Self.frequency(Self.options(panelBytes: 1, window: 50))
        let whole = try Self.frequency(Self.options(panelBytes: 1))
        for (kind, layers) in windowed {
            let reference = try #require(whole[kind])
            for (a, b) in zip(layers, reference) {
                #expect(a.windows == 10)
                #expect(a.shortestWindow == 10)
                #expect(abs(a.total - b.total) <= 1e-5 * b.total)
            }
        }
    }
}
