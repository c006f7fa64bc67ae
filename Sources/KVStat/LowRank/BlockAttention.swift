// Attention outputs of a few sampled queries over keys and values that arrive block by block, for several
// variants of the cache at once (the exact one and each compressed one), so that `QuantizationSweep` can price
// every scheme's attention-output error in its single streaming pass. Same sampling, GQA mapping and masking as
// `AttentionEvaluator`; the logits are SGEMM products (float32), the softmax and its sums float64.
import Foundation
import KVNumerics

/// softmax(QKᵀ/√d)V of the sampled queries of one sequence, accumulated over key/value blocks with a running
/// maximum (the streaming form of attention), for `variants` versions of K and V.
struct BlockAttention {
    let queryHeads: Int, kvHeads: Int, headDim: Int
    /// Sampled query positions (token positions in the sequence).
    let positions: [Int]
    let causal: Bool
    /// Per KV head g: the `positions.count · perKV` query rows (query i, head g·perKV + j at row i·perKV + j),
    /// each `headDim` wide and already multiplied by 1/√d.
    private var queries: [[Float]]
    /// Per (variant, KV head) slot `v·kvHeads + g`: running maximum and sum of weights per query row, and the
    /// weighted values (row × d), flat so that the inner loops run on buffers.
    private var maximum: [Double], sum: [Double], accumulator: [Double]
    private var perKV: Int { queryHeads / kvHeads }
    private var queryRows: Int { positions.count * perKV }

    /// `q`: the sampled queries, `positions.count × queryHeads × headDim` row-major.
    init(q: [Float], positions: [Int], queryHeads: Int, kvHeads: Int, headDim: Int, causal: Bool, variants: Int) {
        (self.queryHeads, self.kvHeads, self.headDim, self.positions, self.causal) = (
            queryHeads, kvHeads, headDim, positions, causal
        )
        let perKV = queryHeads / kvHeads
        let scale = Float(1 / Double(headDim).squareRoot())
        queries = (0..<kvHeads).map { g in
            var rows = [Float](repeating: 0, count: positions.count * perKV * headDim)
            for i in positions.indices {
                for j in 0..<perKV {
                    let source = (i * queryHeads + g * perKV + j) * headDim
                    let target = (i * perKV + j) * headDim
                    for c in 0..<headDim { rows[target + c] = q[source + c] * scale }
                }
            }
            return rows
        }
        let slots = variants * kvHeads * positions.count * perKV
        maximum = [Double](repeating: -.infinity, count: slots)
        sum = [Double](repeating: 0, count: slots)
        accumulator = [Double](repeating: 0, count: slots * headDim)
    }

    /// Adds one block of `rows` keys and values (`rows × kvHeads·headDim` each) of variant `v`, token positions
    /// `start ..< start + rows`; rows with `masked[t]` are left out (non-finite in the dump).
    mutating func add(variant v: Int, keys: [Float], values: [Float], rows: Int, start: Int, masked: [Bool]) {
        let (d, n, width, perKV) = (headDim, queryRows, kvHeads * headDim, perKV)
        guard rows > 0, n > 0 else { return }
        var k = [Float](repeating: 0, count: rows * d)
        var val = [Float](repeating: 0, count: rows * d)
        var logits = [Float](repeating: 0, count: n * rows)
        var weighted = [Float](repeating: 0, count: n * d)
        // The last key each query row may see: causal mask as a count of the block's rows.
        let visible = (0..<n).map { a in causal ? min(max(positions[a / perKV] - start + 1, 0), rows) : rows }
        for g in 0..<kvHeads {
            for t in 0..<rows {
                for c in 0..<d {
                    k[t * d + c] = keys[t * width + g * d + c]
                    val[t * d + c] = values[t * width + g * d + c]
                }
            }
            queries[g].withUnsafeBufferPointer { q in
                k.withUnsafeBufferPointer { kb in
                    logits.withUnsafeMutableBufferPointer {
                        BLAS.multiply(q, kb, m: n, n: rows, k: d, transposeB: true, into: $0)
                    }
                }
            }
            let base = (v * kvHeads + g) * n
            logits.withUnsafeMutableBufferPointer { l in
                maximum.withUnsafeMutableBufferPointer { m in
                    sum.withUnsafeMutableBufferPointer { s in
                        accumulator.withUnsafeMutableBufferPointer { acc in
                            for a in 0..<n {
                                let row = a * rows
                                let seen = visible[a]
                                var blockMax = -Double.infinity
                                for t in 0..<seen where !masked[t] { blockMax = max(blockMax, Double(l[row + t])) }
                                let old = m[base + a]
                                let top = max(old, blockMax)
                                var total = 0.0
                                for t in 0..<rows {
                                    if t >= seen || masked[t] || top == -.infinity {
                                        l[row + t] = 0
                                    } else {
                                        let w = exp(Double(l[row + t]) - top)
                                        total += w
                                        l[row + t] = Float(w)
                                    }
                                }
                                guard top > -.infinity else { continue }
                                let rescale = old == -.infinity ? 0 : exp(old - top)
                                m[base + a] = top
                                s[base + a] = s[base + a] * rescale + total
                                if rescale != 1 { for c in 0..<d { acc[(base + a) * d + c] *= rescale } }
                            }
                        }
                    }
                }
            }
            logits.withUnsafeBufferPointer { w in
                val.withUnsafeBufferPointer { vb in
                    weighted.withUnsafeMutableBufferPointer {
                        BLAS.multiply(w, vb, m: n, n: d, k: rows, into: $0)
                    }
                }
            }
            accumulator.withUnsafeMutableBufferPointer { acc in
                for i in 0..<(n * d) { acc[base * d + i] += Double(weighted[i]) }
            }
        }
    }

    /// ‖O − O_v‖²_F and ‖O‖²_F over the sampled queries and heads, O the outputs of variant 0 (the exact cache).
    func squaredError(variant v: Int) -> (error: Double, norm: Double) {
        var (error, norm) = (0.0, 0.0)
        let d = headDim
        for g in 0..<kvHeads {
            for a in 0..<queryRows {
                let (exact, rebuilt) = (g * queryRows + a, (v * kvHeads + g) * queryRows + a)
                let (s0, s1) = (sum[exact], sum[rebuilt])
                for c in 0..<d {
                    let o = s0 > 0 ? accumulator[exact * d + c] / s0 : 0
                    let oh = s1 > 0 ? accumulator[rebuilt * d + c] / s1 : 0
                    error += (o - oh) * (o - oh)
                    norm += o * o
                }
            }
        }
        return (error, norm)
    }
}
