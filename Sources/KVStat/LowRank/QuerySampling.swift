// Which query positions attention-level measures look at: the one sampling rule that fit-lowrank's attention
// errors (`AttentionEvaluator`, `QuantizationSweep`) and analyze's attention-mass sinks (`AttentionMass`) share.

/// Evenly spread query positions.
public enum QuerySampling {
    /// Up to `count` of `positions` (a sequence's valid token positions, increasing), spread evenly: element
    /// ⌊i·(m − 1)/(n − 1)⌋ for i = 0 … n − 1, n = min(count, m), m = positions.count, so the first and the last
    /// are included; n = 1 takes the last. Empty when `count` ≤ 0 or there are no positions.
    public static func evenly(_ positions: [Int], count: Int) -> [Int] {
        let n = min(max(count, 0), positions.count)
        return (0..<n).map { positions[n == 1 ? positions.count - 1 : ($0 * (positions.count - 1)) / (n - 1)] }
    }
}
