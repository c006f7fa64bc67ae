// The xKV group Grams of `analyze --save-state --xkv-groups G`, folded during the block pass: the channels of
// G consecutive analysed layers side by side, built exactly as `LayerGroupGrams` builds them for
// `fit-lowrank --method xkv`, so that a state file (or a corpus of merged states) can fit xKV without tokens.
import KVNumerics

/// The layer groups of xKV: consecutive runs of `size` layers, in order, the last one shorter when the layers do
/// not split evenly. The grouping `ProjectionFitter.groups` makes for `fit-lowrank --method xkv --group-size size`.
public enum XKVGrouping {
    /// Largest G of `--xkv-groups` (as `fit-lowrank --group-size`).
    public static let maxGroupSize = 65_536

    public static func groups<T>(_ layers: [T], size: Int) -> [[T]] {
        let g = max(1, size)
        return stride(from: 0, to: layers.count, by: g).map { Array(layers[$0..<min($0 + g, layers.count)]) }
    }
}

/// One tensor kind's group Grams, fed by the block pass, which visits every analysed layer in order for each token
/// block (so a group's layers arrive one after another with the same token rows).
///
/// For a group of layers l₁…l_G with blocks X₁…X_G of the same rows, the group's block is [X₁ | … | X_G]
/// (B × G·C), with every row that is non-finite in any layer of the group zeroed across the whole width and left
/// out of the count, and is folded into a `GramAccumulator` of width G·C: Σ over the rows kept of the joined
/// row's outer product, its column sums and the row count. This is `LayerGroupGrams.accumulate`'s block, row
/// for row, so both give the same Gram of the same tokens (up to float32 SSYRK rounding, ~1e-7 relative).
/// A layer's own Gram in the state leaves out only the rows non-finite in that layer: when a token is non-finite in
/// some layers of a group but not all, the group Gram counts fewer rows than its layers' Grams.
/// Memory: the group Grams (G·C)(G·C + 1)/2 + G·C float64 each, one joined block (B × G·C float32) and one
/// (G·C)² float32 block product.
struct XKVGroupFolder {
    /// Positions (into the analysed layers) of each group.
    let groups: [[Int]]
    let channels: Int
    private(set) var grams: [GramAccumulator]
    /// Each layer position's (group, position within the group).
    private let place: [(group: Int, position: Int)]
    private var joined: [Float] = []
    private var excluded: Set<Int> = []
    private var scratch: [Float] = []

    init(groups: [[Int]], channels: Int) {
        self.groups = groups
        self.channels = channels
        grams = groups.map { GramAccumulator(channels: channels * $0.count) }
        var place: [(Int, Int)] = []
        for (g, group) in groups.enumerated() { for position in group.indices { place.append((g, position)) } }
        self.place = place
    }

    /// Adds layer position `layer`'s block; the group's Gram is folded when its last layer's block arrives.
    mutating func add(_ block: TokenBlock, layer: Int) {
        let (g, position) = place[layer]
        let count = groups[g].count
        let width = channels * count
        let rows = block.rows
        if position == 0 {
            excluded = []
            if joined.count < rows * width { joined = [Float](repeating: 0, count: rows * width) }
        }
        let c = channels
        joined.withUnsafeMutableBufferPointer { out in
            for r in 0..<rows {
                let target = UnsafeMutableBufferPointer(
                    rebasing: out[(r * width + position * c)..<(r * width + (position + 1) * c)])
                _ = target.update(fromContentsOf: UnsafeBufferPointer(rebasing: block.values[(r * c)..<((r + 1) * c)]))
            }
        }
        excluded.formUnion(block.excludedRows)
        guard position == count - 1 else { return }
        // A row excluded (non-finite) in any layer of the group is excluded from the group.
        for r in excluded { for i in 0..<width { joined[r * width + i] = 0 } }
        let excludedRows = excluded.sorted()
        joined.withUnsafeBufferPointer { values in
            let whole = TokenBlock(
                rows: rows, columns: width, values: UnsafeBufferPointer(rebasing: values[0..<(rows * width)]),
                runs: block.runs, excludedRows: excludedRows, nonFiniteValues: 0)
            grams[g].fold(whole, scratch: &scratch)
        }
    }
}
