// `kvstat analyze DUMP [-o DIR]`: spectra, cross-layer similarity, outliers and frequency energy, streamed.
import ArgumentParser
import Foundation
import KVNumerics
import KVReport
import KVStat

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Compute spectra, cross-layer similarity, outliers and DCT energy of a dump (one streaming pass).",
        discussion:
            "Writes stats.json (schema kvstat.stats/2), layers.csv, spectra.csv, similarity.csv, channels.csv, "
            + "frequency.csv, summary.md and report.html. Definitions: docs/statistics.md."
    )

    @OptionGroup var options: DumpOptions

    @Option(
        name: .shortAndLong, help: ArgumentHelp("Output directory (default: kvstat-out/<dump name>).", valueName: "dir")
    )
    var output: String?

    @Option(
        help: ArgumentHelp("Comma-separated sections: spectra, similarity, outliers, frequency.", valueName: "list"))
    var only: String?

    @Option(
        help: ArgumentHelp(
            "Layers to analyse, e.g. 0-7,12 (layer numbers as the file names them; each must exist).", valueName: "list"
        ))
    var layers: String?

    @Option(
        help: ArgumentHelp(
            "Sequences (batch rows) to analyse, e.g. 0-3 (default: all; each must exist).", valueName: "list"))
    var sequences: String?

    @Option(
        help: ArgumentHelp(
            "Token positions to analyse in every sequence, START:END (end exclusive; either may be omitted).",
            valueName: "range"))
    var tokens: String?

    @Option(help: ArgumentHelp("Also save the accumulators (HDF5) for `kvstat merge`.", valueName: "file"))
    var saveState: String?

    @Flag(help: "Column-centre each layer's matrix before the SVD (spectra and subspace alignment).")
    var center = false

    @Option(help: "Rank r ≥ 1 of the subspace alignments (clipped to the channels).")
    var alignRank = 32

    @Option(
        help: "Outlier threshold F, a finite number > 0: channels (max |x|) and tokens (norm) above F × the median.")
    var outlierFactor = 6.0

    @Option(
        help: ArgumentHelp(
            "DCT window in tokens, ≥ 2, clipped to each sequence (default: each sequence whole).", valueName: "n"))
    var dctWindow: Int?

    @Flag(
        help:
            ArgumentHelp(
                "Cross-layer statistics for every layer pair, not only adjacent ones (memory: L²/2 × "
                    + "channels² × 8 "
                    + "bytes; a run that would not fit in memory is refused up front, exit 69).")
    )
    var allPairs = false

    @Option(help: "BLAS threads, 1…1024 (default: OpenBLAS's own choice, all cores).")
    var threads: Int?

    @Flag(
        help: """
            Skip the dump's SHA-256 (stats.json's dump.sha256 is then null): it reads the file once more, about \
            3 % of a full analysis. Without it, merge tells a dump merged twice only by its path.
            """)
    var noDigest = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Progress, completion and errors as one JSON object per line on stderr (for schedulers).")
    var logJSON = false

    @Flag(
        help:
            ArgumentHelp(
                "Print wall time per stage (read, gram, cross, outliers, dct, eigen, pairs) on stderr, "
                    + "with GFLOP/s for "
                    + "the BLAS stages.")
    )
    var timings = false

    @Flag(
        help: """
            Write into an -o folder holding files kvstat did not write, and replace a --save-state file that is not a \
            kvstat state file (never an input).
            """)
    var force = false

    func validate() throws {
        try OptionBounds.check(alignRank, "--align-rank", in: 1...Int.max)
        try OptionBounds.check(outlierFactor, "--outlier-factor", above: 0)
        if let dctWindow { try OptionBounds.check(dctWindow, "--dct-window", in: 2...Int.max) }
        if let threads { try OptionBounds.check(threads, "--threads", in: 1...1024) }
        _ = try parsedSections()
        if let layers { _ = try LayerList.parse(layers) }
        if let sequences { _ = try LayerList.parse(sequences, option: "--sequences") }
        if let tokens { _ = try TokenRangeOption.parse(tokens) }
    }

    func parsedSections() throws -> Set<AnalysisSection> {
        guard let only else { return Set(AnalysisSection.allCases) }
        var result: Set<AnalysisSection> = []
        for word in only.split(separator: ",") {
            guard let section = AnalysisSection(rawValue: word.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError(
                    "--only: unknown section '\(word)'; choose from spectra, similarity, outliers, frequency")
            }
            result.insert(section)
        }
        return result
    }

    func run() throws {
        if let threads { BLAS.setThreads(threads) }
        try reportingErrors(json: logJSON) {
            let directory =
                output
                ?? "kvstat-out/" + URL(fileURLWithPath: options.dump).deletingPathExtension().lastPathComponent
            let markFolder = try checkOutputs(directory)  // exit 73 before any work
            let dump = try options.open()
            var analysis = AnalysisOptions()
            analysis.sections = try parsedSections()
            analysis.layers = try layers.map {
                try LayerList.resolve($0, option: "--layers", noun: "layers", in: dump.layerNumbers, file: dump.path)
            }
            analysis.center = center
            analysis.alignRank = alignRank
            analysis.outlierFactor = outlierFactor
            analysis.dctWindow = dctWindow
            analysis.blockTokens = options.blockTokens
            analysis.pairs = allPairs ? .all : .adjacent
            analysis.sequences = try sequences.map {
                try LayerList.resolve(
                    $0, option: "--sequences", noun: "sequences", in: 0..<dump.shape.sequences, file: dump.path)
            }
            analysis.tokenRange = try tokens.map { try TokenRangeOption.parse($0) }
            let progress = ProgressLine(quiet: quiet, json: logJSON)
            let clock = StageTimings()
            let state = try Analyzer.accumulate(
                dump, options: analysis, timings: clock, digest: !noDigest, progress: progress.update)
            progress.finish()
            try dump.checkUnchanged()  // exit 75, before anything is written
            if let saveState { try AnalysisStateFile.save(state, to: saveState, version: KVStatVersion.current) }
            let report = try StatsFinisher.finish(state, version: KVStatVersion.current, timings: clock)
            try AnalysisOutputs.write(
                report, to: directory, quiet: quiet || logJSON,
                marking: markFolder ? "analyze" : nil)
            progress.finish(output: directory)
            if timings {
                FileHandle.standardError.write(Data(clock.lines.map { "kvstat: timing \($0)\n" }.joined().utf8))
            }
        }
    }
}
