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

    /// The bytes the file will take: every accumulator's numbers, plus HDF5's overhead per dataset.
    static func estimatedBytes(_ state: AnalysisState) -> Int {
        var bytes = 1 << 16
        for ks in state.kinds.values {
            for i in ks.gram.indices {
                let c = ks.gram[i].channels
                bytes += 8 * (c * (c + 1) / 2 + 6 * c + 2 * ks.norms[i].histogram.count + 3 * ks.norms[i].largest.count + 80) + 4 * c + 16 * 4096
            }
            for pair in ks.cross { bytes += 8 * pair.cross.values.count + 8192 }
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
            let channels = ks.gram.first?.channels ?? 0
            try group.setAttribute("channels", [Double(channels)])
            for i in ks.gram.indices {
                let layer = try group.createGroup("layer/\(i)")
                let gram = ks.gram[i]
                try layer.writeDataset("gram_count", shape: [1], values: [Int64(gram.count)])
                try layer.writeDataset("gram_sum", shape: [channels], values: gram.sum)
                try layer.writeDataset("gram_lower_packed", shape: [gram.packedLower.count], values: gram.packedLower)
                let m = ks.moments[i]
                try layer.writeDataset("moments_count", shape: [1], values: [Int64(m.count)])
                try layer.writeDataset("moments_max_abs", shape: [channels], values: m.maxAbs)
                try layer.writeDataset("moments_central", shape: [4, channels], values: m.mean + m.m2 + m.m3 + m.m4)
                let norms = ks.norms[i]
                try layer.writeDataset("norms_count", shape: [1], values: [Int64(norms.count)])
                let bins = norms.histogram.keys.sorted()
                try layer.writeDataset("norms_bins", shape: [bins.count], values: bins.map(Int64.init))
                try layer.writeDataset("norms_bin_counts", shape: [bins.count], values: bins.map { Int64(norms.histogram[$0]!) })
                try layer.writeDataset("norms_largest_position", shape: [norms.largest.count, 2],
                                       values: norms.largest.flatMap { [Int64($0.sequence), Int64($0.token)] })
                try layer.writeDataset("norms_largest_norm", shape: [norms.largest.count], values: norms.largest.map(\.norm))
                let f = ks.frequency[i]
                try layer.writeDataset("frequency_low", shape: [f.low.count], values: f.low)
                try layer.writeDataset("frequency_bins", shape: [f.bins.count], values: f.bins)
                try layer.writeDataset("frequency_total", shape: [1], values: [f.total])
                try layer.writeDataset("frequency_windows", shape: [1], values: [Int64(f.windows)])
                try layer.writeDataset("non_finite", shape: [1], values: [Int64(ks.nonFinite[i])])
            }
            for (p, cross) in ks.cross.enumerated() {
                let pair = try group.createGroup("pair/\(p)")
                try pair.writeDataset("cross", shape: [channels, channels], values: cross.cross.values)
                try pair.writeDataset("cosine_sum", shape: [1], values: [cross.cosineSum])
                try pair.writeDataset("cosine_count", shape: [1], values: [Int64(cross.cosineCount)])
                try pair.setAttribute("layers", [Double(cross.layerA), Double(cross.layerB)])
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
            throw DumpError(.badLayout, "is a \(found) state file from another kvstat version; this one reads \(format): "
                            + "run analyze --save-state again", file: path)
        }
        guard found == format else {
            throw DumpError(.badLayout, "is not a kvstat state file (no format=\"\(format)\" attribute)", file: path)
        }
        let decoder = JSONDecoder()
        guard let optionsText = try root.stringAttribute("options"), let sourcesText = try root.stringAttribute("sources"),
              let layerNumbers = try root.numericAttribute("layers"), let pairNumbers = try root.numericAttribute("pairs")
        else {
            throw DumpError(.badLayout, "state file lacks its options, sources, layers or pairs attribute", file: path)
        }
        let options = try decoder.decode(AnalysisOptions.self, from: Data(optionsText.utf8))
        let sources = try decoder.decode([DumpSummary].self, from: Data(sourcesText.utf8))
        // Numbers from the file are checked before they size anything: integral, in range, pairs within layers.
        func integer(_ value: Double, _ range: ClosedRange<Int>, _ what: String) throws(DumpError) -> Int {
            guard value.isFinite, value == value.rounded(), value >= Double(range.lowerBound), value <= Double(range.upperBound) else {
                throw DumpError(.badLayout, "state file holds \(what) \(value), outside \(range.lowerBound)…\(range.upperBound)", file: path)
            }
            return Int(value)
        }
        let layers = try layerNumbers.map { try integer($0, 0...1_000_000, "layer number") }
        // No pairs is written as an empty attribute, which reads back as one number.
        let pairValues = pairNumbers.count == 1 ? [] : pairNumbers
        guard pairValues.count % 2 == 0, !layers.isEmpty else {
            throw DumpError(.badLayout, "state file's layers or pairs attribute is malformed", file: path)
        }
        let pairs = try stride(from: 0, to: pairValues.count, by: 2).map {
            (try integer(pairValues[$0], 0...(layers.count - 1), "pair position"),
             try integer(pairValues[$0 + 1], 0...(layers.count - 1), "pair position"))
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
            let declaredPairs = pairs.isEmpty ? 0 : try group.exists("pair") ? group.group("pair").memberNames().count : 0
            loading.add("\(kind.rawValue) accumulators", Bytes.product(2, Bytes.sum(Bytes.product(layers.count, perLayer),
                                                                                      Bytes.product(declaredPairs, 8, channels, channels))),
                        hint: "merge fewer layers (analyze with --layers)")
            try loading.check(file: path)
            var ks = AnalysisState.KindState(gram: [], moments: [], norms: [], frequency: [], cross: [], nonFinite: [])
            for i in layers.indices {
                let layer = try group.group("layer/\(i)")
                func values<T: HDF5Storable & Numeric>(_ dataset: String, _ count: Int, as type: T.Type = T.self) throws -> [T] {
                    let read: [T] = try layer.dataset(dataset).readAll()
                    guard read.count == count else {
                        throw DumpError(.badLayout, "holds \(read.count) values, expected \(count)", file: path, dataset: layer.childPath(dataset))
                    }
                    return read
                }
                var gram = GramAccumulator(channels: channels)
                gram.count = Int(try values("gram_count", 1, as: Int64.self)[0])
                gram.sum = try values("gram_sum", channels)
                gram.packedLower = try values("gram_lower_packed", channels * (channels + 1) / 2)
                var moments = ChannelMoments(channels: channels)
                moments.count = Int(try values("moments_count", 1, as: Int64.self)[0])
                moments.maxAbs = try values("moments_max_abs", channels)
                let central: [Double] = try values("moments_central", 4 * channels)
                moments.mean = Array(central[0..<channels])
                moments.m2 = Array(central[channels..<(2 * channels)])
                moments.m3 = Array(central[(2 * channels)..<(3 * channels)])
                moments.m4 = Array(central[(3 * channels)...])
                var norms = TokenNormSketch()
                norms.count = Int(try values("norms_count", 1, as: Int64.self)[0])
                let bins: [Int64] = try layer.dataset("norms_bins").readAll()
                let binCounts: [Int64] = try values("norms_bin_counts", bins.count)
                for (bin, n) in zip(bins, binCounts) {
                    guard (0..<Int64(TokenNormSketch.binCount)).contains(bin), n >= 0 else {
                        throw DumpError(.badLayout, "holds a histogram bin outside the sketch", file: path,
                                        dataset: layer.childPath("norms_bins"))
                    }
                    norms.histogram[Int(bin), default: 0] += Int(n)
                }
                let largestNorms: [Double] = try layer.dataset("norms_largest_norm").readAll()
                let positions: [Int64] = try values("norms_largest_position", 2 * largestNorms.count)
                norms.largest = largestNorms.indices.map {
                    TokenNormSketch.Entry(sequence: Int(positions[2 * $0]), token: Int(positions[2 * $0 + 1]), norm: largestNorms[$0])
                }
                var frequency = FrequencyEnergy()
                frequency.low = try values("frequency_low", frequency.low.count)
                frequency.bins = try values("frequency_bins", frequency.bins.count)
                frequency.total = try values("frequency_total", 1)[0]
                frequency.windows = Int(try values("frequency_windows", 1, as: Int64.self)[0])
                ks.gram.append(gram)
                ks.moments.append(moments)
                ks.norms.append(norms)
                ks.frequency.append(frequency)
                ks.nonFinite.append(Int(try values("non_finite", 1, as: Int64.self)[0]))
            }
            let kindPairs = group.exists("pair") ? try group.group("pair").memberNames().count : 0
            for p in 0..<kindPairs {
                let pair = try group.group("pair/\(p)")
                guard p < pairs.count else {
                    throw DumpError(.badLayout, "has more layer pairs than the pairs attribute lists", file: path, dataset: pair.path)
                }
                var cross = CrossLayerAccumulator(layerA: layers[pairs[p].0], layerB: layers[pairs[p].1], channels: channels)
                let matrix: [Double] = try pair.dataset("cross").readAll()
                guard matrix.count == channels * channels else {
                    throw DumpError(.badLayout, "holds \(matrix.count) values, expected \(channels * channels)", file: path, dataset: pair.childPath("cross"))
                }
                cross.cross = Matrix(rows: channels, columns: channels, values: matrix)
                cross.cosineSum = try pair.dataset("cosine_sum").readAll(as: Double.self).first ?? 0
                cross.cosineCount = Int(try pair.dataset("cosine_count").readAll(as: Int64.self).first ?? 0)
                ks.cross.append(cross)
            }
            state.kinds[kind] = ks
        }
        return state
    }
}
