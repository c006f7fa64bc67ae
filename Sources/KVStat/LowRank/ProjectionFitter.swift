// Fits the projections of `kvstat fit-lowrank` from streamed Gram matrices: the top eigenvectors of each
// unit's (optionally centred) Gram, with ranks set by the budget — per unit, or, for matryoshka, allocated
// across every layer, head and kind at once.
import KVNumerics

/// The projections of one fit and how their ranks were chosen.
public struct FittedProjections: Sendable {
    /// One per unit, holding as many vectors as any budget needs (matryoshka: the widest rung).
    public var projections: [Projection]
    /// The rank the budget gives each projection (a prefix of its vectors).
    public var ranks: [Int]
    /// Matryoshka: for each keep ratio of the ladder, the rank of every projection (same order).
    public var ladderRanks: [Double: [Int]] = [:]
    /// Notes for the manifest (e.g. an xKV group shorter than the others).
    public var notes: [String] = []

    public init(projections: [Projection], ranks: [Int], ladderRanks: [Double: [Int]] = [:], notes: [String] = []) {
        (self.projections, self.ranks, self.ladderRanks, self.notes) = (projections, ranks, ladderRanks, notes)
    }

    /// `[rung][projection]`: each projection's rank at every keep ratio of `ladder` — matryoshka's allocation
    /// where it made one, else the per-unit keep-ratio rank (the sweep prices every rung as a prefix).
    func rankTable(ladder: [Double]) -> [[Int]] {
        ladder.map { q in
            ladderRanks[q]
                ?? projections.map {
                    ProjectionFitter.rank(budget: .keepRatio(q), eigenvalues: $0.eigenvalues, dimension: $0.dimension)
                }
        }
    }

    /// The projections without their bases: what memory accounting needs (shapes and ranks), at no memory.
    var shapesOnly: [Projection] {
        projections.map {
            var p = $0
            p.basis = Matrix(rows: 0, columns: 0)
            return p
        }
    }
}

public enum ProjectionFitter {
    /// Layer groups of a fit: G adjacent layers for xKV (the last group may be shorter; noted), else one each.
    public static func groups(of layers: [Int], options: FitOptions) -> (groups: [[Int]], notes: [String]) {
        guard options.method == .xkv else { return (layers.map { [$0] }, []) }
        let g = max(1, options.groupSize)
        let groups = stride(from: 0, to: layers.count, by: g).map { Array(layers[$0..<min($0 + g, layers.count)]) }
        var notes: [String] = []
        if let last = groups.last, last.count < g, groups.count > 1 {
            notes.append(
                "xkv: \(layers.count) layers do not split evenly into groups of \(g); the last group, layers "
                    + "\(IndexList.text(last)), has \(last.count)"
            )
        }
        return (groups, notes)
    }

    /// Fits every unit of every kind from the Grams of `grams[kind][group]` (see `LayerGroupGrams`).
    public static func fit(
        grams: [TensorKind: [GramAccumulator]], groups: [[Int]], heads: [TensorKind: Int], headDim: Int,
        options: FitOptions
    ) throws -> FittedProjections {
        // Units: (kind, group, channel range within each layer, head range). Their matrices are cut from the
        // Grams when needed and dropped after, so memory holds one unit's matrix, not all of them.
        struct Unit {
            var kind: TensorKind
            var group: Int
            var channels: Range<Int>
            var heads: Range<Int>?
            var dimension: Int
        }
        var units: [Unit] = []
        let granularity: Granularity =
            options.method == .matryoshka ? .head : (options.method == .pca ? options.granularity : .layer)
        for kind in grams.keys.sorted() {
            let kindHeads = heads[kind]!
            let channels = kindHeads * headDim
            for gi in grams[kind]!.indices {
                let per = granularity.headsPerUnit(of: kindHeads)
                if per == kindHeads || groups[gi].count > 1 {
                    units.append(
                        Unit(
                            kind: kind, group: gi, channels: 0..<channels, heads: nil,
                            dimension: channels * groups[gi].count))
                    continue
                }
                for h0 in stride(from: 0, to: kindHeads, by: per) {
                    let hs = h0..<min(h0 + per, kindHeads)
                    let cs = (hs.lowerBound * headDim)..<(hs.upperBound * headDim)
                    units.append(Unit(kind: kind, group: gi, channels: cs, heads: hs, dimension: cs.count))
                }
            }
        }
        // The matrix of a unit: its group's (centred) Gram, or the diagonal block of its heads. The last
        // group's full matrix is kept while consecutive units (heads) cut blocks from it; a whole-group unit
        // gets a fresh copy that `SymmetricEigen` consumes (an xKV group's is (G·C)² floats: 128 MiB at 4096).
        var cached: (kind: TensorKind, group: Int, matrix: Matrix<Double>)?
        func matrix(_ unit: Unit) -> Matrix<Double> {
            if unit.heads == nil { return grams[unit.kind]![unit.group].denseMatrix(centered: options.center) }
            if cached?.kind != unit.kind || cached?.group != unit.group {
                cached = (unit.kind, unit.group, grams[unit.kind]![unit.group].denseMatrix(centered: options.center))
            }
            let full = cached!.matrix
            guard unit.heads != nil else { return full }
            let cs = unit.channels
            var block = Matrix<Double>(rows: cs.count, columns: cs.count)
            for i in 0..<cs.count { for j in 0..<cs.count { block[i, j] = full[cs.lowerBound + i, cs.lowerBound + j] } }
            return block
        }
        // Eigenvalues of every unit, then the ranks, then the vectors those ranks need. A rank or keep-ratio
        // budget of a per-unit method fixes the rank up front: one decomposition gives values and vectors.
        let dims = units.map(\.dimension)
        var rankKnown = options.method != .matryoshka
        if case .energy = options.budget { rankKnown = false }
        var values: [[Double]] = []
        var bases: [Matrix<Float>?] = []
        for (u, unit) in units.enumerated() {
            let r = rankKnown ? rank(budget: options.budget, eigenvalues: [], dimension: dims[u]) : 0
            let eigen = try SymmetricEigen(matrix(unit), topVectors: r)
            values.append(eigen.values)
            bases.append(
                eigen.vectors.map { Matrix(rows: $0.rows, columns: $0.columns, values: $0.values.map { Float($0) }) })
        }
        var ranks: [Int]
        var ladder: [Double: [Int]] = [:]
        if options.method == .matryoshka {
            // Energy of each (layer, kind) tensor: the sum over its heads' eigenvalues.
            var energy: [String: Double] = [:]
            for (u, unit) in units.enumerated() {
                energy["\(unit.kind)/\(unit.group)", default: 0] += values[u].reduce(0) { $0 + max($1, 0) }
            }
            let weights = units.map { unit in 1 / max(energy["\(unit.kind)/\(unit.group)"]!, .leastNormalMagnitude) }
            for q in options.ladder { ladder[q] = allocate(values: values, weights: weights, dims: dims, keepRatio: q) }
            switch options.budget {
            case .keepRatio(let q): ranks = allocate(values: values, weights: weights, dims: dims, keepRatio: q)
            default: ranks = zip(values, dims).map { rank(budget: options.budget, eigenvalues: $0, dimension: $1) }
            }
        } else {
            ranks = units.indices.map { rank(budget: options.budget, eigenvalues: values[$0], dimension: dims[$0]) }
        }
        var projections: [Projection] = []
        for (u, unit) in units.enumerated() {
            // Store the widest prefix the budget or any rung needs; every rung is a prefix of it.
            let r = min(max(ranks[u], ladder.values.map { $0[u] }.max() ?? 0, 1), dims[u])
            let basis: Matrix<Float>
            if let known = bases[u], known.columns == r {
                basis = known
            } else {
                let vectors = try SymmetricEigen(matrix(unit), topVectors: r).vectors!
                basis = Matrix(rows: vectors.rows, columns: vectors.columns, values: vectors.values.map { Float($0) })
            }
            bases[u] = nil
            let mean =
                options.center
                ? Array(grams[unit.kind]![unit.group].mean[unit.heads == nil ? 0..<dims[u] : unit.channels]) : nil
            projections.append(
                Projection(
                    kind: unit.kind, layers: groups[unit.group], channels: unit.channels, heads: unit.heads,
                    basis: basis, mean: mean.map { $0.map { Float($0) } }, eigenvalues: values[u]))
        }
        return FittedProjections(projections: projections, ranks: ranks, ladderRanks: ladder)
    }

    /// The rank a per-unit budget gives a unit of `dimension` channels (all layers of an xKV group).
    public static func rank(budget: Budget, eigenvalues: [Double], dimension: Int) -> Int {
        switch budget {
        case .rank(let r):
            return min(max(r, 1), dimension)
        case .keepRatio(let q):
            // dimension already counts every layer of an xKV group: G·q·channels latent dims.
            return min(max(Int((q * Double(dimension)).rounded()), 1), dimension)
        case .energy(let e):
            // At least one dimension: a unit with zero energy (effective rank 0) still stores a projection.
            return min(max(Spectrum(gramEigenvalues: eigenvalues).effectiveRank(energy: e), 1), max(dimension, 1))
        }
    }

    /// Ranks for a global budget of ⌊q·Σ dims⌉ latent dimensions minimising Σ_units w_u Σ_{i>r_u} λ_{u,i}
    /// (each tensor's squared relative error, summed). Each unit's gains w_u λ_{u,i} do not increase with i,
    /// so taking the largest gains over all units is optimal, and every unit's choice is a prefix.
    static func allocate(values: [[Double]], weights: [Double], dims: [Int], keepRatio q: Double) -> [Int] {
        let budget = Int((q * Double(dims.reduce(0, +))).rounded())
        var gains: [(gain: Double, unit: Int)] = []
        for (u, lambdas) in values.enumerated() { for l in lambdas { gains.append((weights[u] * max(l, 0), u)) } }
        gains.sort { $0.gain > $1.gain }
        var ranks = [Int](repeating: 0, count: values.count)
        for g in gains.prefix(budget) { ranks[g.unit] += 1 }
        return ranks
    }
}
