// The report model (ReportModel, Findings, the plotted series) on a small hand-made StatsReport: a zero layer,
// a pre-RoPE kind, undefined pairs and tied sink positions, with expected values worked out by hand; and the
// renderers showing every kind present, not a fixed list.
import Foundation
import Testing

@testable import KVReport
@testable import KVStat

@Suite struct ReportModelTests {
    // MARK: fixture

    /// A dump summary of 3 layers × 1 kv head × head_dim 4 (4 channels per layer).
    static func dump(layers: Int = 3) throws -> DumpSummary {
        let json = """
            {"schema": "kvstat.inspect/1", "path": "/x/tiny.h5", "layout": "per_layer", "pattern": "layer_{l}/{kind}",
             "layers": \(layers),
             "kv_heads": 1, "head_dim": 4, "sequences": 2, "max_tokens": 8, "tokens": 16, "sequence_lengths": [8, 8],
             "padding": "none", "dtype": "float32", "kinds": ["key", "key_pre_rope"], "bytes_on_disk": 1,
             "bytes_stored": 1, "bytes_float32": 1, "attributes": {}, "tensors": []}
            """
        return try JSONDecoder().decode(DumpSummary.self, from: Data(json.utf8))
    }

    /// One kind's statistics: a spectrum with its ranks at 90/95/99 % (nil stable rank = no energy), channel
    /// outliers (nil = undefined), sink token positions (sequence 0 unless repeated) and the low 1/8 share.
    static func stats(
        _ sv: [Double], ranks: [Int], stable: Double?, outliers: [Int]?, sinks: [Int],
        low: Double?
    ) -> StatsReport.KindStats {
        var s = StatsReport.KindStats(tokens: 16, nonFinite: 0)
        s.singularValues = sv
        s.effectiveRank = Dictionary(uniqueKeysWithValues: zip(Spectrum.energyLevels.map(EnergyFraction.key), ranks))
        s.stableRank = stable
        s.headEffectiveRank = [EnergyFraction.key(0.9): [ranks[0]]]
        let median = outliers == nil ? 0.0 : 1.0
        s.channels = StatsReport.Channels(
            maxAbs: [median, median, median, 8 * median], mean: [0, 0, 0, 0],
            rms: [1, 1, 1, 1], kurtosis: [3, 3, 3, nil], medianMaxAbs: median,
            outliers: outliers)
        s.tokenNorms = StatsReport.Tokens(
            medianNorm: 1,
            sinks: sinks.enumerated().map {
                StatsReport.Sink(
                    sequence: $0.offset % 2, token: $0.element,
                    norm: 9, ratio: 9)
            },
            sinkCount: sinks.count)
        s.frequency = StatsReport.Frequency(
            lowEnergy: low.map { l in
                Dictionary(
                    uniqueKeysWithValues: FrequencyEnergy.fractions.map {
                        (EnergyFraction.key($0), $0 == 0.125 ? l : 0.5)
                    })
            },
            spectrum: low == nil ? nil : [0.5, 0.25, 0.25])
        return s
    }

    /// Layers 0, 1, 2 of keys and pre-RoPE keys; layer 1 is all zeros. Every pair computed; key pairs with
    /// layer 1 are undefined.
    static func report() throws -> StatsReport {
        let zero = stats([0, 0, 0, 0], ranks: [0, 0, 0], stable: nil, outliers: nil, sinks: [], low: nil)
        let layers = [
            StatsReport.Layer(
                layer: 0,
                kinds: [
                    .key: stats(
                        [2, 1, 0, 0], ranks: [2, 2, 2], stable: 1.25, outliers: [3], sinks: [0, 5], low: 0.5),
                    .keyPreRope: stats([1, 1, 1, 1], ranks: [4, 4, 4], stable: 4, outliers: [], sinks: [7], low: 0.2),
                ]),
            StatsReport.Layer(layer: 1, kinds: [.key: zero, .keyPreRope: zero]),
            StatsReport.Layer(
                layer: 2,
                kinds: [
                    .key: stats(
                        [3, 1, 1, 0], ranks: [3, 3, 3], stable: 11.0 / 9, outliers: [], sinks: [5, 5, 0], low: 0.3),
                    .keyPreRope: stats([1, 1, 1, 1], ranks: [4, 4, 4], stable: 4, outliers: [], sinks: [2], low: 0.4),
                ]),
        ]
        func pair(_ a: Int, _ b: Int, _ cka: Double?, _ cos: Double?, _ sub: Double?) -> StatsReport.Pair {
            .init(layerA: a, layerB: b, cosine: cos, cka: cka, subspaceAlignment: sub, channelAlignment: sub)
        }
        var options = AnalysisOptions()
        options.pairs = .all
        return StatsReport(
            kvstatVersion: "test", options: options, dump: try dump(), sources: ["/x/tiny.h5"],
            layerNumbers: [0, 1, 2],
            layers: layers,
            similarity: [
                "key_pre_rope": [pair(0, 1, nil, nil, nil), pair(0, 2, 0.5, 0.2, 0.4), pair(1, 2, nil, nil, nil)],
                "key": [pair(0, 1, nil, nil, nil), pair(0, 2, 0.8, 0.1, 0.7), pair(1, 2, nil, nil, nil)],
            ])
    }

    // MARK: findings

    @Test func findingsSkipZeroLayersAndNameThem() throws {
        let f = Findings(try Self.report())
        // Keys: ranks at 90 % of the layers with energy are 2 and 3 → mean 2.5 of 4 channels.
        let key = try #require(f.energyRanks.first)
        #expect(f.energyRanks.map(\.kind) == [.key, .keyPreRope])
        #expect(key.meanRank == 2.5 && key.channels == 4 && key.layers == 2 && key.share == 0.625)
        #expect(key.sentence == "Keys reach 90 % energy with 62.5 % of channels on average (3 of 4).")
        #expect(
            f.energyRankSentence == "Reaching 90 % energy takes keys with 62.5 % of channels (mean rank 2.5 of 4), "
                + "pre-RoPE keys with 100.0 % of channels (mean rank 4.0 of 4).")
        #expect(f.emptyLayers.map(\.layers) == [[1], [1]])
        #expect(
            f.emptyLayers[1].sentence == "Pre-RoPE keys: 1 of 3 layers have no energy (all zeros, or no finite "
                + "rows: layers 1); their ratios are undefined (see the notes in stats.json).")
        // Outliers: layer 0 has one, layer 1's are undefined, layer 2 has none.
        #expect(f.outliers.map(\.channels) == [1, 0] && f.outliers.map(\.layersWith) == [1, 0])
        #expect(
            f.outliers[0].sentence
                == "Keys: 1 outlier channel in 1 of 3 layers (max |x| above 6× the median channel).")
        // Low 1/8 of frequencies: keys 0.5 and 0.3 (the zero layer has none).
        #expect(
            f.lowFrequency[0].sentence == "Keys: the lowest 1/8 of DCT frequencies along tokens hold 40.0 % of the "
                + "energy on average (30.0 %–50.0 % across layers).")
    }

    @Test func sinkPositionsCountHitsAndBreakTiesByPosition() throws {
        let f = Findings(try Self.report())
        // Keys: token 5 three times (layer 0 once, layer 2 twice), token 0 twice.
        #expect(f.sinks.map(\.position) == [5, 2] && f.sinks.map(\.hits) == [3, 1])
        // Pre-RoPE keys: tokens 7 and 2 once each: the earlier position.
        #expect(
            f.sinks[1].sentence == "Pre-RoPE keys: large-norm tokens (norm above 6× the median) most often at "
                + "position 2 (1 layer-sequence hits).")
    }

    @Test func similarityFindingsCountUndefinedPairs() throws {
        let f = Findings(try Self.report())
        #expect(f.similarity.map(\.kind) == [.key, .keyPreRope])
        let key = f.similarity[0]
        #expect(key.meanCKA == 0.8 && key.bestAligned?.layerA == 0 && key.bestAligned?.layerB == 2)
        #expect(key.undefinedCKA == 2 && key.undefinedMeasures == 2 && f.undefinedPairs == 4)
        #expect(key.undefinedSentence == "Keys: CKA is undefined for 2 of 3 layer pairs (a layer without spread).")
        #expect(
            f.similarity[1].alignmentSentence == "Pre-RoPE keys: mean CKA of computed layer pairs 0.50; the most "
                + "aligned token subspaces are layers 0 and 2 (alignment 0.40 at rank 32).")
        // summary.md's order: headline, empty layers, similarity, then per kind outliers, sinks, low frequencies.
        let s = f.sentences
        #expect(s.count == 1 + 2 + 4 + 2 * 3)
        #expect(s[0].hasPrefix("Reaching") && s[3].hasPrefix("Keys: mean CKA") && s[7].hasPrefix("Keys: 1 outlier"))
        #expect(s[10].hasPrefix("Pre-RoPE keys: no outlier channels"))
    }

    // MARK: tables and series

    @Test func layerTableRowsKeepNulls() throws {
        let tables = LayerTable.tables(try Self.report())
        #expect(tables.map(\.kind) == [.key, .keyPreRope])
        let zero = tables[0].rows[1]
        #expect(zero.layer == 1 && zero.ranks == [0, 0] && zero.stableRank == nil && zero.outlierChannels == nil)
        #expect(zero.sinks == 0 && zero.lowEnergy == nil)
        #expect(tables[0].rows[0].ranks == [2, 2] && tables[0].rows[2].lowEnergy == 0.3)
    }

    @Test func spectraDrawZeroLayersButNoCumulativeEnergyForThem() throws {
        let s = SpectraSeries(try Self.report(), kind: .key)
        #expect(s.singularValues.map(\.layer) == [0, 1, 2] && s.cumulativeEnergy.map(\.layer) == [0, 2])
        #expect(s.singularValues.map(\.depth) == [0, 0.5, 1])
        // σ = 2, 1, 0, 0: energy 4 + 1 of 5.
        let curve = s.cumulativeEnergy[0].points
        #expect(curve.map(\.x) == [0.25, 0.5, 0.75, 1] && curve.map(\.y) == [0.8, 1, 1, 1])
        #expect(s.headRanks?.values == [[2], [0], [3]] && s.headRanks?.rowNames == ["0", "1", "2"])
    }

    @Test func spectraSampleDeepDumps() throws {
        var r = try Self.report()
        let layer = r.layers[0]
        r.layers = (0..<100).map { StatsReport.Layer(layer: $0, kinds: layer.kinds) }
        let s = SpectraSeries(r, kind: .key)
        #expect(s.singularValues.count == SpectraSeries.layerLimit)
        #expect(s.singularValues.first?.layer == 0 && s.singularValues.last?.layer == 99)
    }

    @Test func similaritySeriesPerKindWithMatrices() throws {
        let model = ReportModel(try Self.report())
        #expect(model.similarityKinds == [.key, .keyPreRope] && model.similarity.map(\.kind) == [.key, .keyPreRope])
        // 0–2 is not adjacent; 0–1 and 1–2 are undefined: nothing drawn, the default range.
        let key = model.similarity[0]
        #expect(key.adjacent.allSatisfy { $0.points.isEmpty } && key.yDomain == 0...1)
        let cka = try #require(key.matrices.first { $0.measure == .cka })
        #expect(cka.data.values[0][2] == 0.8 && cka.data.values[2][0] == 0.8 && cka.data.values[1][1] == 1)
        #expect(cka.data.values[0][1] == nil)
        #expect(key.matrices.map(\.measure) == SimilarityMeasure.allCases && model.similarityHeatmaps)
        let table = try #require(model.similarityTable)
        #expect(table.kinds == [.key, .keyPreRope])
        #expect(table.rows.map { [$0.layerA, $0.layerB] } == [[0, 1], [0, 2], [1, 2]])
        #expect(table.rows[1].cells.map(\.cka) == [0.8, 0.5])
    }

    @Test func outlierAndFrequencySeries() throws {
        let model = ReportModel(try Self.report())
        let map = try #require(model.outliers.maps.first)
        // Layer 1's median channel max |x| is 0: a blank row.
        #expect(map.data.values[0] == [1, 1, 1, 8] && map.data.values[1] == [nil, nil, nil, nil])
        #expect(model.outliers.maps.map(\.kind) == [.key, .keyPreRope])
        #expect(model.outliers.sinks.map(\.sink.token) == [0, 5, 5, 5, 0, 7, 2])
        #expect(model.outliers.kurtosis.map(\.colorIndex) == [0, 1])
        let low = try #require(model.frequency.kinds.first?.lowEnergy)
        #expect(low.map(\.name) == ["lowest 1/16", "lowest 1/8", "lowest 1/4", "lowest 1/2"])
        #expect(low[1].points.map(\.x) == [0, 2] && low[1].points.map(\.y) == [0.5, 0.3])
        #expect(model.frequency.averageSpectra.map(\.name) == ["keys", "pre-RoPE keys"])
    }

    // MARK: typed keys and renderers

    @Test func typedAccessorsReadTheJSONKeys() throws {
        let json =
            #"{"tokens": 1, "non_finite": 0, "effective_rank": {"0.9": 7, "0.99": 9},"#
            + #" "head_effective_rank": {"0.9": [3, 4]},"#
            + #" "frequency": {"low_energy": {"0.125": 0.25}, "spectrum": null}}"#
        let s = try JSONDecoder().decode(StatsReport.KindStats.self, from: Data(json.utf8))
        #expect(s.effectiveRank(at: 0.9) == 7 && s.effectiveRank(at: 0.99) == 9 && s.effectiveRank(at: 0.95) == nil)
        #expect(s.headEffectiveRanks(at: 0.9) == [3, 4] && s.frequency?.lowEnergy(below: 1.0 / 8) == 0.25)
        #expect(LevelLabel.percent(0.9) == "90 %" && LevelLabel.percent(0.95) == "95 %")
        #expect(LevelLabel.percent(0.995) == "99.5 %")
        #expect(FrequencyEnergy.fractions.map(LevelLabel.fraction) == ["1/16", "1/8", "1/4", "1/2"])
        #expect(TensorKind.keyPreRope.sentencePlural == "Pre-RoPE keys" && TensorKind.query.sentencePlural == "Queries")
        #expect(
            TensorKind.canonicalOrder(["value", "zeta", "key_pre_rope", "key"])
                == ["key", "value", "key_pre_rope", "zeta"])
    }

    @Test func renderersShowEveryKindPresent() throws {
        let r = try Self.report()
        let md = SummaryMarkdown.render(r)
        #expect(
            md.contains(
                "| layers | keys CKA | keys cosine | keys subspace | pre-RoPE keys CKA "
                    + "| pre-RoPE keys cosine | pre-RoPE keys subspace |"))
        #expect(md.contains("| 0–2 | 0.800 | 0.100 | 0.700 | 0.500 | 0.200 | 0.400 |"))
        #expect(md.contains("| 1 | 0 | 0 | — | — | 0 | — |"))
        #expect(md.contains("## pre-RoPE keys") && !md.contains("Pre-Rope"))
        let html = ReportHTML.render(stats: r)
        for title in [
            "pre-RoPE keys: singular values", "pre-RoPE keys: cumulative energy",
            "Adjacent layers: linear CKA", "pre-RoPE keys: linear CKA",
            "pre-RoPE keys: max |x| ÷ median channel&#39;s",
            "pre-RoPE keys: energy in the lowest frequencies",
            "Pre-RoPE keys reach 90 % energy", "4 pair(s) have an undefined measure",
        ] {
            #expect(html.contains(title), "\(title)")
        }
        #expect(!html.contains("values: singular values"))
        let csv = StatsCSV.tables(r)
        #expect(
            csv["layers.csv"]?.hasPrefix(
                "layer,kind,tokens,non_finite,effective_rank_90,effective_rank_95,"
                    + "effective_rank_99,stable_rank,entropy_rank,outlier_channels,sink_tokens,median_token_norm,"
                    + "low_energy_0.0625,low_energy_0.125,low_energy_0.25,low_energy_0.5\n"
                    + "0,key,16,0,2,2,2,1.25,,1,2,1.0,0.5,0.5,0.5,0.5\n") == true)
        #expect(csv["similarity.csv"]?.contains("\nkey_pre_rope,0,2,0.2,0.5,0.4,0.4\n") == true)
        // The zero layer's cumulative energy is written as 0.
        #expect(csv["spectra.csv"]?.contains("\n1,key,,3,0.0,0.0\n") == true)
    }
}
