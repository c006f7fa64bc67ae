// HalfFloat.convertBox against a direct reference: every float16 bit pattern, bfloat16 and float32 in both byte
// orders, and boxes scattered in every axis permutation (the transposition into rows), element by element.
import Testing

@testable import KVNumerics

@Suite struct BoxConvertTests {
    /// The reference widening of one stored element (native byte order).
    private func reference(_ format: HalfFloat.StoredFormat, _ bits: UInt32) -> Float {
        switch format {
        case .float16: return Float(Float16(bitPattern: UInt16(truncatingIfNeeded: bits)))
        case .bfloat16: return Float(bitPattern: bits << 16)
        case .float32: return Float(bitPattern: bits)
        }
    }

    private func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }

    @Test func everyHalfBitPatternWidensExactly() {
        let source = (0...UInt16.max).map { $0 }
        var out = [Float](repeating: 0, count: source.count)
        source.withUnsafeBytes { s in
            out.withUnsafeMutableBufferPointer { d in
                HalfFloat.convertBox(
                    .float16, bigEndian: false, source: s.baseAddress!, sourceStrides: [1],
                    destination: d.baseAddress!, destinationStrides: [1], counts: [source.count])
            }
        }
        let wrong = source.indices.filter { !same(out[$0], reference(.float16, UInt32(source[$0]))) }
        #expect(wrong.isEmpty, "first wrong bit pattern: \(wrong.first.map { String(source[$0], radix: 16) } ?? "-")")
    }

    @Test(arguments: [HalfFloat.StoredFormat.float16, .bfloat16, .float32], [false, true])
    func permutedBoxesMatchElementByElement(format: HalfFloat.StoredFormat, bigEndian: Bool) {
        var generator = SplitMix64(state: 42)
        let counts = [2, 3, 5, 17]  // 17: runs that are not a multiple of the vector width
        let total = counts.reduce(1, *)
        let width = format == .float32 ? 4 : 2
        // Stored elements in native order (random bit patterns), written in the byte order under test.
        let native = (0..<total).map { _ in UInt32(truncatingIfNeeded: generator.next()) & (width == 2 ? 0xffff : ~0) }
        var bytes = [UInt8](repeating: 0, count: total * width)
        for (i, v) in native.enumerated() {
            for b in 0..<width {
                let shift = bigEndian ? (width - 1 - b) * 8 : b * 8
                bytes[i * width + b] = UInt8(truncatingIfNeeded: v >> UInt32(shift))
            }
        }
        let sourceStrides = [255, 85, 17, 1]
        for permutation in permutations([0, 1, 2, 3]) {
            // Destination: the same box with its axes stored in `permutation` order (dense there).
            var destinationStrides = [Int](repeating: 0, count: 4)
            var stride = 1
            for axis in permutation.reversed() {
                destinationStrides[axis] = stride
                stride *= counts[axis]
            }
            var out = [Float](repeating: .nan, count: total)
            bytes.withUnsafeBytes { s in
                out.withUnsafeMutableBufferPointer { d in
                    HalfFloat.convertBox(
                        format, bigEndian: bigEndian, source: s.baseAddress!, sourceStrides: sourceStrides,
                        destination: d.baseAddress!, destinationStrides: destinationStrides, counts: counts)
                }
            }
            var wrong = 0
            for i0 in 0..<counts[0] {
                for i1 in 0..<counts[1] {
                    for i2 in 0..<counts[2] {
                        for i3 in 0..<counts[3] {
                            let s = i0 * 255 + i1 * 85 + i2 * 17 + i3
                            let d = zip([i0, i1, i2, i3], destinationStrides).reduce(0) { $0 + $1.0 * $1.1 }
                            if !same(out[d], reference(format, native[s])) { wrong += 1 }
                        }
                    }
                }
            }
            #expect(wrong == 0, "permutation \(permutation): \(wrong) of \(total) wrong")
        }
    }

    @Test func aSubBoxOfALargerSourceLandsAtStridedRows() {
        // A [3 heads, 4 tokens, 8 dims] chunk; read heads 1..<3, tokens 1..<3 into rows of 2 heads × 8 dims.
        let chunk = (0..<(3 * 4 * 8)).map { Float16(Float($0)).bitPattern }
        var rows = [Float](repeating: -1, count: 2 * 16)
        chunk.withUnsafeBytes { s in
            rows.withUnsafeMutableBufferPointer { d in
                HalfFloat.convertBox(
                    .float16, bigEndian: false, source: s.baseAddress! + (1 * 32 + 1 * 8) * 2,
                    sourceStrides: [32, 8, 1], destination: d.baseAddress!, destinationStrides: [8, 16, 1],
                    counts: [2, 2, 8])
            }
        }
        var want: [Float] = []
        for t in 1..<3 { for h in 1..<3 { for d in 0..<8 { want.append(Float(h * 32 + t * 8 + d)) } } }
        #expect(rows == want)
    }
}

/// All orderings of `items`.
private func permutations(_ items: [Int]) -> [[Int]] {
    if items.count <= 1 { return [items] }
    return items.indices.flatMap { i -> [[Int]] in
        var rest = items
        let first = rest.remove(at: i)
        return permutations(rest).map { [first] + $0 }
    }
}
