// The files a fit leaves behind for PyTorch and h5py: projections.safetensors and projections.h5 (the same
// tensors, named `layers.{l}.{kind}.proj`, `layers.{l}.{kind}.heads.{h}.proj`, `groups.{g}.{kind}.proj`,
// with `.mean` beside them when centred), and reading projections.h5 back for `kvstat eval`.
import Foundation
import HDF5Kit
import KVNumerics

public enum FitArtifacts {
    /// projections.safetensors: float32 tensors `[dimension, rank]`; the header metadata holds the method,
    /// the ranks, the layer groups and (matryoshka) the rank table of every budget, as JSON strings.
    public static func safetensors(_ result: LowRankFitResult) throws -> Data {
        var writer = SafetensorsWriter()
        for (p, unit) in zip(result.projections, result.report.units) {
            writer.add(unit.name + ".proj", shape: [p.dimension, p.rank], values: p.basis.values)
            if let mean = p.mean { writer.add(unit.name + ".mean", shape: [mean.count], values: mean) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        writer.metadata = [
            "format": "kvstat.fit/1",
            "method": result.report.method,
            "ranks": String(
                decoding: try encoder.encode(
                    Dictionary(uniqueKeysWithValues: result.report.units.map { ($0.name, $0.rank) })), as: UTF8.self),
            "layer_groups": String(decoding: try encoder.encode(result.report.layerGroups), as: UTF8.self),
        ]
        if let ladder = result.report.ladder {
            let table = Dictionary(
                uniqueKeysWithValues: ladder.map { rung in
                    (
                        "\(rung.keepRatio)",
                        Dictionary(
                            uniqueKeysWithValues: zip(result.report.units.map(\.name), rung.ranks ?? []).map {
                                ($0, $1)
                            })
                    )
                })
            writer.metadata["ladder_ranks"] = String(decoding: try encoder.encode(table), as: UTF8.self)
        }
        return try writer.encoded()
    }

    /// Writes projections.h5 at `path` (atomically): one group per projection with `proj` and `mean`
    /// datasets and attributes `kind`, `layers`, `channels` (start, end) and `heads`; the manifest JSON as
    /// the root attribute `manifest`; matryoshka's rank table as `/ladder_ranks` [budgets × projections].
    public static func writeHDF5(_ result: LowRankFitResult, to path: String) throws(DumpError) {
        let bytes = result.projections.reduce(1 << 16) {
            $0 + 4 * ($1.basis.values.count + ($1.mean?.count ?? 0)) + 8 * $1.eigenvalues.count + 8192
        }
        try AtomicHDF5Write.write(path, bytes: bytes, what: "projections") { try write(result, $0) }
    }

    private static func write(_ result: LowRankFitResult, _ file: HDF5File) throws {
        let root = try file.root()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try root.setAttribute("format", "kvstat.fit/1")
        try root.setAttribute("manifest", String(decoding: try encoder.encode(result.report), as: UTF8.self))
        for (p, unit) in zip(result.projections, result.report.units) {
            let group = try root.createGroup(unit.name)
            try group.writeDataset("proj", shape: [p.dimension, p.rank], values: p.basis.values)
            if let mean = p.mean { try group.writeDataset("mean", shape: [mean.count], values: mean) }
            try group.setAttribute("kind", p.kind.rawValue)
            try group.setAttribute("layers", p.layers.map(Double.init))
            try group.setAttribute("channels", [Double(p.channels.lowerBound), Double(p.channels.upperBound)])
            if let heads = p.heads {
                try group.setAttribute("heads", [Double(heads.lowerBound), Double(heads.upperBound)])
            }
            try group.setAttribute("eigenvalues", p.eigenvalues)
        }
        if let ladder = result.report.ladder {
            let table = ladder.flatMap { ($0.ranks ?? []).map(Int64.init) }
            let dataset = try root.writeDataset(
                "ladder_ranks", shape: [ladder.count, result.projections.count], values: table)
            try dataset.setAttribute("keep_ratios", ladder.map(\.keepRatio))
        }
        try file.flush()
    }

    /// Reads the projections and the manifest of projections.h5 (for `kvstat eval`).
    /// `[start, end]` as a non-empty range of whole numbers within `bounds`, or nil.
    static func range(_ values: [Double], within bounds: ClosedRange<Int>) -> Range<Int>? {
        guard values.count == 2, values.allSatisfy({ $0.isFinite && $0 == $0.rounded() }),
            values[0] >= Double(bounds.lowerBound), values[1] <= Double(bounds.upperBound), values[0] < values[1]
        else { return nil }
        return Int(values[0])..<Int(values[1])
    }

    public static func load(_ path: String) throws(DumpError) -> (projections: [Projection], report: FitReport) {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw DumpError(.cannotOpen, "no projections.h5 here, or it is not readable", file: path)
        }
        return try translatingHDF5Errors(file: path) {
            let file = try HDF5File.open(path)
            let root = try file.root()
            guard try root.stringAttribute("format") == "kvstat.fit/1",
                let manifest = try root.stringAttribute("manifest")
            else {
                throw DumpError(
                    .badLayout, "is not a kvstat fit artifact (no format=\"kvstat.fit/1\" attribute)", file: path)
            }
            let report = try JSONDecoder().decode(FitReport.self, from: Data(manifest.utf8))
            // The options eval applies (cskv's window and quantization) are checked like the CLI's flags.
            let o = report.options
            guard (1...65_536).contains(o.quantGroup), o.window >= 0, (0...1_000_000).contains(o.attentionQueries),
                (1...65_536).contains(o.groupSize), o.blockTokens >= 1, o.sinkCount >= 0
            else {
                throw DumpError(
                    .badLayout, "manifest's options are out of range (quant_group, window, group_size…)", file: path)
            }
            // A pre-RoPE fit's RoPE sizes and indexes its rotation: the same bounds `RotaryEmbedding.resolve` puts
            // on the command line's and the dump's values.
            if let rope = report.rope {
                let headDim = report.model?.headDim ?? 0
                guard rope.theta.isFinite, rope.theta > 0, rope.rotaryDim >= 2, rope.rotaryDim % 2 == 0,
                    rope.rotaryDim <= headDim, rope.embedding != nil
                else {
                    throw DumpError(
                        .badLayout,
                        "manifest's rope is out of range (theta \(rope.theta), rotary_dim \(rope.rotaryDim) of "
                            + "head_dim \(headDim), style '\(rope.style)')", file: path)
                }
            }
            var projections: [Projection] = []
            for unit in report.units {
                let group = try root.group(unit.name)
                // Every number that sizes or indexes something is checked first: a damaged artifact is an error,
                // never a trap.
                func bad(_ what: String) -> DumpError { DumpError(.badLayout, what, file: path, dataset: group.path) }
                guard let kind = TensorKind(rawValue: unit.kind), let declared = try group.numericAttribute("channels"),
                    let channels = Self.range(declared, within: 0...Dump.maxChannels)
                else {
                    throw bad(
                        "projection lacks its kind, or its channels attribute is not a range within "
                            + "0…\(Dump.maxChannels)"
                    )
                }
                let heads: Range<Int>?
                if let declaredHeads = try group.numericAttribute("heads") {
                    guard let range = Self.range(declaredHeads, within: 0...Dump.maxChannels) else {
                        throw bad("projection's heads attribute is not a range")
                    }
                    heads = range
                } else {
                    heads = nil
                }
                guard !unit.layers.isEmpty, unit.dimension == unit.layers.count * channels.count,
                    (1...unit.dimension).contains(unit.storedRank), (0...unit.storedRank).contains(unit.rank)
                else {
                    throw bad(
                        "manifest unit \(unit.name): dimension \(unit.dimension), rank \(unit.rank) and stored rank "
                            + "\(unit.storedRank) do not fit \(unit.layers.count) layer(s) × \(channels.count) channels"
                    )
                }
                let proj = try group.dataset("proj")
                guard proj.shape == [unit.dimension, unit.storedRank] else {
                    throw bad("proj has shape \(proj.shape), expected [\(unit.dimension), \(unit.storedRank)]")
                }
                let values: [Float] = try proj.readAll()
                let mean: [Float]? = group.exists("mean") ? try group.dataset("mean").readAll() : nil
                guard mean.map({ $0.count == unit.dimension }) ?? true, values.allSatisfy(\.isFinite),
                    mean?.allSatisfy(\.isFinite) ?? true
                else { throw bad("proj or mean holds non-finite values or a mean of the wrong length") }
                projections.append(
                    Projection(
                        kind: kind, layers: unit.layers, channels: channels, heads: heads,
                        basis: Matrix(rows: unit.dimension, columns: unit.storedRank, values: values), mean: mean,
                        eigenvalues: try group.numericAttribute("eigenvalues") ?? []))
            }
            return (projections, report)
        }
    }
}
