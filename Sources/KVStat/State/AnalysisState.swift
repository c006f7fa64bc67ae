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
        /// With `options.xkvGroupSize` (keys, values and pre-RoPE keys): the Gram of each layer group of
        /// `AnalysisState.xkvGroups`, its layers' channels side by side (`XKVGroupFolder`); else empty.
        public var xkvGroups: [GramAccumulator]

        public init(
            shape: LayerShape, layers: [LayerStatistics], cross: [CrossLayerAccumulator],
            xkvGroups: [GramAccumulator] = []
        ) {
            (self.shape, self.layers, self.cross, self.xkvGroups) = (shape, layers, cross, xkvGroups)
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
    /// Attention-mass sinks, measured by `Analyzer` (nil when the options do not ask for them). Not kept in state
    /// files and dropped by `merge`: they need a dump's queries and keys together.
    public var attentionMass: AttentionMass? = nil

    /// The layer groups (layer numbers) whose group Grams the state holds: consecutive runs of
    /// `options.xkvGroupSize` analysed layers (`XKVGrouping`); empty without `--xkv-groups`.
    public var xkvGroups: [[Int]] { options.xkvGroupSize.map { XKVGrouping.groups(layers, size: $0) } ?? [] }

    /// Whether `kind` gets group Grams with `--xkv-groups` (the kinds with cross-layer products).
    public static func hasXKVGroups(_ kind: TensorKind) -> Bool {
        kind == .key || kind == .value || kind == .keyPreRope
    }

    /// Combines another state of the same model (`ModelSignature`) and options holding other tokens: states whose
    /// sources overlap (`AnalysisState.overlap`) are refused, as they would count the same tokens twice.
    ///
    /// The tensor kinds need not be the same: the accumulators of a kind both hold are merged (exactly: sums of the
    /// same terms), and a kind only one holds is kept as it is, so dumps of one model with and without queries
    /// merge into keys and values of all of them and queries of those that had queries (`dumps(of:)` counts them).
    /// Kinds both hold must have the same shapes and statistics. On any error the state is left as it was.
    ///
    /// xKV group Grams (`--xkv-groups`) add like the per-layer Grams when both states hold them for the same
    /// grouping; when the groupings differ (or one state has none) the merged state holds none, and the returned
    /// note says so (never a Gram of some of the tokens under the name of all of them).
    @discardableResult
    public mutating func merge(_ other: AnalysisState) throws(DumpError) -> String? {
        if let (mine, theirs) = AnalysisState.overlap(sources, other.sources) {
            throw DumpError(
                .badData,
                "holds tokens the other state already holds "
                    + "(\(DumpSummary.describeOverlap(mine, theirs))); merging them would count those tokens twice")
        }
        if let a = signature, let b = other.signature, a != b {
            throw DumpError(
                .badData,
                "holds dumps of another model (\(b.text)) than the state it would join (\(a.text)); only dumps of "
                    + "one model can be merged")
        }
        guard other.layers == layers,
            other.pairs.map({ [$0.0, $0.1] }) == pairs.map({ [$0.0, $0.1] }),
            other.options.center == options.center, other.options.dctWindow == options.dctWindow,
            other.options.sections == options.sections
        else {
            throw DumpError(
                .badData,
                "states differ in layers, layer pairs or options (--layers, --only, --center, --dct-window, "
                    + "--all-pairs) and cannot be merged"
            )
        }
        // Every shared kind is checked before any is merged: a mismatch in a later kind must leave this state as
        // it was, never half-merged. Then the accumulators are merged in place (no copy of their C² buffers).
        for (kind, theirs) in other.kinds {
            guard let mine = kinds[kind] else { continue }
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
        let groupNote = Self.groupMergeNote(options.xkvGroupSize, other.options.xkvGroupSize)
        for (kind, theirs) in other.kinds {
            guard kinds[kind] != nil else {
                kinds[kind] = theirs  // a kind only the other state holds
                continue
            }
            for i in theirs.layers.indices { try kinds[kind]!.layers[i].merge(theirs.layers[i]) }
            for i in theirs.cross.indices { kinds[kind]!.cross[i].merge(theirs.cross[i]) }
            if groupNote == nil {
                for i in theirs.xkvGroups.indices { kinds[kind]!.xkvGroups[i].merge(theirs.xkvGroups[i]) }
            }
        }
        if groupNote != nil {
            options.xkvGroupSize = nil
            for kind in kinds.keys { kinds[kind]!.xkvGroups = [] }
        }
        sources += other.sources
        attentionMass = nil  // not mergeable: see `attentionMass`
        // The merged state covers the union of the parts; a selection no longer describes it.
        if other.options.sequences != options.sequences { options.sequences = nil }
        if other.options.tokenRange != options.tokenRange { options.tokenRange = nil }
        return groupNote
    }

    /// The note of a merge whose states hold xKV group Grams of different groupings (or only one holds them),
    /// whose group Grams are therefore dropped; nil when they merge.
    static func groupMergeNote(_ mine: Int?, _ theirs: Int?) -> String? {
        guard mine != theirs else { return nil }
        let text = { (g: Int?) in g.map { "--xkv-groups \($0)" } ?? "none" }
        return "xKV group Grams dropped: the states hold different groupings (\(text(mine)) and \(text(theirs))), "
            + "so the merged state has none; analyze every dump with the same --xkv-groups G to fit xkv from it"
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
