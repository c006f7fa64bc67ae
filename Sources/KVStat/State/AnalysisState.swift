// The accumulators of a whole analysis, filled by streaming passes over a dump and mergeable with the
// state of another token range or another dump of the same model (`kvstat merge`).
import Foundation
import KVNumerics

/// Every accumulator of an analysis, per tensor kind and layer.
public struct AnalysisState: Sendable {
    /// The accumulators of one tensor kind.
    public struct KindState: Sendable {
        public var shape: LayerShape
        /// Per analysed layer, every statistic the options compute (`LayerStatistics.registered`).
        public var layers: [LayerStatistics]
        /// Keyed by position in `AnalysisState.pairs`.
        public var cross: [CrossLayerAccumulator]

        public init(shape: LayerShape, layers: [LayerStatistics], cross: [CrossLayerAccumulator]) {
            (self.shape, self.layers, self.cross) = (shape, layers, cross)
        }

        /// Each layer's Gram accumulator (empty when neither spectra nor similarity were computed).
        public var gram: [GramAccumulator] { layers.compactMap { $0[GramAccumulator.self] } }
    }

    public var options: AnalysisOptions
    /// Layer numbers analysed (indices into the dump's layers).
    public var layers: [Int]
    public var kinds: [TensorKind: KindState]
    /// Layer pairs (positions into `layers`) with cross statistics; for key and value only.
    public var pairs: [(Int, Int)]
    /// Where the tokens came from: one summary per dump merged in.
    public var sources: [DumpSummary]

    /// Combines another state of the same model and options (shapes and layers must match) holding other
    /// tokens: states whose sources overlap (`AnalysisState.overlap`) are refused, as they would count the
    /// same tokens twice.
    public mutating func merge(_ other: AnalysisState) throws(DumpError) {
        if let (mine, theirs) = AnalysisState.overlap(sources, other.sources) {
            throw DumpError(
                .badData,
                "holds tokens the other state already holds "
                    + "(\(DumpSummary.describeOverlap(mine, theirs))); merging them would count those tokens twice")
        }
        guard other.layers == layers, Set(other.kinds.keys) == Set(kinds.keys),
            other.pairs.map({ [$0.0, $0.1] }) == pairs.map({ [$0.0, $0.1] }),
            other.options.center == options.center, other.options.dctWindow == options.dctWindow,
            other.options.sections == options.sections
        else {
            throw DumpError(
                .badData,
                "states differ in layers, tensor kinds, layer pairs or options (--only, --center, --dct-window) and "
                    + "cannot be merged"
            )
        }
        // Every kind is checked before any is merged: a mismatch in a later kind must leave this state as it was,
        // never half-merged. Then the accumulators are merged in place (no copy of their C² buffers).
        for (kind, theirs) in other.kinds {
            let mine = kinds[kind]!
            let names = { (state: KindState) in state.layers.map { $0.statistics.map { type(of: $0).stateName } } }
            guard mine.shape == theirs.shape, mine.layers.count == theirs.layers.count,
                mine.cross.count == theirs.cross.count, names(mine) == names(theirs)
            else {
                throw DumpError(
                    .badData,
                    "\(kind.rawValue) tensors have different channel counts; only dumps of the same model can be merged"
                )
            }
        }
        for (kind, theirs) in other.kinds {
            for i in theirs.layers.indices { try kinds[kind]!.layers[i].merge(theirs.layers[i]) }
            for i in theirs.cross.indices { kinds[kind]!.cross[i].merge(theirs.cross[i]) }
        }
        sources += other.sources
        // The merged state covers the union of the parts; a selection no longer describes it.
        if other.options.sequences != options.sequences { options.sequences = nil }
        if other.options.tokenRange != options.tokenRange { options.tokenRange = nil }
    }
}

extension AnalysisState {
    /// The first pair of sources, one from each list, that hold some of the same tokens, or nil.
    public static func overlap(_ a: [DumpSummary], _ b: [DumpSummary]) -> (DumpSummary, DumpSummary)? {
        for x in a {
            if let y = b.first(where: x.overlaps) { return (x, y) }
        }
        return nil
    }
}

extension DumpSummary {
    /// Whether the two summaries hold some of the same tokens: the same file (by SHA-256 when both have one,
    /// else by path), some sequence in common and intersecting token ranges. A summary without a selection
    /// covers the whole dump.
    public func overlaps(_ other: DumpSummary) -> Bool {
        if let a = sha256, let b = other.sha256 {
            guard a == b else { return false }
        } else if path != other.path {
            return false
        }
        if let a = selectedSequences, let b = other.selectedSequences, Set(a).isDisjoint(with: b) { return false }
        let a = tokenInterval
        let b = other.tokenInterval
        return a.lowerBound < b.upperBound && b.lowerBound < a.upperBound
    }

    /// The token positions selected in every sequence.
    var tokenInterval: Range<Int> {
        guard let t = selectedTokens, t.count == 2, t[0] < t[1] else { return 0..<Int.max }
        return t[0]..<t[1]
    }

    /// "dump.h5 (sha256 0123abcd…), sequences 0-3 and sequences 2-5" for an overlap message.
    public static func describeOverlap(_ a: DumpSummary, _ b: DumpSummary) -> String {
        let file = (a.path as NSString).lastPathComponent + (a.sha256.map { " (sha256 \($0.prefix(12))…)" } ?? "")
        return "\(file): \(a.selection ?? "all of it") and \(b.selection ?? "all of it")"
    }
}
