// The fits' Gram helpers: the dense matrix equals the statistics' `matrix(centered:)` value for value; the
// Gram of the tokens before cskv's window, by subtracting the window's, equals one folded from those tokens;
// the window split covers every token once.
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite struct DenseGramTests {
    static let columns = 7

    /// Seeded rows with a non-zero mean, folded into a Gram in blocks of `block` rows.
    static func gram(rows: Range<Int>, block: Int) -> GramAccumulator {
        var rng = Xorshift(state: 17)
        let all = (0..<(rows.upperBound * columns)).map { i in Float(i % columns) * 0.3 + rng.normal() }
        var gram = GramAccumulator(channels: columns)
        for start in stride(from: rows.lowerBound, to: rows.upperBound, by: block) {
            let count = min(block, rows.upperBound - start)
            let values = Array(all[(start * columns)..<((start + count) * columns)])
            let runs = [TokenRun(sequence: 0, start: start, count: count)][...]
            values.withUnsafeBufferPointer {
                gram.fold(
                    TokenBlock(
                        rows: count, columns: columns, values: $0, runs: runs, excludedRows: [], nonFiniteValues: 0))
            }
        }
        return gram
    }

    @Test(arguments: [false, true])
    func denseMatrixEqualsMatrix(centered: Bool) {
        let gram = Self.gram(rows: 0..<50, block: 16)
        #expect(gram.denseMatrix(centered: centered) == gram.matrix(centered: centered))
    }

    @Test func subtractingTheWindowGivesTheOlderTokens() {
        let whole = Self.gram(rows: 0..<200, block: 64)
        let window = Self.gram(rows: 180..<200, block: 64)
        let older = Self.gram(rows: 0..<180, block: 64)
        let rest = whole.subtracting(window)
        #expect(rest.count == older.count)
        let scale = whole.diagonalSum(0..<Self.columns)
        for (a, b) in zip(rest.matrix(centered: false).values, older.matrix(centered: false).values) {
            #expect(abs(a - b) <= 1e-6 * scale)
        }
        for (a, b) in zip(rest.sum, older.sum) { #expect(abs(a - b) <= 1e-9 * max(1, abs(b))) }
    }

    /// Two sequences, one with a gap in its valid tokens and one shorter than the window.
    @Test func windowSplitCoversEveryTokenOnce() {
        let runs = TokenRuns(
            runs: [
                TokenRun(sequence: 0, start: 0, count: 40), TokenRun(sequence: 0, start: 50, count: 5),
                TokenRun(sequence: 1, start: 0, count: 6),
            ], lengths: [45, 6])
        let before = LowRankSweep.olderThanWindow(runs, window: 8)
        let inside = LowRankSweep.insideWindow(runs, window: 8)
        #expect(
            inside.runs == [
                TokenRun(sequence: 0, start: 37, count: 3), TokenRun(sequence: 0, start: 50, count: 5),
                TokenRun(sequence: 1, start: 0, count: 6),
            ])
        #expect(inside.lengths == [8, 6])
        #expect(before.runs == [TokenRun(sequence: 0, start: 0, count: 37)])
        #expect(before.totalTokens + inside.totalTokens == runs.totalTokens)
    }
}
