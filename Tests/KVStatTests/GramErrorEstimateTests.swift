// The sweep's error pricing from Grams: the eigenvalue route (`errorSquaredOnFittedGram`, for the Gram a
// projection was fitted on) against the general three-product route and against ‖X' − X'PPᵀ‖² computed
// directly from the tokens in float64, for an xKV-like two-layer unit and a one-head unit, centred or not.
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite struct GramErrorEstimateTests {
    static let channelsPerLayer = 8
    static let rows = 300

    /// Seeded rows of a two-layer group ([layer 0 channels | layer 1 channels]) with a decaying spectrum,
    /// a shared component across the layers and a non-zero mean (so centring matters).
    static func tokens() -> [Float] {
        var rng = Xorshift(state: 41)
        let width = 2 * channelsPerLayer
        let latent = (0..<(rows * 3)).map { _ in rng.normal() }
        let mixing = (0..<(3 * width)).map { _ in rng.normal() }
        return (0..<(rows * width)).map { index in
            let (t, c) = (index / width, index % width)
            let shared = (0..<3).reduce(Float(0)) { $0 + latent[t * 3 + $1] * mixing[$1 * width + c] }
            return 0.5 + Float(c % 5) * 0.1 + shared + 0.05 * Float(c + 1) * rng.normal()
        }
    }

    /// (layers, channels within each layer, centred)
    static let units: [([Int], Range<Int>, Bool)] = [
        ([0, 1], 0..<8, false), ([0, 1], 0..<8, true), ([1], 2..<6, false), ([1], 2..<6, true),
    ]

    @Test(arguments: 0..<4)
    func eigenvalueRouteMatchesGeneralRouteAndDirectErrors(unitIndex: Int) throws {
        let (layers, channels, centred) = Self.units[unitIndex]
        // The Gram of the unit's layers side by side (LayerGroupGrams), from their columns of the tokens.
        let all = Self.tokens()
        let width = layers.count * Self.channelsPerLayer
        let columns = layers.flatMap { l in (0..<Self.channelsPerLayer).map { l * Self.channelsPerLayer + $0 } }
        let x = (0..<(Self.rows * width)).map { all[($0 / width) * 2 * Self.channelsPerLayer + columns[$0 % width]] }
        var gram = GramAccumulator(channels: width)
        let runs = [TokenRun(sequence: 0, start: 0, count: Self.rows)][...]
        x.withUnsafeBufferPointer {
            gram.fold(
                TokenBlock(
                    rows: Self.rows, columns: width, values: $0, runs: runs, excludedRows: [], nonFiniteValues: 0))
        }
        // The unit's dimensions in the group's columns, and its matrix as ProjectionFitter builds it.
        let index = layers.indices.flatMap { position in channels.map { position * Self.channelsPerLayer + $0 } }
        let dim = index.count
        let full = gram.matrix(centered: centred)
        var m = Matrix<Double>(rows: dim, columns: dim)
        for i in 0..<dim { for j in 0..<dim { m[i, j] = full[index[i], index[j]] } }
        let stored = dim - 1
        let eigen = try SymmetricEigen(m, topVectors: stored)
        let v = try #require(eigen.vectors)
        let mean = centred ? index.map { Float(gram.mean[$0]) } : nil
        let projection = Projection(
            kind: .key, layers: layers, channels: channels, heads: nil,
            basis: Matrix(rows: dim, columns: stored, values: v.values.map { Float($0) }), mean: mean,
            eigenvalues: eigen.values)
        let ranks = [0, 1, stored - 1, stored]
        let fast = GramErrorEstimate.errorSquaredOnFittedGram(
            projection, ranks: ranks, gram: gram, channelsPerLayer: Self.channelsPerLayer)
        let general = GramErrorEstimate.errorSquared(
            projection, ranks: ranks, gram: gram, channelsPerLayer: Self.channelsPerLayer)
        // Direct: per slice, Σ_t ‖x'_S − (x'PₖPₖᵀ)_S‖² in float64 with the stored float32 P and μ.
        let p = projection.basis.values.map(Double.init)
        let energy = (0..<Self.rows).reduce(0.0) { s, t in
            s + index.reduce(0.0) { $0 + pow(Double(x[t * width + $1]), 2) }
        }
        for (ri, k) in ranks.enumerated() {
            var direct = [Double](repeating: 0, count: layers.count)
            for t in 0..<Self.rows {
                let xc = (0..<dim).map { Double(x[t * width + index[$0]]) - Double(mean?[$0] ?? 0) }
                let latent = (0..<k).map { j in (0..<dim).reduce(0.0) { $0 + xc[$1] * p[$1 * stored + j] } }
                for i in 0..<dim {
                    let rebuilt = (0..<k).reduce(0.0) { $0 + latent[$1] * p[i * stored + $1] }
                    direct[i / channels.count] += (xc[i] - rebuilt) * (xc[i] - rebuilt)
                }
            }
            for s in layers.indices {
                #expect(abs(fast[ri][s] - direct[s]) <= 1e-6 * energy, "rank \(k), slice \(s)")
                #expect(abs(fast[ri][s] - general[ri][s]) <= 1e-6 * energy)
            }
        }
        // Rank 0 leaves every slice's whole (centred) energy; more vectors never leave more.
        #expect(fast[0].reduce(0, +) > fast[ranks.count - 1].reduce(0, +))
    }
}
