// xKV from state files (`analyze --save-state --xkv-groups G`): the group Grams the block pass saves equal
// LayerGroupGrams' (what `fit-lowrank --method xkv` streams) on the same tokens, also with a row non-finite in one
// layer only; they survive a state file; merged states fit the same xKV projections and errors as the whole dump;
// states of different groupings merge without group Grams (a note), and a fit then says what is missing.
import Foundation
import Testing

@testable import HDF5Kit
@testable import KVNumerics
@testable import KVStat

@Suite(.serialized) struct XKVStateTests {
    static func analysis(_ dump: Dump, groupSize: Int?, sequences: [Int]? = nil) throws -> AnalysisState {
        var options = AnalysisOptions()
        options.sections = [.spectra]
        options.blockTokens = 64  // several blocks, and other blocks than the fit's
        options.xkvGroupSize = groupSize
        options.sequences = sequences
        return try Analyzer.accumulate(dump, options: options, digest: false)
    }

    /// The largest difference between two Grams' entries (sums and XᵀX), relative to the largest entry.
    static func difference(_ a: GramAccumulator, _ b: GramAccumulator) -> Double {
        let scale = max(a.packedLower.map(abs).max() ?? 0, a.sum.map(abs).max() ?? 0, .leastNormalMagnitude)
        var worst = 0.0
        for (x, y) in zip(a.packedLower, b.packedLower) { worst = max(worst, abs(x - y)) }
        for (x, y) in zip(a.sum, b.sum) { worst = max(worst, abs(x - y)) }
        return worst / scale
    }

    /// The group Grams of the block pass are LayerGroupGrams' for the same groups and tokens, for every kind with
    /// cross-layer products (the SmolLM2 sample's keys, values and pre-RoPE keys; its 10 layers make 3 groups of 3
    /// and a last group of 1), and none for queries.
    @Test func groupGramsEqualThoseAFitStreams() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        let state = try Self.analysis(dump, groupSize: 3)
        #expect(state.xkvGroups == [[0, 3, 6], [9, 12, 15], [18, 21, 24], [27]])
        #expect(state.kinds[.query]?.xkvGroups.isEmpty == true)
        for kind in [TensorKind.key, .value, .keyPreRope] {
            let saved = try #require(state.kinds[kind]).xkvGroups
            let streamed = try LayerGroupGrams.accumulate(
                dump, runs: dump.tokenRuns, kind: kind, groups: state.xkvGroups, blockTokens: 4096)
            #expect(saved.count == 4 && streamed.count == 4)
            for (a, b) in zip(saved, streamed) {
                #expect(a.count == b.count && a.count == 450 && a.channels == b.channels)
                #expect(Self.difference(a, b) <= 1e-6, "\(kind): \(Self.difference(a, b))")
            }
        }
    }

    /// A row non-finite in one layer of a group is left out of the group Gram (LayerGroupGrams' rule) but not out of
    /// the other layer's own Gram: the nan_inf fixture's layer-0 keys lose 5 of 6 rows to NaN/±Inf.
    @Test func rowsNonFiniteInOneLayerLeaveTheGroup() throws {
        let dump = try Dump(path: Fixtures.path("nan_inf.h5"))
        let state = try Self.analysis(dump, groupSize: 2)
        let keys = try #require(state.kinds[.key])
        let streamed = try LayerGroupGrams.accumulate(
            dump, runs: dump.tokenRuns, kind: .key, groups: state.xkvGroups, blockTokens: 4096)
        #expect(keys.xkvGroups.count == 1 && keys.xkvGroups[0].count == 1 && streamed[0].count == 1)
        #expect(Self.difference(keys.xkvGroups[0], streamed[0]) <= 1e-6)
        #expect(keys.gram.map(\.count) == [1, 6])
        #expect(state.kinds[.value]?.xkvGroups.first?.count == 6)
    }

    /// Group Grams survive a state file; a state without `--xkv-groups` holds none and its options say nothing
    /// of them (the same file as before the option existed).
    @Test func groupGramsRoundTripThroughAStateFile() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        let path = StateMergeTests.temporaryPath("xkv")
        let plainPath = StateMergeTests.temporaryPath("plain")
        defer { for p in [path, plainPath] { try? FileManager.default.removeItem(atPath: p) } }
        let state = try Self.analysis(dump, groupSize: 4)
        try AnalysisStateFile.save(state, to: path, version: "test")
        let loaded = try AnalysisStateFile.load(path)
        #expect(loaded.options.xkvGroupSize == 4 && loaded.xkvGroups == state.xkvGroups)
        for kind in [TensorKind.key, .value, .keyPreRope] {
            let a = try #require(state.kinds[kind]).xkvGroups
            let b = try #require(loaded.kinds[kind]).xkvGroups
            #expect(a.map(\.count) == b.map(\.count) && a.map(\.packedLower) == b.map(\.packedLower))
        }
        try AnalysisStateFile.save(try Self.analysis(dump, groupSize: nil), to: plainPath, version: "test")
        let file = try HDF5File.open(plainPath)
        #expect(try !file.root().group("key").exists("xkv_group"))
        #expect(try file.root().stringAttribute("options")?.contains("xkv") == false)
        #expect(try AnalysisStateFile.load(plainPath).kinds[.key]?.xkvGroups.isEmpty == true)
    }

    /// Corpus xKV equals xKV on the whole data: the states of the sample's sequence 0 and sequences 1-2, merged and
    /// fitted (`StateFit`), give the projections and errors of `fit-lowrank --method xkv` on the whole dump.
    @Test func mergedStatesFitTheWholeDumpsXKV() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        var merged = try Self.analysis(dump, groupSize: 3, sequences: [0])
        let note = try merged.merge(try Self.analysis(dump, groupSize: 3, sequences: [1, 2]))
        #expect(note == nil)
        var options = FitOptions()
        options.method = .xkv
        options.groupSize = 3
        options.budget = .rank(8)
        options.attentionQueries = 0
        let fromState = try StateFit.run(merged, path: "merged.h5", options: options, version: "test", command: [])
        let whole = try LowRankFit.run(dump, options: options, version: "test", command: [])
        #expect(fromState.report.layerGroups == whole.report.layerGroups)
        #expect(fromState.projections.count == whole.projections.count && whole.projections.count == 8)
        for a in fromState.projections {
            let b = try #require(whole.projections.first { $0.kind == a.kind && $0.layers == a.layers })
            #expect(a.rank == b.rank && a.dimension == b.dimension)
            // The same subspace: the projectors PPᵀ agree.
            let pa = Matrix<Double>(rows: a.dimension, columns: a.rank, values: a.basis.values.map(Double.init))
            let pb = Matrix<Double>(rows: b.dimension, columns: b.rank, values: b.basis.values.map(Double.init))
            let projA = BLAS.multiply(pa, pa, transposeB: true)
            let projB = BLAS.multiply(pb, pb, transposeB: true)
            let gap = zip(projA.values, projB.values).map { abs($0 - $1) }.max() ?? 0
            #expect(gap <= 1e-5, "\(a.kind) \(a.layers): projectors differ by \(gap)")
        }
        for kind in ["key", "value"] {
            let a = try #require(fromState.report.fit.perLayer[kind])
            let b = try #require(whole.report.fit.perLayer[kind])
            for (x, y) in zip(a, b) {
                let x = try #require(x)
                let y = try #require(y)
                #expect(abs(x - y) <= 1e-5, "\(kind): \(x) vs \(y)")
            }
        }
        let all = try #require(fromState.report.fit.overall["all"] ?? nil)
        let reference = try #require(whole.report.fit.overall["all"] ?? nil)
        #expect(abs(all - reference) <= 1e-5)
        // The null needs token rows: none, with a note saying why.
        #expect(fromState.report.xkvNull == nil && whole.report.xkvNull?.isEmpty == false)
        #expect(fromState.report.notes.contains { $0.hasPrefix("xkv_null omitted") })
        #expect(fromState.report.notes.contains { $0.contains("last group, layers 27") })
        let online = try #require(whole.report.online)
        for a in try #require(fromState.report.online) {
            let b = try #require(online.first { $0.kind == a.kind && $0.layers == a.layers })
            #expect(a.onlineRank == b.onlineRank && a.rank == b.rank)
            #expect(abs((a.fixedError ?? -1) - (b.fixedError ?? 1)) <= 1e-5)
        }
    }

    /// `MemoryEstimate.analysis` prices the group Grams held to the end and the block pass's joined block and
    /// product (docs: the type's formula), and nothing without `--xkv-groups`.
    @Test func memoryEstimateCountsTheGroupGrams() {
        let kinds = [
            MemoryEstimate.KindShape(channels: 8, heads: 2, paired: true),
            MemoryEstimate.KindShape(channels: 16, heads: 4, paired: false),
        ]
        func estimate(_ g: Int?) -> MemoryEstimate {
            MemoryEstimate.analysis(
                kinds: kinds, layers: 5, pairs: 4, tokens: 100, blockRows: 10, keptBlocks: 2, sections: [.spectra],
                longestWindow: 0, frequencyPanelBytes: 1 << 20, alignRank: 4, headDim: 4, xkvGroupSize: g)
        }
        #expect(estimate(nil).bytes(of: "xKV group Grams") == 0)
        // 5 layers in groups of 2: two groups of W = 16 channels, one of 8; the joined block and product of W = 16.
        let packed = { (w: Int) in 8 * w * (w + 1) / 2 + 8 * w }
        let expected = 2 * packed(16) + packed(8) + 4 * 10 * 16 + 4 * 16 * 16
        #expect(estimate(2).bytes(of: "xKV group Grams") == expected)
        #expect(estimate(2).total - estimate(nil).total == expected)
        // A G beyond the layers: one group of all 5.
        #expect(estimate(8).bytes(of: "xKV group Grams") == packed(40) + 4 * 10 * 40 + 4 * 40 * 40)
    }

    /// States of different groupings (or one without) merge with no group Grams and a note; an xkv fit of the merge
    /// then says the state holds none, and one of another G says which it holds.
    @Test func differentGroupingsMergeWithoutGroupGrams() throws {
        let dump = try Dump(path: SmolLM2Sample.path)
        let two = try Self.analysis(dump, groupSize: 2, sequences: [0])
        var options = FitOptions()
        options.method = .xkv
        options.groupSize = 3
        options.attentionQueries = 0
        #expect {
            try StateFit.run(two, path: "two.h5", options: options, version: "test", command: [])
        } throws: { error in
            let e = error as? DumpError
            return e?.category == .badData && e!.message.contains("--xkv-groups 2, not --group-size 3")
                && e!.message.contains("--xkv-groups 3")
        }
        for other in [
            try Self.analysis(dump, groupSize: 3, sequences: [1]),
            try Self.analysis(dump, groupSize: nil, sequences: [1]),
        ] {
            var merged = two
            let note = try #require(try merged.merge(other))
            #expect(note.contains("--xkv-groups 2"))
            #expect(merged.options.xkvGroupSize == nil && merged.xkvGroups.isEmpty)
            #expect(merged.kinds.values.allSatisfy { $0.xkvGroups.isEmpty })
            options.groupSize = 2
            #expect {
                try StateFit.run(merged, path: "m.h5", options: options, version: "test", command: [])
            } throws: { error in
                let e = error as? DumpError
                return e?.category == .badData && e!.message.contains("holds none")
            }
        }
        // xkv with --group-size 1 is per-layer: it needs no group Grams.
        options.groupSize = 1
        options.budget = .rank(4)
        let single = try StateFit.run(
            try Self.analysis(dump, groupSize: nil, sequences: [0]), path: "s.h5", options: options, version: "test",
            command: [])
        #expect(single.report.layerGroups.allSatisfy { $0.count == 1 })
    }
}
