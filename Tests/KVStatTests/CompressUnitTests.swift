// The pieces of `kvstat compress` that are not end to end: int4 packing, and the quantizer's codes standing for
// exactly the values its round trip leaves (so a stored cache rebuilds to what eval priced).
import Testing

@testable import KVStat

@Suite struct CompressUnitTests {
    @Test func int4PackingRoundTrips() {
        var generator = SystemRandomNumberGenerator()
        for columns in [1, 2, 7, 16] {
            let rows = 5
            let codes = (0..<(rows * columns)).map { _ in UInt8.random(in: 0...15, using: &generator) }
            let packed = LatentCodes.pack(codes, rows: rows, columns: columns, bits: 4)
            #expect(packed.count == rows * ((columns + 1) / 2))
            #expect(LatentCodes.unpack(packed, rows: rows, columns: columns, bits: 4) == codes)
        }
        // Column 0 in the low nibble.
        #expect(LatentCodes.pack([3, 10], rows: 1, columns: 2, bits: 4) == [0xA3])
        #expect(LatentCodes.pack([1, 2, 3], rows: 1, columns: 3, bits: 8) == [1, 2, 3])
    }

    /// The codes and values of one group against numbers worked out with numpy (float16 scale and minimum,
    /// round((v − min)/scale) clamped to the levels), and a constant group, which is exact.
    @Test(arguments: [
        (4, 0.300048828125, [0, 6, 15, 15], [-1.5, 0.30029296875, 3.000732421875, 3.000732421875]),
        (8, 0.0176544189453125, [0, 99, 255, 255], [-1.5, 0.2477874755859375, 3.0018768310546875, 3.0018768310546875]),
    ] as [(Int, Float, [UInt8], [Float])])
    func codesAndValuesMatchNumpy(bits: Int, scale: Float, codes: [UInt8], rebuilt: [Float]) {
        let quantizer = LatentQuantizer(bits: bits, group: 4)
        let group: [Float] = [-1.5, 0.25, 3.0, 2.999]
        let parameters = quantizer.groupParameters(min: -1.5, max: 3.0)
        #expect(parameters.scale == scale && parameters.zero == -1.5)
        #expect(group.map { quantizer.code($0, scale: scale, zero: -1.5) } == codes)
        #expect(codes.map { quantizer.value($0, scale: scale, zero: -1.5) } == rebuilt)
        var values = group + [7, 7, 7, 7]
        values.withUnsafeMutableBufferPointer { quantizer.quantizeRows($0, rows: 2, columns: 4) }
        #expect(Array(values[0..<4]) == rebuilt && Array(values[4...]) == [7, 7, 7, 7])
    }

    /// Stored rows: the last `window` tokens of each sequence are window rows; key groups never cross a
    /// sequence or a block.
    @Test func storedRowsFollowTheWindowAndBlocks() {
        let runs = TokenRuns(lengths: [10, 3, 0, 7])
        let stored = StoredRows(runs: runs, blockTokens: 8, window: 4, group: 3)
        #expect(stored.windowTokens == 4 + 3 + 4)
        #expect(stored.latentTokens == 6 + 0 + 3)
        let flags = stored.blocks.flatMap { stored.isWindow($0) }
        let expected: [Bool] =
            Array(repeating: false, count: 6) + Array(repeating: true, count: 4) + [true, true, true]
            + [false, false, false, true, true, true, true]
        #expect(flags == expected)
        // Sequence 0's 6 latent rows span blocks 0 (rows 0-5) → groups at 0, 3; sequence 3's at latent 6.
        #expect(stored.keyGroupStarts == [0, 3, 6])
    }
}
