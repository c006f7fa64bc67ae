// The vectorised fake-quantization kernels (CKernels/QuantKernels.c, behind LatentQuantizer.quantizeColumns and
// quantizeRows) against the scalar definition in LatentQuantizer (`encode`, then `value` for each code):
// bit-identical on seeded data of many scales, constant groups, float16 overflow (infinite scale),
// float16 subnormal ranges, NaN values, groups that do not divide the width, one row and one column, on every
// build of the kernels this CPU runs.
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite struct QuantKernelTests {
    /// The scalar definition (`LatentQuantizer.encode`: per group, min and max skipping NaN, float16-rounded scale
    /// and minimum, each value's code), each code back to its value.
    static func reference(_ values: [Float], groups: [[Int]], bits: Int) -> [Float] {
        let quantizer = LatentQuantizer(bits: bits, group: 1)
        var out = values
        values.withUnsafeBufferPointer { values in
            for group in groups {
                let (scale, zero, codes) = quantizer.encode(values, at: group)
                for (i, code) in zip(group, codes) { out[i] = quantizer.value(code, scale: scale, zero: zero) }
            }
        }
        return out
    }

    /// The first index where `a` and `b` differ bitwise (NaN equal to NaN), with both values; nil when none.
    static func firstDifference(_ a: [Float], _ b: [Float]) -> String? {
        guard a.count == b.count else { return "lengths \(a.count) and \(b.count)" }
        let i = a.indices.first { !(a[$0].bitPattern == b[$0].bitPattern || (a[$0].isNaN && b[$0].isNaN)) }
        return i.map { "index \($0): \(a[$0]) against \(b[$0])" }
    }

    /// Seeded blocks: Gaussian-like values at `scale` plus an offset, with the features named in the header.
    static func block(rows: Int, columns: Int, scale: Float, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func uniform() -> Float {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Float(state >> 40) / Float(1 << 24)
        }
        var x = (0..<(rows * columns)).map { _ in (uniform() + uniform() + uniform() - 1.5) * scale + 0.3 * scale }
        if columns > 2 {
            for r in 0..<rows { x[r * columns + 1] = 7 }  // a constant channel
        }
        if rows * columns > 10 {
            x[3] = .nan
            x[rows * columns / 2] = 0
        }
        return x
    }

    func check(rows: Int, columns: Int, scale: Float, bits: Int, group: Int, seed: UInt64) {
        let x = Self.block(rows: rows, columns: columns, scale: scale, seed: seed)
        let quantizer = LatentQuantizer(bits: bits, group: group)
        // Keys: per channel over row groups within two segments (a sequence boundary at rows / 3).
        let boundary = rows / 3
        let segments = [0..<boundary, boundary..<rows].filter { !$0.isEmpty }
        var columnGroups: [[Int]] = []
        for segment in segments {
            for start in stride(from: segment.lowerBound, to: segment.upperBound, by: group) {
                let end = min(start + group, segment.upperBound)
                for c in 0..<columns { columnGroups.append((start..<end).map { $0 * columns + c }) }
            }
        }
        var keys = x
        keys.withUnsafeMutableBufferPointer { quantizer.quantizeColumns($0, columns: columns, segments: segments) }
        #expect(
            Self.firstDifference(keys, Self.reference(x, groups: columnGroups, bits: bits)) == nil,
            "columns rows \(rows) × \(columns), scale \(scale), \(bits) bits, group \(group)")
        // Values: per row over column groups.
        var rowGroups: [[Int]] = []
        for r in 0..<rows {
            for start in stride(from: 0, to: columns, by: group) {
                rowGroups.append((start..<min(start + group, columns)).map { r * columns + $0 })
            }
        }
        var values = x
        values.withUnsafeMutableBufferPointer { quantizer.quantizeRows($0, rows: rows, columns: columns) }
        #expect(
            Self.firstDifference(values, Self.reference(x, groups: rowGroups, bits: bits)) == nil,
            "rows \(rows) × \(columns), scale \(scale), \(bits) bits, group \(group)")
    }

    func checkAll() {
        var seed: UInt64 = 1
        // 1e-6: float16-subnormal parameters; 1e5: a range beyond float16 (infinite scale, NaN values back).
        for scale: Float in [1, 1e-6, 3e-3, 250, 1e5] {
            for bits in [2, 4, 8] {
                for group in [1, 32, 37, 128] {
                    check(rows: 70, columns: 300, scale: scale, bits: bits, group: group, seed: seed)
                    seed += 1
                }
            }
        }
        check(rows: 1, columns: 1, scale: 1, bits: 4, group: 32, seed: 99)
        check(rows: 5, columns: 1, scale: 1, bits: 2, group: 2, seed: 100)
        check(rows: 1, columns: 513, scale: 2, bits: 8, group: 128, seed: 101)
    }

    @Test func kernelsMatchTheScalarDefinition() { checkAll() }

    /// The same on each build this CPU can run (baseline, AVX2); the cap is process-wide, and tests running
    /// meanwhile use a lower build, which is equally exact.
    @Test func everyBuildMatches() {
        defer { MomentKernels.limitInstructionSet(2) }
        for level in 0...1 {
            MomentKernels.limitInstructionSet(level)
            checkAll()
        }
    }
}
