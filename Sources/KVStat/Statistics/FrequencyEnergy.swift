// How a layer's energy spreads over frequencies along the token axis (FreqKV's observation): orthonormal
// DCT-II of every (sequence window, channel) signal, summed into low-frequency fractions and a binned spectrum.

/// Energy of DCT-II coefficients along tokens, accumulated over windows and channels.
///
/// For a window of T tokens, coefficient k has normalised frequency k/T. `low[i]` sums the energy of the
/// lowest ⌊fᵢ·T⌋ coefficients for fᵢ in `fractions`; `bins[j]` sums the energy with k/T in [j/B, (j+1)/B).
/// The orthonormal DCT preserves energy, so `total` equals Σx² over the windows. Merge rule: add.
public struct FrequencyEnergy: LayerStatistic, Equatable {
    public static let fractions: [Double] = [1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2]
    public static let binCount = 64

    public internal(set) var low: [Double]
    public internal(set) var bins: [Double]
    public internal(set) var total = 0.0
    public internal(set) var windows = 0
    /// Tokens of the shortest window folded (0: none). A fraction f with ⌊f·T⌋ = 0 for it is undefined: that
    /// window has no coefficient below the cut-off, so the pooled fraction would be biased towards 0.
    public internal(set) var shortestWindow = 0

    public init() {
        low = [Double](repeating: 0, count: FrequencyEnergy.fractions.count)
        bins = [Double](repeating: 0, count: FrequencyEnergy.binCount)
    }

    /// Adds one window of T = `perFrequency.count` tokens: `perFrequency[k]` is the energy Σ_c ŷ_{k,c}² of DCT
    /// frequency k summed over the window's channels (what `DCTPlan.addEnergies` gives). Counts one window.
    public mutating func fold(perFrequency: UnsafeBufferPointer<Double>) {
        let length = perFrequency.count
        guard length > 0 else { return }
        for (i, f) in FrequencyEnergy.fractions.enumerated() {
            let cutoff = min(Int((f * Double(length)).rounded(.down)), length)
            low[i] += UnsafeBufferPointer(rebasing: perFrequency[0..<cutoff]).reduce(0, +)
        }
        for k in 0..<length { bins[k * FrequencyEnergy.binCount / length] += perFrequency[k] }
        total += perFrequency.reduce(0, +)
        windows += 1
        shortestWindow = shortestWindow == 0 ? length : min(shortestWindow, length)
    }

    public mutating func merge(_ other: FrequencyEnergy) {
        for i in low.indices { low[i] += other.low[i] }
        for i in bins.indices { bins[i] += other.bins[i] }
        total += other.total
        windows += other.windows
        if other.shortestWindow > 0 {
            shortestWindow = shortestWindow == 0 ? other.shortestWindow : min(shortestWindow, other.shortestWindow)
        }
    }

    /// Fraction of energy in the lowest ⌊f·T⌋ frequencies, per f in `fractions`; nil when there is no
    /// energy (all-zero windows, or none), where a fraction is undefined.
    public var lowFractions: [Double]? { total > 0 ? low.map { $0 / total } : nil }

    /// The binned spectrum as fractions of the total energy; nil when there is no energy.
    public var spectrum: [Double]? { total > 0 ? bins.map { $0 / total } : nil }

}

// MARK: LayerStatistic: state file `frequency_*`; stats.json `frequency`. Fed by the DCT pass, not by blocks.

extension FrequencyEnergy {
    public static var stateName: String { "frequency" }
    public static var timingStage: String { "dct" }
    public static func isComputed(by options: AnalysisOptions) -> Bool { options.sections.contains(.frequency) }

    public init(shape: LayerShape) { self.init() }

    /// Blocks mix sequences; the frequency pass folds whole sequence windows with `fold(perFrequency:)`.
    public mutating func fold(_ block: TokenBlock, scratch: FoldScratch) {}

    public func encode(to group: StateGroup) throws {
        try group.write("frequency_low", low)
        try group.write("frequency_bins", bins)
        try group.write("frequency_total", [total])
        try group.write("frequency_windows", [Int64(windows)])
        try group.write("frequency_shortest_window", [Int64(shortestWindow)])
    }

    public init(decoding group: StateGroup, shape: LayerShape) throws {
        self.init()
        low = try group.read("frequency_low", count: FrequencyEnergy.fractions.count)
        bins = try group.read("frequency_bins", count: FrequencyEnergy.binCount)
        total = try group.read("frequency_total", count: 1)[0]
        windows = try group.count("frequency_windows")
        shortestWindow = try group.count("frequency_shortest_window")
    }

    /// Low-frequency fractions and the binned spectrum; null with a note when there is no energy.
    public func finish(into stats: inout StatsReport.KindStats, context: inout FinishContext) throws {
        let low = lowFractions
        if low == nil && stats.tokens > 0 && !stats.notes.contains(where: { $0.hasPrefix("every value is zero") }) {
            stats.notes.append("no energy along tokens: frequency fractions are undefined (null)")
        }
        // Fractions whose cut-off ⌊f·T⌋ is 0 for the shortest window are left out (undefined), with a note.
        let defined = FrequencyEnergy.fractions.indices.filter {
            Int((FrequencyEnergy.fractions[$0] * Double(shortestWindow)).rounded(.down)) > 0
        }
        if low != nil && defined.count < FrequencyEnergy.fractions.count {
            stats.notes.append(
                "windows as short as \(shortestWindow) tokens have no coefficient below some cut-offs: "
                    + "those low-frequency fractions are undefined (left out)")
        }
        stats.frequency = StatsReport.Frequency(
            lowEnergy: low.map { fractions in
                Dictionary(
                    uniqueKeysWithValues: defined.map {
                        (EnergyFraction.key(FrequencyEnergy.fractions[$0]), fractions[$0])
                    })
            },
            spectrum: spectrum)
    }
}
