// What report.html's fits section shows for fit manifests: the error-versus-memory curve of every sweep,
// each fit's error per layer and kind, its rank per head for single-head units, and a summary row per fit.
import KVStat

public struct FitSeries: Sendable {
    /// One fit's plotted series.
    public struct Fit: Sendable {
        /// One kind's ranks of single-head units as a layer × head matrix (blank where no unit).
        public struct HeadRanks: Sendable {
            /// The kind's name in the manifest.
            public var kind: String
            public var data: HeatmapData
        }

        public var method: String
        public var memoryRatio: Double
        /// Per kind (canonical order, index i): "<kind> fit" (colour 2i) and, with held-out tokens,
        /// "<kind> held out" (colour 2i + 1) against layer, where defined.
        public var errors: [PlotSeries]
        /// Per kind with single-head units, in canonical order.
        public var headRanks: [HeadRanks]
    }

    /// One row of the fits table; nil where not evaluated or undefined.
    public struct Row: Sendable {
        public var method: String
        public var memoryRatio: Double
        public var compression: Double
        public var fitError: Double?
        public var heldOutError: Double?
        /// Root mean square of the attention output errors.
        public var attentionError: Double?
        /// `--keep-sinks`: the sinks kept ("K per sequence, rule") and the attention output error (RMS) with the
        /// same projections rebuilding the sink rows too; nil without sinks.
        public var sinks: String? = nil
        public var attentionErrorWithoutSinks: Double? = nil
    }

    /// One series per sweep method or quantization family (`family`; sorted by name, colour = that order): (memory
    /// ratio, held-out error, else fit error) sorted by memory; empty without sweeps.
    public var pareto: [PlotSeries] = []
    /// Some sweep point has a held-out error (the Pareto plot shows held-out errors where they exist).
    public var paretoHeldOut = false
    public var fits: [Fit] = []
    public var rows: [Row] = []

    public init(_ reports: [FitReport]) {
        let sweep = reports.flatMap { $0.sweep ?? [] }
        pareto = Set(sweep.map { Self.family($0.method) }).sorted().enumerated().map { i, m in
            PlotSeries(
                name: m,
                points: sweep.filter { Self.family($0.method) == m }.sorted { $0.memoryRatio < $1.memoryRatio }
                    .compactMap { r in (r.heldOutError ?? r.fitError).map { (r.memoryRatio, $0) } }, colorIndex: i)
        }
        paretoHeldOut = sweep.contains { $0.heldOutError != nil }
        fits = reports.map(Self.fit)
        rows = reports.map { f in
            Row(
                method: f.method, memoryRatio: f.memoryRatio, compression: f.compression,
                fitError: f.fit.overallAllKinds,
                heldOutError: f.heldOut?.overallAllKinds,
                attentionError: f.attention.flatMap { Self.rms($0.outputs.compactMap { $0 }) },
                sinks: f.keepSinks.map { "\($0.count) per sequence, \($0.rule.rawValue)" },
                attentionErrorWithoutSinks: f.attentionWithoutSinks.flatMap { Self.rms($0.outputs.compactMap { $0 }) })
        }
    }

    static func fit(_ fit: FitReport) -> Fit {
        var errors: [PlotSeries] = []
        for (i, kind) in TensorKind.canonicalOrder(fit.fit.perLayer.keys).enumerated() {
            // Undefined errors (zero-energy layers) are left out of the lines.
            let fitted = zip(fit.layers, fit.fit.perLayer[kind] ?? []).compactMap { layer, e in
                e.map { (Double(layer), $0) }
            }
            errors.append(PlotSeries(name: "\(kind) fit", points: fitted, colorIndex: 2 * i))
            if let held = fit.heldOut?.perLayer[kind] {
                let points = zip(fit.layers, held).compactMap { layer, e in e.map { (Double(layer), $0) } }
                errors.append(PlotSeries(name: "\(kind) held out", points: points, colorIndex: 2 * i + 1))
            }
        }
        let single = fit.units.filter { $0.heads?.count == 1 }
        let headRanks = TensorKind.canonicalOrder(single.map(\.kind)).compactMap { kind -> Fit.HeadRanks? in
            let units = single.filter { $0.kind == kind }
            guard let heads = units.compactMap({ $0.heads?.first }).max(), heads >= 0 else { return nil }
            var rows = [[Double?]](repeating: [Double?](repeating: nil, count: heads + 1), count: fit.layers.count)
            for u in units {
                guard let head = u.heads?.first, head >= 0, let layer = u.layers.first,
                    let l = fit.layers.firstIndex(of: layer)
                else { continue }
                rows[l][head] = Double(u.rank)
            }
            return Fit.HeadRanks(
                kind: kind, data: HeatmapData(values: rows, rowNames: fit.layers.map(String.init), columnNames: nil))
        }
        return Fit(method: fit.method, memoryRatio: fit.memoryRatio, errors: errors, headRanks: headRanks)
    }

    /// The Pareto series of a sweep method: the quantization points' families (`kivi-int4-g32` → `kivi g32`, every
    /// `gear-…` → `gear`; one line through their bit widths), every other method its own series.
    static func family(_ method: String) -> String {
        if method.hasPrefix("kivi-"), let g = method.split(separator: "-").last { return "kivi \(g)" }
        if method.hasPrefix("gear-") { return "gear" }
        return method
    }

    /// Root mean square; nil for no values.
    static func rms(_ values: [Double]) -> Double? {
        values.isEmpty ? nil : (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot()
    }
}
