// How many token rows a layer's statistics saw and how many NaN/±Inf values were excluded with their rows:
// every analysis counts them, whatever sections it computes, so `tokens` and `non_finite` are always right.

/// Valid rows and non-finite values of one (layer, kind). Merge rule: add both.
public struct RowCount: LayerStatistic, Equatable {
    /// Rows that count towards statistics (rows holding NaN/±Inf are excluded).
    public internal(set) var validRows = 0
    /// NaN and ±Inf values seen (in the excluded rows).
    public internal(set) var nonFinite = 0

    public static var stateName: String { "rows" }
    public static var timingStage: String { "rows" }
    public static func isComputed(by options: AnalysisOptions) -> Bool { true }

    public init(shape: LayerShape) {}

    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch) {
        validRows += block.validRows
        nonFinite += block.nonFiniteValues
    }

    public mutating func merge(_ other: RowCount) {
        validRows += other.validRows
        nonFinite += other.nonFinite
    }

    public func encode(to group: StateGroup) throws {
        try group.write("rows_valid", [Int64(validRows)])
        try group.write("rows_non_finite", [Int64(nonFinite)])
    }

    public init(decoding group: StateGroup, shape: LayerShape) throws {
        validRows = try group.count("rows_valid")
        nonFinite = try group.count("rows_non_finite")
    }

    /// `tokens`, `non_finite`, and the notes that every later statistic's nulls refer to.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        stats.tokens = validRows
        stats.nonFinite = nonFinite
        if nonFinite > 0 {
            stats.notes.append("\(nonFinite) NaN/Inf values; the token rows holding them are excluded")
        }
        if validRows == 0 {
            stats.notes.append(
                "no valid token rows (every row was excluded): the statistics are those of an empty "
                    + "matrix — singular values 0, effective ranks 0, every ratio null")
        }
    }
}
