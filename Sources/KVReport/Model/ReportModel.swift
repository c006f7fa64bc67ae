// The report model: everything report.html and summary.md say or draw about an analysis, computed once from a
// StatsReport. The renderers only format it; a new finding or plot is added here once and shown by each.
import KVStat

/// The findings, tables and plotted series of one analysis. Kinds are those present, in canonical
/// `TensorKind` order (key, value, query, key_pre_rope), wherever their data exists.
public struct ReportModel: Sendable {
    /// The statistics the model was built from (the dump summary and options the renderers quote).
    public var report: StatsReport
    /// Kinds with statistics in some layer.
    public var kinds: [TensorKind]
    /// Kinds with computed layer pairs.
    public var similarityKinds: [TensorKind]
    public var findings: Findings
    /// summary.md's per-layer table of each kind.
    public var layerTables: [LayerTable]
    /// summary.md's table of the computed pairs; nil when there are none.
    public var similarityTable: SimilarityTable?
    /// Spectra per analysed kind.
    public var spectra: [SpectraSeries]
    /// Similarity per kind with computed pairs.
    public var similarity: [SimilaritySeries]
    /// Each similarity measure of adjacent pairs against depth, one series per kind (CKA, cosine, subspace).
    public var depthSimilarity: [DepthSimilarity]
    public var outliers: OutlierSeries
    public var frequency: FrequencySeries

    public init(_ r: StatsReport) {
        report = r
        kinds = r.analysedKinds
        similarityKinds = r.similarityKinds
        findings = Findings(r)
        layerTables = LayerTable.tables(r)
        similarityTable = SimilarityTable(r)
        spectra = kinds.map { SpectraSeries(r, kind: $0) }
        similarity = similarityKinds.map { SimilaritySeries(r, kind: $0) }
        depthSimilarity = similarityKinds.isEmpty ? [] : DepthSimilarity.all(r)
        outliers = OutlierSeries(r)
        frequency = FrequencySeries(r)
    }

    /// Whether every pair was computed (--all-pairs) rather than adjacent ones.
    public var allPairs: Bool { report.options.pairs == .all }

    /// Whether --all-pairs heatmaps are drawn (the layer count is within `SimilaritySeries.heatmapLayerLimit`).
    public var similarityHeatmaps: Bool {
        allPairs && report.layerNumbers.count <= SimilaritySeries.heatmapLayerLimit
    }
}
