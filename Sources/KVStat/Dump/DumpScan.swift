// A full streaming read of every tensor of a dump: counts values and non-finite values per tensor. Used by
// `kvstat inspect --read-all` and by the memory benchmark (peak RSS must not grow with the token count).

/// Counts from reading every (layer, kind) tensor once through `TokenBlockReader`.
public struct DumpScan: Codable, Sendable, Equatable {
    /// Non-finite values found, keyed `layer<i>.<kind>` (only tensors that have any).
    public var nonFinite: [String: Int] = [:]
    /// Token rows excluded from statistics because they held non-finite values, same keys.
    public var excludedRows: [String: Int] = [:]
    /// Values read, padding excluded.
    public var values = 0

    enum CodingKeys: String, CodingKey {
        case values
        case nonFinite = "non_finite"
        case excludedRows = "excluded_rows"
    }

    /// Reads the whole dump in blocks of `blockTokens` rows.
    public init(dump: Dump, blockTokens: Int = TokenBlockReader.defaultBlockTokens) throws {
        try MemoryEstimate.scan(dump: dump, blockTokens: blockTokens).check(file: dump.path)  // exit 69 before reading
        for layer in dump.layerNumbers {
            for kind in dump.kinds {
                let reader = try TokenBlockReader(dump: dump, layer: layer, kind: kind, blockTokens: blockTokens)
                var bad = 0
                var rows = 0
                try reader.forEachBlock { block in
                    values += block.rows * block.columns
                    bad += block.nonFiniteValues
                    rows += block.excludedRows.count
                }
                if bad > 0 {
                    nonFinite["layer\(layer).\(kind.rawValue)"] = bad
                    excludedRows["layer\(layer).\(kind.rawValue)"] = rows
                }
            }
        }
    }
}
