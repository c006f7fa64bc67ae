// Partial results: a state saved to HDF5 and loaded back finishes to the same report, and the states of
// a dump's parts (sequences, token ranges) merge into the statistics of the whole.
import Foundation
import Testing

@testable import KVNumerics
@testable import KVStat

@Suite(.serialized) struct StateMergeTests {
    static let sample = Fixtures.sample

    static func options(_ configure: (inout AnalysisOptions) -> Void = { _ in }) -> AnalysisOptions {
        var options = AnalysisOptions()
        options.layers = [0, 1, 2]
        options.blockTokens = 64
        configure(&options)
        return options
    }

    static func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "kvstat-state-\(UUID().uuidString)-\(name).h5"
    }

    /// Asserts two reports agree: spectra for σ ≥ 0.05 σ₁ within `spectra` relative, pair statistics,
    /// kurtosis and DCT fractions within `tolerance`, and the same sinks and outliers.
    static func expectEqual(_ a: StatsReport, _ b: StatsReport, spectra: Double, tolerance: Double) throws {
        #expect(a.layers.count == b.layers.count)
        for (la, lb) in zip(a.layers, b.layers) {
            for (kind, sa) in la.kinds {
                let sb = try #require(lb.kinds[kind])
                #expect(sa.tokens == sb.tokens)
                let va = try #require(sa.singularValues)
                let vb = try #require(sb.singularValues)
                for (x, y) in zip(va, vb) where x >= 0.05 * va[0] {
                    #expect(abs(x - y) <= spectra * x, "layer \(la.layer) \(kind): σ \(x) vs \(y)")
                }
                #expect(sa.effectiveRank == sb.effectiveRank)
                let ka = try #require(sa.channels?.kurtosis)
                let kb = try #require(sb.channels?.kurtosis)
                for (x, y) in zip(ka, kb) {
                    #expect((x == nil) == (y == nil))
                    if let x, let y { #expect(abs(x - y) <= tolerance * max(1, x)) }
                }
                #expect(sa.channels?.maxAbs == sb.channels?.maxAbs)
                #expect(sa.channels?.outliers == sb.channels?.outliers)
                #expect(
                    sa.tokenNorms?.sinks.map { [$0.sequence, $0.token] }
                        == sb.tokenNorms?.sinks.map { [$0.sequence, $0.token] })
                let fa = try #require(sa.frequency?.lowEnergy)
                let fb = try #require(sb.frequency?.lowEnergy)
                for (key, x) in fa { #expect(abs(x - fb[key]!) <= tolerance) }
            }
        }
        for (kind, sa) in a.similarity {
            let sb = try #require(b.similarity[kind])
            #expect(sa.map { [$0.layerA, $0.layerB] } == sb.map { [$0.layerA, $0.layerB] })
            for (pa, pb) in zip(sa, sb) {
                for (x, y) in [
                    (pa.cosine, pb.cosine), (pa.cka, pb.cka), (pa.subspaceAlignment, pb.subspaceAlignment),
                    (pa.channelAlignment, pb.channelAlignment),
                ] {
                    #expect((x == nil) == (y == nil))
                    if let x, let y { #expect(abs(x - y) <= tolerance, "\(kind): \(x) vs \(y)") }
                }
            }
        }
    }

    /// Save then load is lossless: the loaded state finishes to exactly the same numbers.
    @Test func stateRoundTripsThroughHDF5() throws {
        let dump = try Dump(path: Self.sample)
        let state = try Analyzer.accumulate(dump, options: Self.options())
        let path = Self.temporaryPath("roundtrip")
        defer { unlink(path) }
        try AnalysisStateFile.save(state, to: path, version: "test")
        let loaded = try AnalysisStateFile.load(path)
        #expect(loaded.layers == state.layers)
        #expect(loaded.options == state.options)
        #expect(loaded.sources == state.sources)
        try Self.expectEqual(
            try StatsFinisher.finish(state, version: "test"), try StatsFinisher.finish(loaded, version: "test"),
            spectra: 0, tolerance: 0)
        // Every statistic of every layer decodes to the state it encoded (each statistic's own encode/decode).
        for kind in state.kinds.keys {
            #expect(loaded.kinds[kind]!.layers == state.kinds[kind]!.layers, "\(kind)")
            #expect(loaded.kinds[kind]!.layers.first?.statistics.count == LayerStatistics.registered.count)
            #expect(zip(loaded.kinds[kind]!.cross, state.kinds[kind]!.cross).allSatisfy { $0.cross == $1.cross })
        }
    }

    /// Sequence 0 and sequences 1–2 analysed apart, saved, loaded and merged equal the whole dump.
    @Test func sequenceHalvesMergeIntoTheWhole() throws {
        let dump = try Dump(path: Self.sample)
        let whole = try StatsFinisher.finish(try Analyzer.accumulate(dump, options: Self.options()), version: "test")
        var merged = try Analyzer.accumulate(dump, options: Self.options { $0.sequences = [0] })
        let path = Self.temporaryPath("second")
        defer { unlink(path) }
        try AnalysisStateFile.save(
            try Analyzer.accumulate(dump, options: Self.options { $0.sequences = [1, 2] }), to: path, version: "test")
        try merged.merge(try AnalysisStateFile.load(path))
        let report = try StatsFinisher.finish(merged, version: "test")
        #expect(report.dump.tokens == whole.dump.tokens)
        #expect(report.dump.sequenceLengths == whole.dump.sequenceLengths)
        #expect(report.dump.sha256 == whole.dump.sha256 && whole.dump.sha256?.count == 64)
        try Self.expectEqual(whole, report, spectra: 1e-4, tolerance: 1e-5)
    }

    /// Token ranges split on a DCT-window boundary merge into the whole, frequency included.
    @Test func tokenRangesMergeIntoTheWhole() throws {
        let dump = try Dump(path: Self.sample)
        let options = Self.options { $0.dctWindow = 32 }
        let whole = try StatsFinisher.finish(try Analyzer.accumulate(dump, options: options), version: "test")
        var first = options
        var second = options
        first.tokenRange = 0..<64
        second.tokenRange = 64..<Int.max
        var merged = try Analyzer.accumulate(dump, options: first)
        try merged.merge(try Analyzer.accumulate(dump, options: second))
        #expect(merged.options.tokenRange == nil)
        try Self.expectEqual(whole, try StatsFinisher.finish(merged, version: "test"), spectra: 1e-4, tolerance: 1e-5)
    }

    @Test func incompatibleStatesAreRefused() throws {
        let dump = try Dump(path: Self.sample)
        var state = try Analyzer.accumulate(dump, options: Self.options { $0.sections = [.spectra] })
        let other = try Analyzer.accumulate(dump, options: Self.options { $0.sections = [.spectra, .outliers] })
        #expect(throws: DumpError.self) { try state.merge(other) }
    }

    @Test func nonStateFilesAreRefusedWithOneLine() throws {
        do {
            _ = try AnalysisStateFile.load(Self.sample)
            Issue.record("loading a dump as a state should fail")
        } catch {
            #expect(error.description.contains("is not a kvstat state file"))
            #expect(error.description.contains("minilm-sample.h5"))
        }
        #expect(throws: DumpError.self) { try AnalysisStateFile.load("/nonexistent/state.h5") }
    }

    /// A selection outside the dump is an error, not an empty analysis.
    @Test func emptySelectionsAreErrors() throws {
        let dump = try Dump(path: Self.sample)
        #expect(throws: DumpError.self) { try Analyzer.accumulate(dump, options: Self.options { $0.sequences = [7] }) }
        #expect(throws: DumpError.self) {
            try Analyzer.accumulate(dump, options: Self.options { $0.tokenRange = 500..<600 })
        }
    }
}
