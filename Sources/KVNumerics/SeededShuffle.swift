// Seeded permutations: the same seed and stream give the same order on every machine and run, so a shuffled
// control (the xKV null) is reproducible. The uniform deviates come from LAPACK's own generator (dlarnv), not
// from code written here.
internal import CLAPACK

/// Fisher–Yates permutations driven by LAPACK's `dlarnv` (a 48-bit multiplicative congruential generator,
/// uniform on (0, 1)).
public enum SeededShuffle {
    /// A permutation of `0 ..< count`, the same for the same `seed` and `stream` (any integers naming what the
    /// permutation is for: a layer, a chunk). `result[i]` is the index that lands at position i.
    ///
    /// Position i (from the end) takes index ⌊u·(i+1)⌋ of the first i + 1 still unplaced, u uniform on (0, 1):
    /// every permutation is equally likely up to the generator's 2⁻⁴⁸ granularity. Deviates are drawn in
    /// batches of at most 4096, so memory is the permutation itself.
    public static func permutation(count: Int, seed: Int, stream: [Int]) -> [Int] {
        var order = Array(0..<max(count, 0))
        guard count > 1 else { return order }
        var state = lapackSeed(seed: seed, stream: stream)
        var deviates = [Double](repeating: 0, count: min(count, 4096))
        var available = 0
        var i = count - 1
        while i > 0 {
            if available == 0 {
                available = min(deviates.count, i)
                _ = LAPACKE_dlarnv(1, &state, Int32(available), &deviates)
            }
            available -= 1
            let j = min(Int(deviates[available] * Double(i + 1)), i)
            order.swapAt(i, j)
            i -= 1
        }
        return order
    }

    /// dlarnv's seed: four integers in 0 … 4095, the last odd, from an FNV-1a hash of the seed and stream (the
    /// hash only spreads the inputs over the seed space; the deviates are LAPACK's).
    static func lapackSeed(seed: Int, stream: [Int]) -> [Int32] {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for value in [seed] + stream {
            for byte in 0..<8 {
                hash ^= UInt64(truncatingIfNeeded: value >> (8 * byte)) & 0xff
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        return [36, 24, 12, 0].map { Int32(truncatingIfNeeded: (hash >> UInt64($0)) & 0xfff) }.enumerated().map {
            $0.offset == 3 ? $0.element | 1 : $0.element
        }
    }
}
