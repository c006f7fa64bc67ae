// Saving and loading an analysis's accumulators as HDF5 (`--save-state`, `kvstat merge`): the partial
// result of one dump or token range, which later merges with others into the same statistics.
import Foundation
import HDF5Kit
import KVNumerics

/// The on-disk form of `AnalysisState`, schema `kvstat.state/2` (docs/statistics.md, "State files").
///
/// Root attributes: `format`, `kvstat_version`, `options` and `sources` (JSON), `layers` and `pairs`
/// (numbers). Per tensor kind a group `/{kind}` with `layer/{i}/…` for the i-th analysed layer (Gram sum,
/// count and packed lower triangle; channel moments; token-norm sketch; DCT energy; non-finite count) and
/// `pair/{p}/…` for the p-th layer pair (cross product, cosine sum and count). One dataset per layer keeps
/// memory at one layer's accumulators while saving or loading.
///
/// With `--xkv-groups G` (options `xkv_group_size`), key, value and pre-RoPE key groups also hold
/// `xkv_group/{g}/…` for the g-th group of G consecutive analysed layers (`AnalysisState.xkvGroups`; its `layers`
/// attribute names them): the group's Gram of its layers' channels side by side, as a layer's (`gram_count`,
/// `gram_sum`, `gram_lower_packed`, of W = g·C channels). A state without them is the same file as before the
/// option existed, so the format stays `kvstat.state/2`: older states load unchanged, and an older kvstat reading a
/// state with group Grams ignores them.
public enum AnalysisStateFile {
    public static let format = "kvstat.state/2"

    /// Writes `state` to `path` atomically (a temporary name in the same folder, renamed into place).
    public static func save(_ state: AnalysisState, to path: String, version: String) throws(DumpError) {
        try AtomicHDF5Write.write(path, bytes: estimatedBytes(state), what: "state file") {
            try write(state, into: $0, version: version)
        }
    }

    /// Reads a state written by `save`.
    public static func load(_ path: String) throws(DumpError) -> AnalysisState {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw DumpError(.cannotOpen, "no such state file, or it is not readable", file: path)
        }
        return try translatingHDF5Errors(file: path) { try read(path) }
    }

    /// The bytes the file will take: every accumulator's numbers (at most: a packed Gram, the moments, the
    /// position profile and a full-range norm histogram per layer), plus HDF5's overhead per dataset.
    static func estimatedBytes(_ state: AnalysisState) -> Int {
        var bytes = 1 << 16
        for ks in state.kinds.values {
            let c = ks.shape.channels
            let perLayer =
                8 * (c * (c + 1) / 2 + 6 * c + PositionProfile.bucketCount * (c + 1) + 2 * 4096 + 3 * 64 + 80)
            bytes += ks.layers.count * (perLayer + 16 * 4096)
            bytes += ks.cross.count * (8 * c * c + 8192)
            for gram in ks.xkvGroups { bytes += 8 * (gram.channels * (gram.channels + 1) / 2 + gram.channels) + 8192 }
        }
        return bytes
    }

    /// Whether `path` is an HDF5 file with a kvstat state `format` root attribute, of this version or another
    /// (`load` then says which), read without loading the state.
    public static func isStateFile(_ path: String) -> Bool {
        guard let file = try? HDF5File.open(path), let root = try? file.root() else { return false }
        return (try? root.stringAttribute("format"))??.hasPrefix("kvstat.state/") == true
    }

    // MARK: writing

    private static func write(_ state: AnalysisState, into file: HDF5File, version: String) throws {
        let root = try file.root()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try root.setAttribute("format", format)
        try root.setAttribute("kvstat_version", version)
        try root.setAttribute("options", String(decoding: try encoder.encode(state.options), as: UTF8.self))
        try root.setAttribute("sources", String(decoding: try encoder.encode(state.sources), as: UTF8.self))
        try root.setAttribute("layers", state.layers.map(Double.init))
        try root.setAttribute("pairs", state.pairs.flatMap { [Double($0.0), Double($0.1)] })
        for (kind, ks) in state.kinds {
            let group = try root.createGroup(kind.rawValue)
            try group.setAttribute("channels", [Double(ks.shape.channels)])
            try group.setAttribute("head_dim", [Double(ks.shape.headDim)])
            // For readers of the file (h5py): how many dumps this kind's accumulators hold. kvstat derives it from
            // the sources' kinds (`AnalysisState.dumps(of:)`) and checks it on loading.
            try group.setAttribute("dumps", [Double(state.dumps(of: kind))])
            // Every statistic writes its own datasets (`LayerStatistic.encode`), one group per analysed layer.
            for i in ks.layers.indices {
                try ks.layers[i].encode(to: StateGroup(try group.createGroup("layer/\(i)"), file: file.path))
            }
            for (p, cross) in ks.cross.enumerated() {
                try cross.encode(to: StateGroup(try group.createGroup("pair/\(p)"), file: file.path))
            }
            for (g, layers) in zip(ks.xkvGroups.indices, state.xkvGroups) {
                let member = try group.createGroup("xkv_group/\(g)")
                try ks.xkvGroups[g].encode(to: StateGroup(member, file: file.path))
                try member.setAttribute("layers", layers.map(Double.init))
            }
        }
        try file.flush()
    }

    // MARK: reading

    private static func read(_ path: String) throws -> AnalysisState {
        let file = try HDF5File.open(path)
        let root = try file.root()
        let found = try root.stringAttribute("format")
        if let found, found.hasPrefix("kvstat.state/"), found != format {
            throw DumpError(
                .badLayout,
                "is a \(found) state file from another kvstat version; this one reads \(format): "
                    + "run analyze --save-state again", file: path)
        }
        guard found == format else {
            throw DumpError(.badLayout, "is not a kvstat state file (no format=\"\(format)\" attribute)", file: path)
        }
        let decoder = JSONDecoder()
        guard let optionsText = try root.stringAttribute("options"),
            let sourcesText = try root.stringAttribute("sources"),
            let layerNumbers = try root.numericAttribute("layers"), let pairNumbers = try root.numericAttribute("pairs")
        else {
            throw DumpError(.badLayout, "state file lacks its options, sources, layers or pairs attribute", file: path)
        }
        let options = try decoder.decode(AnalysisOptions.self, from: Data(optionsText.utf8))
        let sources = try decoder.decode([DumpSummary].self, from: Data(sourcesText.utf8))
        if let problem = options.problem {
            throw DumpError(.badLayout, "state file's options are out of range: \(problem)", file: path)
        }
        guard let source = sources.first,
            sources.allSatisfy({ $0.headDim == source.headDim && $0.kvHeads == source.kvHeads })
        else {
            throw DumpError(.badLayout, "state file's sources are missing or describe different models", file: path)
        }
        // Numbers from the file are checked before they size anything: integral, in range, pairs within layers.
        func integer(_ value: Double, _ range: ClosedRange<Int>, _ what: String) throws(DumpError) -> Int {
            guard value.isFinite, value == value.rounded(), value >= Double(range.lowerBound),
                value <= Double(range.upperBound)
            else {
                throw DumpError(
                    .badLayout, "state file holds \(what) \(value), outside \(range.lowerBound)…\(range.upperBound)",
                    file: path)
            }
            return Int(value)
        }
        // Layer numbers are as in the dump (any whole number Double holds exactly).
        let layers = try layerNumbers.map { try integer($0, 0...(1 << 53), "layer number") }
        guard Set(layers).count == layers.count else {
            throw DumpError(.badLayout, "state file's layers attribute lists a layer twice", file: path)
        }
        // No pairs is written as an empty attribute, which reads back as one number.
        let pairValues = pairNumbers.count == 1 ? [] : pairNumbers
        guard pairValues.count % 2 == 0, !layers.isEmpty else {
            throw DumpError(.badLayout, "state file's layers or pairs attribute is malformed", file: path)
        }
        let pairs = try stride(from: 0, to: pairValues.count, by: 2).map {
            (
                try integer(pairValues[$0], 0...(layers.count - 1), "pair position"),
                try integer(pairValues[$0 + 1], 0...(layers.count - 1), "pair position")
            )
        }
        guard pairs.allSatisfy({ $0.0 < $0.1 }) else {
            throw DumpError(
                .badLayout, "state file's pairs attribute lists a pair whose first layer is not the earlier", file: path
            )
        }
        var state = AnalysisState(options: options, layers: layers, kinds: [:], pairs: pairs, sources: sources)
        var loading = MemoryEstimate()
        for name in try root.memberNames() {
            guard let kind = TensorKind(rawValue: name) else { continue }
            let group = try root.group(name)
            guard let declared = try group.numericAttribute("channels")?.first else {
                throw DumpError(.badLayout, "state group /\(name) lacks its channels attribute", file: path)
            }
            let channels = try integer(declared, 1...Dump.maxChannels, "channel count")
            // What this kind's accumulators will take, from the declared sizes, before allocating them: per layer
            // the packed Gram and the moments, per pair a C × C cross product; twice that while two states merge.
            let perLayer = Bytes.sum(Bytes.product(4, channels, channels + 1), Bytes.product(64, channels))
            let declaredPairs =
                pairs.isEmpty ? 0 : try group.exists("pair") ? group.group("pair").memberNames().count : 0
            // xKV group Grams (`--xkv-groups`): a packed (g·C)² Gram per group of g layers.
            let layerGroups = options.xkvGroupSize.map { XKVGrouping.groups(Array(layers.indices), size: $0) } ?? []
            let groupBytes = layerGroups.reduce(0) {
                let w = Bytes.product($1.count, channels)
                return Bytes.sum($0, Bytes.product(4, w, Bytes.sum(w, 1)), Bytes.product(8, w))
            }
            loading.add(
                "\(kind.rawValue) accumulators",
                Bytes.product(
                    2,
                    Bytes.sum(
                        Bytes.product(layers.count, perLayer),
                        Bytes.product(declaredPairs, 8, channels, channels), groupBytes)),
                hint: "merge fewer layers (analyze with --layers)")
            try loading.check(file: path)
            let declaredHeadDim = try group.numericAttribute("head_dim")?.first ?? Double(source.headDim)
            let headDim = try integer(declaredHeadDim, 1...channels, "head_dim")
            // The group's sizes must be the sources' model: heads × head_dim channels (queries: the query heads of
            // the sources that have queries; the first source may have none).
            let queryHeads = sources.first { $0.kinds.contains(name) && $0.queryHeads != nil }?.queryHeads
            let heads = kind == .query ? (queryHeads ?? source.kvHeads) : source.kvHeads
            guard headDim == source.headDim, channels == heads * headDim else {
                throw DumpError(
                    .badLayout,
                    "state group /\(name) holds \(channels) channels of head_dim \(headDim), but its sources "
                        + "have \(heads) heads × head_dim \(source.headDim)", file: path)
            }
            let shape = LayerShape(channels: channels, headDim: headDim)
            var ks = AnalysisState.KindState(shape: shape, layers: [], cross: [])
            for i in layers.indices {
                let layer = StateGroup(try group.group("layer/\(i)"), file: path)
                let statistics = try LayerStatistics.decode(from: layer, shape: shape, options: options)
                // Every statistic saw the same rows: counts that disagree mean a damaged or edited file.
                let rows = statistics[RowCount.self]?.validRows ?? 0
                let counts = [statistics[GramAccumulator.self]?.count, statistics[ChannelMoments.self]?.count]
                guard counts.allSatisfy({ $0 == nil || $0 == rows }),
                    (statistics[TokenNormSketch.self]?.count ?? 0) <= rows
                else {
                    throw DumpError(
                        .badLayout, "state group /\(name)/layer/\(i): its statistics count different rows",
                        file: path)
                }
                ks.layers.append(statistics)
            }
            let kindPairs = group.exists("pair") ? try group.group("pair").memberNames().count : 0
            // Key, value and pre-RoPE key states hold one cross product per listed pair; queries none.
            let expectedPairs = kind == .query || !options.sections.contains(.similarity) ? 0 : pairs.count
            guard kindPairs == expectedPairs else {
                throw DumpError(
                    .badLayout,
                    "state group /\(name) holds \(kindPairs) layer pairs; its pairs attribute lists \(expectedPairs)",
                    file: path)
            }
            for p in 0..<kindPairs {
                let pair = try group.group("pair/\(p)")
                guard p < pairs.count else {
                    throw DumpError(
                        .badLayout, "has more layer pairs than the pairs attribute lists", file: path,
                        dataset: pair.path)
                }
                ks.cross.append(
                    try CrossLayerAccumulator(
                        decoding: StateGroup(pair, file: path), layerA: layers[pairs[p].0],
                        layerB: layers[pairs[p].1], channels: channels))
            }
            ks.xkvGroups = try readGroups(
                group, kind: kind, layerGroups: AnalysisState.hasXKVGroups(kind) ? layerGroups : [],
                layers: ks.layers, shape: shape, path: path)
            // The kind's dump count, when written, must be the one its sources give.
            if let written = try group.numericAttribute("dumps")?.first, written != Double(state.dumps(of: kind)) {
                let number =
                    written.isFinite && written == written.rounded() && abs(written) < 1e15
                    ? String(Int(written)) : String(written)
                throw DumpError(
                    .badLayout,
                    "state group /\(name) says it holds \(number) dumps, but its sources list \(state.dumps(of: kind)) "
                        + "with \(name) tensors", file: path)
            }
            state.kinds[kind] = ks
        }
        // Every source's kinds have accumulators and every kind's accumulators have a source (kinds a source lists
        // that this kvstat does not know are left out of both).
        let listed = Set(sources.flatMap(\.kinds).compactMap(TensorKind.init(rawValue:)))
        guard listed == Set(state.kinds.keys) else {
            let names = { (kinds: Set<TensorKind>) in kinds.sorted().map(\.rawValue).joined(separator: ", ") }
            throw DumpError(
                .badLayout,
                "state file's sources list tensor kinds (\(names(listed))) other than its groups "
                    + "(\(names(Set(state.kinds.keys))))", file: path)
        }
        return state
    }

    /// A kind's xKV group Grams: one per group of `layerGroups` (positions), each counting at most the rows of
    /// every layer in it (a row non-finite in one layer is left out of the group); none when `layerGroups` is
    /// empty, and then the file must hold none.
    private static func readGroups(
        _ group: HDF5Group, kind: TensorKind, layerGroups: [[Int]], layers: [LayerStatistics], shape: LayerShape,
        path: String
    ) throws -> [GramAccumulator] {
        let stored = group.exists("xkv_group") ? try group.group("xkv_group").memberNames().count : 0
        guard stored == layerGroups.count else {
            throw DumpError(
                .badLayout,
                "state group /\(kind.rawValue) holds \(stored) xKV group Grams; its options' xkv_group_size and "
                    + "layers give \(layerGroups.count)", file: path)
        }
        var result: [GramAccumulator] = []
        for (g, positions) in layerGroups.enumerated() {
            let member = StateGroup(try group.group("xkv_group/\(g)"), file: path)
            let width = LayerShape(channels: shape.channels * positions.count, headDim: shape.headDim)
            let gram = try GramAccumulator(decoding: member, shape: width)
            let rows = positions.map { layers[$0][RowCount.self]?.validRows ?? Int.max }.min() ?? 0
            guard gram.count <= rows else {
                throw DumpError(
                    .badLayout, "counts \(gram.count) rows, more than its layers hold (\(rows))", file: path,
                    dataset: member.group.path)
            }
            result.append(gram)
        }
        return result
    }
}
