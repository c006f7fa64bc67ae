// What report.html's frequency section draws: per kind the energy share of the lowest DCT frequencies against
// layer (one line per fraction), and the DCT spectrum averaged over the layers with energy.
import KVStat

public struct FrequencySeries: Sendable {
    /// One kind's lines.
    public struct Kind: Sendable {
        public var kind: TensorKind
        /// One series per fraction of `FrequencyEnergy.fractions` ("lowest 1/8"): (layer, share) where defined;
        /// colour index = the fraction's place.
        public var lowEnergy: [PlotSeries]
    }

    public var kinds: [Kind] = []
    /// Per kind with a defined spectrum: the mean share per bin against the bin's centre frequency k/T; colour
    /// index = the kind's place among the analysed kinds.
    public var averageSpectra: [PlotSeries] = []
    /// --dct-window, or nil for whole sequences.
    public var window: Int?

    public init(_ r: StatsReport) {
        window = r.options.dctWindow
        for (k, kind) in r.analysedKinds.enumerated() {
            let layers = r.layers.compactMap { layer in
                layer.kinds[kind]?.frequency.map { (layer: layer.layer, frequency: $0) }
            }
            guard !layers.isEmpty else { continue }
            kinds.append(
                Kind(
                    kind: kind,
                    lowEnergy: FrequencyEnergy.fractions.enumerated().map { i, f in
                        PlotSeries(
                            name: "lowest \(LevelLabel.fraction(f))",
                            points: layers.compactMap { l in
                                l.frequency.lowEnergy(below: f).map { (Double(l.layer), $0) }
                            },
                            colorIndex: i)
                    }))
            // The average over layers that have energy (a zero layer's spectrum is undefined).
            let defined = layers.compactMap(\.frequency.spectrum)
            if let bins = defined.first?.count, bins > 0, defined.allSatisfy({ $0.count == bins }) {
                let mean = (0..<bins).map { b in defined.reduce(0.0) { $0 + $1[b] } / Double(defined.count) }
                averageSpectra.append(
                    PlotSeries(
                        name: kind.plural,
                        points: mean.enumerated().map {
                            ((Double($0.offset) + 0.5) / Double(bins), $0.element)
                        }, colorIndex: k))
            }
        }
    }
}
