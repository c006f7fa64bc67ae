// The per-token cosine kernel against a direct float64 computation: column counts around the 16-lane width
// (the tail loop), rows that are zero in one layer (skipped), and heavy-tailed values.
import Testing

@testable import KVNumerics

@Suite struct PairKernelsTests {
    @Test(arguments: [1, 15, 16, 17, 100, 1024])
    func rowCosinesMatchFloat64(columns: Int) {
        var rng = SplitMix64(state: UInt64(columns))
        let rows = 37
        var a = (0..<(rows * columns)).map { _ in rng.normal() }
        var b = a.map { $0 * 0.5 + rng.normal() }
        // Row 3 is zero in a and row 5 in b: neither counts.
        for j in 0..<columns { a[3 * columns + j] = 0 }
        for j in 0..<columns { b[5 * columns + j] = 0 }
        a[7 * columns] = 1e4  // a heavy-tailed value
        var expectedSum = 0.0
        var expectedCount = 0
        for r in 0..<rows {
            var (d, p, q) = (0.0, 0.0, 0.0)
            for j in 0..<columns {
                let (x, y) = (Double(a[r * columns + j]), Double(b[r * columns + j]))
                (d, p, q) = (d + x * y, p + x * x, q + y * y)
            }
            if p > 0 && q > 0 {
                expectedSum += d / (p.squareRoot() * q.squareRoot())
                expectedCount += 1
            }
        }
        var sum = 1.5  // added to, not replaced
        var count = 2
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                PairKernels.addRowCosines(pa, pb, rows: rows, columns: columns, sum: &sum, count: &count)
            }
        }
        #expect(count == 2 + expectedCount)
        #expect(expectedCount == rows - 2)
        #expect(abs(sum - 1.5 - expectedSum) <= 1e-6 * Double(rows))
    }
}
