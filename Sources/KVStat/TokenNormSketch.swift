// Per-token L2 norms in bounded memory: a log-spaced histogram (for the median) and the largest norms with
// their positions (attention sinks / massive activations).
import Foundation

/// A mergeable sketch of the distribution of per-token norms ‖x_t‖₂.
///
/// The histogram has `binsPerOctave` bins per factor of two, so the median is known to within
/// 2^(1/64) ≈ 1.1 %; the `capacity` largest norms are kept exactly with their (sequence, token) positions.
/// Rows excluded for non-finite values (all zero) are not counted.
public struct TokenNormSketch: Accumulator {
    public struct Entry: Sendable, Codable, Equatable {
        public var sequence: Int
        public var token: Int
        public var norm: Double
    }

    static let binsPerOctave = 64.0
    static let minExponent = -64.0
    static let octaves = 128

    public internal(set) var histogram: [Int]
    public internal(set) var count = 0
    /// The largest norms seen, descending.
    public internal(set) var largest: [Entry] = []
    public let capacity: Int

    public init(capacity: Int = 64) {
        self.capacity = capacity
        histogram = [Int](repeating: 0, count: TokenNormSketch.octaves * Int(TokenNormSketch.binsPerOctave))
    }

    static func bin(_ norm: Double) -> Int {
        let position = (log2(norm) - minExponent) * binsPerOctave
        return min(max(Int(position), 0), octaves * Int(binsPerOctave) - 1)
    }

    public mutating func fold(_ block: TokenBlock) {
        let c = block.columns
        var row = 0
        for run in block.runs {
            for i in 0..<run.count {
                var s: Float = 0
                for j in 0..<c { let x = block.values[(row + i) * c + j]; s += x * x }
                let norm = Double(s).squareRoot()
                if norm > 0 { add(Entry(sequence: run.sequence, token: run.start + i, norm: norm)) }
            }
            row += run.count
        }
    }

    mutating func add(_ entry: Entry) {
        histogram[TokenNormSketch.bin(entry.norm)] += 1
        count += 1
        if largest.count < capacity || entry.norm > largest[largest.count - 1].norm {
            let index = largest.firstIndex { $0.norm < entry.norm } ?? largest.count
            largest.insert(entry, at: index)
            if largest.count > capacity { largest.removeLast() }
        }
    }

    public mutating func merge(_ other: TokenNormSketch) {
        for i in histogram.indices { histogram[i] += other.histogram[i] }
        count += other.count
        largest = Array((largest + other.largest).sorted { $0.norm > $1.norm }.prefix(capacity))
    }

    /// The median norm, as the geometric centre of the histogram bin holding it.
    public var median: Double {
        guard count > 0 else { return 0 }
        var seen = 0
        for (i, n) in histogram.enumerated() {
            seen += n
            if 2 * seen >= count {
                return exp2((Double(i) + 0.5) / TokenNormSketch.binsPerOctave + TokenNormSketch.minExponent)
            }
        }
        return 0
    }

    /// Tokens whose norm exceeds `factor` × the median (at most `capacity` of them), and how many exceed it
    /// in all (from the histogram, exact to the bin).
    public func sinks(factor: Double) -> (entries: [Entry], count: Int) {
        let threshold = factor * median
        let entries = largest.filter { $0.norm > threshold }
        let binned = histogram[(TokenNormSketch.bin(threshold) + 1)...].reduce(0, +)
        return (entries, max(entries.count, binned))
    }

}
