// The accumulators of a whole analysis, filled by streaming passes over a dump and mergeable with the
// state of another token range or another dump of the same model (`kvstat merge`).
import KVNumerics

/// Every accumulator of an analysis, per tensor kind and layer.
public struct AnalysisState: Sendable {
    /// The accumulators of one tensor kind.
    public struct KindState: Sendable {
        public var gram: [GramAccumulator]
        public var moments: [ChannelMoments]
        public var norms: [TokenNormSketch]
        public var frequency: [FrequencyEnergy]
        /// Keyed by position in `AnalysisState.pairs`.
        public var cross: [CrossLayerAccumulator]
        public var nonFinite: [Int]
    }

    public var options: AnalysisOptions
    /// Layer numbers analysed (indices into the dump's layers).
    public var layers: [Int]
    public var kinds: [TensorKind: KindState]
    /// Layer pairs (positions into `layers`) with cross statistics; for key and value only.
    public var pairs: [(Int, Int)]
    /// Where the tokens came from: one summary per dump merged in.
    public var sources: [DumpSummary]

    /// Combines another state of the same model and options (shapes and layers must match).
    public mutating func merge(_ other: AnalysisState) throws(DumpError) {
        guard other.layers == layers, Set(other.kinds.keys) == Set(kinds.keys), other.pairs.map({ [$0.0, $0.1] }) == pairs.map({ [$0.0, $0.1] }),
              other.options.center == options.center, other.options.dctWindow == options.dctWindow,
              other.options.sections == options.sections
        else {
            throw DumpError(.badData, "states differ in layers, tensor kinds, layer pairs or options (--only, --center, --dct-window) and cannot be merged")
        }
        for (kind, theirs) in other.kinds {
            var mine = kinds[kind]!
            guard mine.gram.first?.channels == theirs.gram.first?.channels else {
                throw DumpError(.badData, "\(kind.rawValue) tensors have different channel counts; only dumps of the same model can be merged")
            }
            for i in mine.gram.indices {
                mine.gram[i].merge(theirs.gram[i])
                mine.moments[i].merge(theirs.moments[i])
                mine.norms[i].merge(theirs.norms[i])
                mine.frequency[i].merge(theirs.frequency[i])
                mine.nonFinite[i] += theirs.nonFinite[i]
            }
            for i in mine.cross.indices { mine.cross[i].merge(theirs.cross[i]) }
            kinds[kind] = mine
        }
        sources += other.sources
        // The merged state covers the union of the parts; a selection no longer describes it.
        if other.options.sequences != options.sequences { options.sequences = nil }
        if other.options.tokenRange != options.tokenRange { options.tokenRange = nil }
    }
}
