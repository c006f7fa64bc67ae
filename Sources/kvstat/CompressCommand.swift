// `kvstat compress DUMP --artifact FIT_DIR -o OUT.h5`: apply a fit's projections to a dump and write the
// compressed cache (schema kvstat.compressed/1, docs/compressed-format.md).
import ArgumentParser
import Foundation
import KVReport
import KVStat

struct CompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Write a dump's compressed cache with the projections of a fit-lowrank artifact.",
        discussion:
            "Stores float16 latents per projection (cskv: int8/int4 codes with float16 scales and minima, and the "
            + "recent-token window in float16), the projections, lengths and provenance. Prints a summary line on "
            + "stderr and JSON (bytes on disk beside the fit's accounting) on stdout."
    )

    @Option(help: ArgumentHelp("Directory written by fit-lowrank (its projections.h5 is read).", valueName: "dir"))
    var artifact: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The compressed cache to write (HDF5).", valueName: "file"))
    var output: String

    @Option(
        help: ArgumentHelp(
            "matryoshka: the ladder's keep ratio whose ranks to use (default: the fit's own budget).",
            valueName: "ratio"))
    var rankRatio: Double?

    @Option(help: ArgumentHelp("Layers to compress (default: every fitted layer), as in analyze.", valueName: "list"))
    var layers: String?

    @Flag(help: "Replace an existing file at -o that is not a kvstat compressed cache (never an input).")
    var force = false

    @OptionGroup var options: DumpOptions
    @OptionGroup var selection: TokenSelectionOptions

    func validate() throws {
        if let rankRatio, !(rankRatio > 0 && rankRatio <= 1) {
            throw ValidationError("--rank-ratio must be in (0, 1], got \(rankRatio)")
        }
        if let layers { _ = try LayerList.parse(layers) }
    }

    func run() throws {
        try reportingErrors {
            let projectionsPath = artifact + "/projections.h5"
            var guarding = OutputGuard(force: force)
            guarding.addInput(options.dump, role: "the dump")
            guarding.addInput(projectionsPath, role: "the artifact")
            if let layout = options.layout { guarding.addInput(layout, role: "the layout file") }
            try guarding.checkFile(
                output, kind: "a kvstat compressed cache", option: "-o",
                isReplaceable: { (try? Decompressor.manifest($0)) != nil })
            let (projections, manifest) = try FitArtifacts.load(projectionsPath)
            var ranks = manifest.units.map(\.rank)
            if let rankRatio {
                guard manifest.options.method == .matryoshka, let ladder = manifest.ladder else {
                    throw DumpError(
                        .usage, "--rank-ratio applies to matryoshka fits; this one is \(manifest.method)",
                        file: projectionsPath)
                }
                guard let rung = ladder.first(where: { abs($0.keepRatio - rankRatio) < 1e-9 }),
                    let rungRanks = rung.ranks, rungRanks.count == ranks.count
                else {
                    let rungs = ladder.map { "\($0.keepRatio)" }.joined(separator: ", ")
                    throw DumpError(
                        .usage, "--rank-ratio \(rankRatio) is not a rung of this fit's ladder (\(rungs))",
                        file: projectionsPath)
                }
                guard zip(rungRanks, projections).allSatisfy({ $0 >= 0 && $0 <= $1.rank }) else {
                    throw DumpError(.badLayout, "ladder ranks exceed the stored ranks", file: projectionsPath)
                }
                ranks = rungRanks
            }
            let dump = try options.open()
            try FitModel.check(projections, report: manifest, artifact: projectionsPath, against: dump)
            if manifest.options.sinkCount > 0 {
                // The compressed format stores cskv's window exactly but not sink rows (docs/compressed-format.md).
                FileHandle.standardError.write(
                    Data(
                        ("kvstat: note: \(artifact): fitted with --keep-sinks \(manifest.options.sinkCount), but the "
                            + "compressed cache stores the sink rows as latents like the others (its bytes and errors "
                            + "are those of the fit without kept sinks)\n").utf8))
            }
            var keep = Array(projections.indices)
            if let layers {
                let chosen = Set(
                    try LayerList.resolve(
                        layers, option: "--layers", noun: "layers", in: dump.layerNumbers, file: dump.path))
                keep = keep.filter { projections[$0].layers.allSatisfy(chosen.contains) }
                guard !keep.isEmpty else {
                    throw DumpError(
                        .usage,
                        "--layers \(layers) covers no whole projection of \(projectionsPath) (xkv groups "
                            + "are compressed whole)", file: dump.path)
                }
            }
            let selected = try selection.resolve(in: dump)
            let runs = try selected.runs(of: dump)
            guard runs.totalTokens > 0 else {
                throw DumpError(.usage, "the selection holds no valid tokens", file: dump.path)
            }
            let request = CompressionRequest(
                dump: dump, runs: runs, selection: selected.text, projections: keep.map { projections[$0] },
                ranks: keep.map { ranks[$0] }, unitNames: keep.map { manifest.units[$0].name }, report: manifest,
                artifactPath: projectionsPath, rankRatio: rankRatio, blockTokens: options.blockTokens)
            let summary = try Compressor.compress(request, to: output)
            let m = summary.manifest
            FileHandle.standardError.write(
                Data(
                    ("kvstat: compressed \(m.tokens) tokens × \(m.layers.count) layers (\(m.method)) into \(output): "
                        + "\(summary.compressedFileBytes) bytes on disk = \(format(summary.measuredRatio)) of "
                        + "\(m.originalFloat16Bytes) float16 bytes (accounted \(format(m.accountedRatio)), fixed "
                        + "\(m.projectionBytes + m.groupIndexBytes) bytes); dump file \(summary.dumpFileBytes) bytes\n")
                        .utf8))
            print(try JSONText.encode(summary))
        }
    }

    private func format(_ x: Double) -> String { String(format: "%.4f", x) }
}
