// States of one model's dumps with and without queries merge on the kinds they share (issue 12): the shared
// kinds equal one analysis of all the tokens, a kind only one state holds is kept as it was, every kind counts
// the dumps it holds (also after a save and load), and states of another model stay refused, the state untouched.
import Foundation
import Testing

@testable import KVStat

@Suite(.serialized) struct KindMergeTests {
    static func options(_ configure: (inout AnalysisOptions) -> Void = { _ in }) -> AnalysisOptions {
        StateMergeTests.options(configure)
    }

    /// `state` as if its dump had no queries and were another file (its own SHA-256 and path).
    static func withoutQueries(_ state: AnalysisState, as name: String) -> AnalysisState {
        var copy = state
        copy.kinds[.query] = nil
        for i in copy.sources.indices {
            copy.sources[i].kinds.removeAll { $0 == TensorKind.query.rawValue }
            copy.sources[i].queryHeads = nil
            copy.sources[i].sha256 = String(repeating: String(name.prefix(1)), count: 64)
            copy.sources[i].path = "/elsewhere/\(name).h5"
        }
        return copy
    }

    /// The sample's spectra of sequence 0 and of sequence 1, as two states to merge.
    static func spectraOfSequences() throws -> (AnalysisState, AnalysisState) {
        let dump = try Dump(path: StateMergeTests.sample)
        let states = try [0, 1].map { sequence in
            try Analyzer.accumulate(
                dump,
                options: options {
                    $0.sequences = [sequence]
                    $0.sections = [.spectra]
                })
        }
        return (states[0], states[1])
    }

    /// `report` with only the layers' statistics of `kinds`.
    static func only(_ kinds: Set<TensorKind>, _ report: StatsReport) -> StatsReport {
        var copy = report
        for i in copy.layers.indices { copy.layers[i].kinds = copy.layers[i].kinds.filter { kinds.contains($0.key) } }
        copy.similarity = copy.similarity.filter { kinds.contains(TensorKind(rawValue: $0.key)!) }
        return copy
    }

    @Test func dumpsWithAndWithoutQueriesMergeOnSharedKinds() throws {
        let dump = try Dump(path: StateMergeTests.sample)
        let withQueries = try Analyzer.accumulate(dump, options: Self.options { $0.sequences = [0] })
        let rest = try Analyzer.accumulate(dump, options: Self.options { $0.sequences = [1, 2] })
        let whole = try Analyzer.accumulate(dump, options: Self.options())
        // The state without queries first: the kind it lacks is taken from the other.
        var merged = Self.withoutQueries(rest, as: "b")
        try merged.merge(withQueries)
        #expect(Set(merged.kinds.keys) == [.key, .value, .query])
        #expect(merged.dumps(of: .key) == 2 && merged.dumps(of: .value) == 2 && merged.dumps(of: .query) == 1)
        #expect(merged.dumpsPerKind == ["key": 2, "value": 2, "query": 1])
        #expect(merged.combinedSummary.kinds == ["key", "value", "query"])
        #expect(merged.combinedSummary.queryHeads == 12)

        let report = try StatsFinisher.finish(merged, version: "test")
        #expect(report.dumpsPerKind == ["key": 2, "value": 2, "query": 1])
        #expect(report.dump.kinds == ["key", "value", "query"])
        // Keys and values: one analysis of every token; queries: the one state that had them, exactly.
        try StateMergeTests.expectEqual(
            Self.only([.key, .value], report),
            Self.only([.key, .value], try StatsFinisher.finish(whole, version: "test")), spectra: 1e-4,
            tolerance: 1e-5)
        let queries = try StatsFinisher.finish(withQueries, version: "test")
        try StateMergeTests.expectEqual(
            Self.only([.query], report), Self.only([.query], queries), spectra: 1e-12, tolerance: 1e-12)
        #expect(report.layers[0].kinds[.query]?.tokens == 192 && report.layers[0].kinds[.key]?.tokens == 452)

        // The other order gives the same kinds and counts.
        var reversed = withQueries
        try reversed.merge(Self.withoutQueries(rest, as: "b"))
        #expect(reversed.dumpsPerKind == merged.dumpsPerKind)

        // Saved and loaded: the same kinds and counts (the file's `dumps` attributes are checked on loading).
        let path = StateMergeTests.temporaryPath("kinds")
        defer { unlink(path) }
        try AnalysisStateFile.save(merged, to: path, version: "test")
        let loaded = try AnalysisStateFile.load(path)
        #expect(loaded.dumpsPerKind == merged.dumpsPerKind)
        #expect(loaded.sources == merged.sources)
        #expect(loaded.kinds[.query]!.layers == merged.kinds[.query]!.layers)
    }

    /// A state of another model (layers, kv heads or head_dim) is refused in one sentence naming both models, and
    /// the state merged into is left as it was.
    @Test func anotherModelIsRefusedAndNothingChanges() throws {
        var (state, other) = try Self.spectraOfSequences()
        other = Self.withoutQueries(other, as: "c")
        for i in other.sources.indices { other.sources[i].layers = 32 }
        let before = state
        do {
            try state.merge(other)
            Issue.record("a state of another model merged")
        } catch {
            #expect(error.description.contains("another model (32 layers × 12 kv heads × head_dim 32"), "\(error)")
            #expect(error.description.contains("(6 layers × 12 kv heads × head_dim 32"), "\(error)")
        }
        #expect(state.sources == before.sources && Set(state.kinds.keys) == Set(before.kinds.keys))
        #expect(state.kinds[.key]!.layers == before.kinds[.key]!.layers)
    }

    @Test func signatureNamesReadBack() {
        let s = ModelSignature(layers: 32, kvHeads: 8, headDim: 128)
        #expect(s.name == "32L-8kv-128d")
        #expect(ModelSignature(name: s.name) == s)
        for bad in ["32L-8kv", "32L-8kv-128", "L-8kv-128d", "032L-8kv-128d", "32L-0kv-128d", "corpus", "x-y-z"] {
            #expect(ModelSignature(name: bad) == nil, "\(bad)")
        }
        // A recorded model name is part of the signature: same shape, other model, other corpus.
        let llama = ModelSignature(layers: 32, kvHeads: 8, headDim: 128, model: "meta-llama/Llama-3.1-8B")
        let mistral = ModelSignature(layers: 32, kvHeads: 8, headDim: 128, model: "mistralai/Mistral-7B-v0.1")
        #expect(llama.name == "meta-llama_Llama-3.1-8B__32L-8kv-128d")
        #expect(ModelSignature(name: llama.name) == llama && llama != mistral && llama != s)
        #expect(ModelSignature(name: "a__b__32L-8kv-128d") == nil && ModelSignature(name: "__32L-8kv-128d") == nil)
        #expect(ModelSignature.slug(" weird / name__here ") == "weird_name_here")
    }

    @Test func sameShapeOtherModelIsRefused() throws {
        var (state, other) = try Self.spectraOfSequences()
        for i in other.sources.indices { other.sources[i].attributes["model"] = "another/model" }
        let error = #expect(throws: DumpError.self) { try state.merge(other) }
        #expect(error?.description.contains("of another_model") == true, "\(error?.description ?? "")")
    }
}
