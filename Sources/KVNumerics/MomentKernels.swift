// Swift entry points of the one-pass block kernels (CKernels/MomentKernels.h): channel moments, row norms,
// column sums, max |x|, the non-finite row scan and float32 → float64 accumulation, each split over the
// machine's cores (channel ranges or row ranges) when the block is large enough to pay for the threads.
internal import CKernels
import Dispatch
import Foundation

/// Vectorised block loops of the streaming statistics. Every function reads its block once; results do not
/// depend on the number of cores (each output is formed by one thread, in the same order, whatever the split).
public enum MomentKernels {
    /// One block's per-channel central moments: `count` rows, mean μ and Σ(x − μ)ᵏ for k = 2, 3, 4.
    public struct BlockMoments: Sendable, Equatable {
        public var count: Int
        public var mean: [Double]
        public var m2: [Double]
        public var m3: [Double]
        public var m4: [Double]
    }

    /// The builds of the kernels that run on this CPU: "AVX-512", "AVX2+FMA" or "baseline".
    public static var instructionSet: String {
        ["baseline", "AVX2+FMA", "AVX-512"][Int(kv_moment_kernels_instruction_set())]
    }

    /// Caps the builds used from now on (2 AVX-512, 1 AVX2+FMA, 0 baseline; 2 by default), process-wide: for
    /// tests that check every build.
    static func limitInstructionSet(_ level: Int) { kv_moment_kernels_limit(Int32(level)) }

    /// Blocks below this many values run on one thread (a `concurrentPerform` costs ~10–50 µs).
    static let parallelThreshold = 1 << 16

    /// Central moments of the `rows × columns` row-major block `values` over the rows not in `excludedRows`,
    /// and `maxAbs[j] = max(maxAbs[j], max |x| of channel j)` over those rows. Float64 from the exact values,
    /// in chunks of `KV_MOMENT_CHUNK_ROWS` rows combined pairwise (see `kv_channel_moments`); split over
    /// channel ranges.
    public static func channelMoments(
        _ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int, excludedRows: [Int], maxAbs: inout [Float]
    ) -> BlockMoments {
        precondition(values.count >= rows * columns && maxAbs.count == columns)
        var result = BlockMoments(
            count: 0, mean: [Double](repeating: 0, count: columns), m2: [Double](repeating: 0, count: columns),
            m3: [Double](repeating: 0, count: columns), m4: [Double](repeating: 0, count: columns))
        guard rows > 0, columns > 0, let base = values.baseAddress else { return result }
        var flags: [UInt8] = []
        if !excludedRows.isEmpty {
            flags = [UInt8](repeating: 0, count: rows)
            for r in excludedRows where r >= 0 && r < rows { flags[r] = 1 }
        }
        var counted = 0
        flags.withUnsafeBufferPointer { f in
            // An empty array's buffer may still have a base address: no flags means NULL (every row counts).
            let excluded = flags.isEmpty ? nil : f.baseAddress
            maxAbs.withUnsafeMutableBufferPointer { peak in
                result.mean.withUnsafeMutableBufferPointer { mean in
                    result.m2.withUnsafeMutableBufferPointer { m2 in
                        result.m3.withUnsafeMutableBufferPointer { m3 in
                            result.m4.withUnsafeMutableBufferPointer { m4 in
                                // Every piece counts the same rows: piece 0 reports them.
                                withUnsafeMutablePointer(to: &counted) { total in
                                    split(columns, work: rows * columns, alignment: 16) { piece, range in
                                        let n = kv_channel_moments(
                                            base, rows, columns, range.lowerBound, range.count, excluded,
                                            peak.baseAddress, mean.baseAddress, m2.baseAddress, m3.baseAddress,
                                            m4.baseAddress)
                                        if piece == 0 { total.pointee = Int(n) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        result.count = counted
        return result
    }

    /// Σⱼ x²ᵣⱼ of each row r of the `rows × columns` block, in float64 from the exact squares; split over row
    /// ranges.
    public static func rowSumsOfSquares(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int) -> [Double] {
        precondition(values.count >= rows * columns)
        return [Double](unsafeUninitializedCapacity: rows) { out, initialized in
            if let base = values.baseAddress, let target = out.baseAddress, rows > 0 {
                split(rows, work: rows * columns) { _, range in
                    kv_row_sum_squares(
                        base + range.lowerBound * columns, range.count, columns, target + range.lowerBound)
                }
            } else {
                for r in 0..<rows { out[r] = 0 }
            }
            initialized = rows
        }
    }

    /// For each segment (rows `rows` of the block, accumulators starting at `target`):
    /// `sums[target + j] += Σ_{r ∈ rows} f(x_rj)` for every channel j, in float64, with f(x) = |x| when
    /// `absolute` and x otherwise; split over channel ranges (each thread walks every segment).
    public static func addColumnSums(
        _ values: UnsafeBufferPointer<Float>, columns: Int, segments: [(rows: Range<Int>, target: Int)],
        absolute: Bool, into sums: UnsafeMutableBufferPointer<Double>
    ) {
        guard columns > 0, let base = values.baseAddress, let out = sums.baseAddress else { return }
        for s in segments {
            precondition(s.rows.upperBound * columns <= values.count && s.target + columns <= sums.count)
        }
        let work = segments.reduce(0) { $0 + $1.rows.count } * columns
        split(columns, work: work, alignment: 16) { _, range in
            for s in segments where !s.rows.isEmpty {
                kv_column_sums(
                    base + s.rows.lowerBound * columns, s.rows.count, columns, range.lowerBound, range.count,
                    absolute ? 1 : 0, out + s.target)
            }
        }
    }

    /// The largest |x| of `values` (0 when empty); values must not be NaN.
    public static func maxMagnitude(_ values: UnsafeBufferPointer<Float>) -> Float {
        guard let base = values.baseAddress, values.count > 0 else { return 0 }
        let used = threads
        var pieces = [Float](repeating: 0, count: used)
        pieces.withUnsafeMutableBufferPointer { p in
            let out = p.baseAddress!
            split(values.count, work: values.count, alignment: 16, pieces: used) { piece, range in
                out[piece] = kv_max_abs(base + range.lowerBound, range.count)
            }
        }
        return pieces.max() ?? 0
    }

    /// Zeroes the rows of the `rows × columns` block that hold NaN or ±Inf; returns their indices (ascending)
    /// and the number of non-finite values. Split over row ranges.
    public static func zeroNonFiniteRows(
        _ values: UnsafeMutableBufferPointer<Float>, rows: Int, columns: Int
    ) -> (excluded: [Int], nonFinite: Int) {
        precondition(values.count >= rows * columns)
        guard rows > 0, columns > 0, let base = values.baseAddress else { return ([], 0) }
        // Piece p writes its rows' indices from found[range.lowerBound] on, and (range, rows, values) to pieces[p].
        var found = [Int64](repeating: 0, count: rows)
        let used = threads
        var pieces = [(Range<Int>, Int, Int)](repeating: (0..<0, 0, 0), count: used)
        found.withUnsafeMutableBufferPointer { f in
            pieces.withUnsafeMutableBufferPointer { p in
                let (out, report) = (f.baseAddress!, p.baseAddress!)
                split(rows, work: rows * columns, pieces: used) { piece, range in
                    var bad: Int64 = 0
                    let n = kv_zero_nonfinite_rows(
                        base + range.lowerBound * columns, range.count, columns, out + range.lowerBound, &bad)
                    report[piece] = (range, Int(n), Int(bad))
                }
            }
        }
        var excluded: [Int] = []
        var nonFinite = 0
        for (range, n, bad) in pieces where n > 0 {
            excluded += found[range.lowerBound..<(range.lowerBound + n)].map { range.lowerBound + Int($0) }
            nonFinite += bad
        }
        return (excluded, nonFinite)
    }

    /// `target[i] += multiplier · source[i]` in float64, split over index ranges.
    static func addScaled(
        _ source: UnsafeBufferPointer<Float>, into target: UnsafeMutableBufferPointer<Double>, multiplier: Double
    ) {
        precondition(target.count >= source.count)
        guard let s = source.baseAddress, let t = target.baseAddress, source.count > 0 else { return }
        split(source.count, work: source.count, alignment: 16) { _, range in
            kv_add_scaled(t + range.lowerBound, s + range.lowerBound, range.count, multiplier)
        }
    }

    /// Adds the lower triangle of the n × n float32 `square` (upper triangle column-major, as SSYRK writes
    /// it) times `multiplier` to the packed float64 lower triangle `packed`; split over row ranges of equal
    /// area.
    static func addPackedLower(
        _ square: UnsafeBufferPointer<Float>, n: Int, into packed: UnsafeMutableBufferPointer<Double>,
        multiplier: Double
    ) {
        precondition(square.count >= n * n && packed.count >= n * (n + 1) / 2)
        guard n > 0, let s = square.baseAddress, let p = packed.baseAddress else { return }
        let used = n * n >= parallelThreshold ? min(threads, n) : 1
        // Row i holds i + 1 values: piece k ends at the row where the triangle's area reaches (k + 1)/used.
        let bounds = (0...used).map { k in
            k == used ? n : Int((Double(k) / Double(used)).squareRoot() * Double(n))
        }
        run(pieces: used) { piece in
            kv_add_packed_lower(p, s, n, bounds[piece], bounds[piece + 1], multiplier)
        }
    }

    // MARK: threads

    /// Threads a split uses: the cores, or fewer when BLAS was limited to fewer threads (`--threads`,
    /// `kvstat batch --jobs`), as for the reader's workers, so that a run asked to use one core uses one.
    static var threads: Int { max(1, min(ProcessInfo.processInfo.activeProcessorCount, BLAS.threads)) }

    /// Splits 0..<count into consecutive ranges (boundaries multiples of `alignment`, so no two threads write
    /// one cache line of an output indexed like the range) and calls `body(piece, range)` for each, on
    /// `pieces` threads (at most) when `work` (values touched) is at least `parallelThreshold`; returns when all
    /// are done. Pieces are numbered from 0, fewer than `pieces`.
    static func split(
        _ count: Int, work: Int, alignment: Int = 1, pieces: Int = threads, _ body: (Int, Range<Int>) -> Void
    ) {
        guard count > 0 else { return }
        let units = (count + alignment - 1) / alignment
        let used = work >= parallelThreshold ? max(1, min(pieces, units)) : 1
        run(pieces: used) { piece in
            let start = min(count, units * piece / used * alignment)
            let end = piece == used - 1 ? count : min(count, units * (piece + 1) / used * alignment)
            body(piece, start..<end)
        }
    }

    /// `body(piece)` for piece in 0..<pieces, concurrently when pieces > 1.
    static func run(pieces: Int, _ body: (Int) -> Void) {
        guard pieces > 1 else {
            if pieces == 1 { body(0) }
            return
        }
        // @unchecked Sendable: concurrentPerform returns only after every piece has finished, so the closure
        // (and the pointers it captures) outlives no call; pieces write disjoint ranges of their outputs.
        struct Work: @unchecked Sendable { let body: (Int) -> Void }
        withoutActuallyEscaping(body) { body in
            let work = Work(body: body)
            DispatchQueue.concurrentPerform(iterations: pieces) { work.body($0) }
        }
    }
}
