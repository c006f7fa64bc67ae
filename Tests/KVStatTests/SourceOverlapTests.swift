// When two parts of a dump hold the same tokens (`DumpSummary.overlaps`), so that `kvstat merge` refuses to
// count them twice: same file, a sequence in common and intersecting token ranges.
import Foundation
import Testing

@testable import KVStat

@Suite struct SourceOverlapTests {
    static func part(_ dump: Dump, sequences: [Int]? = nil, tokens: Range<Int>? = nil) throws -> DumpSummary {
        var summary = DumpSummary(dump, sequences: sequences, tokenRange: tokens)
        summary.sha256 = "same"
        return summary
    }

    @Test func partsOverlapOnlyWhenTheyShareTokens() throws {
        let dump = try Dump(path: Fixtures.sample)
        let whole = try Self.part(dump)
        let first = try Self.part(dump, sequences: [0, 1])
        let second = try Self.part(dump, sequences: [1, 2])
        let third = try Self.part(dump, sequences: [2])
        let head = try Self.part(dump, tokens: 0..<100)
        let tail = try Self.part(dump, tokens: 100..<Int.max)
        #expect(whole.overlaps(whole) && whole.overlaps(third) && third.overlaps(whole))
        #expect(first.overlaps(second) && !first.overlaps(third))
        #expect(!head.overlaps(tail) && head.overlaps(whole) && tail.overlaps(third))
        #expect(tail.selectedTokens == [100, dump.shape.maxTokens])
        // Another file (another SHA-256) never overlaps.
        var other = whole
        other.sha256 = "other"
        #expect(!other.overlaps(whole))
        // A merged state's sources are checked one by one: (first + third) + first overlaps.
        #expect(AnalysisState.overlap([first, third], [first]) != nil)
        #expect(AnalysisState.overlap([first], [third]) == nil)
    }

    @Test func mergeRefusesAStateWithItself() throws {
        let dump = try Dump(path: Fixtures.sample)
        var options = AnalysisOptions()
        options.layers = [0, 1]
        options.sections = [.spectra]
        var state = try Analyzer.accumulate(dump, options: options)
        let copy = state
        do {
            try state.merge(copy)
            Issue.record("merging a state with itself should fail")
        } catch {
            #expect(error.category == .badData && error.message.contains("count those tokens twice"), "\(error)")
        }
    }
}
