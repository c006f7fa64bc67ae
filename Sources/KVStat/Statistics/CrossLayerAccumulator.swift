// What a pair of layers needs beyond each layer's own Gram: the cross product XₐᵀX_b (for CKA and
// subspace alignment) and the per-token cosine of the same token's rows (MiniCache's assumption).
import KVNumerics

/// Cross statistics of two layers' matrices over the same token rows.
///
/// `cross = Σ_t a_t b_tᵀ = AᵀB`, formed per block by SGEMM in float32 and accumulated in float64.
/// `cosineSum = Σ_t cos(a_t, b_t)` over tokens where both rows are non-zero (`cosineCount` of them).
/// Blocks beyond float32's safe range are rescaled by powers of two first (see `GramAccumulator`).
/// Merge rule: add everything.
public struct CrossLayerAccumulator: Sendable {
    public let layerA: Int
    public let layerB: Int
    public internal(set) var cross: Matrix<Double>
    public internal(set) var cosineSum = 0.0
    public internal(set) var cosineCount = 0
    /// Rows excluded (NaN/±Inf) in one layer of the pair but not the other. Each layer's Gram and moments are over
    /// its own rows, so when this is not 0 the pair's CKA and alignments would mix two row sets: they are null.
    public internal(set) var unevenRows = 0

    public init(layerA: Int, layerB: Int, channels: Int) {
        self.layerA = layerA
        self.layerB = layerB
        cross = Matrix(rows: channels, columns: channels)
    }

    /// Folds the same tokens' blocks of both layers.
    public mutating func fold(_ a: TokenBlock, _ b: TokenBlock) {
        var scratch: [Float] = []
        fold(a, b, scratch: &scratch)
    }

    /// `fold`, with the caller's float32 scratch for the block product (channels² floats, kept between calls
    /// so that one buffer serves every pair).
    public mutating func fold(_ a: TokenBlock, _ b: TokenBlock, scratch: inout [Float]) {
        countUnevenRows(a, b)
        precondition(a.rows == b.rows && a.columns == b.columns)
        let scaleA = PowerOfTwoScale(maxMagnitude: BLAS.maxMagnitude(a.values))
        let scaleB = PowerOfTwoScale(maxMagnitude: BLAS.maxMagnitude(b.values))
        guard scaleA.isIdentity && scaleB.isIdentity else {
            // Rescaled copies keep the products inside float32; the cosine does not depend on scale.
            let copyA = Self.rescaled(a.values, scaleA)
            let copyB = Self.rescaled(b.values, scaleB)
            copyA.withUnsafeBufferPointer { pa in
                copyB.withUnsafeBufferPointer { pb in
                    fold(
                        pa, pb, rows: a.rows, columns: a.columns, scratch: &scratch,
                        multiplier: scaleA.undo(power: 1) * scaleB.undo(power: 1))
                }
            }
            return
        }
        fold(a.values, b.values, rows: a.rows, columns: a.columns, scratch: &scratch, multiplier: 1)
    }

    private static func rescaled(_ values: UnsafeBufferPointer<Float>, _ scale: PowerOfTwoScale) -> [Float] {
        [Float](unsafeUninitializedCapacity: values.count) { buffer, count in
            scale.apply(values, into: buffer)
            count = values.count
        }
    }

    private mutating func fold(
        _ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, rows: Int, columns c: Int,
        scratch: inout [Float], multiplier: Double
    ) {
        BLAS.accumulateCrossProduct(
            a, b, rows: rows, aColumns: c, bColumns: c, into: &cross, scratch: &scratch,
            multiplier: multiplier)
        PairKernels.addRowCosines(a, b, rows: rows, columns: c, sum: &cosineSum, count: &cosineCount)
    }

    /// Counts the rows excluded in exactly one of the two blocks.
    mutating func countUnevenRows(_ a: TokenBlock, _ b: TokenBlock) {
        guard !a.excludedRows.isEmpty || !b.excludedRows.isEmpty else { return }
        unevenRows += Set(a.excludedRows).symmetricDifference(b.excludedRows).count
    }

    public mutating func merge(_ other: CrossLayerAccumulator) {
        precondition(other.layerA == layerA && other.layerB == layerB)
        for i in cross.values.indices { cross.values[i] += other.cross.values[i] }
        cosineSum += other.cosineSum
        cosineCount += other.cosineCount
        unevenRows += other.unevenRows
    }

    /// Mean per-token cosine; nil when no token had both rows non-zero.
    public var meanCosine: Double? { cosineCount > 0 ? cosineSum / Double(cosineCount) : nil }

}

// MARK: State file: a pair's group holds `cross` (C × C), `cosine_sum`, `cosine_count` and a `layers` attribute.

extension CrossLayerAccumulator {
    public func encode(to group: StateGroup) throws {
        try group.write("cross", cross.values, shape: [cross.rows, cross.columns])
        try group.write("cosine_sum", [cosineSum])
        try group.write("cosine_count", [Int64(cosineCount)])
        try group.write("uneven_rows", [Int64(unevenRows)])
        try group.group.setAttribute("layers", [Double(layerA), Double(layerB)])
    }

    public init(decoding group: StateGroup, layerA: Int, layerB: Int, channels: Int) throws {
        self.init(layerA: layerA, layerB: layerB, channels: channels)
        cross = Matrix(rows: channels, columns: channels, values: try group.read("cross", count: channels * channels))
        cosineSum = try group.read("cosine_sum", count: 1)[0]
        cosineCount = try group.count("cosine_count")
        unevenRows = try group.count("uneven_rows")
    }
}
